"""Dark-matter particles for a halo catalog, from a simulation snapshot in the Gadget HDF5 layout.

Halo finders publish per-halo properties; users who have particles usually have them as a snapshot
written by Gadget-4, Arepo (IllustrisTNG), SWIFT or Gadget-2/3 (format 3). :func:`attach_snapshot_particles`
gives every halo of ``halos.catalog`` chunks without particles its dark-matter (``PartType1``) particles
within R200m of its centre, in the periodic box; :func:`read_snapshot_header` reads and checks the
snapshot alone, so that a command can refuse a bad one before any work.

Files
    One file (``snap_099.hdf5``), or a set ``<stem>.0.hdf5 ... <stem>.<N-1>.hdf5`` with
    ``Header/NumFilesPerSnapshot`` = N, given by its first file (or any member), by the folder that
    holds it, or as a list in order. The rows of ``PartType1`` of the files are concatenated in file
    order. A SWIFT virtual meta-snapshot is one file (HDF5 resolves its links).

Header fields read (``Header`` attributes of every file; numbers checked as in
:data:`sims.halos.tng.HEADER_CHECKS`: counts non-negative integers, BoxSize and HubbleParam positive)
    ``NumFilesPerSnapshot`` (1 when absent): how many files; every file must say the same.
    ``NumPart_ThisFile[1]``: type-1 rows of this file; summed over the files they must equal the total.
    ``NumPart_Total[1]`` plus ``NumPart_Total_HighWord[1]`` (SWIFT: ``NumPart_HighWord``) times 2^32
    (Gadget-2 and Arepo store the total in two 32-bit words; a ``NumPart_Total`` already above 2^32,
    as Gadget-4 writes it, is taken whole). Must be positive and the same in every file.
    ``Redshift`` and the scale factor a: ``Scale-factor`` when present (SWIFT, whose ``Time`` is the
    cosmic time), else ``Time`` (Gadget, Arepo: a in comoving runs); a must equal 1 / (1 + Redshift)
    to 1e-5. A redshift below 0 (down to -0.5) is accepted with a
    :class:`~sims.halos.catalog.NegativeRedshiftWarning`.
    ``BoxSize``: the periodic box in the units of ``Coordinates`` (comoving); one number or three
    equal ones (SWIFT writes a 3-vector; non-cubic boxes are refused).
    ``HubbleParam`` h, from ``Header`` (Gadget-2, Arepo), else ``Parameters`` (Gadget-4), else
    ``Cosmology/h`` (SWIFT).
    ``MassTable[1]``: the mass of every type-1 particle in mass units when positive; when 0 or absent
    the masses are ``PartType1/Masses``.
    Redshift, BoxSize, HubbleParam and MassTable[1] must agree between the files (to 1e-6).

Unit system (see :data:`UNIT_FIELDS`)
    ``UnitLength_in_cm``, ``UnitMass_in_g``, ``UnitVelocity_in_cm_per_s`` from ``Header`` (Arepo),
    else ``Parameters`` (Gadget-4); SWIFT writes ``Units`` attributes ``Unit length in cgs (U_L)``,
    ``Unit mass in cgs (U_M)``, ``Unit time in cgs (U_t)`` (velocity unit U_L / U_t). A unit absent
    from all of them is Gadget's default: **1 kpc/h, 1e10 Msun/h, 1 km/s**, and the chunks' attribute
    ``snapshot_conversions`` says so. A unit within 0.1 % of a power of ten of kpc, Msun or km/s is
    taken as exactly that power of ten: codes write their own solar mass (Gadget 1.989e33 g, SWIFT
    1.98841e33 g, IAU 1.98847e33 g), and the halo finders' masses are in the named unit.

Conventions (physical value = stored value x a^p x h^q x unit; see :func:`read_snapshot_header`)
    Gadget-2/4, Arepo, IllustrisTNG: ``Coordinates`` comoving length / h (p = 1, q = -1);
    ``Velocities`` are sqrt(a) times the peculiar velocity, u = v / sqrt(a) (p = 1/2, q = 0);
    ``Masses`` and ``MassTable`` mass / h (p = 0, q = -1).
    Per-dataset attributes, when present, take precedence: SWIFT's ``a-scale exponent``,
    ``h-scale exponent`` and ``Conversion factor to CGS (not including cosmological corrections)``
    (SWIFT is h-free and stores peculiar velocities: p = 0 for ``Velocities``), and Arepo's and
    Gadget-4's ``a_scaling``, ``h_scaling``, ``to_cgs`` (``to_cgs`` = 0: the header's unit). A SWIFT
    file (``Header/Code`` = SWIFT or a ``Units`` group) without them is refused.
    ``ParticleIDs`` (any integer type) order the particles of a halo and must be unique.

What a halo gets
    Every type-1 particle whose nearest periodic image lies within R200m of the halo's ``position``
    (distance <= R200m, computed in the snapshot's comoving units with R200m / (length factor)):
    ``particle_position`` in physical kpc, the image nearest the centre (unwrapped: centre + the
    minimum-image offset, so no jumps inside a halo), ``particle_velocity`` physical peculiar km/s,
    ``particle_mass`` Msun; sorted by particle ID within the halo (as :func:`sims.halos.readers.iter_rockstar`).
    A particle within R200m of two halos belongs to both (a host's table includes its subhalos').

Memory: bounded by the chunk size, not the snapshot
    No tree of all particles is built. Pass 1 reads the snapshot in slabs of ``chunk_particles``
    rows, one dask task per slab: it builds a periodic :class:`scipy.spatial.cKDTree` of the slab's
    positions and queries it with every halo centre whose sphere reaches the slab's bounding box, at
    that halo's own R200m (``query_ball_point(centres, r=radii)``: exact, no candidate filtering).
    The (halo index, particle ID, raw position, velocity[, mass]) records found are appended to
    binary bucket files in a scratch folder, one bucket per range of consecutive halos (planned from
    the expected counts M200m / particle mass so a bucket holds about ``chunk_particles`` records).
    Pass 2 reads the buckets back in halo order (a bucket found larger than ``chunk_particles`` is
    first split into smaller ones by streaming it), sorts each by (halo, particle ID), converts the
    units and yields chunks of at most ``chunk_particles`` particles (a heavier halo makes a chunk of
    its own), each yielded as soon as it is built. Memory: ``workers`` slabs in flight (about 100
    bytes a row each) and their records, one output chunk (about 250 bytes a particle at most, while
    it is built), and O(halos) arrays; scratch disk: 30-60 bytes per (halo, particle) pair, deleted at
    the end. Measured with :mod:`sims.halos.snapshot_benchmark` at the default 2^21 rows: about
    385 MB per worker process and 465-495 MB in the calling process, for a 0.8 GB and an 8 GB
    snapshot alike (docs/snapshots.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, groupby
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import dask
import h5py
import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from data_catalog import check_dataset
from data_catalog.filesystem import ensure_room
from sims.halos.catalog import (
    HALOS_KIND,
    PARTICLE_UNITS,
    HaloCatalogError,
    catalog_dataset,
    checked_number,
    checked_redshift,
    checked_values,
    chunk_bounds,
    has_particles,
)
from sims.halos.readers import (
    DROPPED_ATTR,
    MSUN_KG,
    SUMMED_ATTRS,
    check_hdf5_path,
)
from sims.halos.tng import HEADER_CHECKS, _check_num_files, _open, _SplitFiles

PathLike = str | os.PathLike[str]

#: One kiloparsec in cm (IAU 2015), one solar mass in g (as sims.halos.readers), one km/s in cm/s.
KPC_CM = 3.0856775814913673e21
MSUN_G = MSUN_KG * 1e3
KMS_CMS = 1e5
#: A unit this close (relative) to a power of ten of kpc, Msun or km/s is taken as exactly that.
UNIT_SNAP = 1e-3
#: Rows of the snapshot per slab task, and most particles per yielded chunk (a heavier halo: its own).
DEFAULT_CHUNK_PARTICLES = 2**21
#: How far the catalog's scale factor may be from the snapshot's, relative: |a_cat / a_snap - 1|.
REDSHIFT_TOLERANCE = 1e-3
#: How far the catalog's box_size_kpc may be from the snapshot's box, relative.
BOX_TOLERANCE = 1e-4
#: Where the unit system is read, in this order: (group, length, mass, velocity or time).
UNIT_FIELDS = (
    ("Header", "UnitLength_in_cm", "UnitMass_in_g", "UnitVelocity_in_cm_per_s"),
    ("Parameters", "UnitLength_in_cm", "UnitMass_in_g", "UnitVelocity_in_cm_per_s"),
    ("Units", "Unit length in cgs (U_L)", "Unit mass in cgs (U_M)", "Unit time in cgs (U_t)"),
)
#: Gadget's default units when a snapshot names none: 1 kpc/h, 1e10 Msun/h, 1 km/s.
GADGET_DEFAULT_UNITS = {"length": KPC_CM, "mass": 1e10 * MSUN_G, "velocity": KMS_CMS}
#: The Gadget / Arepo convention without per-dataset attributes: (kind, a exponent, h exponent).
GADGET_CONVENTION = {
    "Coordinates": ("length", 1.0, -1.0),
    "Velocities": ("velocity", 0.5, 0.0),
    "Masses": ("mass", 0.0, -1.0),
}
_SWIFT_ATTRS = (
    "a-scale exponent",
    "h-scale exponent",
    "Conversion factor to CGS (not including cosmological corrections)",
)
_AREPO_ATTRS = ("a_scaling", "h_scaling", "to_cgs")
_CANONICAL_CGS = {"length": KPC_CM, "mass": MSUN_G, "velocity": KMS_CMS}
_CANONICAL_NAME = {"length": "kpc", "mass": "Msun", "velocity": "km/s"}
_NUMBERED = re.compile(r"^(?P<stem>.+)\.(?P<index>\d+)\.hdf5$")
_FIELDS = ("Coordinates", "Velocities", "ParticleIDs", "Masses")


@dataclass(frozen=True)
class SnapshotHeader:
    """A checked snapshot: its files, type-1 rows, time, box and the conversions to canonical units.

    ``length_kpc``, ``velocity_kms`` and ``mass_msun`` multiply the stored ``Coordinates``,
    ``Velocities`` and ``Masses`` / ``MassTable`` values into physical kpc, peculiar km/s and Msun
    (a and h folded in); ``box`` is ``BoxSize`` in the stored (comoving) units of ``Coordinates``.
    ``particle_mass_msun`` is None when the masses are per particle (``PartType1/Masses``).
    ``conversions`` says, per field, what was read and how it is converted (stored in each chunk's
    ``snapshot_conversions`` attribute).
    """

    paths: tuple[Path, ...]
    counts: tuple[int, ...]
    n_particles: int
    redshift: float
    scale_factor: float
    hubble: float
    box: float
    length_kpc: float
    velocity_kms: float
    mass_msun: float
    particle_mass_msun: float | None
    conversions: dict[str, str] = field(default_factory=dict)

    @property
    def box_kpc(self) -> float:
        """The box side in physical kpc."""
        return self.box * self.length_kpc

    @property
    def name(self) -> str:
        """The first file, and how many there are: for messages and attributes."""
        more = f" (+{len(self.paths) - 1} more files)" if len(self.paths) > 1 else ""
        return f"{self.paths[0]}{more}"


# -- the header -------------------------------------------------------------------------------------


def _checked_file(path: Path) -> None:
    check_hdf5_path(
        path,
        "a Gadget-HDF5 snapshot (Header, PartType1/Coordinates, Velocities, ParticleIDs) as Gadget-4, Arepo, SWIFT "
        "and IllustrisTNG write them",
    )


def _group_attrs(handle: h5py.File, name: str) -> dict[str, Any]:
    group = handle.get(name)
    return dict(group.attrs) if isinstance(group, h5py.Group) else {}


def _per_type(value: Any, where: str, checks: dict[str, Any]) -> np.ndarray:
    if np.ndim(value) != 1 or np.size(value) < 2:
        raise HaloCatalogError(f"{where} = {value!r}; expected one value per particle type (6)")
    return checked_values(value, where, **checks)


def _read_file(path: Path) -> dict[str, Any]:
    """The raw header fields, unit groups and type-1 dataset shapes, dtypes and unit attributes of one file."""
    _checked_file(path)
    with _open(path) as handle:
        header = handle.get("Header")
        if not isinstance(header, h5py.Group):
            raise HaloCatalogError(
                f"{path}: no Header group; not a Gadget-HDF5 snapshot (Gadget-4, Arepo, SWIFT, IllustrisTNG)"
            )
        info: dict[str, Any] = {"header": dict(header.attrs)}
        for group in ("Parameters", "Units", "Cosmology"):
            info[group] = _group_attrs(handle, group)
        part = handle.get("PartType1")
        datasets = {}
        if isinstance(part, h5py.Group):
            for name in _FIELDS:
                if isinstance(part.get(name), h5py.Dataset):
                    d = part[name]
                    keep = {k: d.attrs[k] for k in (*_SWIFT_ATTRS, *_AREPO_ATTRS) if k in d.attrs}
                    datasets[name] = (d.shape, d.dtype, keep)
        info["datasets"] = datasets
        info["has_part"] = isinstance(part, h5py.Group)
    return info


def _header_number(header: dict[str, Any], name: str, path: Path, group: str = "Header", **checks: Any) -> float:
    return checked_number(header[name], f"{path}: {group} attribute {name}", **(checks or HEADER_CHECKS[name]))


def _is_swift(info: dict[str, Any]) -> bool:
    code = info["header"].get("Code")
    if isinstance(code, (bytes, np.bytes_)):
        code = bytes(code).decode("utf-8", errors="replace")
    return str(code).strip() == "SWIFT" or bool(info["Units"])


def _file_values(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The checked header numbers of one file."""
    header = info["header"]
    missing = [n for n in ("NumPart_ThisFile", "NumPart_Total", "BoxSize", "Redshift") if n not in header]
    if "Scale-factor" not in header and "Time" not in header:
        missing.append("Time")
    if missing:
        raise HaloCatalogError(
            f"{path}: Header attribute(s) {missing} missing; a Gadget-HDF5 snapshot header has NumPart_ThisFile, "
            "NumPart_Total, BoxSize, Redshift and Time"
        )
    out: dict[str, Any] = {}
    out["n_files"] = int(_header_number(header, "NumFilesPerSnapshot", path)) if "NumFilesPerSnapshot" in header else 1
    this = _per_type(
        header["NumPart_ThisFile"], f"{path}: Header attribute NumPart_ThisFile", HEADER_CHECKS["NumPart_ThisFile"]
    )
    total = _per_type(
        header["NumPart_Total"], f"{path}: Header attribute NumPart_Total", HEADER_CHECKS["NumPart_Total"]
    )
    out["this"] = int(this[1])
    high_name = next((n for n in ("NumPart_Total_HighWord", "NumPart_HighWord") if n in header), None)
    high = 0
    if high_name is not None:
        high = int(
            _per_type(
                header[high_name], f"{path}: Header attribute {high_name}", HEADER_CHECKS["NumPart_Total_HighWord"]
            )[1]
        )
    low = int(total[1])
    if low >= 2**32:  # a 64-bit total (Gadget-4): the high word, if any, repeats its upper bits
        if high not in (0, low >> 32):
            raise HaloCatalogError(
                f"{path}: Header NumPart_Total[1] = {low} (above 2^32) but {high_name}[1] = {high}; expected "
                f"0 or {low >> 32}: the header is inconsistent"
            )
        out["total"] = low
    else:
        out["total"] = low + (high << 32)
    box = np.asarray(header["BoxSize"])
    where = f"{path}: Header attribute BoxSize"
    if box.size == 3 and box.ndim == 1:  # SWIFT: one side per axis
        sides = checked_values(box, where, **HEADER_CHECKS["BoxSize"])
        if not np.allclose(sides, sides[0], rtol=1e-9, atol=0.0):
            raise HaloCatalogError(f"{where} = {sides.tolist()}; expected a cubic box (three equal sides)")
        out["box"] = float(sides[0])
    else:
        out["box"] = checked_number(header["BoxSize"], where, **HEADER_CHECKS["BoxSize"])
    out["redshift"] = _header_number(header, "Redshift", path)
    if "Scale-factor" in header:
        out["a"] = _header_number(header, "Scale-factor", path, low=0.0, low_open=True, high=2.0)
        out["a_field"] = "Header/Scale-factor"
    else:
        out["a"] = _header_number(header, "Time", path)
        out["a_field"] = "Header/Time"
    for group, key in (("Header", "HubbleParam"), ("Parameters", "HubbleParam"), ("Cosmology", "h")):
        values = info[group] if group != "Header" else header
        if key in values:
            out["hubble"] = _header_number(values, key, path, group, **HEADER_CHECKS["HubbleParam"])
            out["hubble_field"] = f"{group}/{key}"
            break
    else:
        raise HaloCatalogError(
            f"{path}: no Hubble parameter: Header/HubbleParam (Gadget-2, Arepo), Parameters/HubbleParam "
            "(Gadget-4) and Cosmology/h (SWIFT) are all missing"
        )
    out["mass_table"] = 0.0
    if "MassTable" in header:
        out["mass_table"] = float(
            _per_type(header["MassTable"], f"{path}: Header attribute MassTable", HEADER_CHECKS["MassTable"])[1]
        )
    return out


