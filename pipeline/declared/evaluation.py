"""Scores of a declared system's surrogate on one test set (kind ``declared.evaluation``).

Per sample: the relative error ||predicted - true|| / ||true|| (Euclidean over a vector's
components) and the residual over the predicted sigma. Scores: the median relative error, the root
mean square error in the target's declared units (a test set in other units is converted back),
the fraction of samples within the 1-sigma region (0.683 when calibrated; for a vector target the
ball that holds 68.3 % of an isotropic Gaussian in d dimensions), the model's measured symmetry
errors (``pipeline.model_symmetry``: the worst relative error under random group elements and
random changes of units, in float64; and under random relabellings of a set's members), and, for a
test set made by moving the held-out samples, how
far the predictions on the moved samples are from the moved predictions on the originals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
from scipy.stats import chi2

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.declared.data import SAMPLE, SPACE

EVALUATION_KIND = "declared.evaluation"
ONE_SIGMA = math.erf(1 / math.sqrt(2))  # 0.6827
SCORES = ("median_rel_error", "rmse", "within_1sigma", "group_error", "units_error", "permutation_error", "consistency")

register_schema(
    DatasetSchema(
        kind=EVALUATION_KIND,
        description="a declared system's surrogate on one test set: predictions, per-sample errors and scores",
        variables={
            "rel_error": VariableSpec(dims=(SAMPLE,), units="1", dtype="float"),
            "median_rel_error": VariableSpec(dims=(), units="1", dtype="float"),
        },
        attrs=("model", "data", "split", "target", "method"),
    )
)


def relative_errors(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """||p - t|| / ||t|| per sample (inf where the truth is 0 and the prediction is not)."""
    p = predicted.reshape(len(predicted), -1)
    t = true.reshape(len(true), -1)
    num, den = np.linalg.norm(p - t, axis=1), np.linalg.norm(t, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num > 0, np.inf, 0.0))
    return np.where(np.isfinite(p).all(1), out, np.inf)


def within_sigma(predicted: np.ndarray, true: np.ndarray, sigma: np.ndarray) -> float:
    """The fraction of samples whose residual lies in the region that holds 68.3 % of the predicted
    Gaussian (isotropic in the d components of a vector)."""
    r = (predicted - true).reshape(len(true), -1)
    dof = r.shape[1]
    radius = math.sqrt(chi2.ppf(ONE_SIGMA, dof))
    return float(np.mean(np.linalg.norm(r, axis=1) <= radius * sigma))


def relative_deviation(a: np.ndarray, b: np.ndarray) -> float:
    """max over samples of ||a - b|| / ||b||: how far predictions on moved samples are from the moved predictions."""
    errors = relative_errors(a, b)
    return float(np.max(errors)) if errors.size else float("nan")


def evaluation_dataset(
    predicted: np.ndarray,
    sigma: np.ndarray | None,
    true: np.ndarray,
    *,
    target: str,
    units: str,
    target_factor: float,
    method: str,
    model: str,
    data: str,
    split: str,
    symmetry: Mapping[str, float],
    consistency: float | None = None,
    member_target: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The evaluation of one model on one test set. ``target_factor`` converts the declared units to
    the test set's numbers (1 unless the split changed units or scales)."""
    rel = relative_errors(predicted, true)
    dims = {1: (SAMPLE,), 2: (SAMPLE, "member") if member_target else (SAMPLE, SPACE), 3: (SAMPLE, "member", SPACE)}[
        predicted.ndim
    ]
    residual = (predicted - true).reshape(len(true), -1) / target_factor
    rmse = float(np.sqrt(np.mean(np.sum(residual**2, axis=1)))) if len(true) else float("nan")
    variables: dict[str, Any] = {
        "predicted": (dims, predicted, {"units": units, "long_name": f"predicted {target} (the test set's numbers)"}),
        "true": (dims, true, {"units": units}),
        "rel_error": ((SAMPLE,), rel, {"units": "1"}),
        "median_rel_error": ((), float(np.median(rel)) if rel.size else float("nan"), {"units": "1"}),
        "rmse": ((), rmse, {"units": units, "long_name": f"root mean square error of {target} in declared units"}),
        "group_error": ((), float(symmetry.get("group", float("nan"))), {"units": "1"}),
        "units_error": ((), float(symmetry.get("units", float("nan"))), {"units": "1"}),
        "permutation_error": ((), float(symmetry.get("permutation", float("nan"))), {"units": "1"}),
        "consistency": ((), float("nan") if consistency is None else float(consistency), {"units": "1"}),
    }
    if sigma is not None:
        variables["sigma"] = (dims[: sigma.ndim], sigma, {"units": units})
        variables["within_1sigma"] = ((), within_sigma(predicted, true, sigma), {"units": "1"})
    else:
        variables["within_1sigma"] = ((), float("nan"), {"units": "1"})
    return xr.Dataset(
        variables,
        coords={SAMPLE: (SAMPLE, np.arange(len(true)), {"units": "1"})},
        attrs={
            "model": model,
            "data": data,
            "split": split,
            "target": target,
            "method": method,
            "target_factor": float(target_factor),
            **dict(attrs or {}),
        },
    )


def scores(ds: xr.Dataset) -> dict[str, float]:
    """The scalar scores of an evaluation dataset."""
    return {name: float(ds[name].values) for name in SCORES if name in ds}
