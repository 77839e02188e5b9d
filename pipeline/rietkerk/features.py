"""Rietkerk sweeps reduced to pattern statistics, and the emulator's inputs and targets.

``statistics_dataset``: the final snapshot of every sample summarised (kind ``rietkerk.statistics``),
with the parameters carried along in their units. ``emulator_features`` (kind ``rietkerk.features``):

- ``pi``: the 12 Pi groups of the parameters (the pipeline's dimensional analysis of the declaration);
  they are the same numbers in any coherent system of units;
- ``target_pi``: dimensionless statistics, mean(v)/k2, std(v)/k2, mean(w)/k1 and the cover fraction;
- ``raw``: the 16 parameters as the numbers of the dataset's own units (the baseline's inputs), and
  ``target_raw``: the same statistics in the dataset's units (the baseline's outputs), with ``scale``
  the factor from ``target_raw`` to ``target_pi``.
"""

from __future__ import annotations

import functools
import json
from fractions import Fraction

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.features import FeaturePlan
from pipeline.rietkerk.patterns import encode_regimes, pattern_statistics, regime_attrs
from pipeline.units import scale_factor
from sims.rietkerk import system as rk

STATISTICS_KIND = "rietkerk.statistics"
FEATURES_KIND = "rietkerk.features"
COVER_THRESHOLD_K2 = 0.1
"""A cell counts as vegetated above 0.1 k2 of biomass: a threshold that follows any change of units."""
TARGETS = ("mean_v", "std_v", "mean_w", "cover_fraction")
TARGET_SCALES = {"mean_v": "k2", "std_v": "k2", "mean_w": "k1", "cover_fraction": None}
STATISTICS = ("mean_u", "mean_w", "mean_v", "std_v", "cover_fraction", "vegetated_patches", "bare_patches")

register_schema(
    DatasetSchema(
        kind=STATISTICS_KIND,
        description="Rietkerk runs summarised: pattern statistics of the last snapshot, parameters with units",
        variables={
            **{name: VariableSpec(dims=("sample",), dtype="float") for name in rk.PARAMETERS},
            **{name: VariableSpec(dims=("sample",)) for name in STATISTICS},
            "dominant_wavelength": VariableSpec(dims=("sample",), dtype="float"),
            "regime": VariableSpec(dims=("sample",), units="1", dtype="integer"),
        },
    )
)
register_schema(
    DatasetSchema(
        kind=FEATURES_KIND,
        description="Rietkerk emulator inputs (Pi groups, raw parameters) and targets (dimensionless, raw)",
        variables={
            "pi": VariableSpec(dims=("sample", "pi_group"), units="1", dtype="float"),
            "raw": VariableSpec(dims=("sample", "parameter"), dtype="float"),
            "target_pi": VariableSpec(dims=("sample", "target"), units="1", dtype="float"),
            "target_raw": VariableSpec(dims=("sample", "target"), dtype="float"),
            "scale": VariableSpec(dims=("sample", "target"), dtype="float"),
        },
    )
)


def statistics_dataset(raw: xr.Dataset, *, source: str = "dataset") -> xr.Dataset:
    """Pattern statistics of the last snapshot of every sample of a ``rietkerk.raw`` dataset (any units)."""
    missing = [n for n in (*rk.PARAMETERS, *rk.FIELDS) if n not in raw]
    if missing:
        raise rk.RietkerkInputError(f"{source}: missing variable(s) {missing}")
    last = raw.isel(time=-1)
    dl = float(np.unique(raw["dl"].values)[0])
    v = last["v"].transpose("sample", "y", "x").values
    threshold = COVER_THRESHOLD_K2 * raw["k2"].values
    stats = [pattern_statistics(v[i], dl, cover_threshold=float(threshold[i])) for i in range(v.shape[0])]
    units = {n: raw[n].attrs.get("units", "1") for n in (*rk.PARAMETERS, *rk.FIELDS)}
    out = xr.Dataset(
        coords={"sample": raw["sample"]}, attrs={k: v for k, v in raw.attrs.items() if isinstance(v, (str, int, float))}
    )
    for name in rk.PARAMETERS:
        out[name] = raw[name]
    out["seed"] = raw["seed"]
    out["mean_u"] = ("sample", last["u"].mean(("y", "x")).values, {"units": units["u"]})
    out["mean_w"] = ("sample", last["w"].mean(("y", "x")).values, {"units": units["w"]})
    out["mean_v"] = ("sample", np.array([float(s["mean"]) for s in stats]), {"units": units["v"]})
    out["std_v"] = ("sample", v.std(axis=(-2, -1)), {"units": units["v"]})
    out["cover_fraction"] = ("sample", np.array([float(s["cover_fraction"]) for s in stats]), {"units": "1"})
    for name in ("vegetated_patches", "bare_patches"):
        out[name] = ("sample", np.array([int(s[name]) for s in stats], dtype=np.int64), {"units": "1"})
    out["dominant_wavelength"] = (
        "sample",
        np.array([float(s["dominant_wavelength"]) for s in stats]),
        {"units": raw["dl"].attrs.get("units", "m")},
    )
    out["regime"] = ("sample", encode_regimes(np.array([str(s["regime"]) for s in stats])), regime_attrs())
    out.attrs["cover_threshold"] = f"{COVER_THRESHOLD_K2} k2"
    out.attrs["time_of_statistics"] = float(raw["time"].values[-1])
    return out


