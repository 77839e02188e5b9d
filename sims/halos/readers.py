"""Readers of halo catalog files, streamed in chunks of whole halos, and the canonical HDF5 file.

Every reader yields ``halos.catalog`` datasets (see :mod:`sims.halos.catalog`) of at most ``chunk_halos``
halos each, their particles included (when the catalog has them) and ``particle_offset`` local to
the chunk. :func:`write_canonical`
streams such chunks into one HDF5 file (offsets made global), so a catalog larger than memory is
converted holding one chunk at a time.

- :func:`write_canonical` / :func:`open_canonical`: the canonical HDF5 file, readable by
  ``xr.open_dataset(path, engine="h5netcdf")``.
- :func:`iter_hdf5`: that file (or one with the same layout) read chunk by chunk with h5py.

Rockstar and consistent-trees catalogs are read by :mod:`sims.halos.rockstar`, IllustrisTNG runs by
:mod:`sims.halos.tng`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from data_catalog import RESERVED_ATTRS, check_dataset
from data_catalog.filesystem import ensure_room, hdf5_write_errors
from data_catalog.h5read import AS_STORED, open_netcdf
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
    catalog_dataset,
    check_catalog,
    checked_number,
    checked_redshift,
    checked_values,
    chunk_bounds,
    has_particles,
    scalar_value,
)

PathLike = str | os.PathLike[str]

DEFAULT_CHUNK_HALOS = 4096
#: At most this many particles per chunk read or checked (about 235 MB of positions, velocities and masses).
CHUNK_PARTICLES = 2**22
#: Attribute counting the halos a reader left out for having no particles; the writer sums it over chunks.
DROPPED_ATTR = "dropped_empty_halos"
#: Attribute counting the halos a reader left out because the halo finder wrote 0 for their mass.
DROPPED_MASS_ATTR = "dropped_unmeasured_mass"
SUMMED_ATTRS = (DROPPED_ATTR, DROPPED_MASS_ATTR)
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


def check_hdf5_path(path: Path, expected: str) -> None:
    """A missing path, a folder and a file without the HDF5 signature raise HaloCatalogError saying
    what was ``expected`` there."""
    if not path.exists():
        raise HaloCatalogError(f"{path}: file not found; expected {expected}")
    if not path.is_file():
        raise HaloCatalogError(f"{path}: not a file; expected {expected}")
    if not h5py.is_hdf5(path):
        raise HaloCatalogError(f"{path}: not an HDF5 file (no HDF5 signature); expected {expected}")


def _open_h5(path: Path) -> h5py.File:
    """The file opened read-only; missing, non-HDF5 and truncated files raise HaloCatalogError."""
    check_hdf5_path(path, f"the canonical halo HDF5 file ({HALOS_KIND}) that eqs writes")
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
        ds = open_netcdf(path, chunks=chunks, **AS_STORED)
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
    for i0, i1, p0, p1 in chunk_bounds(counts, DEFAULT_CHUNK_HALOS, CHUNK_PARTICLES):
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
        for i0, i1, p0, p1 in chunk_bounds(layout.counts, chunk_halos, CHUNK_PARTICLES):
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
