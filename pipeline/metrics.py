"""Error metrics of the published protocols, and the ``evaluation`` datasets that hold them.

docs/protocols.md#pendulum-emlp-protocol: for each time step, rel(a, b) = |a - b| / (|a| + |b|) over the full state; the
score is the geometric mean over all test rollouts and all time steps, each error clamped below at
1e-7 (the first step, given exactly, would otherwise be log 0). That norm mixes metres with
kg m s^-1 and so changes under a change of units; :func:`blockwise_relative_error` averages the
same ratio taken separately over each block of like quantities (positions, momenta), which no
change of units can move.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema

EVALUATION_KIND = "evaluation"
FLOOR = 1e-7

register_schema(
    DatasetSchema(
        kind=EVALUATION_KIND,
        description="a model evaluated on one test split: per-sample errors and the summary scores",
        variables={
            "rel_error": VariableSpec(dims=("sample", "time"), units="1", dtype="float"),
            "score": VariableSpec(dims=(), units="1", dtype="float"),
        },
        attrs=("model", "data", "split", "metric"),
    )
)


def relative_error(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """|a - b| / (|a| + |b|) over the last axis: 0 where both are 0, 1 (the maximum) where either is
    not finite, so that a diverged rollout scores as the worst, never as perfect."""
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if predicted.shape != true.shape:
        raise ValueError(f"relative_error: predicted {predicted.shape} and true {true.shape} differ in shape")
    with np.errstate(invalid="ignore", over="ignore"):
        num = np.linalg.norm(predicted - true, axis=-1)
        den = np.linalg.norm(predicted, axis=-1) + np.linalg.norm(true, axis=-1)
    finite = np.isfinite(num) & np.isfinite(den)
    rel = np.divide(num, den, out=np.zeros_like(num), where=finite & (den > 0))
    return np.where(finite, rel, 1.0)


def blockwise_relative_error(predicted: np.ndarray, true: np.ndarray, blocks: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean over ``blocks`` ([start, stop) ranges of the last axis) of each block's relative error."""
    return np.mean([relative_error(predicted[..., a:b], true[..., a:b]) for a, b in blocks], axis=0)


def geometric_mean(errors: np.ndarray, floor: float = FLOOR, axis: int | None = None) -> Any:
    """exp(mean(log(max(e, floor)))) over ``axis`` (all: a float); NaN or infinite errors (a diverged
    rollout) count as 1, the maximum."""
    e = np.asarray(errors, dtype=np.float64)
    e = np.where(np.isfinite(e), e, 1.0)
    mean = np.exp(np.log(np.maximum(e, floor)).mean(axis=axis))
    return float(mean) if axis is None else mean


def evaluation_dataset(
    predicted: np.ndarray,
    true: np.ndarray,
    times: np.ndarray,
    *,
    blocks: Sequence[tuple[int, int]],
    components: Sequence[tuple[str, int, int, str]],
    model: str,
    data: str,
    split: str,
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """An ``evaluation`` dataset: predicted states, per-(sample, time) errors and the scores.

    ``components`` names the parts of the state to store: (name, start, stop, units) gives the
    variable ``predicted_<name>`` (sample, time, component) from ``predicted[..., start:stop]``.

    ``score`` is the protocol's geometric-mean relative error; ``score_blockwise`` its units-invariant
    variant; ``score_per_time`` the geometric mean over samples at each time.
    """
    rel = relative_error(predicted, true)
    rel_blocks = blockwise_relative_error(predicted, true, blocks)
    ds = xr.Dataset(
        {
            "rel_error": (("sample", "time"), rel, {"units": "1"}),
            "rel_error_blockwise": (("sample", "time"), rel_blocks, {"units": "1"}),
            "score": ((), geometric_mean(rel), {"units": "1", "long_name": "geometric-mean relative error"}),
            "score_blockwise": ((), geometric_mean(rel_blocks), {"units": "1"}),
            "score_per_time": (
                ("time",),
                geometric_mean(rel, axis=0),
                {"units": "1"},
            ),
        },
        coords={"time": ("time", np.asarray(times, dtype=np.float64), {"units": "s"})},
        attrs={
            "model": model,
            "data": data,
            "split": split,
            "metric": "geometric mean over samples and times of |a-b|/(|a|+|b|), clamped at 1e-7",
            "blocks": json.dumps([list(b) for b in blocks]),
            **dict(extra_attrs or {}),
        },
    )
    for name, start, stop, units in components:
        ds[f"predicted_{name}"] = (
            ("sample", "time", "component"),
            np.asarray(predicted[..., start:stop]),
            {"units": units},
        )
    return ds


# -- galaxy properties (docs/protocols.md#halos) ---------------------------------------------------


def sigma68(residuals: np.ndarray) -> float:
    """Half the 16-84 percentile range of the residuals (in their units, dex for log masses)."""
    r = np.asarray(residuals, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise ValueError("sigma68: no finite residuals")
    low, high = np.percentile(r, [16, 84])
    return float(0.5 * (high - low))


def sigma68_by_bin(log_mass: np.ndarray, residuals: np.ndarray, edges: Sequence[float]) -> list[dict[str, float]]:
    """sigma68 per bin of log halo mass: rows with the bin's edges, its count and sigma68 (NaN if < 10 halos)."""
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (log_mass >= low) & (log_mass < high)
        n = int(inside.sum())
        rows.append(
            {
                "low": float(low),
                "high": float(high),
                "n": n,
                "sigma68": sigma68(residuals[inside]) if n >= 10 else float("nan"),
            }
        )
    return rows