def _check_datasets(path: Path, info: dict[str, Any], rows: int, masses: bool) -> None:
    """Every type-1 dataset needed, with ``rows`` rows of the right shape and type."""
    if rows == 0:
        return
    if not info["has_part"]:
        raise HaloCatalogError(
            f"{path}: no PartType1 group but Header NumPart_ThisFile[1] = {rows}; expected the dark-matter "
            "particles in PartType1 (the file is truncated or not a snapshot)"
        )
    needed = {"Coordinates": ((rows, 3), "f"), "Velocities": ((rows, 3), "f"), "ParticleIDs": ((rows,), "iu")}
    if masses:
        needed["Masses"] = ((rows,), "f")
    for name, (shape, kinds) in needed.items():
        if name not in info["datasets"]:
            why = " (Header MassTable[1] is 0 or absent: masses per particle)" if name == "Masses" else ""
            raise HaloCatalogError(f"{path}: field PartType1/{name} is missing{why}; expected shape {shape}")
        found, dtype, _ = info["datasets"][name]
        if tuple(found) != shape or dtype.kind not in kinds:
            what = "floating-point" if kinds == "f" else "integer"
            raise HaloCatalogError(
                f"{path}: field PartType1/{name} has shape {tuple(found)} and dtype {dtype}; expected shape {shape} "
                f"({what}), Header NumPart_ThisFile[1] = {rows}"
            )


