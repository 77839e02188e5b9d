"""Surrogates of a declared system's targets, built from its declaration alone (docs/fit.md#models).

Three methods, each a :class:`DeclaredSurrogate` called with the declared inputs in their declared
units (one tensor per input quantity, in declaration order) and returning the target (and, for a
noisy target, its uncertainty sigma, in the target's units):

- ``pi``: an MLP of the Pi groups, assembled by the target's design (``pipeline.declared.design``):
  exactly invariant or equivariant under the declared group and exactly equivariant under any change
  of units; every normalisation is a fixed pure number (a ratio of like quantities over the training
  data), so none follows the training units;
- ``scalars``: an MLP of the dimensional invariant scalars, standardised in the training units: exactly
  invariant or equivariant under the group, not under a change of units (a baseline);
- ``raw``: an MLP of the raw components in the training units (a baseline with no symmetry).

Each is fitted by the shared trainer (``surrogates.training``): a mean squared error normalised per
sample (``pi``: by the target's own scale monomial; baselines: by the training spread), or a Gaussian
negative log-likelihood for a noisy target (isotropic for vectors).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline.declared.design import TargetDesign, design_for, input_plan
from pipeline.declared.summary import METHOD_TITLES
from pipeline.model_io import ModelIO, Port, Slot
from sims.declaration import Kind, Role, SystemDeclaration
from surrogates.artifacts import register_model
from surrogates.mlp import MLP
from surrogates.training import TrainConfig, TrainResult, seed_everything, train

METHODS = tuple(METHOD_TITLES)
LOG_SIGMA_RANGE = (-12.0, 6.0)  # relative to the model's scale; keeps the likelihood finite
TARGET_KEY = "target"
INPUT_PREFIX = "in:"


def _rms(x: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0
    return value if math.isfinite(value) and value > 0 else 1.0


def _norms(x: np.ndarray) -> np.ndarray:
    """Euclidean length of each row (a scalar's absolute value)."""
    return np.abs(x) if x.ndim == 1 else np.sqrt((x**2).sum(-1))


@register_model("declared-surrogate")
class DeclaredSurrogate(torch.nn.Module):
    """One target of a declared system by one method (see the module docstring).

    ``declaration`` is the declaration's JSON form; ``gaussian`` adds the uncertainty output;
    ``signed`` and ``zero``: what the training data say about the invariant scalars
    (:func:`pipeline.declared.design.conditions_on_data`); features made of zero scalars are left out.
    """

    def __init__(
        self,
        declaration: Mapping[str, Any],
        target: str,
        method: str,
        hidden: Sequence[int] = (64, 64),
        gaussian: bool = False,
        activation: str = "silu",
        signed: Sequence[str] | None = None,
        zero: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.declaration_json = dict(declaration)
        decl = SystemDeclaration.from_dict(self.declaration_json, source="the model's declaration")
        self.decl, self.target, self.method = decl, target, method
        self.hidden, self.gaussian, self.activation = tuple(int(h) for h in hidden), bool(gaussian), activation
        self.signed = None if signed is None else [str(s) for s in signed]
        self.zero = [str(z) for z in zero]
        self.design: TargetDesign = design_for(decl, target, input_plan(decl, self.signed))
        self.inputs = [q for q in decl.quantities if q.role is not Role.TARGET]
        self.d = decl.space_dim
        plan, design = self.design.plan, self.design
        if gaussian and design.is_vector and method == "pi" and design.scaling is None:
            raise ValueError(
                f"target {target!r}: no monomial of the invariant scalars has its units, so its uncertainty cannot be "
                "units-equivariant; leave it out of fit.noisy"
            )
        zero_set = set(self.zero)
        self.pi_columns = [i for i, g in enumerate(plan.pi_groups) if not zero_set & set(g.quantities)]
        self.scalar_columns = [x.name for x in plan.scalars if x.name not in zero_set]
        widths = {Kind.SCALAR: 1, Kind.VECTOR: self.d, Kind.POSITION: self.d, Kind.TENSOR: self.d * self.d}
        n_in = {
            "pi": max(1, len(self.pi_columns)),
            "scalars": max(1, len(self.scalar_columns)),
            "raw": sum(widths[q.kind] for q in self.inputs),
        }[method]
        if not design.is_vector:
            n_coef = 1
        else:
            n_coef = self.d if method == "raw" else len(design.basis)
        self.n_coef = n_coef
        self.net = MLP(n_in, n_coef + int(self.gaussian), self.hidden, activation)
        self.register_buffer("pi_scale", torch.ones(max(1, len(self.pi_columns))))
        self.register_buffer("coef_scale", torch.ones(n_coef))  # pure numbers (pi), training units (baselines)
        self.register_buffer("y_shift", torch.zeros(self.d if method == "raw" and design.is_vector else 1))
        self.register_buffer("y_scale", torch.ones(()))
        self.register_buffer("sigma_scale", torch.ones(()))
        q = design.target
        outputs = [Port(q.name, (Slot(q.name, q.kind.value, q.units),), packed=False)]
        if self.gaussian:
            outputs.append(Port(f"sigma({q.name})", (Slot(f"sigma({q.name})", "scalar", q.units),), packed=False))
        self.io = ModelIO.declared(
            decl,
            [Port.of(decl, i.name, [i.name], packed=False) for i in self.inputs],
            outputs,
            equivariant=method != "raw",
            units="equivariant" if method == "pi" else "none",
            description=f"{METHOD_TITLES[method]} surrogate of {q.name}",
        )

    @property
    def config(self) -> dict[str, Any]:
        return {
            "declaration": self.declaration_json,
            "target": self.target,
            "method": self.method,
            "hidden": list(self.hidden),
            "gaussian": self.gaussian,
            "activation": self.activation,
            "signed": self.signed,
            "zero": self.zero,
        }

    # -- the parts of the forward pass --------------------------------------------------------------

    def _values(self, xs: Sequence[Any]) -> dict[str, Any]:
        if len(xs) != len(self.inputs):
            raise ValueError(
                f"expected {len(self.inputs)} inputs ({', '.join(q.name for q in self.inputs)}), got {len(xs)}"
            )
        dtype = self.y_scale.dtype
        return {q.name: torch.as_tensor(x, dtype=dtype, device=self.y_scale.device) for q, x in zip(self.inputs, xs)}

    def _features(self, values: Mapping[str, Any], computed: Mapping[str, Any]) -> Any:
        """The MLP's input, for torch or numpy values."""
        xp = torch if isinstance(next(iter(values.values())), torch.Tensor) else np
        n = next(iter(values.values())).shape[0]
        dtype = next(iter(values.values())).dtype
        if (self.method == "pi" and not self.pi_columns) or (self.method == "scalars" and not self.scalar_columns):
            return xp.zeros((n, 1), dtype=dtype)  # nothing varies: the MLP learns a constant
        if self.method == "pi":
            scale = self.pi_scale if xp is torch else self.pi_scale.cpu().double().numpy()
            return xp.asinh(computed["pi"][..., self.pi_columns] / scale)
        if self.method == "scalars":
            columns = [computed[name] for name in self.scalar_columns]
            columns = [c * xp.ones(n, dtype=values[self.inputs[0].name].dtype) if c.ndim == 0 else c for c in columns]
            return xp.stack(columns, -1) if xp is np else torch.stack(columns, -1)
        parts = [values[q.name].reshape(n, -1) for q in self.inputs]
        return xp.concatenate(parts, -1) if xp is np else torch.cat(parts, -1)

    def _terms(self, values: Mapping[str, Any], computed: Mapping[str, Any]) -> list[Any]:
        """Per coefficient, the vector it multiplies (``pi``: with its scale monomial), (n, d)."""
        out = []
        for b in self.design.basis:
            vector = b.build(values)
            if self.method == "pi":
                scale = b.scaling.evaluate(computed)
                vector = vector * (scale[..., None] if getattr(scale, "ndim", 0) else scale)
            out.append(vector)
        return out

    def _target_scale(self, computed: Mapping[str, Any]) -> Any:
        """The scale monomial of the target's units (``pi`` method); a tensor for tensor inputs."""
        scale = self.design.scaling.evaluate(computed)
        if isinstance(scale, torch.Tensor) or isinstance(next(iter(computed.values())), np.ndarray):
            return scale
        return torch.as_tensor(scale, dtype=self.y_scale.dtype, device=self.y_scale.device)

    def forward(self, *xs: Any) -> Any:
        mean, sigma, _ = self._predict(self._values(xs))
        return (mean, sigma) if self.gaussian else mean

    def _predict(self, values: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """Mean, sigma (None unless gaussian) and the per-sample normaliser of the loss."""
        plan, design = self.design.plan, self.design
        computed = plan.compute(values)
        h = self.net(self._features(values, computed))
        n = h.shape[0]
        coef = h[:, : self.n_coef] * self.coef_scale
        log_sigma = h[:, self.n_coef].clamp(*LOG_SIGMA_RANGE) if self.gaussian else None
        if not design.is_vector:
            if self.method == "pi":
                scale = torch.broadcast_to(self._target_scale(computed), (n,))
                mean, norm = scale * coef[:, 0], scale.abs() * self.coef_scale[0]
            else:
                mean, norm = self.y_shift[0] + self.y_scale * coef[:, 0], self.y_scale.expand(n)
            sigma = None if log_sigma is None else norm * torch.exp(log_sigma)
            return mean, sigma, norm
        if self.method == "raw":
            mean = self.y_shift + self.y_scale * coef
            norm = self.y_scale.expand(n)
        else:
            terms = self._terms(values, computed)
            mean = sum(coef[:, k, None] * t for k, t in enumerate(terms))
            if design.centroid is not None:
                mean = mean + design.centroid(values)
            if self.method == "pi":
                norm = torch.sqrt(
                    sum((self.coef_scale[k] * t).pow(2).sum(-1) for k, t in enumerate(terms)) / len(terms)
                ).clamp_min(torch.finfo(h.dtype).tiny)
            else:
                norm = self.y_scale.expand(n)
        sigma = None
        if log_sigma is not None:
            if self.method == "pi":
                base = torch.broadcast_to(self._target_scale(computed), (n,)).abs() * self.sigma_scale
            else:
                base = self.y_scale.expand(n)
            sigma = base * torch.exp(log_sigma)
        return mean, sigma, norm

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values = {q.name: batch[INPUT_PREFIX + q.name] for q in self.inputs}
        mean, sigma, norm = self._predict(values)
        residual = mean - batch[TARGET_KEY]
        squared = residual.pow(2) if residual.ndim == 1 else residual.pow(2).sum(-1)
        if sigma is None:
            return torch.mean(squared / norm.pow(2))
        dof = 1 if residual.ndim == 1 else residual.shape[-1]
        return torch.mean(0.5 * squared / sigma.pow(2) + dof * torch.log(sigma / norm))

    # -- normalisation from the training data --------------------------------------------------------

    @torch.no_grad()
    def fit_normalisation(self, values: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        """Set the fixed scales from the training data (numpy, float64, declared units)."""
        design = self.design
        computed = design.plan.compute(values)
        to = {"dtype": self.y_scale.dtype, "device": self.y_scale.device}
        if self.method == "pi" and self.pi_columns:
            pi = np.asarray(computed["pi"])[..., self.pi_columns].reshape(-1, len(self.pi_columns))
            median = np.median(np.abs(pi), axis=0)
            self.pi_scale.copy_(torch.as_tensor(np.where(median > 0, median, 1.0), **to))
        self.net.fit_input(torch.as_tensor(np.asarray(self._features(values, computed)), **to))
        centred = target - design.centroid(values) if design.centroid is not None else target
        if not design.is_vector:
            if self.method == "pi":
                self.coef_scale.fill_(_rms(target / np.broadcast_to(self._target_scale(computed), target.shape)))
            else:
                self.y_shift.fill_(float(target.mean()))
                self.y_scale.fill_(_rms(target - target.mean()))
            return
        if self.method == "raw":
            self.y_shift.copy_(torch.as_tensor(target.mean(0), **to))
            self.y_scale.fill_(_rms(target - target.mean(0)))
            return
        self.y_scale.fill_(_rms(_norms(centred)))
        terms = [np.asarray(t) for t in self._terms(values, computed)]
        self.coef_scale.copy_(torch.as_tensor([_rms(_norms(centred)) / _rms(_norms(t)) for t in terms], **to))
        if self.method == "pi" and design.scaling is not None:
            self.sigma_scale.fill_(
                _rms(_norms(centred)) / _rms(np.asarray(self._target_scale(computed)) * np.ones(len(target)))
            )


def training_data(
    model: DeclaredSurrogate, values: Mapping[str, np.ndarray], target: np.ndarray
) -> dict[str, np.ndarray]:
    """The trainer's dict of arrays (inputs by name, and the target)."""
    data = {INPUT_PREFIX + q.name: np.asarray(values[q.name], dtype=np.float64) for q in model.inputs}
    data[TARGET_KEY] = np.asarray(target, dtype=np.float64)
    return data


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model.loss(batch)


def fit_surrogate(
    declaration: Mapping[str, Any],
    target: str,
    method: str,
    train_set: tuple[Mapping[str, np.ndarray], np.ndarray],
    val_set: tuple[Mapping[str, np.ndarray], np.ndarray],
    config: TrainConfig,
    *,
    hidden: Sequence[int] = (64, 64),
    gaussian: bool = False,
    signed: Sequence[str] | None = None,
    zero: Sequence[str] = (),
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[DeclaredSurrogate, TrainResult]:
    """A :class:`DeclaredSurrogate` fitted with the shared trainer (best validation weights).

    The model is built after seeding, so its initial weights follow ``config.seed``."""
    seed_everything(config.seed)
    model = DeclaredSurrogate(declaration, target, method, hidden, gaussian, signed=signed, zero=zero).to(torch.float64)
    model.fit_normalisation(*train_set)
    result = train(
        model,
        _loss,
        training_data(model, *train_set),
        training_data(model, *val_set),
        config,
        checkpoint=checkpoint,
        on_epoch=on_epoch,
    )
    return model, result


def predict(
    model: DeclaredSurrogate, values: Mapping[str, np.ndarray], batch_size: int = 16384
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean and sigma (None unless gaussian) for every sample of ``values``, as float64 numpy."""
    model.eval()
    n = len(next(iter(values.values())))
    means, sigmas = [], []
    param = next(itertools.chain(model.parameters(), model.buffers()))
    with torch.no_grad():
        for start in range(0, n, batch_size):
            chunk = [
                torch.as_tensor(values[q.name][start : start + batch_size], dtype=param.dtype, device=param.device)
                for q in model.inputs
            ]
            mean, sigma, _ = model._predict(dict(zip((q.name for q in model.inputs), chunk)))
            means.append(mean.cpu().double().numpy())
            if sigma is not None:
                sigmas.append(sigma.cpu().double().numpy())
    mean = np.concatenate(means) if means else np.zeros((0,))
    return mean, (np.concatenate(sigmas) if sigmas else None)
