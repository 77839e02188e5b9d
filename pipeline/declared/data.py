"""A declared system's data: read from any file xarray opens, checked against the declaration, and
stored in the catalog in one canonical layout (kind ``declared.data``).

The file (netCDF/HDF5, or a zarr store) has a dimension ``sample``. Each declared quantity is the
variable of its name: a scalar has dims ``(sample,)``, a vector ``(sample, C)`` with C its d
components (named ``space``, ``component`` or ``xyz``, else its one other dimension; time first for
four-vectors), a symmetric tensor ``(sample, C, C)``. A parameter that is the same for every sample
may leave out ``sample``. Each variable's ``units`` attribute is any unit pint converts to the
declared units; without one, the values are taken to be in the declared units. Every problem is
reported at once, naming the file, the variable and what was expected.

The stored layout: every declared quantity in its declared units as float64, dims ``(sample,)``,
``(sample, space)`` or ``(sample, space, space_col)``, and the declaration as an attribute.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, register_schema
from pipeline.features import COMPONENT_NAMES, FeatureError, problems_text
from pipeline.units import UnitsError, scale_factor
from sims.declaration import Kind, Role, SystemDeclaration

DATA_KIND = "declared.data"
SAMPLE = "sample"
SPACE = "space"
SPACE_COL = "space_col"
MIN_SAMPLES = 10  # fitting needs a few samples in each of train, validation and test

register_schema(
    DatasetSchema(
        kind=DATA_KIND,
        description="a declared system's samples: every quantity in its declared units, one row per sample",
        attrs=("declaration", "source"),
    )
)


class DataError(FeatureError):
    """Data that cannot be used as the declared system's; the message names the file and variable."""


