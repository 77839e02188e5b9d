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
from sims.halos.catalog import HALOS_KIND, HaloCatalogError, HaloOptionError
from sims.halos.formats import read_source, readers
from sims.halos.readers import open_canonical, write_canonical

FORMATS = tuple(readers())  # the formats registered when this module was imported
LAZY_CHUNKS = {"halo": 16384, "particle": 2**21}


def iter_source(
    path: str | os.PathLike[str],
    format: str,
    *,
    chunk_halos: int = 4096,
    particles_snapshot: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    drop_empty: bool = False,
    scratch: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Iterator[xr.Dataset]:
    """The ``halos.catalog`` chunks of a source in one of the registered formats
    (:mod:`sims.halos.formats`: ``tng``, ``rockstar``, ``ctrees``, ``hdf5`` ...), with that format's
    options (``snapshot``, ``particles``, ``matching``, ``hydro``, ``min_log_mass`` ...).

    ``particles_snapshot``: a simulation snapshot in the Gadget HDF5 layout (a file, a numbered set
    or its folder) whose dark-matter particles within R200m are given to every halo of a catalog
    without particles (:func:`sims.halos.snapshot.attach_snapshot_particles`; its header is checked
    now, and ``drop_empty`` leaves out halos it gives no particle; ``scratch`` holds its temporary
    files).

    An option the format does not read, a missing required option and an out-of-range value raise
    :class:`~sims.halos.catalog.HaloOptionError` (a usage error) naming the option; problems of the
    file raise :class:`~sims.halos.catalog.HaloCatalogError` naming the file.
    """
    if particles_snapshot is None:
        if drop_empty:
            raise HaloOptionError("--drop-empty is only read with --particles-snapshot")
        return _not_empty(read_source(path, format, chunk_halos=chunk_halos, **options), path)
    if format == "tng":
        raise HaloOptionError(
            "--particles-snapshot is not read with --format tng, whose particles come from the run's own snapdir"
        )
    from sims.halos.snapshot import attach_snapshot_particles, read_snapshot_header

    header = read_snapshot_header(particles_snapshot)  # a bad snapshot is refused before any work
    chunks = _not_empty(read_source(path, format, chunk_halos=chunk_halos, **options), path)
    return attach_snapshot_particles(chunks, header, drop_empty=drop_empty, scratch=scratch, catalog=str(path))


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


def ingest_halos(catalog: Catalog, path: str | os.PathLike[str], format: str, name: str, **options: Any) -> str:
    """Ingest a halo catalog file (or TNG run) into ``catalog`` as ``name``; its ref. ``options``
    are the format's (:mod:`sims.halos.formats`), e.g. for tng ``snapshot`` and ``min_log_mass``
    (keep halos with log10 M200m >= it, in Msun/h; docs/protocols.md#halos uses 10.25). The
    options given are recorded in the dataset's params. With ``particles_snapshot``, the snapshot's
    temporary files go to a scratch folder of ``catalog`` (its file system, removed on exit)."""
    given = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in options.items()}
    params = {
        "source": str(Path(path).absolute()),
        "format": format,
        **{k: v for k, v in given.items() if v is not None and v != [] and v is not False},
    }
    with catalog.scratch() as folder:
        chunks = iter_source(path, format, scratch=folder, **options)
        return store_catalog(catalog, chunks, name, params=params)
