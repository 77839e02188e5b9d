"""Emulators of Rietkerk sweeps: parameters -> pattern statistics at the end of the run.

- ``rietkerk-pi-emulator``: an MLP on the logarithms of the 12 Pi groups predicting dimensionless
  statistics (mean(v)/k2, std(v)/k2, mean(w)/k1, cover fraction). Its inputs are the same numbers in
  every coherent system of units, so its predictions for a system and its unit-changed copy are
  identical to round-off: exactly units-equivariant once multiplied back by k2 or k1.
- ``rietkerk-dimensional-emulator``: the baseline, an MLP on the 16 parameters as numbers in the
  training data's units (standardised), predicting the statistics in those units.

Both are scored on the dimensionless statistics: the baseline's outputs are divided by the test
sample's own k2 and k1 (in the test data's units).

Both say what they read and return as ``model.io`` (a ``pipeline.model_io.ModelIO``): the 16
declared parameters in, the four statistics out. The Pi emulator reaches its inputs through
:func:`pi_of_parameters` and returns dimensionless statistics, so it is units-invariant; the
baseline reads the parameters' numbers and returns the statistics in the parameters' units (mean
and std of v in the units of k2, mean of w in those of k1) without a promise (units ``none``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from data_catalog import Catalog, parse_ref
from pipeline.metrics import evaluation_dataset
from pipeline.model_io import ModelIO, Port, Slot
from pipeline.rietkerk.features import TARGET_SCALES, TARGETS, parameter_pi_groups
from sims.rietkerk import system as rk
from surrogates.artifacts import load_model, register_model, save_model
from surrogates.devices import pick_device
from surrogates.mlp import MLP
from surrogates.training import TrainConfig, seed_everything, train

HIDDEN = (64, 64, 64)

_RUN_RANGES = {"T": (100.0, 1000.0), "dt": (0.01, 0.1), "L": (32.0, 128.0), "dl": (0.5, 2.0)}
PARAMETERS = Port.of(
    rk.DECLARATION,
    "parameters",
    rk.PARAMETERS,
    samples={**{k: (0.5 * v, 2.0 * v) for k, v in rk.RIETKERK_2002.items()}, **_RUN_RANGES},
)
"""The 16 declared parameters (sample, 16) in ``rk.PARAMETERS`` order and ``rk.UNITS``."""
STATISTICS_PI = Port("statistics", tuple(Slot(t) for t in TARGETS))
"""mean(v)/k2, std(v)/k2, mean(w)/k1 and the cover fraction (dimensionless)."""
STATISTICS_RAW = Port(
    "statistics",
    tuple(Slot(t, units=rk.UNITS[TARGET_SCALES[t]] if TARGET_SCALES[t] else "1") for t in TARGETS),
)
"""The same statistics in the parameters' units: those of k2 (v), k2, k1 (w), and 1."""


def pi_of_parameters(parameters: torch.Tensor) -> torch.Tensor:
    """The emulator's 12 Pi groups (..., 12) of parameters (..., 16) given in ``rk.UNITS``: the
    ``pi`` variable ``pipeline.rietkerk.features.emulator_features`` computes."""
    values = {name: parameters[..., i] for i, name in enumerate(rk.PARAMETERS)}
    return torch.stack([group.evaluate(values) for group in parameter_pi_groups()], dim=-1)


def _on_pi_groups(model: torch.nn.Module, parameters: torch.Tensor) -> torch.Tensor:
    return model(pi_of_parameters(parameters))