@functools.lru_cache(maxsize=1)
def parameter_pi_groups():
    """The Pi groups of the declaration that involve parameters only (12 of them)."""
    plan = FeaturePlan(rk.DECLARATION)
    groups = tuple(g for g in plan.pi_groups if set(g.quantities) <= set(rk.PARAMETERS))
    assert len(groups) == 12, [g.name for g in groups]
    return groups


def _coherence_factor(exponents, units: dict[str, str]) -> float:
    """The number a Pi group's value must be multiplied by when the variables' units are not coherent."""
    product = " ".join(f"({units[q]})^{Fraction(p)}" if units[q] != "1" else "1" for q, p in exponents)
    return scale_factor(product or "1", "1", rk.DECLARATION.independent_units)


def emulator_features(stats: xr.Dataset, *, source: str = "dataset") -> xr.Dataset:
    """Inputs and targets of the emulators from a ``rietkerk.statistics`` dataset (in any units)."""
    missing = [n for n in (*rk.PARAMETERS, *TARGETS) if n not in stats]
    if missing:
        raise rk.RietkerkInputError(f"{source}: missing variable(s) {missing}")
    units = {n: stats[n].attrs.get("units", "1") for n in (*rk.PARAMETERS, *TARGETS)}
    values = {n: stats[n].values.astype(np.float64) for n in rk.PARAMETERS}
    groups = parameter_pi_groups()
    pi = np.stack([g.evaluate(values) * _coherence_factor(g.exponents, units) for g in groups], axis=-1)
    target_raw = np.stack([stats[t].values.astype(np.float64) for t in TARGETS], axis=-1)
    scale = np.ones_like(target_raw)
    for j, t in enumerate(TARGETS):
        divisor = TARGET_SCALES[t]
        if divisor is not None:
            scale[:, j] = scale_factor(units[t], units[divisor], rk.DECLARATION.independent_units) / values[divisor]
    if not (np.isfinite(pi).all() and (pi > 0).all()):
        raise rk.RietkerkInputError(f"{source}: Pi groups must be positive and finite (is a rate or W0 zero?)")
    ds = xr.Dataset(
        {
            "pi": (("sample", "pi_group"), pi, {"units": "1"}),
            "raw": (("sample", "parameter"), np.stack([values[n] for n in rk.PARAMETERS], -1), {"units": "mixed"}),
            "target_pi": (("sample", "target"), target_raw * scale, {"units": "1"}),
            "target_raw": (("sample", "target"), target_raw, {"units": "mixed"}),
            "scale": (("sample", "target"), scale, {"units": "mixed"}),
        },
        coords={
            "sample": stats["sample"],
            "pi_group": [g.name for g in groups],
            "parameter": list(rk.PARAMETERS),
            "target": list(TARGETS),
        },
        attrs={
            "parameter_units": json.dumps([units[n] for n in rk.PARAMETERS]),
            "target_units": json.dumps([units[t] for t in TARGETS]),
            "time_units": units.get("T", "d"),
            **{k: v for k, v in stats.attrs.items() if k in ("split", "preset", "time_of_statistics")},
        },
    )
    return ds