def read_data(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open ``path`` with xarray: a netCDF/HDF5 file, or a zarr store (a folder)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file or folder")
    if p.is_dir():
        opener, what = (lambda: xr.open_zarr(p)), "a zarr store"
    elif not p.is_file():
        raise DataError(f"{path}: not a regular file (a device, a pipe); give a netCDF/HDF5 file or a zarr folder")
    else:
        opener, what = (lambda: xr.open_dataset(p)), "a netCDF/HDF5 file"
    try:
        return opener()
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: cannot be opened by xarray as {what} ({type(exc).__name__}: {exc})") from None


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file (of every file of a zarr folder, in name order)."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _component_dims(var: xr.DataArray, kind: Kind, member_dim: str | None = None) -> tuple[str, ...] | str:
    """The variable's own dimensions, or a sentence saying why they cannot be told."""
    own = [d for d in var.dims if d not in (SAMPLE, member_dim)]
    n = {Kind.SCALAR: 0, Kind.VECTOR: 1, Kind.POSITION: 1, Kind.TENSOR: 2}[kind]
    if len(own) != n or (member_dim is not None and member_dim not in var.dims):
        m = f", {member_dim}" if member_dim else ""
        expected = {0: f"(sample{m})", 1: f"(sample{m}, C) with C its components", 2: f"(sample{m}, C, C)"}[n]
        if n == 0 and not m:
            expected = "(sample,)"
        return f"has dims {var.dims}; a {kind.value}{' member' if m else ''} needs {expected}"
    if n == 1 and len(own) == 1:
        return (own[0],)
    named = [d for d in own if d in COMPONENT_NAMES]
    return tuple(named + [d for d in own if d not in named]) if n == 2 else tuple(own)


def checked_data(
    ds: xr.Dataset,
    declaration: SystemDeclaration,
    source: str,
    *,
    need_targets: bool = True,
    min_samples: int = MIN_SAMPLES,
) -> xr.Dataset:
    """The canonical dataset of ``ds`` (see the module docstring), or a DataError listing every problem.

    Targets must be present when ``need_targets``; otherwise those present are kept.
    """
    decl = declaration
    problems: list[str] = []
    declared_in = f" (declared in {decl.source})" if decl.source else ""
    unsupported = [q.name for q in decl.quantities if q.kind is Kind.FIELD]
    if unsupported:
        raise DataError(
            f"system {decl.name!r}{declared_in}: field quantities ({', '.join(unsupported)}) are not supported by eqs "
            "fit; declare their invariant statistics (mean, std) as scalars instead"
        )
    if SAMPLE not in ds.dims:
        raise DataError(
            f"{source}: no dimension named 'sample' (it has dims {dict(ds.sizes)}); put one entry per sample "
            "along a dimension called 'sample'"
        )
    n = int(ds.sizes[SAMPLE])
    if n < min_samples:
        raise DataError(f"{source}: {n} sample(s); at least {min_samples} are needed")
    d = decl.space_dim
    out: dict[str, Any] = {}
    present = set(map(str, ds.data_vars))
    member_dim = decl.permutation.dim if decl.permutation is not None else None
    members: dict[str, int] = {}
    assumed: list[str] = []
    missing = False
    for q in decl.quantities:
        where = f"{source}: variable {q.name!r}"
        if q.name not in present:
            if q.role is Role.TARGET and not need_targets:
                continue
            problems.append(f"{where} is missing (declared as a {q.kind.value} {q.role.value} in {q.units})")
            missing = True
            continue
        var = ds[q.name]
        if SAMPLE not in var.dims and q.role is not Role.PARAMETER:
            problems.append(f"{where} has dims {var.dims}; a {q.role.value} varies per sample, so needs 'sample'")
            continue
        is_member = decl.is_member(q.name)
        if not is_member and member_dim is not None and member_dim in var.dims:
            problems.append(
                f"{where} has the member dimension {member_dim!r} but is not declared in the permutation set"
            )
            continue
        dims = _component_dims(var, q.kind, member_dim if is_member else None)
        if isinstance(dims, str):
            problems.append(f"{where} {dims}")
            continue
        if is_member:
            members[q.name] = int(var.sizes[member_dim])
        if q.kind is not Kind.SCALAR:
            sizes = tuple(var.sizes[c] for c in dims)
            if any(s != d for s in sizes):
                expected = f"{d}" if len(dims) == 1 else f"{d}x{d}"
                problems.append(
                    f"{where}: its component dimension(s) {dims} have length {sizes}, expected {expected} "
                    f"(a {q.kind.value} of {decl.symmetry})"
                )
                continue
        if not np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.complexfloating):
            problems.append(f"{where} has dtype {var.dtype}; expected real numbers")
            continue
        units = var.attrs.get("units")
        if units is None:
            factor = 1.0  # the documented default: values in the declared units
            assumed.append(q.name)
        elif not isinstance(units, str):
            problems.append(f"{where}: its 'units' attribute is {type(units).__name__}, expected a unit string")
            continue
        else:
            try:
                factor = scale_factor(units, q.units, decl.independent_units, where=where)
            except UnitsError as exc:
                problems.append(str(exc))
                continue
        leading = ([SAMPLE] if SAMPLE in var.dims else []) + ([member_dim] if is_member else [])
        values = np.asarray(var.transpose(*leading, *dims).values, dtype=np.float64)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            problems.append(f"{where} has {bad} NaN or infinite value(s); remove those samples or fill them")
            continue
        values = values * factor
        if SAMPLE not in var.dims:
            values = np.broadcast_to(values, (n, *values.shape)).copy()
        own = {0: (), 1: (SPACE,), 2: (SPACE, SPACE_COL)}[len(dims)]
        own = ((member_dim,) if is_member else ()) + own
        out[q.name] = ((SAMPLE, *own), values, {"units": q.units, "kind": q.kind.value, "role": q.role.value})
    if members and next(iter(members.values())) < 2:  # one size per dimension name: xarray sees to that
        problems.append(
            f"{source}: the set along {member_dim!r} has {next(iter(members.values()))} member; at least 2 are needed"
        )
    if problems:
        raise DataError(problems_text(problems, source, decl, ds, missing=missing))
    coords = {SAMPLE: (SAMPLE, np.arange(n), {"units": "1"})}
    attrs = {"declaration": decl.to_json(), "source": source, "system": decl.name}
    if assumed:  # said to the user by eqs fit, and kept with the data
        attrs["units_assumed"] = ", ".join(assumed)
    return xr.Dataset(out, coords=coords, attrs=attrs)