class _Emulator(torch.nn.Module):
    """An MLP whose outputs are standardised with the training targets' mean and std (buffers)."""

    n_in = 0

    def __init__(self, hidden: tuple[int, ...] = HIDDEN, activation: str = "silu", n_out: int = len(TARGETS)) -> None:
        super().__init__()
        self.hidden, self.activation, self.n_out = tuple(hidden), activation, n_out
        self.net = MLP(self.n_in, n_out, self.hidden, activation)
        self.register_buffer("out_shift", torch.zeros(n_out))
        self.register_buffer("out_scale", torch.ones(n_out))

    @property
    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "activation": self.activation, "n_out": self.n_out}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Input and output normalisation from the training set."""
        self.net.fit_input(self.encode(x))
        self.out_shift.copy_(y.mean(0))
        self.out_scale.copy_(torch.where(y.std(0) > 0, y.std(0), torch.ones_like(self.out_scale)))

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardised(x) * self.out_scale + self.out_shift


@register_model("rietkerk-pi-emulator")
class PiEmulator(_Emulator):
    """Inputs: the 12 Pi groups (positive, dimensionless); outputs: dimensionless statistics."""

    n_in = 12

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    @property
    def io(self) -> ModelIO:
        """The 16 parameters -> (through their Pi groups) the dimensionless statistics: units-invariant."""
        return ModelIO.declared(
            rk.DECLARATION,
            (PARAMETERS,),
            (STATISTICS_PI,),
            units="invariant",
            apply=_on_pi_groups,
            description="Rietkerk pattern statistics from the Pi groups of the parameters",
        )


@register_model("rietkerk-dimensional-emulator")
class DimensionalEmulator(_Emulator):
    """Inputs: the 16 parameters as plain numbers; outputs: statistics in the training units."""

    n_in = 16

    @property
    def io(self) -> ModelIO:
        """The 16 parameters -> the statistics in their units, with no promise (the baseline)."""
        return ModelIO.declared(
            rk.DECLARATION,
            (PARAMETERS,),
            (STATISTICS_RAW,),
            units="none",
            description="Rietkerk pattern statistics from the parameters' numbers (baseline)",
        )


EMULATORS = {"pi": PiEmulator, "dimensional": DimensionalEmulator}
INPUTS = {"pi": "pi", "dimensional": "raw"}
OUTPUTS = {"pi": "target_pi", "dimensional": "target_raw"}


def _loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    target = (batch["y"] - model.out_shift) / model.out_scale
    return torch.mean((model.standardised(batch["x"]) - target) ** 2)


def _arrays(features: xr.Dataset, kind: str) -> dict[str, torch.Tensor]:
    return {
        "x": torch.as_tensor(features[INPUTS[kind]].values, dtype=torch.float64),
        "y": torch.as_tensor(features[OUTPUTS[kind]].values, dtype=torch.float64),
    }


def train_emulator(
    kind: str,
    train_features: xr.Dataset,
    val_features: xr.Dataset,
    config: TrainConfig,
    *,
    hidden: tuple[int, ...] = HIDDEN,
    activation: str = "silu",
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
):
    """A trained emulator (``kind`` 'pi' or 'dimensional') and its TrainResult."""
    if kind not in EMULATORS:
        raise ValueError(f"unknown emulator {kind!r}; choose one of {sorted(EMULATORS)}")
    seed_everything(config.seed)
    model = EMULATORS[kind](hidden=hidden, activation=activation).to(torch.float64)
    data, val = _arrays(train_features, kind), _arrays(val_features, kind)
    model.fit(data["x"], data["y"])
    result = train(model, _loss, data, val, config, checkpoint=checkpoint, on_epoch=on_epoch)
    return model.to(torch.float64), result


def store_emulator(catalog: Catalog, name: str, kind: str, model, result, config: TrainConfig, parents, params) -> str:
    training = {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")}
    return save_model(
        catalog,
        name,
        model,
        parents=parents,
        params={"emulator": kind, "training": training, **params},
        seed=config.seed,
        training=result,
    )


def predict_dimensionless(model: torch.nn.Module, features: xr.Dataset) -> np.ndarray:
    """(sample, target) dimensionless predictions; the baseline's are divided by each sample's scales."""
    kind = "pi" if isinstance(model, PiEmulator) else "dimensional"
    param = next(model.parameters())
    x = torch.as_tensor(features[INPUTS[kind]].values, dtype=param.dtype, device=param.device)
    model.eval()
    with torch.no_grad():
        y = model(x).to("cpu", torch.float64).numpy()
    return y if kind == "pi" else y * features["scale"].values


def evaluate_emulator(
    catalog: Catalog, model_ref: str, features_ref: str, *, split: str, device: str | None = None
) -> str:
    """Store an ``evaluation`` of the model on one split: errors of the dimensionless statistics."""
    loaded = load_model(catalog, model_ref, device=str(pick_device(device, dtype=torch.float64)), dtype=torch.float64)
    features = catalog.open(features_ref).load()
    predicted = predict_dimensionless(loaded.model, features)
    true = features["target_pi"].values
    ds = evaluation_dataset(
        predicted[:, None, :],
        true[:, None, :],
        np.zeros(1),
        blocks=[(j, j + 1) for j in range(len(TARGETS))],
        components=[(t, j, j + 1, "1") for j, t in enumerate(TARGETS)],
        model=catalog.resolve(model_ref),
        data=catalog.resolve(features_ref),
        split=split,
        extra_attrs={"system": "rietkerk", "emulator": loaded.model_class},
    )
    # one "time": the statistics are of the last snapshot of each run
    when = float(features.attrs.get("time_of_statistics", np.nan))
    ds = ds.assign_coords(time=("time", [when], {"units": features.attrs.get("time_units", "d")}))
    ds["true"] = (("sample", "target"), true, {"units": "1"})
    ds["abs_error"] = (("sample", "target"), np.abs(predicted - true), {"units": "1"})
    ds["rmse"] = (("target",), np.sqrt(np.mean((predicted - true) ** 2, axis=0)), {"units": "1"})
    ds = ds.assign_coords(target=list(TARGETS))
    name = f"{parse_ref(model_ref).name}-on-{split}"
    return catalog.write(ds, name, kind="evaluation", parents=(model_ref, features_ref))
