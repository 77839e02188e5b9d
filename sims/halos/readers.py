"""Readers of halo catalog files, streamed in chunks of whole halos, and the canonical HDF5 file.

Every reader yields ``halos.catalog`` datasets (see :mod:`sims.halos.catalog`) of at most ``chunk_halos``
halos each, their particles included and ``particle_offset`` local to the chunk. :func:`write_canonical`
streams such chunks into one HDF5 file (offsets made global), so a catalog larger than memory is
converted holding one chunk at a time.

- :func:`write_canonical` / :func:`open_canonical`: the canonical HDF5 file, readable by
  ``xr.open_dataset(path, engine="h5netcdf")``.
- :func:`iter_hdf5`: that file (or one with the same layout) read chunk by chunk with h5py.
- :func:`iter_rockstar`: Rockstar ASCII catalogs (``out_*.list``, ``halos_*.ascii``) and their
  ``.particles`` files, converted to physical units without little h.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
import xarray as xr

from data_catalog import RESERVED_ATTRS, check_dataset
from data_catalog.filesystem import ensure_room, hdf5_write_errors
from sims.halos.catalog import (
    HALO_UNITS,
    HALOS_KIND,
    MAX_HUBBLE,
    OPTIONAL,
    PARTICLE_FIELDS,
    PARTICLE_UNITS,
    REQUIRED,
    SPACE,
    TARGETS,
    VECTORS,
    HaloCatalogError,
    HaloOptionError,
    catalog_dataset,
    check_catalog,
    checked_number,
    checked_redshift,
    checked_values,
    has_particles,
    scalar_value,
)

PathLike = str | os.PathLike[str]

DEFAULT_CHUNK_HALOS = 4096
#: At most this many particles per chunk read or checked (about 235 MB of positions, velocities and masses).
CHUNK_PARTICLES = 2**22
#: Attribute counting the halos a reader left out for having no particles; the writer sums it over chunks.
DROPPED_ATTR = "dropped_empty_halos"
SUMMED_ATTRS = (DROPPED_ATTR,)
#: Critical density today, h^2 Msun kpc^-3 (3 H0^2 / 8 pi G with H0 = 100 h km/s/Mpc).
RHO_CRIT0 = 277.536627
#: IAU 2015 nominal solar mass in kg (GM_sun / G with CODATA 2018 G).
MSUN_KG = 1.98847e30

# Unit spellings iter_hdf5 accepts besides the canonical ones, as factors to the canonical unit.
UNIT_ALIASES: dict[str, dict[str, float]] = {
    "kpc": {"kpc": 1.0, "Mpc": 1e3, "pc": 1e-3},
    "km s^-1": {"km s^-1": 1.0, "km/s": 1.0, "km s-1": 1.0, "m s^-1": 1e-3, "m/s": 1e-3},
    "Msun": {"Msun": 1.0, "M_sun": 1.0, "Msol": 1.0, "kg": 1.0 / MSUN_KG},
    "1": {"1": 1.0, "": 1.0, "dimensionless": 1.0},
}

# netCDF-4 marks a dimension without a coordinate variable by this scale name (what h5netcdf reads).
_NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."
_HALO_ROWS = 16384  # HDF5 chunk rows of per-halo variables
_PARTICLE_ROWS = 65536  # HDF5 chunk rows of per-particle variables
_INTEGER_FIELDS = ("halo_id", "particle_offset", "particle_count")


def _canonical_units(name: str) -> str:
    return "1" if name in TARGETS else HALO_UNITS.get(name) or PARTICLE_UNITS[name]


def _is_particle_field(name: str) -> bool:
    return name in PARTICLE_UNITS


def _particle_presence(where: str, names: Iterable[str]) -> bool:
    """Whether ``names`` (a file's or a chunk's fields) hold the particles: all of
    :data:`PARTICLE_FIELDS` (True) or none (False); some of them is an error naming what is missing."""
    present = [n for n in PARTICLE_FIELDS if n in names]
    if present and len(present) < len(PARTICLE_FIELDS):
        missing = [n for n in PARTICLE_FIELDS if n not in names]
        raise HaloCatalogError(
            f"{where}: missing field(s) {missing}; a halo catalog holds all of {list(PARTICLE_FIELDS)} (its "
            f"particles) or none of them (halo properties only)"
        )
    return bool(present)


def _check_chunk_halos(chunk_halos: int) -> None:
    if not isinstance(chunk_halos, (int, np.integer)) or chunk_halos < 1:
        raise ValueError(f"chunk_halos must be a positive integer, got {chunk_halos!r}")


def _chunk_bounds(
    counts: np.ndarray, chunk_halos: int, chunk_particles: int = CHUNK_PARTICLES
) -> Iterator[tuple[int, int, int, int]]:
    """(first halo, end halo, first particle, end particle) of each chunk of contiguous halos: at most
    ``chunk_halos`` halos and ``chunk_particles`` particles (a heavier halo makes a chunk of its own)."""
    ends = np.cumsum(counts, dtype=np.int64)
    starts = ends - counts
    i0 = 0
    while i0 < counts.size:
        fits = int(np.searchsorted(ends, starts[i0] + chunk_particles, side="right"))
        i1 = min(i0 + chunk_halos, max(fits, i0 + 1), counts.size)
        yield i0, i1, int(starts[i0]), int(ends[i1 - 1])
        i0 = i1


def _layout_problems(ids: np.ndarray, counts: np.ndarray, offsets: np.ndarray, n_particles: int) -> list[str]:
    """Whole-file checks of the halo rows (O(halos) memory); the per-chunk checks see only one chunk."""
    problems = []
    if (counts <= 0).any():
        empty = ids[counts <= 0][:5].tolist()
        problems.append(
            f"particle_count: {int((counts <= 0).sum())} empty halo(s) (halo_id {empty}); every halo needs particles"
        )
    expected = np.concatenate([[0], np.cumsum(counts)[:-1]]) if counts.size else counts
    if not np.array_equal(offsets, expected):
        problems.append("particle_offset: offsets must be contiguous (offset[i + 1] = offset[i] + count[i], from 0)")
    if int(counts.sum()) != n_particles:
        problems.append(f"particle_count: counts sum to {int(counts.sum())} but there are {n_particles} particles")
    return problems + _id_problems(ids)


def _id_problems(ids: np.ndarray) -> list[str]:
    unique, first = np.unique(ids, return_counts=True)
    if (first > 1).any():
        return [f"halo_id: ids must be unique (repeated: {unique[first > 1][:5].tolist()})"]
    return []


# -- HDF5 access with errors that name the file -------------------------------------------------


def _open_h5(path: Path) -> h5py.File:
    """The file opened read-only; missing, non-HDF5 and truncated files raise HaloCatalogError."""
    if not path.exists():
        raise HaloCatalogError(f"{path}: file not found")
    if not path.is_file():
        raise HaloCatalogError(f"{path}: not a file")
    if not h5py.is_hdf5(path):
        raise HaloCatalogError(
            f"{path}: not an HDF5 file (no HDF5 signature); expected a {HALOS_KIND} file written by write_canonical"
        )
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if exc.errno is not None:  # the operating system's error (permissions, I/O): not about the content
            raise
        raise HaloCatalogError(f"{path}: cannot be opened as HDF5, the file is truncated or corrupted ({exc})") from exc


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_text(v) for v in value.ravel().tolist()] if value.dtype.kind in "OSU" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _h5_attr(value: Any) -> Any:
    """A value h5py stores as netCDF readers expect (lists of strings as variable-length strings)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    return value


