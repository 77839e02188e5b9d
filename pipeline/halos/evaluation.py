"""Evaluations of galaxy-property models (kind ``halos.evaluation``) and feature rankings (``halos.importance``).

The metric of docs/protocols.md#halos is sigma68, half the 16-84 percentile range of the residuals
true - predicted (dex for log masses), overall and per bin of log10 M200m. The models also predict
an uncertainty per halo, so the evaluation records its calibration: the fraction of halos whose
residual lies within one predicted sigma (0.683 for a calibrated Gaussian).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.metrics import sigma68, sigma68_by_bin

EVALUATION_KIND = "halos.evaluation"
IMPORTANCE_KIND = "halos.importance"
#: Edges of the log10(M200m / Msun) bins of the per-bin sigma68.
MASS_BIN_EDGES = (10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 13.0, 14.0)

register_schema(
    DatasetSchema(
        kind=EVALUATION_KIND,
        description="a galaxy-property model on one split: per-halo predictions, residuals and sigma68",
        variables={
            "true": VariableSpec(dims=("halo",), units="1", dtype="float"),
            "predicted_mean": VariableSpec(dims=("halo",), units="1", dtype="float"),
            "predicted_sigma": VariableSpec(dims=("halo",), units="1", dtype="float"),
            "residual": VariableSpec(dims=("halo",), units="1", dtype="float"),
            "sigma68": VariableSpec(dims=(), units="1", dtype="float"),
            "within_1sigma": VariableSpec(dims=(), units="1", dtype="float"),
            "bin_sigma68": VariableSpec(dims=("mass_bin",), units="1", dtype="float"),
        },
        attrs=("model", "data", "split", "target"),
    )
)
register_schema(
    DatasetSchema(
        kind=IMPORTANCE_KIND,
        description="greedy forward selection of the scalars that explain the mass-only residuals",
        variables={
            "feature": VariableSpec(dims=("step",), dtype="str"),
            "sigma68": VariableSpec(dims=("step",), units="1", dtype="float"),
        },
        attrs=("target", "data"),
    )
)


def evaluation_dataset(
    halo_id: np.ndarray,
    log_mass: np.ndarray,
    true: np.ndarray,
    mean: np.ndarray,
    sigma: np.ndarray,
    *,
    model: str,
    data: str,
    split: str,
    target: str,
    edges: Sequence[float] = MASS_BIN_EDGES,
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A ``halos.evaluation`` dataset: per-halo truth, predicted mean and sigma, residuals (target units,
    dex for log masses), sigma68 overall and per log10(M200m / Msun) bin, and the 1-sigma coverage."""
    true, mean, sigma = (np.asarray(a, dtype=np.float64) for a in (true, mean, sigma))
    residual = true - mean
    rows = sigma68_by_bin(np.asarray(log_mass, dtype=np.float64), residual, edges)
    return xr.Dataset(
        {
            "log_m200m": ("halo", np.asarray(log_mass, dtype=np.float64), {"units": "1"}),
            "true": ("halo", true, {"units": "1"}),
            "predicted_mean": ("halo", mean, {"units": "1"}),
            "predicted_sigma": ("halo", sigma, {"units": "1"}),
            "residual": ("halo", residual, {"units": "1", "long_name": "true - predicted mean"}),
            "sigma68": ((), sigma68(residual), {"units": "1", "long_name": "half the 16-84 percentile range"}),
            "bias": ((), float(np.median(residual)), {"units": "1", "long_name": "median residual"}),
            "within_1sigma": (
                (),
                float(np.mean(np.abs(residual) <= sigma)),
                {
                    "units": "1",
                    "long_name": "fraction of halos with |residual| <= predicted sigma (0.683 if calibrated)",
                },
            ),
            "bin_low": ("mass_bin", [r["low"] for r in rows], {"units": "1"}),
            "bin_high": ("mass_bin", [r["high"] for r in rows], {"units": "1"}),
            "bin_count": ("mass_bin", np.array([r["n"] for r in rows], dtype=np.int64), {"units": "1"}),
            "bin_sigma68": (
                "mass_bin",
                [r["sigma68"] for r in rows],
                {"units": "1", "long_name": "NaN below 10 halos"},
            ),
        },
        coords={"halo_id": ("halo", np.asarray(halo_id, dtype=np.int64), {"units": "1"})},
        attrs={
            "model": model,
            "data": data,
            "split": split,
            "target": target,
            "metric": "sigma68 = (p84 - p16) / 2 of true - predicted, in the target's units (dex)",
            **dict(extra_attrs or {}),
        },
    )


def importance_dataset(
    rows: Sequence[Mapping[str, Any]], *, all_features_sigma68: float, target: str, data: str
) -> xr.Dataset:
    """A ``halos.importance`` dataset from :func:`surrogates.halos.models.forward_selection` rows.

    ``information`` is the fraction of the improvement over mass only that the first k features
    reach, (s0^2 - sk^2) / (s0^2 - s_all^2), with s_all the sigma68 of the same regression on every
    feature.
    """
    s = np.array([r["sigma68"] for r in rows], dtype=np.float64)
    gain = s[0] ** 2 - all_features_sigma68**2
    information = (s[0] ** 2 - s**2) / gain if gain > 0 else np.full_like(s, np.nan)
    return xr.Dataset(
        {
            "feature": ("step", [str(r["feature"]) for r in rows]),
            "column": ("step", np.array([r["column"] for r in rows], dtype=np.int64), {"units": "1"}),
            "sigma68": (
                "step",
                s,
                {"units": "1", "long_name": "validation sigma68 of the ridge on mass-only residuals"},
            ),
            "information": ("step", information, {"units": "1"}),
            "sigma68_all": ((), float(all_features_sigma68), {"units": "1"}),
        },
        coords={"step": ("step", np.arange(len(rows), dtype=np.int64), {"units": "1"})},
        attrs={"target": target, "data": data, "method": "greedy forward selection, ridge on asinh-scaled scalars"},
    )