def _snapshot_paths(snapshot: PathLike | Sequence[PathLike]) -> tuple[list[Path], bool]:
    """The files of the snapshot, and whether the caller listed them."""
    if isinstance(snapshot, (str, os.PathLike)):
        path = Path(snapshot)
        if path.is_dir():
            files = sorted(path.glob("*.hdf5"))
            firsts = [p for p in files if (m := _NUMBERED.match(p.name)) and int(m["index"]) == 0]
            if len(firsts) == 1:
                return [firsts[0]], False
            if len(files) == 1:
                return files, False
            names = [p.name for p in files[:5]]
            raise HaloCatalogError(
                f"{path}: a folder with {len(files)} .hdf5 file(s) {names} and {len(firsts)} numbered set(s); expected "
                "one snapshot file or one set <stem>.0.hdf5, <stem>.1.hdf5, ...: give the snapshot's first file"
            )
        return [path], False
    paths = [Path(p) for p in snapshot]
    if not paths:
        raise HaloCatalogError("snapshot: no files given; expected a Gadget-HDF5 snapshot file or its files in order")
    return paths, True


def _expand(path: Path, n_files: int) -> list[Path]:
    """All files of the set that ``path`` (one of them) belongs to, checked to exist."""
    match = _NUMBERED.match(path.name)
    if match is None:
        raise HaloCatalogError(
            f"{path}: Header NumFilesPerSnapshot = {n_files} but the name is not <stem>.<number>.hdf5; give the "
            "files of the set as a list, in order"
        )
    return _check_num_files(path.parent, f"{match['stem']}.{{}}.hdf5", n_files, "NumFilesPerSnapshot", path)


def _snap_unit(cgs: float, kind: str) -> tuple[float, str]:
    """``cgs`` (a unit in cm, g or cm/s) in kpc, Msun or km/s, snapped to a power of ten within UNIT_SNAP."""
    value = cgs / _CANONICAL_CGS[kind]
    power = 10.0 ** round(math.log10(value))
    if abs(value / power - 1.0) <= UNIT_SNAP:
        return (
            power,
            f"{cgs:.7g} {dict(length='cm', mass='g', velocity='cm/s')[kind]} = {power:g} {_CANONICAL_NAME[kind]}",
        )
    return (
        value,
        f"{cgs:.7g} {dict(length='cm', mass='g', velocity='cm/s')[kind]} = {value:.10g} {_CANONICAL_NAME[kind]}",
    )


