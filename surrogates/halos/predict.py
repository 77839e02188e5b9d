"""Galaxy properties predicted for every halo of a catalog, and the files they are written to.

:func:`best_predictions` picks, per target, the best stored model the catalog supports
(:mod:`surrogates.halos.choice`: scalars when it has particles, else the halo finder's catalog
properties, else mass only; halos a model cannot use go to the next) and says why;
:func:`predict_galaxies` computes the invariant scalars (when there are particles) and features of a
``halos.catalog`` and runs the models on them; :func:`write_predictions` writes the result as HDF5
(.h5, through xarray and h5netcdf) or CSV (.csv).
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from data_catalog import Catalog
from pipeline.halos.features import halo_features
from pipeline.halos.scalars import DEFAULT_CHUNK_HALOS, halo_scalars
from sims.halos.catalog import has_particles
from surrogates.artifacts import LoadedModel
from surrogates.halos.choice import (
    Candidate,
    TargetChoice,
    choose_models,
    range_warnings,
    reads_particles,
    stored_candidates,
)
from surrogates.halos.runs import load_halo_model, predict_loaded

FORMATS = (".h5", ".hdf5", ".csv")


class NoHaloModelError(LookupError):
    """The catalog holds no model to predict with; the message says how to train one."""


def load_halo_models(catalog: Catalog, refs: Sequence[str]) -> list[LoadedModel]:
    """The models at ``refs`` on the CPU in float64; each must be a halo model, one per target.
    Their JSON attributes are checked first, so a damaged one is named with its model."""
    for ref in refs:
        if not {"target", "inputs"} <= set(catalog.info(ref, variables=False).attrs):
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
    choices: Sequence[TargetChoice] | None = None,
    scalars: xr.Dataset | None = None,
    dask_address: str | None = "threads",
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    source: str = "",
) -> xr.Dataset:
    """Per halo of ``catalog_ds``: ``halo_id`` and, per target, the predicted mean ``<target>``,
    uncertainty ``<target>_sigma`` (the target's units: dex for log masses) and the model that made
    them, ``<target>_model``.

    ``choices`` (:func:`surrogates.halos.choice.choose_models`) say which of ``models`` predicts
    which halo; without them every model predicts every halo, and a halo a model cannot use (too
    few particles within R200m for the scalars) is an error naming the halos. ``scalars``: the
    catalog's :func:`~pipeline.halos.scalars.halo_scalars`, when already computed.
    """
    if (
        scalars is None
        and has_particles(catalog_ds)
        and any(reads_particles(json.loads(m.attrs["inputs"])) for m in models)
    ):
        too_few = "raise" if choices is None else "mark"
        scalars = halo_scalars(catalog_ds, chunk_halos=chunk_halos, dask_address=dask_address, too_few=too_few)
    if scalars is not None:  # every halo kept: the choices say which model predicts which
        scalars = scalars.assign(valid=xr.ones_like(scalars["valid"]))
    features = halo_features(catalog_ds, scalars, source=source)
    by_ref = {m.ref: m for m in models}
    if choices is None:
        choices = [
            TargetChoice(str(m.attrs["target"]), [m.ref], np.zeros(features.sizes["halo"], dtype=np.int64))
            for m in models
        ]
    data = {}
    for choice in choices:
        mean = np.full(features.sizes["halo"], np.nan)
        sigma = np.full(features.sizes["halo"], np.nan)
        for k, ref in enumerate(choice.refs):
            rows = np.flatnonzero(choice.model_index == k)
            mean[rows], sigma[rows] = predict_loaded(by_ref[ref], features.isel(halo=rows))
        target = choice.target
        data[target] = ("halo", mean, {"units": "1", "long_name": f"predicted {target} (mean)"})
        data[f"{target}_sigma"] = ("halo", sigma, {"units": "1", "long_name": f"predicted {target} (1 sigma)"})
        data[f"{target}_model"] = (
            "halo",
            np.asarray(choice.refs, dtype=object)[choice.model_index].astype(str),
            {"long_name": f"the model that predicted {target}"},
        )
    return xr.Dataset(
        data,
        coords={"halo_id": ("halo", features["halo_id"].values.astype(np.int64), {"units": "1"})},
        attrs={
            "source": source,
            "models": sorted({ref for c in choices for ref in c.refs}),
            "choice": json.dumps([c.summary() for c in choices]),
            "global_source": features.attrs["global_source"],
        },
    )


def require_models(catalog: Catalog, models: Sequence[str] = ()) -> dict[str, dict[str, Candidate]]:
    """The stored halo models (:func:`~surrogates.halos.choice.stored_candidates`); without any, and
    without ``models`` named, a :class:`NoHaloModelError` saying how to train one."""
    for ref in models:  # a --model that is not in the catalog is said before SOURCE is read
        catalog.resolve(ref)
    candidates = stored_candidates(catalog)
    if not candidates and not models:
        raise NoHaloModelError(
            f"no trained halo model in the catalog {catalog.root}; run `eqs reproduce halos --preset quick` first, "
            "or name one with --model NAME@vN"
        )
    return candidates


def best_predictions(
    catalog: Catalog,
    catalog_ds: xr.Dataset,
    *,
    models: Sequence[str] = (),
    candidates: Mapping[str, Mapping[str, Candidate]] | None = None,
    dask_address: str | None = "threads",
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    source: str = "the catalog",
) -> tuple[xr.Dataset, list[TargetChoice], list[str]]:
    """Predictions for every halo of ``catalog_ds`` by the best stored models it supports
    (:func:`surrogates.halos.choice.choose_models`; ``models``, refs given with ``--model``, replace
    the choice for their targets; ``candidates``: :func:`require_models`' answer, when at hand), the
    choices, and warnings about the training range."""
    candidates = require_models(catalog, models) if candidates is None else candidates
    explicit = [Candidate.of(catalog, catalog.resolve(ref)) for ref in models]
    considered = [*explicit, *(c for kinds in candidates.values() for c in kinds.values())]
    scalars, within = None, None
    if has_particles(catalog_ds) and any(reads_particles(c.inputs) for c in considered):
        scalars = halo_scalars(catalog_ds, chunk_halos=chunk_halos, dask_address=dask_address, too_few="mark")
        within = np.asarray(scalars["valid"].values, dtype=bool)
    choices = choose_models(catalog_ds, candidates, within, explicit=explicit, source=source)
    refs = list(dict.fromkeys(ref for choice in choices for ref in choice.refs))
    loaded = [load_halo_model(catalog, ref) for ref in refs]
    predictions = predict_galaxies(
        catalog_ds, loaded, choices=choices, scalars=scalars, dask_address=dask_address, source=source
    )
    return predictions, choices, range_warnings(catalog, catalog_ds, refs, source)


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
                    writer.writerow([int(row[0]), *(v if isinstance(v, str) else repr(float(v)) for v in row[1:])])
        else:
            predictions.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
