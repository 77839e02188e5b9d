"""Halo catalogs brought into the catalog, all or nothing (``eqs ingest halos``, ``eqs sim halos``).

Any source (an IllustrisTNG snapshot, Rockstar ASCII, the canonical HDF5, the synthetic population)
is read as a stream of ``halos.catalog`` chunks, streamed into one canonical HDF5 file in a
temporary folder (:func:`sims.halos.readers.write_canonical`, atomic), opened lazily with dask and
written to the catalog as one versioned dataset. A failure at any point (missing field, NaN,
unknown units, empty halo, truncated file) raises :class:`~sims.halos.catalog.HaloCatalogError` naming the
file and the field, and leaves neither a temporary file nor a dataset behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xarray as xr

from data_catalog import Catalog
from sims.halos.catalog import HALOS_KIND, HaloCatalogError, HaloOptionError, checked_number
from sims.halos.readers import iter_hdf5, iter_rockstar, open_canonical, write_canonical
from sims.halos.tng import iter_tng

FORMATS = ("tng", "rockstar", "hdf5")
LAZY_CHUNKS = {"halo": 16384, "particle": 2**21}


def iter_source(
    path: str | os.PathLike[str],
    format: str,
    *,
    snapshot: int | None = None,
    particles: Sequence[str] | None = None,
    matching: str | None = None,
    hydro: str | None = None,
    min_log_mass: float | None = None,
    chunk_halos: int = 4096,
) -> Iterator[xr.Dataset]:
    """The ``halos.catalog`` chunks of a source in one of :data:`FORMATS`.

    ``tng``: ``path`` is the run's ``output`` folder and ``snapshot`` is required; ``matching`` (the
    dark-to-hydro matching file) and ``hydro`` (the hydro twin's ``output`` folder) attach targets.
    ``rockstar``: ``path`` is the halo list, ``particles`` its ``.particles`` files (default: found
    beside it). ``hdf5``: the canonical file.

    Options that the format does not read, a missing ``--snapshot`` and out-of-range values raise
    :class:`~sims.halos.catalog.HaloOptionError` (a usage error) naming the option; problems of the file
    raise :class:`~sims.halos.catalog.HaloCatalogError` naming the file.
    """
    if format not in FORMATS:
        raise HaloOptionError(f"--format {format}: unknown format; choose from {', '.join(FORMATS)}")
    given = {
        "--snapshot": snapshot is not None,
        "--particles": bool(particles),
        "--matching": matching is not None,
        "--hydro": hydro is not None,
        "--min-log-mass": min_log_mass is not None,
    }
    reads = {"tng": ("--snapshot", "--matching", "--hydro", "--min-log-mass"), "rockstar": ("--particles",)}
    ignored = [option for option, present in given.items() if present and option not in reads.get(format, ())]
    if ignored:
        readers = {option: next(f for f, options in reads.items() if option in options) for option in ignored}
        raise HaloOptionError(
            "; ".join(f"{option} is only read with --format {readers[option]}, not {format}" for option in ignored)
        )
    if format == "tng":
        if snapshot is None:
            raise HaloOptionError(f"{path}: --format tng needs a snapshot number (--snapshot N)")
        checked_number(snapshot, "--snapshot", integer=True, low=0, error=HaloOptionError)
        if min_log_mass is not None:  # NaN would compare False and cut nothing
            where = "--min-log-mass (log10 M200m in Msun/h)"
            checked_number(min_log_mass, where, low=0.0, high=20.0, error=HaloOptionError)
        chunks = iter_tng(
            path, snapshot, chunk_halos=chunk_halos, min_log_mass=min_log_mass, matching=matching, hydro_base_path=hydro
        )
    elif format == "rockstar":
        chunks = iter_rockstar(path, list(particles) if particles else None, chunk_halos=chunk_halos)
    else:
        chunks = iter_hdf5(path, chunk_halos=chunk_halos)
    return _not_empty(chunks, path)


def _not_empty(chunks: Iterator[xr.Dataset], path: str | os.PathLike[str]) -> Iterator[xr.Dataset]:
    """The chunks, or an error naming the user's file when there are none (rather than one naming
    the temporary file they were to be written to)."""
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        raise HaloCatalogError(f"{path}: no halos")


@contextmanager
def canonical_dataset(chunks: Iterable[xr.Dataset], catalog: Catalog) -> Iterator[xr.Dataset]:
    """The chunks as one lazily opened, checked ``halos.catalog`` (a temporary canonical HDF5 file,
    removed on exit). It is written in a scratch folder of ``catalog``, so that a killed process's
    file is removed by the catalog's next write instead of staying in the system's temporary folder."""
    with catalog.scratch() as folder:
        path = write_canonical(chunks, folder / "catalog.h5")
        ds = open_canonical(path, chunks=LAZY_CHUNKS)
        try:
            yield ds
        finally:
            ds.close()


def store_catalog(
    catalog: Catalog,
    chunks: Iterable[xr.Dataset],
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    parents: Sequence[str] = (),
) -> str:
    """Write the chunks to ``catalog`` as one ``halos.catalog`` dataset ``name``; its ref. All or nothing."""
    with canonical_dataset(chunks, catalog) as ds:
        return catalog.write(ds, name, kind=HALOS_KIND, params=params, seed=seed, parents=parents)


def ingest_halos(
    catalog: Catalog,
    path: str | os.PathLike[str],
    format: str,
    name: str,
    *,
    snapshot: int | None = None,
    particles: Sequence[str] | None = None,
    matching: str | None = None,
    hydro: str | None = None,
    min_log_mass: float | None = None,
) -> str:
    """Ingest a halo catalog file (or TNG run) into ``catalog`` as ``name``; its ref. ``min_log_mass``
    (tng): keep halos with log10 M200m >= it, in Msun/h (docs/protocols.md#halos uses 10.25)."""
    options = {
        "snapshot": snapshot,
        "particles": list(particles or []),
        "matching": matching,
        "hydro": hydro,
        "min_log_mass": min_log_mass,
    }
    chunks = iter_source(
        path, format, snapshot=snapshot, particles=particles, matching=matching, hydro=hydro, min_log_mass=min_log_mass
    )
    params = {
        "source": str(Path(path).absolute()),
        "format": format,
        **{k: v for k, v in options.items() if v is not None and v != []},
    }
    return store_catalog(catalog, chunks, name, params=params)