def _unit_system(path: Path, info: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The length, mass and velocity units in cgs, and where each came from."""
    units: dict[str, float] = {}
    source: dict[str, str] = {}
    for group, length, mass, third in UNIT_FIELDS:
        values = info[group] if group != "Header" else info["header"]
        for kind, name in (("length", length), ("mass", mass), ("velocity", third)):
            if kind in units or name not in values:
                continue
            where = f"{path}: {group} attribute {name}"
            value = checked_number(values[name], where, low=0.0, low_open=True)
            if group == "Units" and kind == "velocity":  # SWIFT gives a time unit: velocity = U_L / U_t
                if length not in values:
                    raise HaloCatalogError(
                        f"{path}: Units attribute {name} without {length}; cannot form a velocity unit"
                    )
                value = (
                    checked_number(values[length], f"{path}: Units attribute {length}", low=0.0, low_open=True) / value
                )
                name = f"{length} / {name}"
            units[kind] = value
            source[kind] = f"{group}/{name}"
    for kind, value in GADGET_DEFAULT_UNITS.items():
        if kind not in units:
            units[kind] = value
            source[kind] = (
                "absent: Gadget's default " + {"length": "1 kpc", "mass": "1e10 Msun", "velocity": "1 km/s"}[kind]
            )
    return units, source


def _conversion(
    path: Path, info: dict[str, Any], name: str, units: dict[str, float], source: dict[str, str], a: float, h: float
) -> tuple[float, str]:
    """The factor from stored ``name`` values to canonical physical units, and its description."""
    kind, p, q = GADGET_CONVENTION[name]
    attrs = info["datasets"][name][2] if name in info["datasets"] else {}
    where = f"{path}: PartType1/{name} attribute"
    if all(k in attrs for k in _SWIFT_ATTRS):
        p = checked_number(attrs[_SWIFT_ATTRS[0]], f"{where} {_SWIFT_ATTRS[0]!r}")
        q = checked_number(attrs[_SWIFT_ATTRS[1]], f"{where} {_SWIFT_ATTRS[1]!r}")
        cgs = checked_number(attrs[_SWIFT_ATTRS[2]], f"{where} {_SWIFT_ATTRS[2]!r}", low=0.0, low_open=True)
        unit, said = _snap_unit(cgs, kind)
        how = f"SWIFT attributes: a^{p:g} h^{q:g} x {said}"
    elif all(k in attrs for k in _AREPO_ATTRS):
        p = checked_number(attrs["a_scaling"], f"{where} a_scaling")
        q = checked_number(attrs["h_scaling"], f"{where} h_scaling")
        cgs = checked_number(attrs["to_cgs"], f"{where} to_cgs", low=0.0)
        unit, said = _snap_unit(cgs or units[kind], kind)
        how = f"a_scaling/h_scaling/to_cgs attributes: a^{p:g} h^{q:g} x {said}" + (
            f" ({source[kind]}; to_cgs = 0)" if cgs == 0 else ""
        )
    elif _is_swift(info):
        raise HaloCatalogError(
            f"{path}: a SWIFT snapshot whose PartType1/{name} has no {list(_SWIFT_ATTRS)} attributes; expected them "
            "(SWIFT writes them on every field): cannot tell the conventions"
        )
    else:
        unit, said = _snap_unit(units[kind], kind)
        how = f"Gadget convention: a^{p:g} h^{q:g} x {said} ({source[kind]})"
    return unit * a**p * h**q, how


def read_snapshot_header(snapshot: PathLike | Sequence[PathLike] | SnapshotHeader) -> SnapshotHeader:
    """Read and check a Gadget-HDF5 snapshot's headers, files and type-1 datasets (no particle data).

    ``snapshot``: one file, the folder of a numbered set, any file of the set ``<stem>.<i>.hdf5``
    (the others are found from ``NumFilesPerSnapshot``), or the list of its files in order. What is
    read and how it is converted: this module's docstring. Reads only attributes and dataset shapes,
    so it is quick on any snapshot. Raises :class:`~sims.halos.catalog.HaloCatalogError` naming the
    file, the field and the expectation: missing file, not HDF5, no Header, missing or bad header
    fields, a missing file of a set, headers that disagree between files, counts that do not add
    up, missing PartType1 datasets or wrong shapes, a SWIFT file without unit attributes.
    """
    if isinstance(snapshot, SnapshotHeader):
        return snapshot
    paths, listed = _snapshot_paths(snapshot)
    given = paths[0]
    first_info = _read_file(given)
    first = _file_values(given, first_info)
    n_files = first["n_files"]
    if listed:
        if len(paths) != n_files:
            raise HaloCatalogError(
                f"{paths[0]}: Header NumFilesPerSnapshot = {n_files} but {len(paths)} file(s) were given; give every "
                "file of the snapshot, in order"
            )
    elif n_files > 1:
        paths = _expand(paths[0], n_files)
    if len(set(p.resolve() for p in paths)) != len(paths):
        raise HaloCatalogError(f"{paths[0]}: a file is given twice in {[str(p) for p in paths]}")
    infos, values = [], []
    for k, path in enumerate(paths):
        info = first_info if path == given else _read_file(path)
        v = first if path == given else _file_values(path, info)
        if v["n_files"] != n_files:
            raise HaloCatalogError(
                f"{path}: Header NumFilesPerSnapshot = {v['n_files']} but {given} says {n_files}; files of "
                "different snapshots are mixed"
            )
        for key, label in (("total", "NumPart_Total[1]"), ("redshift", "Redshift"), ("box", "BoxSize"),
                           ("hubble", "HubbleParam"), ("mass_table", "MassTable[1]"), ("a", first["a_field"])):  # fmt: skip
            if not np.isclose(v[key], first[key], rtol=1e-6, atol=0.0):
                raise HaloCatalogError(
                    f"{path}: Header {label} = {v[key]!r} but {given} has {first[key]!r}; the headers are inconsistent "
                    "(files of different snapshots mixed?)"
                )
        _check_datasets(path, info, v["this"], first["mass_table"] <= 0)
        infos.append(info)
        values.append(v)
    total = first["total"]
    if total == 0:
        raise HaloCatalogError(
            f"{paths[0]}: Header NumPart_Total[1] = 0; the snapshot has no dark-matter (PartType1) particles"
        )
    counts = [v["this"] for v in values]
    if sum(counts) != total:
        raise HaloCatalogError(
            f"{paths[0]}: Header NumPart_ThisFile[1] sums to {sum(counts)} over {len(paths)} file(s) but NumPart_Total[1] "
            f"(with the high word) = {total}; a file is missing or from another snapshot"
        )
    masses = first["mass_table"] <= 0
    z, a, h = first["redshift"], first["a"], first["hubble"]
    checked_redshift(z, f"{given}: Header attribute Redshift")  # warns below 0
    if not np.isclose(a, 1.0 / (1.0 + z), rtol=1e-5, atol=0.0):
        raise HaloCatalogError(
            f"{given}: {first['a_field']} = {a!r} but Header Redshift = {z!r} gives a = {1.0 / (1.0 + z):.8g}; "
            "expected the scale factor 1 / (1 + Redshift) (a cosmological snapshot)"
        )
    k = next(i for i, rows in enumerate(counts) if rows > 0)  # the unit attributes of the first file with rows
    units, source = _unit_system(given, first_info)
    length, how_x = _conversion(paths[k], infos[k], "Coordinates", units, source, a, h)
    velocity, how_v = _conversion(paths[k], infos[k], "Velocities", units, source, a, h)
    mass, how_m = _conversion(paths[k], infos[k], "Masses", units, source, a, h)
    conversions = {
        "files": f"{len(paths)}: {paths[0]}" + (f" ... {paths[-1].name}" if len(paths) > 1 else ""),
        "scale_factor": f"{first['a_field']} = {a!r} (Redshift = {z!r})",
        "hubble": f"{first['hubble_field']} = {h!r}",
        "PartType1/Coordinates": f"-> particle_position (kpc): x {length!r}; {how_x}",
        "Header/BoxSize": f"{first['box']!r} in the units of Coordinates -> {first['box'] * length!r} kpc",
        "PartType1/Velocities": f"-> particle_velocity (km/s, peculiar): x {velocity!r}; {how_v}",
    }
    if masses:
        conversions["PartType1/Masses"] = f"-> particle_mass (Msun): x {mass!r}; {how_m}"
    else:
        conversions["Header/MassTable[1]"] = f"{first['mass_table']!r} -> particle_mass (Msun): x {mass!r}; {how_m}"
    return SnapshotHeader(
        paths=tuple(paths),
        counts=tuple(counts),
        n_particles=total,
        redshift=z,
        scale_factor=a,
        hubble=h,
        box=first["box"],
        length_kpc=length,
        velocity_kms=velocity,
        mass_msun=mass,
        particle_mass_msun=None if masses else first["mass_table"] * mass,
        conversions=conversions,
    )


# -- pass 1: slabs of the snapshot against the halo centres ----------------------------------------------


@dataclass(frozen=True)
class _Slabs:
    """What a slab task needs (pickled to worker processes): the files and the halos in snapshot units."""

    paths: tuple[Path, ...]
    counts: tuple[int, ...]
    box: float
    centres: np.ndarray  # (halo, 3), comoving snapshot units, in [0, box)
    radii: np.ndarray  # (halo,), R200m in snapshot units
    record: np.dtype
    masses: bool


def _record_dtype(header: SnapshotHeader) -> tuple[np.dtype, bool]:
    """One (halo, particle) pair: halo index, particle ID and the stored values in their own types."""
    path = header.paths[next(i for i, rows in enumerate(header.counts) if rows > 0)]
    with _open(path) as handle:
        part = handle["PartType1"]
        types = {n: part[n].dtype.newbyteorder("=") for n in _FIELDS if n in part}
    masses = header.particle_mass_msun is None
    fields = [("halo", np.int64), ("id", types["ParticleIDs"]), ("x", types["Coordinates"], (3,))]
    fields.append(("v", types["Velocities"], (3,)))
    if masses:
        fields.append(("m", types["Masses"]))
    return np.dtype(fields), masses


def _wrapped(values: np.ndarray, box: float) -> np.ndarray:
    """``values`` into [0, box) (np.mod may round a tiny negative up to ``box``)."""
    out = np.mod(values, box)
    out[out >= box] = 0.0
    return out


def _gap(centres: np.ndarray, low: np.ndarray, high: np.ndarray, box: float) -> np.ndarray:
    """Periodic distance, per axis, from each centre to the interval [low, high] of a slab's bounding box."""
    up = np.mod(low - centres, box)  # from the centre forward to the low edge
    down = np.mod(centres - high, box)  # from the high edge forward to the centre
    inside = (centres >= low) & (centres <= high)
    return np.where(inside, 0.0, np.minimum(up, down))


def _slab_pairs(spec: _Slabs, lo: int, hi: int) -> np.ndarray:
    """The (halo, particle) records of snapshot rows ``lo:hi``: every particle within R200m of a centre."""
    files = _SplitFiles(list(spec.paths), {"PartType1": np.array(spec.counts)}, {"PartType1": "NumPart_ThisFile[1]"})
    raw = files.read_range("PartType1", "Coordinates", lo, hi)
    box = spec.box
    out_of_box = (raw < -box) | (raw >= 2.0 * box)
    if out_of_box.any():
        row = lo + int(np.flatnonzero(out_of_box.any(axis=1))[0])
        k = int(np.searchsorted(np.cumsum(spec.counts), row, side="right"))
        local = row - int(sum(spec.counts[:k]))
        raise HaloCatalogError(
            f"{spec.paths[k]}: PartType1/Coordinates row {local} = {raw[row - lo].tolist()} lies more than a box "
            f"outside [0, BoxSize = {box!r}); expected Coordinates in the units of Header BoxSize"
        )
    x = _wrapped(raw.astype(np.float64), box)
    near = (_gap(spec.centres, x.min(axis=0), x.max(axis=0), box) ** 2).sum(axis=1) <= spec.radii**2
    halos = np.flatnonzero(near)
    if halos.size == 0:
        return np.zeros(0, spec.record)
    tree = cKDTree(x, leafsize=32, boxsize=box, balanced_tree=False, compact_nodes=False, copy_data=False)
    found = tree.query_ball_point(spec.centres[halos], r=spec.radii[halos], return_sorted=False)
    del tree, x
    lengths = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
    rows = np.fromiter(chain.from_iterable(found), dtype=np.int64, count=int(lengths.sum()))
    del found
    records = np.empty(rows.size, spec.record)
    if rows.size == 0:
        return records
    records["halo"] = np.repeat(halos, lengths)
    records["x"] = raw[rows]
    del raw
    records["v"] = files.read_range("PartType1", "Velocities", lo, hi)[rows]
    records["id"] = files.read_range("PartType1", "ParticleIDs", lo, hi)[rows]
    if spec.masses:
        records["m"] = files.read_range("PartType1", "Masses", lo, hi)[rows]
    return records


# -- the catalog's halos ------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    """One input chunk: its per-halo arrays, their attributes, its attributes and its first global halo."""

    halos: dict[str, np.ndarray]
    var_attrs: dict[str, dict[str, Any]]
    attrs: dict[str, Any]
    start: int

    @property
    def size(self) -> int:
        return int(self.halos["halo_id"].size)


def _collect(
    chunks: Iterable[xr.Dataset], header: SnapshotHeader, catalog: str | None, tolerance: float
) -> list[_Chunk]:
    """Every chunk's halos (O(halos) memory), checked: no particles, canonical, same time and box as the snapshot."""
    out: list[_Chunk] = []
    start = 0
    for index, chunk in enumerate(chunks):
        name = catalog or "halo catalog"
        where = f"{name} (chunk {index})"
        if not isinstance(chunk, xr.Dataset):
            raise HaloCatalogError(f"{where} is a {type(chunk).__name__}, expected an xarray Dataset ({HALOS_KIND})")
        particle_vars = [str(n) for n in chunk.data_vars if str(n).startswith("particle_")]
        if has_particles(chunk) or particle_vars or chunk.sizes.get("particle", 0):
            raise HaloCatalogError(
                f"{where}: already holds particles ({particle_vars}); attach_snapshot_particles takes a catalog of "
                "halo properties only"
            )
        problems = check_dataset(chunk, HALOS_KIND)
        if problems:
            raise HaloCatalogError(f"{where}: " + "; ".join(problems))
        z = checked_number(chunk.attrs.get("redshift"), f"{where}: attribute redshift")
        a_cat = 1.0 / (1.0 + z)
        if abs(a_cat / header.scale_factor - 1.0) > tolerance:
            raise HaloCatalogError(
                f"{header.paths[0]}: Header Redshift = {header.redshift:.6g} (a = {header.scale_factor:.6g}) but {name} "
                f"has redshift {z:.6g} (a = {a_cat:.6g}); expected the same time to {tolerance:g} in a: the catalog "
                "and the snapshot are of different outputs"
            )
        if chunk.attrs.get("box_size_kpc") is not None:
            box = checked_number(chunk.attrs["box_size_kpc"], f"{where}: attribute box_size_kpc")
            if abs(box / header.box_kpc - 1.0) > BOX_TOLERANCE:
                raise HaloCatalogError(
                    f"{header.paths[0]}: Header BoxSize = {header.box!r} is {header.box_kpc:.8g} kpc (physical) but {name} "
                    f"has box_size_kpc = {box:.8g}; expected the same box to {BOX_TOLERANCE:g}: the catalog and the "
                    "snapshot are of different simulations"
                )
        if "particle_mass_msun" in chunk.attrs and header.particle_mass_msun is not None:
            mass = checked_number(chunk.attrs["particle_mass_msun"], f"{where}: attribute particle_mass_msun")
            if abs(mass / header.particle_mass_msun - 1.0) > 1e-2:
                raise HaloCatalogError(
                    f"{header.paths[0]}: Header MassTable[1] is {header.particle_mass_msun:.6g} Msun but {name} has "
                    f"particle_mass_msun = {mass:.6g}; expected the same to 1 %: different simulations"
                )
        halos = {str(n): np.asarray(chunk[n].values) for n in chunk.data_vars if chunk[n].dims[:1] == ("halo",)}
        var_attrs = {n: {k: v for k, v in chunk[n].attrs.items() if k != "units"} for n in halos}
        out.append(_Chunk(halos, var_attrs, dict(chunk.attrs), start))
        start += out[-1].size
    if not out or start == 0:
        raise HaloCatalogError(f"{catalog or 'halo catalog'}: no halos to attach particles to")
    return out


# -- the function -------------------------------------------------------------------------------------------


def attach_snapshot_particles(
    chunks: Iterable[xr.Dataset],
    snapshot: PathLike | Sequence[PathLike] | SnapshotHeader,
    *,
    chunk_particles: int = DEFAULT_CHUNK_PARTICLES,
    drop_empty: bool = False,
    scratch: PathLike | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    redshift_tolerance: float = REDSHIFT_TOLERANCE,
    catalog: str | None = None,
) -> Iterator[xr.Dataset]:
    """``halos.catalog`` chunks without particles, given every halo's type-1 particles within R200m.

    ``chunks``: the catalog as the readers yield it (checked ``halos.catalog`` datasets of halo
    properties, canonical units); they are read once, keeping O(halos) arrays. ``snapshot``: a
    Gadget-HDF5 snapshot (see :func:`read_snapshot_header`, whose result may be passed instead); its
    redshift must match each chunk's ``redshift`` attribute to ``redshift_tolerance`` in the scale
    factor, and its physical box each chunk's ``box_size_kpc`` (when given) to 1e-4. ``catalog``
    names the catalog in messages.

    Yields checked ``halos.catalog`` chunks in the input's halo order: each input chunk's halos, split
    so a chunk holds at most ``chunk_particles`` particles (a heavier halo makes a chunk of its own),
    with ``particle_count``, ``particle_offset`` (local), ``particle_position`` (physical kpc,
    unwrapped around ``position``), ``particle_velocity`` (physical peculiar km/s) and
    ``particle_mass`` (Msun), sorted by particle ID within each halo; a particle within R200m of
    several halos belongs to each. Attributes: the input chunk's (those summed over chunks,
    :data:`sims.halos.readers.SUMMED_ATTRS`, on its first output chunk only), ``box_size_kpc`` from
    the snapshot when the catalog had none, ``particle_mass_msun`` when ``MassTable[1]`` gives it,
    and ``particles_source``, ``snapshot_redshift``, ``snapshot_hubble``, ``snapshot_conversions``
    (JSON), ``particles_within``.

    A halo without a particle within R200m raises :class:`~sims.halos.catalog.HaloCatalogError`
    naming its id, before any chunk is yielded; with ``drop_empty`` it is left out and counted in the
    attribute ``dropped_empty_halos``. The same error is raised for a halo with R200m of half the box
    or more, for halo ids repeated across chunks, and (when its chunk is built) for a particle ID
    repeated within a halo.

    Work and memory (the design: this module's docstring): the snapshot is read once in slabs of
    ``chunk_particles`` rows, ``workers`` (default: the usable cores) slab tasks at a time on dask:
    ``scheduler`` None uses the scheduler in effect (inside ``pipeline.cluster.dask_scheduler(...)``,
    or a distributed Client) and otherwise a pool of ``workers`` processes (cKDTree holds the GIL
    while it builds, so threads do not run slabs in parallel); ``"processes"``, ``"threads"``,
    ``"synchronous"`` or a distributed Client choose. The records found go to a temporary folder in
    ``scratch`` (default: the system's temporary folder), removed when the generator finishes or is
    closed. The snapshot header is read and checked when this is called; the rest when the first
    chunk is asked for.
    """
    if not isinstance(chunk_particles, (int, np.integer)) or chunk_particles < 1:
        raise ValueError(f"chunk_particles must be a positive integer, got {chunk_particles!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not 0 < redshift_tolerance < 1:
        raise ValueError(f"redshift_tolerance must be in (0, 1), got {redshift_tolerance!r}")
    header = read_snapshot_header(snapshot)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _attach(
        chunks, header, int(chunk_particles), drop_empty, scratch, scheduler, int(workers), redshift_tolerance, catalog
    )


def _attach(
    chunks: Iterable[xr.Dataset],
    header: SnapshotHeader,
    chunk_particles: int,
    drop_empty: bool,
    scratch: PathLike | None,
    scheduler: Any,
    workers: int,
    tolerance: float,
    catalog: str | None,
) -> Iterator[xr.Dataset]:
    inputs = _collect(chunks, header, catalog, tolerance)
    ids = np.concatenate([c.halos["halo_id"] for c in inputs]).astype(np.int64)
    unique, repeats = np.unique(ids, return_counts=True)
    if (repeats > 1).any():
        raise HaloCatalogError(
            f"{catalog or 'halo catalog'}: halo_id: ids repeat across chunks ({unique[repeats > 1][:5].tolist()})"
        )
    centres_kpc = np.concatenate([c.halos["position"] for c in inputs]).astype(np.float64)
    radii_kpc = np.concatenate([c.halos["R200m"] for c in inputs]).astype(np.float64)
    radii = radii_kpc / header.length_kpc
    big = radii >= header.box / 2
    if big.any():
        raise HaloCatalogError(
            f"{catalog or 'halo catalog'}: R200m of halo_id {ids[big][:5].tolist()} is half the snapshot's box "
            f"({header.box_kpc / 2:.6g} kpc) or more; the nearest periodic image is then ambiguous"
        )
    record, masses = _record_dtype(header)
    spec = _Slabs(
        header.paths,
        header.counts,
        header.box,
        _wrapped(centres_kpc / header.length_kpc, header.box),
        radii,
        record,
        masses,
    )
    buckets = _plan_buckets(inputs, header, chunk_particles)
    with tempfile.TemporaryDirectory(prefix="eqs-snapshot-", dir=scratch) as folder:
        counts = _pass_one(spec, header, buckets, Path(folder), chunk_particles, scheduler, workers)
        empty = counts == 0
        if empty.all():
            raise HaloCatalogError(
                f"{header.name}: none of the {ids.size} halos of {catalog or 'the halo catalog'} has a PartType1 particle "
                "within R200m of its centre; are the catalog and the snapshot of the same simulation?"
            )
        if empty.any() and not drop_empty:
            raise HaloCatalogError(
                f"{catalog or 'halo catalog'}: particle_count: {int(empty.sum())} halo(s) without a particle within R200m "
                f"in {header.name} (halo_id {ids[empty][:5].tolist()}); are the catalog and the snapshot of one simulation? (--drop-empty leaves such halos out)"
            )
        yield from _pass_two(
            inputs, header, buckets, Path(folder), counts, centres_kpc, spec, chunk_particles, drop_empty
        )


def _plan_buckets(inputs: list[_Chunk], header: SnapshotHeader, chunk_particles: int) -> np.ndarray:
    """Start halo of each bucket (and the end), within the input chunks, from the expected particle counts."""
    starts = []
    for chunk in inputs:
        if header.particle_mass_msun is not None:
            expected = np.ceil(chunk.halos["M200m"] / header.particle_mass_msun).astype(np.int64)
        else:
            expected = np.ones(chunk.size, dtype=np.int64)
        starts += [chunk.start + i0 for i0, _, _, _ in chunk_bounds(expected, chunk.size, chunk_particles)]
    return np.array([*starts, inputs[-1].start + inputs[-1].size], dtype=np.int64)


def _compute(tasks: list[Any], scheduler: Any, workers: int, pool: ProcessPoolExecutor | None) -> tuple[Any, ...]:
    if pool is not None:
        # chunksize 1: dask's process scheduler otherwise hands up to 6 ready tasks to one worker at once
        return dask.compute(*tasks, scheduler="processes", pool=pool, chunksize=1)
    if scheduler is None:
        return dask.compute(*tasks)  # the scheduler in effect (a caller's context or distributed Client)
    if scheduler == "threads":
        return dask.compute(*tasks, scheduler="threads", num_workers=workers)
    return dask.compute(*tasks, scheduler=scheduler)


def _pass_one(
    spec: _Slabs,
    header: SnapshotHeader,
    buckets: np.ndarray,
    folder: Path,
    chunk_particles: int,
    scheduler: Any,
    workers: int,
) -> np.ndarray:
    """Read the snapshot slab by slab; append each slab's records to its buckets' files; the count per halo."""
    n_halos = int(buckets[-1])
    bucket_of = np.repeat(np.arange(buckets.size - 1), np.diff(buckets))
    counts = np.zeros(n_halos, dtype=np.int64)
    slabs = [
        (lo, min(lo + chunk_particles, header.n_particles)) for lo in range(0, header.n_particles, chunk_particles)
    ]
    in_process = scheduler is None and dask.config.get("scheduler", None) is not None
    pool = None
    if scheduler == "processes" or (scheduler is None and not in_process):
        context = get_context(dask.config.get("multiprocessing.context", "spawn"))
        pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        for first in range(0, len(slabs), workers):  # one slab per worker at a time: bounded memory
            tasks = [dask.delayed(_slab_pairs, pure=False)(spec, lo, hi) for lo, hi in slabs[first : first + workers]]
            results = list(_compute(tasks, scheduler, workers, pool))
            while results:
                records = results.pop()
                if records.size:
                    counts += np.bincount(records["halo"], minlength=n_halos)
                    _spill(records, bucket_of, folder)
                del records
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return counts


def _bucket_file(folder: Path, bucket: int) -> Path:
    return folder / f"bucket-{bucket:08d}.bin"


def _spill(records: np.ndarray, bucket_of: np.ndarray, folder: Path) -> None:
    """Append records to their buckets' files (raw, in the record dtype)."""
    ensure_room(folder / "bucket", records.nbytes)
    bucket = bucket_of[records["halo"]]
    if (np.diff(bucket) < 0).any():  # a slab's records come in halo order; sort only if they do not
        order = np.argsort(bucket, kind="stable")
        records, bucket = records[order], bucket[order]
    cuts = [0, *(np.flatnonzero(np.diff(bucket)) + 1).tolist(), records.size]
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        with open(_bucket_file(folder, int(bucket[start])), "ab") as handle:
            records[start:stop].tofile(handle)


# -- pass 2: buckets back in halo order -----------------------------------------------------------------


def _read_records(path: Path, dtype: np.dtype) -> np.ndarray:
    if not path.exists():
        return np.zeros(0, dtype)
    return np.fromfile(path, dtype=dtype)


def _split_bucket(path: Path, dtype: np.dtype, edges: np.ndarray, folder: Path, chunk_particles: int) -> list[Path]:
    """Stream a bucket file into one file per halo range [edges[k], edges[k + 1]); bounded by ``chunk_particles``."""
    parts = [folder / f"{path.stem}-{k:06d}.bin" for k in range(edges.size - 1)]
    with open(path, "rb") as source:
        while True:
            block = np.fromfile(source, dtype=dtype, count=chunk_particles)
            if block.size == 0:
                break
            which = np.searchsorted(edges, block["halo"], side="right") - 1
            order = np.argsort(which, kind="stable")
            block, which = block[order], which[order]
            cuts = np.flatnonzero(np.diff(which)) + 1
            for rows in np.split(np.arange(block.size), cuts):
                with open(parts[int(which[rows[0]])], "ab") as handle:
                    block[rows[0] : rows[-1] + 1].tofile(handle)
    path.unlink()
    return parts


@dataclass
class _Piece:
    """One output chunk: halos [i0, i1) of input chunk ``chunk``, from bucket ``bucket``, and its summed attributes."""

    chunk: int
    bucket: int
    i0: int
    i1: int
    summed: dict[str, int]
    empty: bool


def _pieces(inputs: list[_Chunk], buckets: np.ndarray, counts: np.ndarray, chunk_particles: int, drop_empty: bool):
    """Every output chunk, planned from the counts before any is built, with the attributes summed over
    chunks (the input's on its first piece, the halos dropped here) moved off pieces left empty onto
    the next piece that has halos, or the last one."""
    pieces: list[_Piece] = []
    b = 0
    for k, chunk in enumerate(inputs):
        inherited = {key: int(chunk.attrs[key]) for key in SUMMED_ATTRS if key in chunk.attrs}
        while b < buckets.size - 1 and buckets[b] < chunk.start + chunk.size:
            lo, hi = int(buckets[b]), int(buckets[b + 1])
            for i0, i1, _, _ in chunk_bounds(counts[lo:hi], hi - lo, chunk_particles):
                kept = counts[lo + i0 : lo + i1] > 0
                summed = dict(inherited)
                inherited = {key: 0 for key in inherited}
                if drop_empty:
                    summed[DROPPED_ATTR] = summed.get(DROPPED_ATTR, 0) + int((~kept).sum())
                pieces.append(_Piece(k, b, lo + i0, lo + i1, summed, not kept.any()))
            b += 1
    carry: dict[str, int] = {}
    for piece in pieces:
        if piece.empty:
            for key, value in piece.summed.items():
                carry[key] = carry.get(key, 0) + value
        else:
            for key, value in carry.items():
                piece.summed[key] = piece.summed.get(key, 0) + value
            carry = {}
    last = next(p for p in reversed(pieces) if not p.empty)  # every halo empty was refused before
    for key, value in carry.items():
        last.summed[key] = last.summed.get(key, 0) + value
    return pieces


def _pass_two(
    inputs: list[_Chunk],
    header: SnapshotHeader,
    buckets: np.ndarray,
    folder: Path,
    counts: np.ndarray,
    centres_kpc: np.ndarray,
    spec: _Slabs,
    chunk_particles: int,
    drop_empty: bool,
) -> Iterator[xr.Dataset]:
    """The chunks, bucket by bucket; each yielded as soon as it is built (none held back)."""
    info = {
        "particles_source": f"gadget-hdf5 snapshot {header.name}",
        "particles_within": "R200m (periodic, nearest image; a particle may belong to several halos)",
        "particle_order": "by particle ID within each halo",
        "snapshot_redshift": header.redshift,
        "snapshot_hubble": header.hubble,
        "snapshot_conversions": json.dumps(header.conversions),
    }
    if header.particle_mass_msun is not None:
        info["particle_mass_msun"] = header.particle_mass_msun
    pieces = _pieces(inputs, buckets, counts, chunk_particles, drop_empty)
    for b, group in groupby(pieces, key=lambda p: p.bucket):  # pieces come in bucket order
        mine = list(group)
        path = _bucket_file(folder, b)
        if len(mine) == 1:
            files = [path]
        else:  # more records than planned: split the bucket by streaming it, then one piece at a time
            edges = np.array([p.i0 for p in mine] + [mine[-1].i1])
            files = _split_bucket(path, spec.record, edges, folder, chunk_particles)
        for piece, part in zip(mine, files, strict=True):
            if piece.empty:
                part.unlink(missing_ok=True)
                continue
            yield _build(
                inputs[piece.chunk], header, part, piece.i0, piece.i1, counts, centres_kpc, spec, info | piece.summed
            )


def _build(
    chunk: _Chunk,
    header: SnapshotHeader,
    path: Path,
    i0: int,
    i1: int,
    counts: np.ndarray,
    centres_kpc: np.ndarray,
    spec: _Slabs,
    extra: dict[str, Any],
) -> xr.Dataset:
    """The checked chunk of halos [i0, i1) (global indices) from their records in the file ``path`` (removed)."""
    records = _read_records(path, spec.record)
    path.unlink(missing_ok=True)
    records = records[np.lexsort((records["id"], records["halo"]))]
    halo = records["halo"]
    local = counts[i0:i1]
    if records.size != int(local.sum()) or (records.size and (halo[0] < i0 or halo[-1] >= i1)):
        raise HaloCatalogError(
            f"{header.name}: the scratch records of halos {i0}..{i1 - 1} do not add up (scratch changed?)"
        )
    same = (halo[1:] == halo[:-1]) & (records["id"][1:] == records["id"][:-1])
    if same.any():
        k = int(np.flatnonzero(same)[0])
        halo_id = int(chunk.halos["halo_id"][halo[k] - chunk.start])
        raise HaloCatalogError(
            f"{header.name}: PartType1/ParticleIDs: particle ID {records['id'][k]} appears more than once within R200m of "
            f"halo_id {halo_id}; expected unique particle IDs"
        )
    box = header.box
    # in place, one temporary at a time: an output chunk is the largest thing held in pass 2
    offset = records["x"].astype(np.float64)
    offset -= spec.centres[halo]
    images = offset / box
    np.rint(images, out=images)
    images *= box
    offset -= images  # the image nearest the centre
    del images
    offset *= header.length_kpc
    offset += centres_kpc[halo]
    velocity = records["v"].astype(np.float64)
    velocity *= header.velocity_kms
    if spec.masses:
        mass = records["m"].astype(np.float64)
        mass *= header.mass_msun
    else:
        mass = np.full(records.size, header.particle_mass_msun)
    del records, halo
    particles = {"particle_position": offset, "particle_velocity": velocity, "particle_mass": mass}
    kept = local > 0
    rows = slice(i0 - chunk.start, i1 - chunk.start)
    halos = {n: v[rows][kept] for n, v in chunk.halos.items()}
    halos["particle_count"] = local[kept]
    attrs = {k: v for k, v in chunk.attrs.items() if k not in ("source_format", "redshift", "hubble", "box_size_kpc")}
    attrs |= extra
    box_kpc = chunk.attrs.get("box_size_kpc")
    ds = catalog_dataset(
        halos,
        particles,
        source_format=str(chunk.attrs.get("source_format", "hdf5")),
        redshift=float(chunk.attrs["redshift"]),
        hubble=float(chunk.attrs["hubble"]),
        box_size_kpc=float(box_kpc) if box_kpc is not None else header.box_kpc,
        attrs=attrs,
        source=f"{header.name} (particles of halo_id {int(halos['halo_id'][0])}..{int(halos['halo_id'][-1])})",
    )
    for name, values in chunk.var_attrs.items():
        if name in ds:
            ds[name].attrs |= values
    for name in PARTICLE_UNITS:
        ds[name].attrs["snapshot_field"] = {
            "particle_position": "PartType1/Coordinates",
            "particle_velocity": "PartType1/Velocities",
            "particle_mass": "PartType1/Masses" if spec.masses else "Header/MassTable[1]",
        }[name]
    return ds


__all__ = [
    "DEFAULT_CHUNK_PARTICLES",
    "GADGET_DEFAULT_UNITS",
    "REDSHIFT_TOLERANCE",
    "SnapshotHeader",
    "attach_snapshot_particles",
    "read_snapshot_header",
]
