"""Galaxy properties from halos: baselines and scalar MLPs with a Gaussian likelihood (docs/protocols.md#halos).

Four models, each predicting a mean and an uncertainty per halo:

- ``mass-only``: a fitted stellar-to-halo relation, the double power law
  log M* = log(2 N M) - log((M / M1)^-beta + (M / M1)^gamma) (Moster et al. 2010), fitted by least
  squares, with the scatter of its residuals as the (constant) uncertainty;
- ``global``: a Gaussian MLP on log M200m and the global properties (concentration, spin,
  sigma_v / V200);
- ``scalars``: a Gaussian MLP on log M200m and the invariant halo scalars;
- ``catalog``: a Gaussian MLP on log M200m and the properties a halo finder's catalog gives
  (concentration, spin, sigma_v / V200, axis ratios, offsets, Vmax / V200, T/|U|, half-mass radius).

The MLPs output (mean, log sigma) and are trained on the Gaussian negative log-likelihood. The
metric is sigma68: half the 16-84 percentile range of the residuals (dex).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import curve_fit

from pipeline.metrics import sigma68
from surrogates.artifacts import register_model
from surrogates.mlp import MLP
from surrogates.training import TrainConfig, TrainResult, seed_everything, train

LOG_SIGMA_RANGE = (-7.0, 2.0)  # dex: keeps the likelihood finite on outliers and exact fits


# -- the fitted stellar-to-halo relation ----------------------------------------------------------


def double_power_law(log_mass: np.ndarray, log_norm: float, log_m1: float, beta: float, gamma: float) -> np.ndarray:
    """log10 M* of the Moster et al. (2010) form, with N = 10^log_norm and M1 = 10^log_m1 (Msun)."""
    x = log_mass - log_m1
    return np.log10(2.0) + log_norm + log_mass - np.log10(10.0 ** (-beta * x) + 10.0 ** (gamma * x))


class StellarToHaloRelation:
    """The mass-only baseline: a least-squares fit of :func:`double_power_law` and its residual scatter."""

    def __init__(self, params: Sequence[float] = (-1.5, 11.6, 1.4, 0.6), scatter: float = 0.2) -> None:
        self.params = tuple(float(p) for p in params)
        self.scatter = float(scatter)

    @classmethod
    def fit(cls, log_mass: np.ndarray, log_mstar: np.ndarray) -> StellarToHaloRelation:
        guess = (-1.5, float(np.median(log_mass)), 1.4, 0.6)
        params, _ = curve_fit(double_power_law, log_mass, log_mstar, p0=guess, maxfev=20000)
        residuals = log_mstar - double_power_law(log_mass, *params)
        return cls(params, float(np.std(residuals)))

    def predict(self, log_mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = double_power_law(np.asarray(log_mass, dtype=np.float64), *self.params)
        return mean, np.full_like(mean, self.scatter)

    def to_dict(self) -> dict[str, Any]:
        return {"params": list(self.params), "scatter": self.scatter, "form": "Moster et al. 2010 double power law"}


# -- Gaussian MLPs ----------------------------------------------------------------------------------


@register_model("halo-gaussian-mlp")
class GaussianMLP(torch.nn.Module):
    """(mean, log sigma) of a target from standardised features; the target's own scale is stored too."""

    def __init__(self, n_in: int, hidden: Sequence[int] = (64, 64), activation: str = "silu") -> None:
        super().__init__()
        self.n_in, self.hidden, self.activation = int(n_in), tuple(int(h) for h in hidden), activation
        self.net = MLP(self.n_in, 2, self.hidden, activation)
        self.register_buffer("y_shift", torch.zeros(()))
        self.register_buffer("y_scale", torch.ones(()))

    @property
    def config(self) -> dict[str, Any]:
        return {"n_in": self.n_in, "hidden": list(self.hidden), "activation": self.activation}

    def fit_scales(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.net.fit_input(x)
        self.y_shift.copy_(y.mean())
        self.y_scale.copy_(y.std().clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log sigma in the target's units (dex)."""
        out = self.net(x)
        mean = out[:, 0] * self.y_scale + self.y_shift
        log_sigma = out[:, 1].clamp(*LOG_SIGMA_RANGE) + torch.log(self.y_scale)
        return mean, log_sigma


def gaussian_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mean, log_sigma = model(batch["x"])
    z = (batch["y"] - mean) / torch.exp(log_sigma)
    return torch.mean(0.5 * z**2 + log_sigma)


def train_gaussian_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    *,
    hidden: Sequence[int] = (64, 64),
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    model_factory: Callable[[], GaussianMLP] | None = None,
) -> tuple[GaussianMLP, TrainResult]:
    """A :class:`GaussianMLP` fitted by the Gaussian likelihood with the shared trainer (best validation weights).

    ``model_factory`` builds the untrained model (default ``GaussianMLP(n_features, hidden)``); it is
    called after seeding, so the initial weights follow ``config.seed``.
    """
    if x_train.ndim != 2 or x_train.shape[0] != y_train.shape[0]:
        raise ValueError(f"features {x_train.shape} and targets {y_train.shape} do not match")
    for name, a in (("training features", x_train), ("training targets", y_train), ("validation features", x_val)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contain NaN or infinity")
    seed_everything(config.seed)
    model = (model_factory() if model_factory else GaussianMLP(x_train.shape[1], hidden)).to(torch.float64)
    x, y = torch.as_tensor(x_train, dtype=torch.float64), torch.as_tensor(y_train, dtype=torch.float64)
    model.fit_scales(x, y)
    data = {"x": x, "y": y}
    val = {"x": torch.as_tensor(x_val, dtype=torch.float64), "y": torch.as_tensor(y_val, dtype=torch.float64)}
    result = train(model, gaussian_nll, data, val, config, checkpoint=checkpoint, on_epoch=on_epoch)
    return model.to(torch.float64), result


def predict_gaussian(model: torch.nn.Module, x: np.ndarray, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma (dex) per row of ``x``, on the model's device, returned as float64 numpy.

    ``model`` is any module mapping (rows, features) to (mean, log sigma), with parameters or buffers."""
    param = next(itertools.chain(model.parameters(), model.buffers()))
    means, sigmas = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            chunk = torch.as_tensor(x[start : start + batch_size], dtype=param.dtype, device=param.device)
            mean, log_sigma = model(chunk)
            means.append(mean.cpu().double().numpy())
            sigmas.append(torch.exp(log_sigma).cpu().double().numpy())
    return np.concatenate(means), np.concatenate(sigmas)


# -- which features carry the information ---------------------------------------------------------


def forward_selection(
    x_train: np.ndarray,
    r_train: np.ndarray,
    x_val: np.ndarray,
    r_val: np.ndarray,
    names: Sequence[str],
    *,
    steps: int = 12,
    ridge: float = 1e-6,
) -> list[dict[str, Any]]:
    """Greedy forward selection of the features that explain the residuals ``r`` of the mass-only
    relation: a ridge regression on standardised features, adding at each step the feature that lowers
    the validation sigma68 most. Rows: step, feature, column and the validation sigma68 (step 0: none)."""
    mu, sd = x_train.mean(0), x_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    a, b = (x_train - mu) / sd, (x_val - mu) / sd
    chosen: list[int] = []

    def score(columns: list[int]) -> float:
        design = np.column_stack([np.ones(len(a)), a[:, columns]])
        gram = design.T @ design + ridge * len(a) * np.eye(design.shape[1])
        coef = np.linalg.solve(gram, design.T @ r_train)
        return sigma68(r_val - np.column_stack([np.ones(len(b)), b[:, columns]]) @ coef)

    rows = [{"step": 0, "feature": "(halo mass only)", "column": -1, "sigma68": score(chosen)}]
    for step in range(1, steps + 1):
        candidates = [j for j in range(a.shape[1]) if j not in chosen]
        if not candidates:
            break
        scores = [score([*chosen, j]) for j in candidates]
        best = candidates[int(np.argmin(scores))]
        chosen.append(best)
        rows.append({"step": step, "feature": names[best], "column": best, "sigma68": float(min(scores))})
    return rows
