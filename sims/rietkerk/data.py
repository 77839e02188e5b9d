"""Rietkerk simulations as catalog datasets (kind ``rietkerk.raw``).

Every declared parameter, the run's T, dt, L and dl included, is a (sample,) variable with its units,
so that the pipeline's generic invariants and Pi groups apply unchanged; fields are (sample, time, y, x).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from sims.rietkerk.solver import Solution
from sims.rietkerk.system import DECLARATION, FIELDS, PARAMETERS, PHYSICAL, UNITS, Grid, Parameters, RietkerkInputError

RAW_KIND = DECLARATION.raw_kind
RUN = ("T", "dt", "L", "dl")


def _check_raw(ds: xr.Dataset) -> list[str]:
    problems = []
    for name in PARAMETERS:
        if name in ds and not np.isfinite(ds[name].values).all():
            problems.append(f"{name}: values must be finite")
    for name in FIELDS:
        if name in ds:
            values = ds[name].values
            if not np.isfinite(values).all():
                problems.append(f"{name}: values must be finite")
            elif (values < 0).any():
                problems.append(f"{name}: fields must be non-negative")
    for name in RUN:
        if name in ds and np.ptp(ds[name].values) > 0:
            problems.append(f"{name}: one value for every sample of a dataset (one grid and one time step)")
    return problems


register_schema(
    DatasetSchema(
        kind=RAW_KIND,
        description="Rietkerk vegetation model: parameters per sample, fields u, w, v per (sample, time, y, x)",
        variables={
            **{name: VariableSpec(dims=("sample",), dtype="float") for name in PARAMETERS},
            **{name: VariableSpec(dims=("sample", "time", "y", "x"), dtype="float") for name in FIELDS},
            "seed": VariableSpec(dims=("sample",), dtype="integer"),
        },
        coords={"time": VariableSpec(dims=("time",), dtype="float")},
        check=_check_raw,
    )
)


def to_dataset(
    params: Parameters,
    grid: Grid,
    solution: Solution,
    *,
    dt: float,
    seeds: np.ndarray,
    attrs: Mapping[str, Any] = (),
) -> xr.Dataset:
    """A ``rietkerk.raw`` dataset of a batch solved on ``grid`` with step ``dt``; ``seeds`` made the initial fields."""
    batch = params.batch
    fields = solution.fields.detach().cpu().to(torch.float64).numpy()
    x = grid.coordinates()
    ds = xr.Dataset(
        coords={
            "sample": ("sample", np.arange(batch), {"units": "1"}),
            "time": ("time", np.asarray(solution.times, dtype=np.float64), {"units": "d"}),
            "y": ("y", x, {"units": "m"}),
            "x": ("x", x, {"units": "m"}),
        },
        attrs={"steps": solution.steps, "clipped_cells": solution.clipped, **dict(attrs)},
    )
    values = params.numpy()
    run = {"T": float(solution.times[-1]), "dt": float(dt), "L": grid.L, "dl": grid.dl}
    for name in PARAMETERS:
        data = values[name] if name in values else np.full(batch, run[name])
        ds[name] = ("sample", np.asarray(data, dtype=np.float64), {"units": UNITS[name]})
    for i, name in enumerate(FIELDS):
        ds[name] = (("sample", "time", "y", "x"), fields[:, :, i], {"units": UNITS[name]})
    ds["seed"] = ("sample", np.asarray(seeds, dtype=np.int64), {"units": "1"})
    return ds


def from_dataset(ds: xr.Dataset, *, source: str = "dataset", dtype=torch.float64, device=None):
    """(Parameters, Grid, run {T, dt}, fields (sample, time, 3, n, n), times in d) from a ``rietkerk.raw`` dataset.

    Variables must carry the declared units literally; the pipeline converts other units first.
    """
    for name in (*PARAMETERS, *FIELDS, "time"):
        if name not in ds.variables:
            raise RietkerkInputError(f"{source}: missing variable {name!r}")
        expected = "d" if name == "time" else UNITS[name]
        found = ds[name].attrs.get("units")
        if found != expected:
            raise RietkerkInputError(f"{source}: variable {name!r} is in {found!r}, expected {expected!r}")
    params = Parameters.from_mapping({n: ds[n].values for n in PHYSICAL}, source=source, dtype=dtype, device=device)
    run = {}
    for name in RUN:
        values = np.unique(ds[name].values)
        if values.size != 1:
            raise RietkerkInputError(f"{source}: {name} must be one value for all samples, got {values[:5]}")
        run[name] = float(values[0])
    grid = Grid(run["L"], run["dl"])
    fields = np.stack([ds[n].transpose("sample", "time", "y", "x").values for n in FIELDS], axis=2)
    if fields.shape[-2:] != (grid.n, grid.n):
        raise RietkerkInputError(f"{source}: fields are {fields.shape[-2:]} cells, but L / dl = {grid.n}")
    tensor = torch.as_tensor(fields, dtype=dtype, device=device)
    return params, grid, {"T": run["T"], "dt": run["dt"]}, tensor, ds["time"].values.astype(np.float64)
