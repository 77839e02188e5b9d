"""``eqs predict``: a stored surrogate of a declared system applied to new data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import Catalog
from pipeline.declared.data import DataError, checked_data, read_data
from pipeline.declared.evaluation import relative_errors
from pipeline.units import UnitsError, dimension_vector
from sims.declaration import SystemDeclaration


def declaration_problems(model: SystemDeclaration, data: SystemDeclaration) -> list[str]:
    """How the data's declaration differs from the model's, in what the model reads (empty: compatible)."""
    problems = []
    if model.symmetry != data.symmetry:
        problems.append(f"symmetry {data.symmetry}, the model's is {model.symmetry}")
    declared = {q.name: q for q in data.quantities}
    for q in model.inputs_only().quantities:
        other = declared.get(q.name)
        if other is None:
            problems.append(f"no quantity {q.name!r} (the model reads a {q.kind.value} in {q.units})")
            continue
        if other.kind is not q.kind:
            problems.append(f"{q.name!r} is a {other.kind.value}, the model reads a {q.kind.value}")
        try:
            same = dimension_vector(other.units, data.independent_units) == dimension_vector(
                q.units, model.independent_units
            )
        except UnitsError as exc:
            problems.append(str(exc))
            continue
        if not same:
            problems.append(f"{q.name!r} is in {other.units}, not convertible to the model's {q.units}")
    return problems


def predict_file(
    catalog: Catalog, model_ref: str, data: str, out: Path, declaration_path: str | None = None
) -> dict[str, Any]:
    """Predict for every sample of ``data`` with ``model_ref`` and write the predictions to ``out``."""
    from surrogates.artifacts import ModelArtifactError, load_model
    from surrogates.declared.models import DeclaredSurrogate

    resolved = catalog.resolve(model_ref)
    try:
        loaded = load_model(catalog, resolved, device="cpu", dtype="float64")
    except ModelArtifactError as exc:  # a model this eqs cannot rebuild is bad input, not a bug
        raise DataError(f"MODEL {exc}") from None
    model = loaded.model
    if not isinstance(model, DeclaredSurrogate):
        raise DataError(f"{resolved} is a {loaded.model_class} model, not a surrogate made by eqs fit")
    with read_data(data) as raw:
        return _predict_file(model, resolved, raw, data, out, declaration_path)


def _predict_file(
    model: Any, resolved: str, raw: xr.Dataset, data: str, out: Path, declaration_path: str | None
) -> dict[str, Any]:
    """Check ``raw`` against the model's declaration, predict, and write the predictions atomically."""
    from surrogates.declared.models import predict

    given = None
    if declaration_path is not None:
        given, where = SystemDeclaration.from_file(declaration_path), f"--declaration {declaration_path}"
    elif isinstance(raw.attrs.get("declaration"), str):
        given = SystemDeclaration.from_json(raw.attrs["declaration"], source=f"{data} attribute 'declaration'")
        where = f"{data} (its 'declaration' attribute)"
    if given is not None:
        problems = declaration_problems(model.decl, given)
        if problems:
            raise DataError(
                f"{where} does not match the declaration of model {resolved} (system {model.decl.name!r}):\n  - "
                + "\n  - ".join(problems)
            )
    canonical = checked_data(raw, model.decl, str(data), need_targets=False, min_samples=1)
    values = {q.name: np.asarray(canonical[q.name].values) for q in model.inputs}
    perm = model.decl.permutation
    if perm is not None and model.raw_layout:
        members = canonical.sizes[perm.dim]
        if members != model.set_size:
            raise DataError(
                f"{data}: {members} members along {perm.dim!r}; model {resolved} (method {model.method}) reads sets "
                f"of {model.set_size}, in their order (the pi and scalars surrogates take any number)"
            )
    mean, sigma = predict(model, values)
    target = model.design.target
    leading = ("sample", perm.dim) if model.member_target else ("sample",)
    dims = (*leading, "space")[: mean.ndim]
    variables: dict[str, Any] = {
        target.name: (dims, mean, {"units": target.units, "long_name": f"predicted {target.name}"})
    }
    if sigma is not None:
        variables[f"sigma_{target.name}"] = (dims[: sigma.ndim], sigma, {"units": target.units})
    summary: dict[str, Any] = {"model": resolved, "data": str(data), "samples": int(len(mean)), "out": str(out)}
    if target.name in canonical:
        errors = relative_errors(mean, np.asarray(canonical[target.name].values))
        summary["median_relative_error"] = float(np.median(errors))
    ds = xr.Dataset(variables, attrs={"model": resolved, "source": str(data), "system": model.decl.name})
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(handle)
    try:
        ds.to_netcdf(temporary, engine="h5netcdf")
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return summary
