"""Galaxy properties predicted for every halo of a catalog, and the files they are written to.

:func:`predict_galaxies` computes the invariant scalars and features of a ``halos.catalog`` and runs
one trained model per target on them; :func:`write_predictions` writes the result as HDF5 (.h5,
through xarray and h5netcdf) or CSV (.csv). :func:`default_models` finds the models trained by
``eqs reproduce halos``: per target, the newest ``halos-*-scalars-ensemble`` model of the catalog (the
seeds' deep ensemble), else the newest ``halos-*-scalars`` one.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from data_catalog import Catalog
from pipeline.halos.features import halo_features
from pipeline.halos.scalars import halo_scalars
from surrogates.artifacts import MODEL_KIND, LoadedModel
from surrogates.halos.runs import load_halo_model, predict_loaded

DEFAULT_PATTERNS = ("halos-*-scalars-ensemble", "halos-*-scalars")  # in order of preference
FORMATS = (".h5", ".hdf5", ".csv")


class NoHaloModelError(LookupError):
    """The catalog holds no model to predict with; the message says how to train one."""


def default_models(catalog: Catalog, patterns: Sequence[str] = DEFAULT_PATTERNS) -> list[str]:
    """Per target, the newest model (creation time, then version) whose name matches the first of
    ``patterns`` that any model of that target matches."""
    newest: dict[str, tuple[int, str, int, str]] = {}
    for name in catalog.names():
        rank = next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(name, p)), None)
        if rank is None:
            continue
        info = catalog.info(name)
        if info.kind != MODEL_KIND or "target" not in info.attrs:
            continue
        key = (-rank, info.created_utc, info.version, info.ref)
        target = str(info.attrs["target"])
        if target not in newest or key > newest[target]:
            newest[target] = key
    if not newest:
        raise NoHaloModelError(
            f"no trained halo model ({' or '.join(map(repr, patterns))}) in the catalog {catalog.root}; run "
            "`eqs reproduce halos --preset quick` first, or name one with --model NAME@vN"
        )
    return [newest[t][3] for t in sorted(newest)]


def load_halo_models(catalog: Catalog, refs: Sequence[str]) -> list[LoadedModel]:
    """The models at ``refs`` on the CPU in float64; each must be a halo model, one per target.
    Their JSON attributes are checked first, so a damaged one is named with its model."""
    for ref in refs:
        if not {"target", "inputs"} <= set(catalog.info(ref).attrs):
            raise ValueError(f"{catalog.resolve(ref)} is not a halo model (no 'target' and 'inputs' attributes)")
    loaded = [load_halo_model(catalog, ref) for ref in refs]
    seen: dict[str, str] = {}
    for model in loaded:
        target = str(model.attrs["target"])
        if target in seen:
            raise ValueError(f"two models predict {target}: {seen[target]} and {model.ref}; give one per target")
        seen[target] = model.ref
    return loaded


def predict_galaxies(
    catalog_ds: xr.Dataset,
    models: Sequence[LoadedModel],
    *,
    dask_address: str | None = "threads",
    chunk_halos: int = 64,
    source: str = "",
) -> xr.Dataset:
    """Per halo of ``catalog_ds``: ``halo_id`` and, per model's target, the predicted mean ``<target>``
    and uncertainty ``<target>_sigma`` (the target's units: dex for log masses).

    Every halo needs 10 particles within R200m; otherwise the error names the halos.
    """
    scalars = halo_scalars(catalog_ds, chunk_halos=chunk_halos, dask_address=dask_address)
    features = halo_features(catalog_ds, scalars, source=source)
    data = {}
    for model in models:
        target = str(model.attrs["target"])
        mean, sigma = predict_loaded(model, features)
        data[target] = ("halo", mean, {"units": "1", "long_name": f"predicted {target} (mean)", "model": model.ref})
        data[f"{target}_sigma"] = ("halo", sigma, {"units": "1", "long_name": f"predicted {target} (1 sigma)"})
    return xr.Dataset(
        data,
        coords={"halo_id": ("halo", features["halo_id"].values.astype(np.int64), {"units": "1"})},
        attrs={"source": source, "models": [m.ref for m in models], "global_source": features.attrs["global_source"]},
    )


def write_predictions(predictions: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write predictions to ``path`` (.h5 / .hdf5: netCDF-4 HDF5; .csv: one row per halo, full precision).

    Written under a temporary name and renamed, so a failure leaves no partial file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown output format {suffix or '(none)'!r}; use one of {FORMATS}")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if suffix == ".csv":
            columns = ["halo_id", *predictions.data_vars]
            values = [predictions[c].values for c in columns]
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(columns)
                for row in zip(*values, strict=True):
                    writer.writerow([int(row[0]), *(repr(float(v)) for v in row[1:])])
        else:
            predictions.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