# -- the canonical writer -----------------------------------------------------------------------


class _CanonicalWriter:
    """Appends checked chunks to resizable datasets laid out as netCDF-4 (dimension scales)."""

    def __init__(self, f: h5py.File, target: Path, compression: str | None) -> None:
        self.f, self.target, self.compression = f, target, compression
        self.names: tuple[str, ...] | None = None
        self.dims: tuple[str, ...] = ()
        self.attrs: dict[str, Any] = {}
        self.summed: dict[str, Any] = {}
        self.n_halos = 0
        self.n_particles = 0
        self.n_bytes = 0

    def append(self, chunk: xr.Dataset, index: int) -> None:
        where = f"{self.target}: chunk {index}"
        if not isinstance(chunk, xr.Dataset):
            raise HaloCatalogError(f"{where} is a {type(chunk).__name__}, expected an xarray Dataset ({HALOS_KIND})")
        chunk = chunk.load()
        problems = check_dataset(chunk, HALOS_KIND)
        if problems:
            raise HaloCatalogError(f"{where}: " + "; ".join(problems))
        names = tuple(sorted(str(n) for n in chunk.data_vars))
        if self.names is None:
            self._create(chunk, names, where)
        elif names != self.names:
            raise HaloCatalogError(
                f"{where}: fields {sorted(set(names) ^ set(self.names))} are in this chunk or the first one but not "
                "both; every chunk must hold the same fields"
            )
        for key in SUMMED_ATTRS:
            if key in chunk.attrs:
                self.summed[key] = self.summed.get(key, 0) + chunk.attrs[key]
        # refused before HDF5 sees a failed write, which it cannot recover from
        ensure_room(self.f.filename, chunk.nbytes, written=self.n_bytes)
        self.n_bytes += chunk.nbytes
        for name in names:
            values = np.asarray(chunk[name].values)
            if name == "particle_offset":
                values = values + self.n_particles
            start = self.n_particles if chunk[name].dims[0] == "particle" else self.n_halos
            dataset = self.f[name]
            dataset.resize(start + values.shape[0], axis=0)
            dataset[start:] = values
        self.n_halos += chunk.sizes["halo"]
        self.n_particles += chunk.sizes.get("particle", 0)

    def _create(self, chunk: xr.Dataset, names: tuple[str, ...], where: str) -> None:
        f = self.f
        self.dims = ("halo", "particle") if _particle_presence(where, names) else ("halo",)
        for dimid, dim in enumerate(self.dims):
            scale = f.create_dataset(dim, shape=(0,), maxshape=(None,), dtype=">f4")
            scale.attrs["_Netcdf4Dimid"] = np.int32(dimid)
            scale.make_scale(_NOT_A_VARIABLE + b"%10d" % 0)
        space = f.create_dataset("space", data=np.array(SPACE, dtype=object), dtype=h5py.string_dtype())
        space.attrs["_Netcdf4Dimid"] = np.int32(len(self.dims))
        space.make_scale("space")
        for name in names:
            var = chunk[name]
            if var.dims[0] not in ("halo", "particle") or var.dims[1:] not in ((), ("space",)):
                raise HaloCatalogError(f"{where}: {name} has dims {var.dims}; expected (halo|particle[, space])")
            if var.dtype.kind not in "iuf":
                raise HaloCatalogError(f"{where}: {name} has dtype {var.dtype}; expected numbers")
            # HDF5 chunks about the size of the first chunk: small files stay small, large ones stream well
            cap, floor = (_PARTICLE_ROWS, 1024) if var.dims[0] == "particle" else (_HALO_ROWS, 256)
            rows = min(cap, max(floor, var.shape[0]))
            tail = tuple(var.shape[1:])
            dataset = f.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=var.dtype,
                chunks=(rows, *tail),
                compression=self.compression,
            )
            for key, value in var.attrs.items():
                dataset.attrs[key] = _h5_attr(value)
            for axis, dim in enumerate(var.dims):
                dataset.dims[axis].attach_scale(f[dim])
        self.names = names
        self.attrs = dict(chunk.attrs)

    def finish(self) -> None:
        if self.names is None:
            raise HaloCatalogError(f"{self.target}: no chunks to write; a catalog needs at least one chunk")
        for dim, rows in zip(self.dims, (self.n_halos, self.n_particles)):
            self.f[dim].resize((rows,))
        # ids repeated across chunks are only visible here: one O(halos) read of halo_id
        ids = self.f["halo_id"][:]
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise HaloCatalogError(
                f"{self.target}: halo_id: ids repeat across chunks ({unique[counts > 1][:5].tolist()}); ids must be unique"
            )
        for key, value in {**self.attrs, **self.summed}.items():
            self.f.attrs[key] = _h5_attr(value)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_canonical(
    chunks: Iterable[xr.Dataset], path: PathLike, *, overwrite: bool = False, compression: str | None = None
) -> Path:
    """Stream ``halos.catalog`` chunks into one canonical HDF5 file at ``path``; returns the path.

    Each chunk is checked against the kind's schema (units as in :mod:`sims.halos.catalog`: kpc, km s^-1,
    Msun) and must hold the same fields as the first; its local ``particle_offset`` is shifted to the
    global particle row. Global attributes are the first chunk's, except :data:`SUMMED_ATTRS`, summed
    over chunks. Memory: one chunk, plus one read of ``halo_id`` (8 bytes per halo) at the end to
    check ids are unique across chunks. All or nothing: the file is written beside the target under
    a temporary name and renamed into place at the end, so a failure (a chunk that raises, a bad
    chunk, an interrupt) leaves no file. ``compression`` is an h5py filter name such as ``"gzip"``.
    Raises :class:`HaloCatalogError` naming the chunk and the field.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: already exists; pass overwrite=True to replace it")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with hdf5_write_errors(tmp), h5py.File(tmp, "w") as f:
            writer = _CanonicalWriter(f, target, compression)
            for index, chunk in enumerate(chunks):
                writer.append(chunk, index)
            writer.finish()
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


# -- the canonical reader -----------------------------------------------------------------------


def open_canonical(path: PathLike, chunks: Any = None, *, check_values: bool = True) -> xr.Dataset:
    """The canonical HDF5 file at ``path`` as one checked ``halos.catalog`` dataset.

    ``chunks=None`` loads it into memory (and closes the file). Otherwise it is opened lazily with
    dask, ``chunks`` as for :func:`xarray.open_dataset` (e.g. ``{"halo": 10_000, "particle": 10**6}``);
    the schema (fields, dims, units) is checked at once, and with ``check_values`` the values
    (NaNs, offsets, empty halos, unique ids) are checked in one pass of bounded memory: the halo
    rows of ids, counts and offsets, then one chunk of halos at a time. Raises
    :class:`HaloCatalogError` naming the file and the field.
    """
    path = Path(path)
    _open_h5(path).close()
    try:
        ds = xr.open_dataset(
            path,
            engine="h5netcdf",
            chunks=chunks,
            decode_times=False,
            decode_timedelta=False,
            mask_and_scale=False,
            cache=False,
        )
    except Exception as exc:  # h5netcdf raises ValueError, KeyError, OSError ... on unusual layouts
        raise HaloCatalogError(f"{path}: cannot be read as a netCDF/HDF5 dataset ({exc})") from exc
    try:
        # a file written by xarray: numbers as 1-element arrays, and _FillValue (encoding, not metadata)
        ds.attrs = {str(k): _attr_value(path, str(k), v) for k, v in ds.attrs.items()}
        for var in ds.variables.values():
            if "_FillValue" in var.attrs:
                var.encoding["_FillValue"] = var.attrs.pop("_FillValue")
        if chunks is None:
            ds.load()
            problems = check_dataset(ds, HALOS_KIND)
        else:
            problems = _lazy_problems(ds, check_values)
    except OSError as exc:
        ds.close()
        raise HaloCatalogError(f"{path}: data cannot be read, the file is truncated or corrupted ({exc})") from exc
    except BaseException:
        ds.close()
        raise
    if chunks is None:
        ds.close()
    if problems:
        ds.close()
        raise HaloCatalogError(f"{path}: not a valid {HALOS_KIND} file: " + "; ".join(problems))
    return ds


def _lazy_problems(ds: xr.Dataset, check_values: bool) -> list[str]:
    # The schema (presence, dims, units, dtypes) on zero-length slices: no data is read.
    empty = ds.isel({d: slice(0, 0) for d in ("halo", "particle") if d in ds.dims})
    problems = check_dataset(empty.load(), HALOS_KIND)
    if problems or not check_values:
        return problems
    ids = np.asarray(ds["halo_id"].values, dtype=np.int64)
    if not has_particles(ds):  # halo rows alone, one chunk at a time
        for i0 in range(0, ids.size, DEFAULT_CHUNK_HALOS):
            i1 = min(i0 + DEFAULT_CHUNK_HALOS, ids.size)
            problems += [f"halos {i0}..{i1 - 1}: {p}" for p in check_catalog(ds.isel(halo=slice(i0, i1)).load())]
        return problems + _id_problems(ids)
    counts = np.asarray(ds["particle_count"].values, dtype=np.int64)
    offsets = np.asarray(ds["particle_offset"].values, dtype=np.int64)
    problems = _layout_problems(ids, counts, offsets, ds.sizes.get("particle", 0))
    if problems:
        return problems
    for i0, i1, p0, p1 in _chunk_bounds(counts, DEFAULT_CHUNK_HALOS):
        chunk = ds.isel(halo=slice(i0, i1), particle=slice(p0, p1)).load()
        chunk["particle_offset"] = chunk["particle_offset"] - p0
        problems += [f"halos {i0}..{i1 - 1}: {p}" for p in check_catalog(chunk)]
    return problems


@dataclass(frozen=True)
class _Hdf5Layout:
    fields: dict[str, float]  # name -> factor to the canonical unit
    counts: np.ndarray
    source_format: str
    redshift: float
    hubble: float
    box_size_kpc: float | None
    attrs: dict[str, Any]


def _unit_factor(path: Path, name: str, units: Any) -> float:
    expected = _canonical_units(name)
    if units is None:
        raise HaloCatalogError(f"{path}: field {name!r} has no 'units' attribute; expected {expected!r}")
    found = _text(units)
    aliases = UNIT_ALIASES[expected]
    if not isinstance(found, str) or found.strip() not in aliases:
        raise HaloCatalogError(
            f"{path}: field {name!r} has unknown or invalid units {found!r}; expected {expected!r} "
            f"(accepted spellings: {sorted(a for a in aliases if a)}); halo catalogs hold physical units "
            "without little h, convert comoving or h-scaled values with the reader of the source format"
        )
    factor = aliases[found.strip()]
    if name in _INTEGER_FIELDS and factor != 1.0:
        raise HaloCatalogError(f"{path}: field {name!r} has units {found!r}; expected {expected!r}")
    return factor


def _hdf5_layout(path: Path) -> _Hdf5Layout:
    with _open_h5(path) as f:
        try:
            known = [*REQUIRED, *OPTIONAL, *TARGETS, *PARTICLE_FIELDS]
            datasets = [n for n in known if isinstance(f.get(n), h5py.Dataset)]
            missing = [n for n in REQUIRED if n not in datasets]
            if missing:
                raise HaloCatalogError(
                    f"{path}: missing field(s) {missing}, required by {HALOS_KIND} "
                    f"(found: {sorted(k for k in f if isinstance(f[k], h5py.Dataset))})"
                )
            particles = _particle_presence(str(path), datasets)
            present = datasets
            fields = {n: _unit_factor(path, n, f[n].attrs.get("units")) for n in present}
            n_halos = f["halo_id"].shape[0]
            n_particles = f["particle_mass"].shape[0] if particles else 0
            for name in present:
                rows = n_particles if _is_particle_field(name) else n_halos
                shape = (rows, 3) if name in VECTORS else (rows,)
                if f[name].shape != shape:
                    raise HaloCatalogError(f"{path}: field {name!r} has shape {f[name].shape}, expected {shape}")
            if n_halos == 0:
                raise HaloCatalogError(f"{path}: no halos (field 'halo_id' has 0 rows)")
            # integer-valued, not cast: a count of 30.4 must not become 30
            ids = checked_values(f["halo_id"][:], f"{path}: field 'halo_id'", integer=True)
            if particles:
                counts, offsets = (
                    checked_values(f[name][:], f"{path}: field {name!r}", integer=True)
                    for name in ("particle_count", "particle_offset")
                )
            else:  # halo properties only: chunks of halos alone
                counts = offsets = np.zeros(n_halos, dtype=np.int64)
            # reserved and netCDF-internal attributes are not passed on, so not read either
            attrs = {
                str(k): _attr_value(path, str(k), f.attrs[k])
                for k in f.attrs
                if str(k) not in RESERVED_ATTRS and not str(k).startswith("_")
            }
        except OSError as exc:
            raise HaloCatalogError(f"{path}: cannot be read, the file is truncated or corrupted ({exc})") from exc
    problems = _layout_problems(ids, counts, offsets, n_particles) if particles else _id_problems(ids)
    if problems:
        raise HaloCatalogError(f"{path}: " + "; ".join(problems))
    info = {k: attrs.pop(k, None) for k in ("source_format", "redshift", "hubble", "box_size_kpc")}
    for key in SUMMED_ATTRS:  # counts that the writer adds up over chunks
        if key in attrs:
            attrs[key] = checked_number(attrs[key], f"{path}: attribute {key!r}", integer=True, low=0)
    if not isinstance(info["source_format"], (str, type(None))):
        raise HaloCatalogError(f"{path}: attribute 'source_format' = {info['source_format']!r}; expected text")
    where = f"{path}: attribute"
    return _Hdf5Layout(
        fields=fields,
        counts=counts,
        source_format=str(info["source_format"] or "hdf5"),
        redshift=0.0 if info["redshift"] is None else checked_redshift(info["redshift"], f"{where} 'redshift'"),
        hubble=(
            0.6774
            if info["hubble"] is None
            else checked_number(info["hubble"], f"{where} 'hubble'", low=0.0, high=MAX_HUBBLE, low_open=True)
        ),
        box_size_kpc=(
            None
            if info["box_size_kpc"] is None
            else checked_number(info["box_size_kpc"], f"{where} 'box_size_kpc'", low=0.0, low_open=True)
        ),
        attrs=attrs,
    )


def _attr_value(path: Path, key: str, value: Any) -> Any:
    """A global attribute as the catalog stores it: text checked to be UTF-8, numbers that netCDF
    writers (xarray's included) store as 1-element arrays unwrapped, other arrays as lists."""
    where = f"{path}: attribute {key!r}"
    if isinstance(value, np.ndarray) and (value.size != 1 or value.dtype.kind in "OSUV"):
        return [_attr_value(path, key, v) for v in value.ravel()] if value.dtype.kind in "OSUV" else value.tolist()
    value = scalar_value(value, where)  # bytes that are not UTF-8 are refused here
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # h5py keeps undecodable bytes of UTF-8 attributes as lone surrogates
            raise HaloCatalogError(f"{where} holds binary data, not UTF-8 text; expected text or a number") from None
    return value


def iter_hdf5(path: PathLike, chunk_halos: int = DEFAULT_CHUNK_HALOS) -> Iterator[xr.Dataset]:
    """The canonical halo HDF5 file at ``path`` as ``halos.catalog`` chunks of ``chunk_halos`` halos.

    Read with h5py, slicing the halo rows of each chunk and their particle rows; memory holds one
    chunk plus the halo ids, counts and offsets (24 bytes per halo). Units must be the canonical
    ones (kpc, km s^-1, Msun, "1"); the spellings of :data:`UNIT_ALIASES` ('Mpc', 'km/s', 'kg' ...)
    are converted. The layout (file, fields, units, shapes, integer-valued ids, counts and offsets,
    empty halos, no halos) is checked when called; values (NaNs, signs) chunk by chunk. Attributes
    may be scalars or the 1-element arrays netCDF writers (xarray's too) store numbers as;
    ``redshift``, ``hubble`` and ``box_size_kpc`` are checked as numbers (a negative redshift down to
    -0.5 is warned about), other attributes must be text or numbers, text valid UTF-8. Raises
    :class:`HaloCatalogError` naming the file and the field: missing file, not HDF5, truncated,
    missing field, unknown units, NaN, empty halo.
    Catalog bookkeeping attributes (:data:`data_catalog.RESERVED_ATTRS`) are not passed on.
    """
    _check_chunk_halos(chunk_halos)
    path = Path(path)
    return _hdf5_chunks(path, _hdf5_layout(path), int(chunk_halos))


def _hdf5_chunks(path: Path, layout: _Hdf5Layout, chunk_halos: int) -> Iterator[xr.Dataset]:
    later = {**layout.attrs, **{k: 0 for k in SUMMED_ATTRS if k in layout.attrs}}
    with _open_h5(path) as f:
        for i0, i1, p0, p1 in _chunk_bounds(layout.counts, chunk_halos):
            halos: dict[str, np.ndarray] = {}
            particles: dict[str, np.ndarray] = {}
            for name, factor in layout.fields.items():
                if name == "particle_offset":
                    continue  # local offsets follow from the counts
                rows = slice(p0, p1) if _is_particle_field(name) else slice(i0, i1)
                try:
                    values = f[name][rows]
                except OSError as exc:
                    raise HaloCatalogError(
                        f"{path}: field {name!r} cannot be read (halos {i0}..{i1 - 1}), the file is truncated or "
                        f"corrupted ({exc})"
                    ) from exc
                (particles if _is_particle_field(name) else halos)[name] = values * factor if factor != 1.0 else values
            yield catalog_dataset(
                halos,
                particles,
                source_format=layout.source_format,
                redshift=layout.redshift,
                hubble=layout.hubble,
                box_size_kpc=layout.box_size_kpc,
                attrs=layout.attrs if i0 == 0 else later,  # file totals ride on the first chunk only
                source=f"{path} (halos {i0}..{i1 - 1})",
            )


# -- Rockstar ASCII -----------------------------------------------------------------------------

# values are any token, checked as numbers when read: 'nan' or '1.0.0' must not pass as "no such line"
_PAIR = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")
_QUANTITY = re.compile(r"^\s*(box size|particle mass)\s*:\s*(\S+)\s*(.*?)\s*$", re.IGNORECASE)
# Rockstar's units as written in its '#Units:' lines, compared without spaces and case.
_ROCKSTAR_DEFAULT_UNITS = {
    "mass": "Msun / h",
    "position": "Mpc / h (comoving)",
    "velocity": "km / s (physical, peculiar)",
    "radius": "kpc / h (comoving)",
}
_PARTICLE_COLUMNS = ("x", "y", "z", "vx", "vy", "vz", "particle_id", "external_haloid")


@dataclass
class RockstarHeader:
    """What the comment lines of a Rockstar ASCII file say, units as written there."""

    path: Path
    columns: tuple[str, ...] = ()
    scale_factor: float | None = None
    omega_m: float | None = None
    hubble: float | None = None
    box_size: tuple[float, str] | None = None  # value and unit text, e.g. (250.0, 'Mpc/h')
    particle_mass: tuple[float, str] | None = None  # e.g. (1.35e8, 'Msun/h')
    units: dict[str, str] = field(default_factory=dict)  # mass, position, velocity, radius -> unit text

    def unit(self, category: str) -> str:
        return self.units.get(category, _ROCKSTAR_DEFAULT_UNITS[category])


def _unit_category(what: str) -> str | None:
    what = what.lower()
    if "angular" in what:
        return None
    for key, category in (("mass", "mass"), ("position", "position"), ("velocit", "velocity"), ("radi", "radius")):
        if key in what:
            return category
    return None


def _open_text(path: Path) -> IO[str]:
    if not path.exists():
        raise HaloCatalogError(f"{path}: file not found")
    return open(path, encoding="utf-8")


def read_rockstar_header(path: PathLike, *, particles: bool = False) -> RockstarHeader:
    """The header of a Rockstar catalog (or, with ``particles``, of a ``.particles`` file).

    The column line is the first comment line starting with ``ID`` (catalogs) or naming
    ``external_haloid`` (particle tables). Reads comment lines up to the first data line.
    """
    path = Path(path)
    header = RockstarHeader(path=path)
    try:
        with _open_text(path) as f:
            for line in f:
                if not line.startswith("#"):
                    if line.strip():
                        break
                    continue
                _header_line(header, line[1:].strip(), particles)
    except UnicodeDecodeError as exc:
        raise HaloCatalogError(f"{path}: not a text file ({exc}); expected a Rockstar ASCII file") from exc
    if not header.columns:
        expected = (
            "'#x y z vx vy vz particle_id assigned_internal_haloid internal_haloid external_haloid'"
            if particles
            else "'#ID DescID Mvir Vmax Vrms Rvir Rs Np X Y Z VX VY VZ ...'"
        )
        raise HaloCatalogError(f"{path}: no column header line; expected a Rockstar header such as {expected}")
    return header


def _header_line(header: RockstarHeader, text: str, particles: bool) -> None:
    tokens = text.split()
    if tokens and tokens[0].endswith(":") and "external_haloid" in tokens:
        tokens = tokens[1:]  # old particle files: '#Format: X Y Z ...'
    is_columns = ("external_haloid" in tokens) if particles else bool(tokens) and tokens[0].lower() == "id"
    if not header.columns and is_columns:
        header.columns = tuple(tokens)
        return
    if text.lower().startswith("units:"):
        what, sep, unit = text[len("units:") :].partition(" in ")
        category = _unit_category(what) if sep else None
        if category:
            header.units[category] = unit.strip()
        return
    match = _QUANTITY.match(text)
    if match:
        where = f"{header.path}: header line '#{text}': {match.group(1)}"
        value = (checked_number(match.group(2), where, low=0.0, low_open=True, text=True), match.group(3))
        if match.group(1).lower() == "box size":
            header.box_size = value
        else:
            header.particle_mass = value
        return
    for part in text.split(";"):
        match = _PAIR.match(part)
        if not match:
            continue
        key, value = match.group(1).lower(), match.group(2)
        where = f"{header.path}: header line '#{text}': {match.group(1)}"
        if key == "a" and particles:  # the catalog's own 'a' is the one warned about
            header.scale_factor = checked_number(value, where, low=0.0, low_open=True, text=True)
        elif key == "a":
            header.scale_factor = checked_redshift(value, where, scale_factor=True, text=True)
        elif key == "om":
            header.omega_m = checked_number(value, where, low=0.0, high=2.0, low_open=True, text=True)
        elif key in ("h", "h0"):
            header.hubble = checked_number(value, where, low=0.0, high=MAX_HUBBLE, low_open=True, text=True)


def _norm(unit: str) -> str:
    return "".join(unit.split()).lower()


def _rockstar_factor(header: RockstarHeader, category: str, a: float, h: float) -> float:
    """Factor from the header's units of ``category`` to the canonical ones (Msun, kpc, km s^-1)."""
    tables = {
        "mass": {"msun/h": 1.0 / h, "msun": 1.0},
        "position": {"mpc/h(comoving)": 1e3 * a / h, "kpc/h(comoving)": a / h},
        "radius": {"kpc/h(comoving)": a / h, "mpc/h(comoving)": 1e3 * a / h},
        "velocity": {"km/s(physical,peculiar)": 1.0, "km/s(physical)": 1.0, "km/s": 1.0},
    }
    unit = header.unit(category)
    table = tables[category]
    if _norm(unit) not in table:
        raise HaloCatalogError(
            f"{header.path}: unknown units for {category} in the '#Units:' line: {unit!r}; this reader knows "
            f"{sorted(table)} (Rockstar's own: {_ROCKSTAR_DEFAULT_UNITS[category]!r})"
        )
    return table[_norm(unit)]


def _quantity_factor(header: RockstarHeader, what: str, value: tuple[float, str], a: float, h: float) -> float:
    tables = {
        "Box size": {"mpc/h": 1e3 * a / h, "kpc/h": a / h},  # comoving box -> physical kpc
        "Particle mass": {"msun/h": 1.0 / h, "msun": 1.0},
    }
    unit = _norm(value[1])
    if unit not in tables[what]:
        raise HaloCatalogError(
            f"{header.path}: unknown units in '#{what}: {value[0]} {value[1]}'; expected one of {sorted(tables[what])}"
        )
    return value[0] * tables[what][unit]


def _particle_paths(path: Path, particles_path: PathLike | Sequence[PathLike] | None) -> list[Path]:
    if particles_path is not None:
        paths = [particles_path] if isinstance(particles_path, (str, os.PathLike)) else list(particles_path)
        return [Path(p) for p in paths]
    # Rockstar's names: out_<snap>.list and halos_<snap>.<chunk>.ascii beside halos_<snap>.<chunk>.particles
    name = path.name
    if name.startswith("out_") and name.endswith(".list"):
        pattern = f"halos_{name[len('out_') : -len('.list')]}.*.particles"
    elif name.endswith(".ascii"):
        pattern = name[: -len(".ascii")] + ".particles"
    else:
        pattern = path.stem + ".particles"
    found = sorted(path.parent.glob(pattern))
    if not found:
        raise HaloCatalogError(
            f"{path}: no particle files {pattern!r} beside it; every halo needs particles: name them with "
            "--particles; Rockstar writes them with FULL_PARTICLE_CHUNKS set"
        )
    return found


def _data_lines(path: Path) -> Iterator[tuple[str, str]]:
    """('line N', line) of the data lines of an ASCII table (comments and blank lines skipped)."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip() and not line.startswith("#"):
                yield f"line {number}", line


def _columns(header: RockstarHeader) -> dict[str, int]:
    return {name.lower(): i for i, name in enumerate(header.columns)}


def _tokens(path: Path, block: Sequence[tuple[str, str | bytes]], n_columns: int) -> np.ndarray:
    """The whitespace-separated values of ``block`` ((label, line) pairs) as an (rows, columns) text array."""
    rows = [line.split() for _, line in block]
    for (label, _), row in zip(block, rows, strict=True):
        if len(row) != n_columns:
            raise HaloCatalogError(f"{path}: {label} has {len(row)} values but the header names {n_columns} columns")
    return np.array(rows).reshape(len(rows), n_columns)


def _parse(path: Path, tokens: np.ndarray, j: int, name: str, labels: Sequence[str], dtype: type) -> np.ndarray:
    """Column ``j`` of ``tokens`` as numbers; a value that is not one raises naming its line and column."""
    try:
        return tokens[:, j].astype(dtype)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond 64 bits
        for k, value in enumerate(tokens[:, j]):
            try:
                tokens[k : k + 1, j].astype(dtype)
            except (ValueError, OverflowError):
                expected = "a 64-bit integer" if np.issubdtype(dtype, np.integer) else "a number"
                raise HaloCatalogError(
                    f"{path}: {labels[k]}: column {name!r} holds {_text(value)!r}, expected {expected}"
                ) from None
        raise


@dataclass
class _ParticleIndex:
    """Runs of consecutive particle rows with the same halo id, sorted by id: (file, byte offset, rows)."""

    ids: np.ndarray
    files: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray


def _index_particles(paths: Sequence[Path], headers: Sequence[RockstarHeader]) -> _ParticleIndex:
    """One pass over the particle files, keeping 32 bytes per run of rows of one halo.

    Rockstar writes each halo's particles as one block per file, so there is one run per halo and
    file: memory O(halos), whatever the particle count. A file whose rows interleave halos costs one
    run per change of halo id, up to 32 bytes per particle.
    """
    ids, files, offsets, rows = array("q"), array("q"), array("q"), array("q")
    for k, (path, header) in enumerate(zip(paths, headers, strict=True)):
        col = _columns(header)["external_haloid"]
        run_id, run_start, run_rows, offset = None, 0, 0, 0
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                start, offset = offset, offset + len(line)
                if line.startswith(b"#") or not line.strip():
                    continue
                try:
                    eid = int(line.split()[col])
                    if not -(2**63) <= eid < 2**63:
                        raise ValueError(eid)
                except (IndexError, ValueError):
                    raise HaloCatalogError(
                        f"{path}: line {number}: no 64-bit integer 'external_haloid' in column {col + 1}"
                    ) from None
                if eid == run_id:
                    run_rows += 1
                    continue
                # -1 marks halos Rockstar did not print; other ids must be the list's (checked later)
                if run_id is not None and run_id != -1:
                    for column, value in zip((ids, files, offsets, rows), (run_id, k, run_start, run_rows)):
                        column.append(value)
                run_id, run_start, run_rows = eid, start, 1
        if run_id is not None and run_id != -1:
            for column, value in zip((ids, files, offsets, rows), (run_id, k, run_start, run_rows)):
                column.append(value)
    id_array = np.frombuffer(ids, dtype=np.int64)
    order = np.argsort(id_array, kind="stable")
    return _ParticleIndex(
        ids=id_array[order],
        files=np.frombuffer(files, dtype=np.int64)[order],
        offsets=np.frombuffer(offsets, dtype=np.int64)[order],
        rows=np.frombuffer(rows, dtype=np.int64)[order],
    )


@dataclass
class _ParticleFile:
    path: Path
    handle: IO[bytes]
    columns: dict[str, int]
    n_columns: int
    position_factor: float
    velocity_factor: float
    mass_factor: float  # for the 'mass' column when there is one
    mass: float | None  # Msun, from the header, when there is no 'mass' column


def _read_run(pfile: _ParticleFile, halo_id: int, offset: int, n_rows: int) -> dict[str, np.ndarray]:
    """The ``n_rows`` particle rows of one run, converted to kpc, km s^-1 and Msun (positions not unwrapped)."""
    pfile.handle.seek(offset)
    block: list[tuple[str, bytes]] = []
    while len(block) < n_rows:
        line = pfile.handle.readline()
        if not line:
            raise HaloCatalogError(f"{pfile.path}: ended early; the file changed after it was indexed")
        if line.strip() and not line.startswith(b"#"):
            block.append((f"particle row {len(block)} of halo {halo_id}", line))
    tokens = _tokens(pfile.path, block, pfile.n_columns)
    lines = [label for label, _ in block]
    c = pfile.columns
    eids = _parse(pfile.path, tokens, c["external_haloid"], "external_haloid", lines, np.int64)
    if (eids != halo_id).any():
        raise HaloCatalogError(f"{pfile.path}: rows moved since the file was indexed (halo {halo_id})")

    def column(name: str, low: float | None = None) -> np.ndarray:
        values = _parse(pfile.path, tokens, c[name], name, lines, np.float64)
        where = f"{pfile.path}: particles of halo {halo_id}: column {name!r}"
        return checked_values(values, where, low=low, low_open=low is not None)

    xyz = np.stack([column(k) for k in ("x", "y", "z")], axis=1)
    vxyz = np.stack([column(k) for k in ("vx", "vy", "vz")], axis=1)
    if pfile.mass is None:
        mass = column("mass", low=0.0) * pfile.mass_factor
    else:
        mass = np.full(n_rows, pfile.mass)
    return {
        "particle_id": _parse(pfile.path, tokens, c["particle_id"], "particle_id", lines, np.int64),
        "particle_position": xyz * pfile.position_factor,
        "particle_velocity": vxyz * pfile.velocity_factor,
        "particle_mass": mass,
    }


@dataclass(frozen=True)
class _RockstarSetup:
    columns: dict[str, int]  # lower-case name -> index
    spelled: dict[str, str]  # lower-case name -> as in the header
    n_columns: int
    mass_column: str
    radius_column: str | None  # None: R200m from M200m and the mean matter density
    concentration_columns: tuple[str, str] | None
    factors: dict[str, float]
    rho_m: float | None  # mean matter density, Msun kpc^-3 (physical)
    box_kpc: float
    redshift: float
    hubble: float
    attrs: dict[str, Any]


def _rockstar_setup(
    path: Path, header: RockstarHeader, pheaders: Sequence[RockstarHeader], hubble: float | None
) -> _RockstarSetup:
    cols = _columns(header)
    missing = [name for name in ("ID", "X", "Y", "Z", "VX", "VY", "VZ") if name.lower() not in cols]
    if "m200b" in cols:
        mass_column = "m200b"
        radius_column = "r200b" if "r200b" in cols else None
        definition = "M200b: 200 x the mean matter density (Rockstar's M200b column)"
    elif "mvir" in cols:
        mass_column, radius_column = "mvir", "rvir"
        definition = "Mvir: Rockstar's virial mass (no M200b column), used as M200m with Rvir as R200m"
        if "rvir" not in cols:
            missing.append("Rvir")
    else:
        mass_column, radius_column, definition = "", None, ""
        missing.append("M200b or Mvir")
    if missing:
        raise HaloCatalogError(
            f"{path}: missing column(s) {missing} in the header line; expected Rockstar columns such as "
            "'#ID DescID Mvir Vmax Vrms Rvir Rs Np X Y Z VX VY VZ ... M200b ...'"
        )
    a = header.scale_factor
    if a is None or not a > 0:
        raise HaloCatalogError(f"{path}: no valid '#a = ...' line (scale factor), needed for comoving units")
    if hubble is not None:
        hubble = checked_number(hubble, "hubble", low=0.0, high=MAX_HUBBLE, low_open=True, error=HaloOptionError)
    h = hubble if hubble is not None else header.hubble
    if h is None or not h > 0:
        raise HaloCatalogError(f"{path}: no valid '#Om = ...; h = ...' line; pass hubble= (H0 / 100 km/s/Mpc)")
    for pheader in pheaders:
        if pheader.scale_factor is not None and not math.isclose(pheader.scale_factor, a, rel_tol=1e-5):
            raise HaloCatalogError(
                f"{pheader.path}: '#a = {pheader.scale_factor}' differs from '#a = {a}' in {path}: another snapshot?"
            )
    rho_m = None
    if radius_column is None:
        if header.omega_m is None:
            raise HaloCatalogError(f"{path}: no '#Om = ...' line; it is needed to compute R200m from M200b")
        rho_m = header.omega_m * RHO_CRIT0 * h**2 / a**3  # physical mean matter density at this epoch
    box = header.box_size or next((p.box_size for p in pheaders if p.box_size), None)
    if box is None:
        raise HaloCatalogError(f"{path}: no '#Box size: ...' line; it is needed to unwrap periodic halos")
    main_radius = "rvir" if "rvir" in cols else ("r200b" if "r200b" in cols else None)
    concentration = (main_radius, "rs") if main_radius and "rs" in cols else None
    attrs: dict[str, Any] = {
        "source_file": str(path),
        "particles_files": [str(p.path) for p in pheaders],
        "expansion_factor": float(a),  # not "scale_factor": netCDF reserves that name
        "mass_definition": definition,
        "radius_definition": (
            f"{header.columns[cols[radius_column]]} column"
            if radius_column
            else "(3 M200m / (4 pi 200 rho_m))^(1/3), rho_m = Om rho_crit0 (1 + z)^3"
        ),
        "centre": "Rockstar halo position (averaged over its innermost particles), not the potential minimum",
    }
    if concentration:
        attrs["concentration_definition"] = f"R200m / {header.columns[cols['rs']]} (the NFW scale radius)"
    attrs["sigma_v_definition"] = "Vrms / sqrt(3) (1-D dispersion)"
    attrs["spin_definition"] = "spin_bullock (Bullock lambda'); Peebles' Spin column is not used"
    if header.omega_m is not None:
        attrs["omega_m"] = float(header.omega_m)
    factors = {c: _rockstar_factor(header, c, a, h) for c in ("mass", "position", "velocity", "radius")}
    return _RockstarSetup(
        columns=cols,
        spelled={name.lower(): name for name in header.columns},
        n_columns=len(header.columns),
        mass_column=mass_column,
        radius_column=radius_column,
        concentration_columns=concentration,
        factors=factors,
        rho_m=rho_m,
        box_kpc=_quantity_factor(header, "Box size", box, a, h),
        redshift=1.0 / a - 1.0,
        hubble=float(h),
        attrs=attrs,
    )


def _particle_files(
    paths: Sequence[Path],
    pheaders: Sequence[RockstarHeader],
    header: RockstarHeader,
    setup: _RockstarSetup,
    stack: ExitStack,
) -> list[_ParticleFile]:
    """The particle files opened (closed with ``stack``), with their columns and unit factors."""
    a, h = setup.attrs["expansion_factor"], setup.hubble
    opened: list[_ParticleFile] = []
    for path, pheader in zip(paths, pheaders, strict=True):
        cols = _columns(pheader)
        missing = [c for c in _PARTICLE_COLUMNS if c not in cols]
        if missing:
            raise HaloCatalogError(f"{path}: missing particle column(s) {missing} in the '#x y z ...' header line")
        mass = None
        if "mass" not in cols:
            quantity = pheader.particle_mass or header.particle_mass
            if quantity is None:
                raise HaloCatalogError(
                    f"{path}: particle_mass: no 'mass' column and no '#Particle mass: ...' line here or in "
                    f"{header.path}"
                )
            mass = _quantity_factor(pheader if pheader.particle_mass else header, "Particle mass", quantity, a, h)
        opened.append(
            _ParticleFile(
                path=path,
                handle=stack.enter_context(open(path, "rb")),  # noqa: SIM115 (closed by the ExitStack)
                columns=cols,
                n_columns=len(pheader.columns),
                position_factor=_rockstar_factor(pheader, "position", a, h),
                velocity_factor=_rockstar_factor(pheader, "velocity", a, h),
                mass_factor=_rockstar_factor(pheader, "mass", a, h),
                mass=mass,
            )
        )
    return opened


def iter_rockstar(
    path: PathLike,
    particles_path: PathLike | Sequence[PathLike] | None = None,
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    hubble: float | None = None,
    *,
    drop_empty: bool = False,
) -> Iterator[xr.Dataset]:
    """A Rockstar ASCII catalog and its particles as ``halos.catalog`` chunks of ``chunk_halos`` halos.

    ``path`` is an ``out_<snap>.list`` or ``halos_<snap>.<chunk>.ascii`` file: a '#' column line
    (``#ID DescID Mvir ... M200b ...``, any case), then '#' lines giving ``a``, ``Om``, ``h``, the
    box size, the particle mass and the units. ``particles_path`` names the ``.particles`` file(s)
    (default: ``halos_<snap>.*.particles`` beside the catalog); a particle belongs to the halo whose
    ID equals its ``external_haloid`` (so a host's particles include those of its subhalos, as
    Rockstar prints them), all of the header's particle mass unless the file has a ``mass`` column.
    ``hubble`` overrides the header's h.

    Conversions (Rockstar units -> canonical): positions comoving Mpc/h -> physical kpc (x 1000 a / h);
    masses Msun/h -> Msun (/ h); radii comoving kpc/h -> physical kpc (x a / h); velocities are
    physical km/s already. ``M200m`` is the ``M200b`` column when there is one (``R200m`` then from
    an ``R200b`` column, else (3 M / (4 pi 200 rho_m))^(1/3) with rho_m = Om rho_crit0 h^2 / a^3,
    rho_crit0 = 277.536627 h^2 Msun kpc^-3), otherwise ``Mvir`` with ``Rvir``; the attribute
    ``mass_definition`` says which. ``concentration`` = Rvir / Rs, ``spin`` = Spin (Peebles),
    ``sigma_v`` = Vrms, when those columns exist. Particle positions are unwrapped around the halo
    position across the periodic box and sorted by particle id within each halo.

    A halo without particles raises :class:`HaloCatalogError` naming its id, unless ``drop_empty``:
    then it is left out and each chunk's attribute ``dropped_empty_halos`` counts those it lost. So do
    particles of a halo that is not in the list, a list without halos, and repeated IDs.

    Header numbers are checked as they are read (:func:`sims.halos.catalog.checked_number`): the box size and
    particle mass must be finite and positive, h in (0, 2], Om in (0, 2], a in (0, 2]. A scale factor
    above 1 (a negative redshift, as when an integrator steps past z = 0) is accepted with a
    :class:`~sims.halos.catalog.NegativeRedshiftWarning` naming the file and the value. Masses, radii and Rs
    must be positive, Vrms and spin_bullock not negative, and every value finite.

    Memory: one chunk of halos and their particles, plus an index built by one pass over the particle
    files when this is called, 32 bytes per run of consecutive rows of one halo (one run per halo and
    file in Rockstar's own files, so O(halos) and independent of the particle count), and the list's
    halo IDs (8 bytes per halo, one more pass over the list). Indexing is a Python loop over every
    particle line (of the order of a million lines per second).
    """
    _check_chunk_halos(chunk_halos)
    path = Path(path)
    header = read_rockstar_header(path)
    paths = _particle_paths(path, particles_path)
    pheaders = [read_rockstar_header(p, particles=True) for p in paths]
    setup = _rockstar_setup(path, header, pheaders, hubble)
    with ExitStack() as stack:  # particle columns and masses checked now, not at the first chunk
        _particle_files(paths, pheaders, header, setup, stack)
    ids = _catalog_ids(path, setup)
    index = _index_particles(paths, pheaders)
    _check_particle_halos(path, paths, index, ids)
    return _rockstar_chunks(path, header, pheaders, setup, index, int(chunk_halos), drop_empty)


def _catalog_ids(path: Path, setup: _RockstarSetup) -> np.ndarray:
    """The ID of every halo of the list (one pass, 8 bytes per halo), checked: at least one halo,
    integer and unique IDs. Found now, the problems are named with the file, not with a chunk."""
    col, spelled = setup.columns["id"], setup.spelled["id"]
    ids = array("q")
    lines = _data_lines(path)
    try:
        for label, line in lines:
            fields = line.split()
            try:
                ids.append(int(fields[col]))
            except (IndexError, ValueError, OverflowError):
                found = repr(fields[col]) if col < len(fields) else "nothing"
                raise HaloCatalogError(
                    f"{path}: {label}: column {spelled!r} holds {found}; expected an integer halo ID"
                ) from None
    except UnicodeDecodeError as exc:
        raise HaloCatalogError(f"{path}: not a UTF-8 text file ({exc}); expected a Rockstar ASCII file") from None
    finally:
        lines.close()
    if not ids:
        raise HaloCatalogError(f"{path}: no halos (the header is followed by no data row)")
    values = np.frombuffer(ids, dtype=np.int64)
    unique, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise HaloCatalogError(
            f"{path}: column {spelled!r}: {int((counts > 1).sum())} halo ID(s) repeated "
            f"({unique[counts > 1][:5].tolist()}); IDs must be unique"
        )
    return unique


def _check_particle_halos(path: Path, paths: Sequence[Path], index: _ParticleIndex, ids: np.ndarray) -> None:
    """Every indexed particle's halo must be a halo of the list: particles of other halos would be
    dropped without a word (particle files of another snapshot or chunk, a truncated list)."""
    orphan = ~np.isin(index.ids, ids)
    if not orphan.any():
        return
    halos = np.unique(index.ids[orphan])
    files = [str(paths[k]) for k in np.unique(index.files[orphan])]
    raise HaloCatalogError(
        f"{', '.join(files)}: {int(index.rows[orphan].sum())} particle(s) of {halos.size} halo(s) not in {path} "
        f"(external_haloid {halos[:5].tolist()}); are the particle files from another snapshot or catalog?"
    )


def _rockstar_chunks(
    path: Path,
    header: RockstarHeader,
    pheaders: Sequence[RockstarHeader],
    setup: _RockstarSetup,
    index: _ParticleIndex,
    chunk_halos: int,
    drop_empty: bool,
) -> Iterator[xr.Dataset]:
    with ExitStack() as stack:
        pfiles = _particle_files([p.path for p in pheaders], pheaders, header, setup, stack)
        rows = stack.enter_context(closing(_data_lines(path)))
        while block := list(islice(rows, chunk_halos)):
            yield _rockstar_chunk(path, setup, index, pfiles, block, drop_empty)


def _rockstar_chunk(
    path: Path,
    setup: _RockstarSetup,
    index: _ParticleIndex,
    pfiles: Sequence[_ParticleFile],
    block: Sequence[tuple[int, str]],
    drop_empty: bool,
) -> xr.Dataset:
    lines = [label for label, _ in block]
    tokens = _tokens(path, block, setup.n_columns)
    cols = setup.columns

    def column(name: str, low: float | None = None, low_open: bool = False) -> np.ndarray:
        spelled = setup.spelled[name]
        values = _parse(path, tokens, cols[name], spelled, lines, np.float64)
        if not np.isfinite(values).all():
            bad = ids[~np.isfinite(values)][:5].tolist()
            raise HaloCatalogError(f"{path}: column {spelled!r} has NaN or infinite values (halo ID {bad})")
        if low is not None:  # masses, radii and dispersions have a sign
            checked_values(values, f"{path}: column {spelled!r}", low=low, low_open=low_open, ids=ids)
        return values

    ids = _parse(path, tokens, cols["id"], setup.spelled["id"], lines, np.int64)
    f = setup.factors
    halos: dict[str, np.ndarray] = {"halo_id": ids}
    halos["M200m"] = column(setup.mass_column, low=0.0, low_open=True) * f["mass"]
    if setup.radius_column is not None:
        halos["R200m"] = column(setup.radius_column, low=0.0, low_open=True) * f["radius"]
    else:
        halos["R200m"] = np.cbrt(3.0 * halos["M200m"] / (4.0 * np.pi * 200.0 * setup.rho_m))
    halos["position"] = np.stack([column(c) for c in ("x", "y", "z")], axis=1) * f["position"]
    halos["velocity"] = np.stack([column(c) for c in ("vx", "vy", "vz")], axis=1) * f["velocity"]
    if setup.concentration_columns:
        rs = column(setup.concentration_columns[1], low=0.0, low_open=True)
        # Rs is the NFW scale radius whatever the mass definition: R200m / Rs is c200m (c_vir when the
        # Mvir / Rvir fallback is in use), the definition the rest of the project uses
        halos["concentration"] = halos["R200m"] / (rs * f["radius"])
    if "spin_bullock" in cols:  # Bullock's lambda', as everywhere else ("Spin" is Peebles' lambda)
        halos["spin"] = column("spin_bullock", low=0.0)
    if "vrms" in cols:  # Vrms is the 3-D rms speed; sigma_v is the 1-D dispersion everywhere else
        halos["sigma_v"] = column("vrms", low=0.0) * f["velocity"] / np.sqrt(3.0)

    counts, particles = _halo_particles(index, pfiles, ids, halos["position"], setup.box_kpc)
    attrs = dict(setup.attrs)
    empty = counts == 0
    if empty.any():
        if not drop_empty:
            raise HaloCatalogError(
                f"{path}: particle_count: {int(empty.sum())} halo(s) without particles in "
                f"{[str(p.path) for p in pfiles]} (halo ID {ids[empty][:5].tolist()}); pass drop_empty=True to "
                "leave such halos out"
            )
        halos = {k: v[~empty] for k, v in halos.items()}
        counts = counts[~empty]
    if drop_empty:
        attrs[DROPPED_ATTR] = int(empty.sum())
    halos["particle_count"] = counts
    return catalog_dataset(
        halos,
        particles,
        source_format="rockstar",
        redshift=setup.redshift,
        hubble=setup.hubble,
        box_size_kpc=setup.box_kpc,
        attrs=attrs,
        source=f"{path} ({lines[0]}..{lines[-1]})",
    )


def _halo_particles(
    index: _ParticleIndex, pfiles: Sequence[_ParticleFile], ids: np.ndarray, centres: np.ndarray, box_kpc: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts per halo and the particles of ``ids`` in halo order, unwrapped around ``centres`` (kpc)."""
    lo = np.searchsorted(index.ids, ids, side="left")
    hi = np.searchsorted(index.ids, ids, side="right")
    runs = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) if ids.size else np.zeros(0, int)
    # read in file order, then assemble in halo order
    parts = {}
    for r in runs[np.lexsort((index.offsets[runs], index.files[runs]))]:
        parts[int(r)] = _read_run(pfiles[index.files[r]], int(index.ids[r]), int(index.offsets[r]), int(index.rows[r]))
    names = ("particle_position", "particle_velocity", "particle_mass")
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    counts = np.zeros(ids.size, dtype=np.int64)
    for i in range(ids.size):
        halo = [parts[r] for r in range(lo[i], hi[i])]
        if not halo:
            continue
        pid = np.concatenate([p["particle_id"] for p in halo])
        order = np.argsort(pid, kind="stable")
        counts[i] = pid.size
        for n in names:
            out[n].append(np.concatenate([p[n] for p in halo])[order])
        # unwrap: the periodic image of each particle nearest to its halo's centre
        d = out["particle_position"][-1] - centres[i]
        out["particle_position"][-1] = centres[i] + d - box_kpc * np.round(d / box_kpc)
    empty_shapes = {"particle_position": (0, 3), "particle_velocity": (0, 3), "particle_mass": (0,)}
    particles = {n: np.concatenate(v) if v else np.zeros(empty_shapes[n]) for n, v in out.items()}
    return counts, particles
