"""Rockstar's halo catalogs and the consistent-trees halo lists made from them, as ``halos.catalog`` chunks.

Every unit, little-h convention and column position is read from the file's own header, never
assumed: Rockstar (``io/meta_io.c``) writes a column line and '#Units:' lines, consistent-trees a
column line with indices (``#scale(0) id(1) ...``) and a description line per quantity with its
units (``#Rvir: Halo radius (kpc/h comoving).``). The conversions to the canonical units (physical
kpc, km s^-1 and Msun, without little h) are written beside the code.

- :func:`iter_rockstar`: Rockstar ``out_<snap>.list`` (merged, any Rockstar version or
  configuration: the columns are found by name) and ``halos_<snap>.<chunk>.ascii`` lists, and the
  binary ``halos_<snap>.<chunk>.bin`` (:func:`iter_rockstar_binary`), with their ``.particles``
  files when there are some; without them, a catalog of halo properties only.
- :func:`iter_ctrees`: consistent-trees ``hlist_<a>.list`` halo lists, and ``tree_*.dat`` files
  with ``snapshot`` picking one snapshot of their rows.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import warnings
from array import array
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np
import xarray as xr

from sims.halos.catalog import (
    MAX_HUBBLE,
    HaloCatalogError,
    HaloInputWarning,
    HaloOptionError,
    catalog_dataset,
    checked_number,
    checked_redshift,
    checked_values,
)
from sims.halos.readers import (
    DEFAULT_CHUNK_HALOS,
    DROPPED_ATTR,
    DROPPED_MASS_ATTR,
    RHO_CRIT0,
    _check_chunk_halos,
    _text,
)

PathLike = str | os.PathLike[str]

# values are any token, checked as numbers when read: 'nan' or '1.0.0' must not pass as "no such line"
_PAIR = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(\S+)\s*$")
_QUANTITY = re.compile(r"^\s*(box size|particle mass)\s*:\s*(\S+)\s*(.*?)\s*$", re.IGNORECASE)
# Rockstar's units as written in its '#Units:' lines, compared without spaces and case.
_ROCKSTAR_DEFAULT_UNITS = {
    "mass": "Msun / h",
    "position": "Mpc / h (comoving)",
    "velocity": "km / s (physical, peculiar)",
    "radius": "kpc / h (comoving)",
    "angular_momentum": "(Msun/h) * (Mpc/h) * km/s (physical)",
}
_VERSION = re.compile(r"^\s*(Rockstar|Consistent Trees)\s+Version:?\s*(\S+)", re.IGNORECASE)
_FULL_BOX = re.compile(r"^\s*full box size\s*=\s*(\S+)\s*(.*?)\s*$", re.IGNORECASE)
_CTREES_UNIT = re.compile(r"^\s*(Mvir|Rvir|X/Y/Z|VX/VY/VZ):.*\(([^()]*)\)\.?\s*$", re.IGNORECASE)
_CTREES_UNIT_CATEGORY = {"mvir": "mass", "rvir": "radius", "x/y/z": "position", "vx/vy/vz": "velocity"}
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
    writer: str = "rockstar"  # or "ctrees": consistent-trees, whose columns begin with scale(0)
    version: str | None = None  # the '#Rockstar Version: ...' or '#Consistent Trees Version ...' line

    def unit(self, category: str) -> str:
        return self.units.get(category, _ROCKSTAR_DEFAULT_UNITS[category])


def _unit_category(what: str) -> str | None:
    what = what.lower()
    if "angular" in what:
        return "angular_momentum"
    for key, category in (("mass", "mass"), ("position", "position"), ("velocit", "velocity"), ("radi", "radius")):
        if key in what:
            return category
    return None


def _open_text(path: Path) -> IO[str]:
    """The file as UTF-8 text; gzip-compressed files (``hlist_1.00000.list.gz``, as catalogs are
    often published) are decompressed as they are read."""
    if not path.exists():
        raise HaloCatalogError(f"{path}: file not found")
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if compressed else open(path, encoding="utf-8")


def read_rockstar_header(path: PathLike, *, particles: bool = False) -> RockstarHeader:
    """The header of a Rockstar catalog (or, with ``particles``, of a ``.particles`` file).

    The column line is the first comment line naming an ``ID`` column among at least eight, in any
    order (catalogs; consistent-trees numbers them, ``id(1)``), or naming ``external_haloid``
    (particle tables). Reads comment lines up to the first data line.
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
    names = [_column_name(token) for token in tokens]
    if particles:
        is_columns = "external_haloid" in tokens
    else:  # the line naming an 'ID' column among many, in any order; not a '#Key: text' or '#a = 1' line
        is_columns = "id" in names and len(tokens) >= 8 and not tokens[0].endswith(":") and "=" not in text
    if not header.columns and is_columns:
        header.columns = tuple(tokens)
        # consistent-trees: 'scale(0) id(1) desc_scale(2) ...' (older versions without the indices)
        numbered = all(re.search(r"\(\d+\)$", token) for token in tokens)
        header.writer = "ctrees" if numbered or {"scale", "desc_scale"} <= set(names) else "rockstar"
        return
    version = _VERSION.match(text)
    if version:
        header.version = f"{version.group(1)} {version.group(2)}"
        return
    ctrees_unit = _CTREES_UNIT.match(text)
    if ctrees_unit:  # consistent-trees: '#Rvir: Halo radius (kpc/h comoving).'
        unit = re.sub(r"\s+(comoving|physical)$", r" (\1)", ctrees_unit.group(2).strip())
        header.units[_CTREES_UNIT_CATEGORY[ctrees_unit.group(1).lower()]] = unit
        return
    box = _FULL_BOX.match(text)
    if box:  # consistent-trees: '#Full box size = 250.000000 Mpc/h'
        where = f"{header.path}: header line '#{text}': box size"
        header.box_size = (checked_number(box.group(1), where, low=0.0, low_open=True, text=True), box.group(2))
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
        elif key in ("om", "omega_m"):
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
        # Msun kpc km/s; Rockstar's '(Mpc/h)' here is physical
        "angular_momentum": {"(msun/h)*(mpc/h)*km/s(physical)": 1e3 / h**2, "msun*kpc*km/s": 1.0},
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
    """The particle files named, else Rockstar's own names beside the list; none found: no particles."""
    if particles_path is not None:
        paths = [particles_path] if isinstance(particles_path, (str, os.PathLike)) else list(particles_path)
        return [Path(p) for p in paths]
    # Rockstar's names: out_<snap>.list and halos_<snap>.<chunk>.ascii beside halos_<snap>.<chunk>.particles
    name = path.name.removesuffix(".gz")
    if name.startswith("out_") and name.endswith(".list"):
        pattern = f"halos_{name[len('out_') : -len('.list')]}.*.particles"
    else:
        pattern = Path(name).stem + ".particles"
    return sorted(path.parent.glob(pattern))


def _data_lines(path: Path, *, trees: bool = False) -> Iterator[tuple[str, str]]:
    """('line N', line) of the data lines of an ASCII table (comments and blank lines skipped). With
    ``trees`` (consistent-trees), also the single number a tree file writes after its header (the
    count of its trees)."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip() and not line.startswith("#") and not (trees and len(line.split()) == 1):
                yield f"line {number}", line


def _column_name(name: str) -> str:
    """A header column name as looked up: lower case, without consistent-trees' index ('mvir(10)')."""
    return re.sub(r"\(\d+\)$", "", name).lower()


def _columns(header: RockstarHeader) -> dict[str, int]:
    """Lookup name -> index; a name written twice (Rockstar run with MASS_DEFINITION = "200b" prints the
    main mass and the alternative one both as M200b) is the first, the main one."""
    columns: dict[str, int] = {}
    for i, name in enumerate(header.columns):
        columns.setdefault(_column_name(name), i)
    return columns


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


def _epoch(header: RockstarHeader) -> tuple[float, float]:
    """The header's a and h, which its units need."""
    a, h = header.scale_factor, header.hubble
    if a is None or not a > 0 or h is None or not h > 0:
        raise HaloCatalogError(f"{header.path}: no valid '#a = ...' and '... h = ...' lines, needed for the units")
    return a, h


def rockstar_physical_factor(header: RockstarHeader, category: str) -> float:
    """The factor from the file's units of ``category`` (``mass``, ``position``, ``velocity``, ``radius``,
    ``angular_momentum``) to physical Msun, kpc, km/s (Msun kpc km/s), at the header's a and h."""
    return _rockstar_factor(header, category, *_epoch(header))


def rockstar_particle_mass(header: RockstarHeader) -> float | None:
    """The header's particle mass in Msun (its '#Particle mass: ...' line, in that line's own units), or
    None without one."""
    if header.particle_mass is None:
        return None
    return _quantity_factor(header, "Particle mass", header.particle_mass, *_epoch(header))


def read_rockstar_columns(path: PathLike, names: Sequence[str]) -> tuple[RockstarHeader, dict[str, np.ndarray]]:
    """The header of a Rockstar ASCII catalog and the named columns (as the header spells them, any case)
    as float64 arrays in the file's own units; a missing column or a value that is not a number raises
    :class:`HaloCatalogError` naming the file, the column and the line."""
    path = Path(path)
    header = read_rockstar_header(path)
    columns = _columns(header)
    missing = [name for name in names if _column_name(name) not in columns]
    if missing:
        raise HaloCatalogError(f"{path}: missing column(s) {missing}; the header names {list(header.columns)}")
    block = list(_data_lines(path))
    tokens = _tokens(path, block, len(header.columns))
    labels = [label for label, _ in block]
    return header, {name: _parse(path, tokens, columns[_column_name(name)], name, labels, np.float64) for name in names}


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


#: Catalog properties read when their column exists: canonical name -> (column, unit category or None).
#: Rockstar's Xoff and Halfmass_Radius are lengths in its radius units, Voff and Vmax velocities.
_PROPERTY_COLUMNS = {
    "b_to_a": ("b_to_a", None),
    "c_to_a": ("c_to_a", None),
    "x_offset": ("xoff", "radius"),
    "v_offset": ("voff", "velocity"),
    "vmax": ("vmax", "velocity"),
    "virial_ratio": ("t/|u|", None),
    "r_half": ("halfmass_radius", "radius"),
}


@dataclass(frozen=True)
class _RockstarSetup:
    columns: dict[str, int]  # lookup name (_column_name) -> index
    spelled: dict[str, str]  # lookup name -> as in the header
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
    rows: tuple[int, int] | None = None  # (column, value): only the rows holding value there (one snapshot)


def _rockstar_setup(
    path: Path,
    header: RockstarHeader,
    pheaders: Sequence[RockstarHeader],
    hubble: float | None,
    *,
    scale_factor: float | None = None,
    rows: tuple[int, int] | None = None,
) -> _RockstarSetup:
    cols = _columns(header)
    missing = [name for name in ("ID", "X", "Y", "Z", "VX", "VY", "VZ") if name.lower() not in cols]
    writer = "consistent-trees" if header.writer == "ctrees" else "Rockstar"
    if "m200b" in cols:
        mass_column = "m200b"
        radius_column = "r200b" if "r200b" in cols else None
        definition = f"M200b: 200 x the mean matter density ({writer}'s M200b column)"
    elif "mvir" in cols:
        mass_column, radius_column = "mvir", "rvir"
        definition = f"Mvir: {writer}'s virial mass (no M200b column), used as M200m with Rvir as R200m"
        if "rvir" not in cols:
            missing.append("Rvir")
    else:
        mass_column, radius_column, definition = "", None, ""
        missing.append("M200b or Mvir")
    if missing:
        expected = (
            "'#scale(0) id(1) ... mvir(10) rvir(11) rs(12) ... x(17) y(18) z(19) vx(20) vy(21) vz(22) ...'"
            if header.writer == "ctrees"
            else "'#ID DescID Mvir Vmax Vrms Rvir Rs Np X Y Z VX VY VZ ... M200b ...'"
        )
        raise HaloCatalogError(
            f"{path}: missing column(s) {missing} in the header line; expected {writer} columns such as {expected}"
        )
    a = scale_factor if scale_factor is not None else header.scale_factor
    if a is None or not a > 0:
        raise HaloCatalogError(f"{path}: no valid '#a = ...' line (scale factor), needed for comoving units")
    if hubble is not None:
        hubble = checked_number(hubble, "hubble", low=0.0, high=MAX_HUBBLE, low_open=True, error=HaloOptionError)
    h = hubble if hubble is not None else header.hubble
    if h is None or not h > 0:
        raise HaloCatalogError(
            f"{path}: no valid '#Om = ...; h = ...' line; the file must give h = H0 / (100 km/s/Mpc)"
        )
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
        "source_format": header.writer,
        "source_file": str(path),
        "halo_finder": header.version or writer,
        "expansion_factor": float(a),  # not "scale_factor": netCDF reserves that name
        "mass_definition": definition,
        "radius_definition": (
            f"{header.columns[cols[radius_column]]} column"
            if radius_column
            else "(3 M200m / (4 pi 200 rho_m))^(1/3), rho_m = Om rho_crit0 (1 + z)^3"
        ),
        "centre": f"{writer} halo position (averaged over its innermost particles), not the potential minimum",
    }
    if concentration:
        attrs["concentration_definition"] = f"R200m / {header.columns[cols['rs']]} (the NFW scale radius)"
    attrs["sigma_v_definition"] = "Vrms / sqrt(3) (1-D dispersion)"
    attrs["spin_definition"] = "spin_bullock (Bullock lambda'); Peebles' Spin column is not used"
    properties = [name for name, (column, _) in _PROPERTY_COLUMNS.items() if column in cols]
    if properties:
        attrs["catalog_properties"] = ", ".join(
            f"{name} = {header.columns[cols[_PROPERTY_COLUMNS[name][0]]]}" for name in properties
        )
        attrs["unmeasured"] = "0 where the halo finder could not measure a property (too few particles)"
    if pheaders:
        attrs["particles_files"] = [str(p.path) for p in pheaders]
    else:
        attrs["particles"] = "none: a catalog of halo properties only (no particle files)"
    if header.omega_m is not None:
        attrs["omega_m"] = float(header.omega_m)
    factors = {c: _rockstar_factor(header, c, a, h) for c in ("mass", "position", "velocity", "radius")}
    if header.particle_mass is not None:
        attrs["particle_mass_msun"] = _quantity_factor(header, "Particle mass", header.particle_mass, a, h)
    return _RockstarSetup(
        columns=cols,
        spelled={_column_name(name): name for name in header.columns},
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
        rows=rows,
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
    """A Rockstar catalog, and its particles when it has some, as ``halos.catalog`` chunks of ``chunk_halos`` halos.

    ``path`` is an ``out_<snap>.list`` or ``halos_<snap>.<chunk>.ascii`` file: a '#' column line
    (``#ID DescID Mvir ... M200b ...``, any case, columns in any order: each is found by its name),
    then '#' lines giving ``a``, ``Om``, ``h``, the box size, the particle mass and the units. A
    binary ``halos_<snap>.<chunk>.bin`` is read by :func:`iter_rockstar_binary`. A consistent-trees
    list is refused with the format that reads it (:func:`iter_ctrees`).

    ``particles_path`` names the ``.particles`` file(s) (default: ``halos_<snap>.*.particles``
    beside the catalog, when there are some; with none, the catalog holds halo properties only); a
    particle belongs to the halo whose ID equals its ``external_haloid`` (so a host's particles
    include those of its subhalos, as Rockstar prints them), all of the header's particle mass
    unless the file has a ``mass`` column. ``hubble`` overrides the header's h.

    Conversions (Rockstar units -> canonical): positions comoving Mpc/h -> physical kpc (x 1000 a / h);
    masses Msun/h -> Msun (/ h); radii and Xoff comoving kpc/h -> physical kpc (x a / h); velocities,
    Voff and Vmax are physical km/s already. ``M200m`` is the ``M200b`` column when there is one
    (``R200m`` then from an ``R200b`` column, else (3 M / (4 pi 200 rho_m))^(1/3) with
    rho_m = Om rho_crit0 h^2 / a^3, rho_crit0 = 277.536627 h^2 Msun kpc^-3), otherwise ``Mvir`` with
    ``Rvir``; the attribute ``mass_definition`` says which. ``concentration`` = R200m / Rs,
    ``spin`` = spin_bullock, ``sigma_v`` = Vrms / sqrt(3), and the catalog properties of
    :data:`_PROPERTY_COLUMNS` (b_to_a, c_to_a, Xoff, Voff, Vmax, T/|U|, Halfmass_Radius) when those
    columns exist. Particle positions are unwrapped around the halo position across the periodic box
    and sorted by particle id within each halo.

    A halo whose mass column is 0 (the halo finder could not measure that mass, as consistent-trees
    writes for some halos) is left out with a :class:`~sims.halos.catalog.HaloInputWarning`; the
    attribute ``dropped_unmeasured_mass`` counts them. A halo without particles (when there are
    particle files) raises :class:`HaloCatalogError` naming its id, unless ``drop_empty``: then it is
    left out and each chunk's attribute ``dropped_empty_halos`` counts those it lost. So do
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
    if _is_rockstar_binary(path):
        return iter_rockstar_binary(path, particles_path, chunk_halos, hubble, drop_empty=drop_empty)
    header = read_rockstar_header(path)
    if header.writer == "ctrees":
        raise HaloOptionError(
            f"{path}: a consistent-trees halo list (its columns begin {header.columns[0]!r}), not a Rockstar "
            "one; read it with --format ctrees"
        )
    return _text_catalog(path, header, particles_path, chunk_halos, hubble, drop_empty)


def iter_ctrees(
    path: PathLike,
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    hubble: float | None = None,
    *,
    snapshot: int | None = None,
    particles_path: PathLike | Sequence[PathLike] | None = None,
    drop_empty: bool = False,
) -> Iterator[xr.Dataset]:
    """A consistent-trees halo list as ``halos.catalog`` chunks: ``hlist_<a>.list``, or the rows of one
    snapshot (``snapshot``, matched against the ``Snap_num`` column) of a ``tree_*.dat`` file.

    Its header: the column line ``#scale(0) id(1) desc_scale(2) ...`` (columns found by name, the
    indices in parentheses ignored), ``#Omega_M = ...; Omega_L = ...; h0 = ...``, ``#Full box size =
    ... Mpc/h`` and a line per quantity giving its units (``#Mvir: Halo mass (Msun/h).``,
    ``#Rvir: Halo radius (kpc/h comoving).``, ``#X/Y/Z: Halo position (Mpc/h comoving).``,
    ``#VX/VY/VZ: Halo velocity (km/s physical).``), read and converted as for Rockstar
    (:func:`iter_rockstar`: the same columns, units and definitions). The scale factor is the rows'
    ``scale`` column: a file whose rows hold several (a tree file) needs ``snapshot``. Halo IDs are
    the ``id`` column (unique across the simulation). Consistent-trees writes no particles, and
    ``particles_path`` (Rockstar ``.particles`` files) matches their ``external_haloid`` against that
    ``id``, right only where it equals the Rockstar ID (``Orig_halo_ID``): the command line does not
    offer it; particles come from a snapshot (:mod:`sims.halos.snapshot`).
    """
    _check_chunk_halos(chunk_halos)
    path = Path(path)
    if _is_rockstar_binary(path):
        raise HaloOptionError(f"{path}: a Rockstar binary catalog, not a consistent-trees list; use --format rockstar")
    header = read_rockstar_header(path)
    if header.writer != "ctrees":
        raise HaloOptionError(
            f"{path}: a Rockstar halo list (its columns begin {header.columns[0]!r}), not a consistent-trees one; "
            "read it with --format rockstar"
        )
    scale, rows = _ctrees_epoch(path, header, snapshot)
    return _text_catalog(path, header, particles_path, chunk_halos, hubble, drop_empty, scale_factor=scale, rows=rows)


def _text_catalog(
    path: Path,
    header: RockstarHeader,
    particles_path: PathLike | Sequence[PathLike] | None,
    chunk_halos: int,
    hubble: float | None,
    drop_empty: bool,
    **setup_options: Any,
) -> Iterator[xr.Dataset]:
    paths = _particle_paths(path, particles_path) if header.writer == "rockstar" or particles_path else []
    pheaders = [read_rockstar_header(p, particles=True) for p in paths]
    setup = _rockstar_setup(path, header, pheaders, hubble, **setup_options)
    with ExitStack() as stack:  # particle columns and masses checked now, not at the first chunk
        _particle_files(paths, pheaders, header, setup, stack)
    ids = _catalog_ids(path, setup)
    index = None
    if paths:
        index = _index_particles(paths, pheaders)
        _check_particle_halos(path, paths, index, ids)
    return _text_chunks(path, header, pheaders, setup, index, int(chunk_halos), drop_empty)


def _ctrees_epoch(path: Path, header: RockstarHeader, snapshot: int | None) -> tuple[float, tuple[int, int] | None]:
    """The scale factor of the rows to read, and the row filter: one pass over the ``scale`` (and
    ``Snap_num``) columns. A list of one scale needs no ``snapshot``; a tree file of several does."""
    cols = _columns(header)
    snap_col = next((cols[c] for c in ("snap_num", "snap_idx") if c in cols), None)
    if "scale" not in cols:
        raise HaloCatalogError(f"{path}: no 'scale' column in the consistent-trees header line")
    if snapshot is not None and snap_col is None:
        raise HaloOptionError(f"{path}: --snapshot {snapshot}: the file has no Snap_num column to pick rows by")
    scales: dict[tuple[float, int | None], int] = {}
    lines = _data_lines(path, trees=True)
    try:
        for label, line in lines:
            fields = line.split()
            try:
                key = (float(fields[cols["scale"]]), int(fields[snap_col]) if snap_col is not None else None)
            except (IndexError, ValueError):
                raise HaloCatalogError(f"{path}: {label}: no number in the 'scale' or 'Snap_num' column") from None
            scales[key] = scales.get(key, 0) + 1
    except UnicodeDecodeError as exc:
        raise HaloCatalogError(f"{path}: not a UTF-8 text file ({exc}); expected a consistent-trees list") from None
    finally:
        lines.close()
    if not scales:
        raise HaloCatalogError(f"{path}: no halos (the header is followed by no data row)")
    listing = ", ".join(f"snapshot {s} (a = {a:g}, {n} rows)" for (a, s), n in sorted(scales.items())[:8])
    if snapshot is not None:
        chosen = [a for (a, s) in scales if s == snapshot]
        if not chosen:
            raise HaloOptionError(f"{path}: --snapshot {snapshot}: no rows of that snapshot; the file has {listing}")
        if len(set(chosen)) > 1:
            raise HaloCatalogError(f"{path}: rows of snapshot {snapshot} give several scale factors {sorted(chosen)}")
        return chosen[0], (snap_col, int(snapshot))
    if len({a for a, _ in scales}) > 1:
        raise HaloOptionError(
            f"{path}: rows of {len(scales)} snapshots (a tree file): pick one with --snapshot; the file has {listing}"
        )
    return next(iter(scales))[0], None


def _rows(path: Path, setup: _RockstarSetup) -> Iterator[tuple[str, str]]:
    """The data lines of the halos to read: all, or those of one snapshot (``setup.rows``)."""
    lines = _data_lines(path, trees=setup.attrs.get("source_format") == "ctrees")
    if setup.rows is None:
        yield from lines
        return
    column, value = setup.rows
    with closing(lines):
        for label, line in lines:
            fields = line.split()
            if _int_token(fields, column) == value:
                yield label, line


def _int_token(fields: Sequence[str], column: int) -> int | None:
    try:
        return int(fields[column])
    except (IndexError, ValueError):
        return None


def _catalog_ids(path: Path, setup: _RockstarSetup) -> np.ndarray:
    """The ID of every halo of the list (one pass, 8 bytes per halo), checked: at least one halo,
    integer and unique IDs. Found now, the problems are named with the file, not with a chunk.
    Halos whose mass column holds 0 (not measured) are warned about here, once."""
    col, spelled = setup.columns["id"], setup.spelled["id"]
    mass_col = setup.columns[setup.mass_column]
    ids = array("q")
    unmeasured = array("q")
    lines = _rows(path, setup)
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
            if mass_col < len(fields) and _is_zero(fields[mass_col]):
                unmeasured.append(ids[-1])
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
    _warn_unmeasured(path, setup, np.frombuffer(unmeasured, dtype=np.int64), values.size)
    return unique


def _is_zero(token: str) -> bool:
    try:
        return float(token) == 0.0
    except ValueError:
        return False  # named with its line when the chunk is parsed


def _warn_unmeasured(path: Path, setup: _RockstarSetup, ids: np.ndarray, n_halos: int) -> None:
    if ids.size == n_halos:
        raise HaloCatalogError(
            f"{path}: column {setup.spelled[setup.mass_column]!r} is 0 for every halo; no mass to use"
        )
    if ids.size:
        warnings.warn(
            f"{path}: column {setup.spelled[setup.mass_column]!r} is 0 (not measured) for {ids.size} of {n_halos} "
            f"halo(s) (ID {ids[:5].tolist()}); they are left out",
            HaloInputWarning,
            stacklevel=3,
        )


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


def _text_chunks(
    path: Path,
    header: RockstarHeader,
    pheaders: Sequence[RockstarHeader],
    setup: _RockstarSetup,
    index: _ParticleIndex | None,
    chunk_halos: int,
    drop_empty: bool,
) -> Iterator[xr.Dataset]:
    with ExitStack() as stack:
        pfiles = _particle_files([p.path for p in pheaders], pheaders, header, setup, stack)
        rows = stack.enter_context(closing(_rows(path, setup)))
        while block := list(islice(rows, chunk_halos)):
            halos = _text_halos(path, setup, block)
            source = f"{path} ({block[0][0]}..{block[-1][0]})"
            yield _halo_chunk(path, setup, halos, index, pfiles, drop_empty, source)


def _text_halos(path: Path, setup: _RockstarSetup, block: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The halo columns of a block of text rows, as :func:`_halos_in_canonical_units` takes them."""
    lines = [label for label, _ in block]
    tokens = _tokens(path, block, setup.n_columns)
    ids = _parse(path, tokens, setup.columns["id"], setup.spelled["id"], lines, np.int64)
    names = {"id", setup.mass_column, "x", "y", "z", "vx", "vy", "vz", "spin_bullock", "vrms"}
    names |= {setup.radius_column, *(setup.concentration_columns or ())} - {None}
    names |= {column for column, _ in _PROPERTY_COLUMNS.values()}
    return {
        name: _parse(path, tokens, setup.columns[name], setup.spelled[name], lines, np.float64)
        for name in names
        if name in setup.columns and name != "id"
    } | {"id": ids}


def _halos_in_canonical_units(path: Path, setup: _RockstarSetup, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Halo fields in the canonical units from the halo finder's columns (lookup names, its units)."""
    ids = raw["id"]

    def column(name: str, low: float | None = None, low_open: bool = False) -> np.ndarray:
        spelled = setup.spelled.get(name, name)
        values = raw[name]
        if not np.isfinite(values).all():
            bad = ids[~np.isfinite(values)][:5].tolist()
            raise HaloCatalogError(f"{path}: column {spelled!r} has NaN or infinite values (halo ID {bad})")
        if low is not None:  # masses, radii and dispersions have a sign
            checked_values(values, f"{path}: column {spelled!r}", low=low, low_open=low_open, ids=ids)
        return values

    f = setup.factors
    halos: dict[str, np.ndarray] = {"halo_id": ids}
    halos["M200m"] = column(setup.mass_column, low=0.0) * f["mass"]  # 0: not measured, left out below
    measured = halos["M200m"] > 0
    if setup.radius_column is not None:
        radius = column(setup.radius_column, low=0.0) * f["radius"]
        checked_values(
            radius[measured], f"{path}: column {setup.spelled[setup.radius_column]!r}", low=0.0, low_open=True
        )
        halos["R200m"] = np.where(measured, radius, 1.0)
    else:
        halos["R200m"] = np.cbrt(3.0 * halos["M200m"] / (4.0 * np.pi * 200.0 * setup.rho_m))
    halos["position"] = np.stack([column(c) for c in ("x", "y", "z")], axis=1) * f["position"]
    halos["velocity"] = np.stack([column(c) for c in ("vx", "vy", "vz")], axis=1) * f["velocity"]
    if setup.concentration_columns:
        rs = column(setup.concentration_columns[1], low=0.0, low_open=True)
        # Rs is the NFW scale radius whatever the mass definition: R200m / Rs is c200m (c_vir when the
        # Mvir / Rvir fallback is in use), the definition the rest of the project uses
        halos["concentration"] = halos["R200m"] / (rs * f["radius"])
    if "spin_bullock" in raw:  # Bullock's lambda', as everywhere else ("Spin" is Peebles' lambda)
        halos["spin"] = column("spin_bullock", low=0.0)
    if "vrms" in raw:  # Vrms is the 3-D rms speed; sigma_v is the 1-D dispersion everywhere else
        halos["sigma_v"] = column("vrms", low=0.0) * f["velocity"] / np.sqrt(3.0)
    for name, (source, category) in _PROPERTY_COLUMNS.items():
        if source in raw:  # 0 is "not measured" for all of them (Vmax, r_half: positive when measured)
            values = column(source, low=0.0)
            halos[name] = values * f[category] if category else values
    if not measured.all():
        halos = {k: v[measured] for k, v in halos.items()}
    return halos


def _halo_chunk(
    path: Path,
    setup: _RockstarSetup,
    raw: dict[str, np.ndarray],
    index: _ParticleIndex | None,
    pfiles: Sequence[_ParticleFile],
    drop_empty: bool,
    source: str,
) -> xr.Dataset:
    """One ``halos.catalog`` chunk: the halos of ``raw`` (the halo finder's columns) and, with an
    ``index``, their particles."""
    halos = _halos_in_canonical_units(path, setup, raw)
    attrs = dict(setup.attrs)
    attrs[DROPPED_MASS_ATTR] = int(raw["id"].size - halos["halo_id"].size)
    particles = None
    if index is not None:
        ids = halos["halo_id"]
        counts, particles = _halo_particles(index, pfiles, ids, halos["position"], setup.box_kpc)
        empty = counts == 0
        if empty.any():
            if not drop_empty:
                raise HaloCatalogError(
                    f"{path}: particle_count: {int(empty.sum())} halo(s) without particles in "
                    f"{[str(p.path) for p in pfiles]} (halo ID {ids[empty][:5].tolist()}); every halo of a catalog "
                    "with particles needs some: are these the particle files of this catalog?"
                )
            halos = {k: v[~empty] for k, v in halos.items()}
            counts = counts[~empty]
        if drop_empty:
            attrs[DROPPED_ATTR] = int(empty.sum())
        halos["particle_count"] = counts
    return catalog_dataset(
        halos,
        particles,
        source_format=setup.attrs.get("source_format", "rockstar"),
        redshift=setup.redshift,
        hubble=setup.hubble,
        box_size_kpc=setup.box_kpc,
        attrs={k: v for k, v in attrs.items() if k != "source_format"},
        source=source,
    )


# -- Rockstar's binary halos_<snap>.<chunk>.bin -----------------------------------------------------

#: The first 8 bytes of a Rockstar binary file (``BINARY_MAGIC`` in its io/io_internal.h), little endian.
ROCKSTAR_MAGIC = 0xFADEDACEC0C0D0D0
_BINARY_HEADER_BYTES = 256
# struct binary_output_header (io/io_internal.h), padded to 256 bytes
_BINARY_HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("snap", "<i8"),
        ("chunk", "<i8"),
        ("scale", "<f4"),
        ("Om", "<f4"),
        ("Ol", "<f4"),
        ("h0", "<f4"),
        ("bounds", "<f4", 6),
        ("num_halos", "<i8"),
        ("num_particles", "<i8"),
        ("box_size", "<f4"),
        ("particle_mass", "<f4"),
        ("particle_type", "<i8"),
        ("format_revision", "<i4"),
        ("rockstar_version", "S12"),
    ]
)
# struct halo (halo.h) of Rockstar 0.99.9: 264 bytes with the compiler's trailing padding. Units as in
# the ASCII output: pos[0:3] comoving Mpc/h, pos[3:6] and velocities km/s, masses Msun/h, radii,
# rs, klypin_rs, Xoff and halfmass_radius comoving kpc/h; alt_m are the masses of MASS_DEFINITION2..5.
_BINARY_HALO = np.dtype(
    [
        ("id", "<i8"),
        ("pos", "<f4", 6),
        ("corevel", "<f4", 3),
        ("bulkvel", "<f4", 3),
        *((name, "<f4") for name in ("m", "r", "child_r", "vmax_r", "mgrav", "vmax", "rvmax", "rs", "klypin_rs")),
        ("vrms", "<f4"),
        ("J", "<f4", 3),
        ("energy", "<f4"),
        ("spin", "<f4"),
        ("alt_m", "<f4", 4),
        *((name, "<f4") for name in ("Xoff", "Voff", "b_to_a", "c_to_a")),
        ("A", "<f4", 3),
        ("b_to_a2", "<f4"),
        ("c_to_a2", "<f4"),
        ("A2", "<f4", 3),
        *((name, "<f4") for name in ("bullock_spin", "kin_to_pot", "m_pe_b", "m_pe_d", "halfmass_radius")),
        *((name, "<i8") for name in ("num_p", "num_child_particles", "p_start", "desc", "flags", "n_core")),
        *((name, "<f4") for name in ("min_pos_err", "min_vel_err", "min_bulkvel_err")),
        ("_pad", "<u4"),
    ]
)
# binary fields -> the ASCII column names that _halos_in_canonical_units reads
_BINARY_COLUMNS = {
    "m": "mvir",
    "r": "rvir",
    "rs": "rs",
    "vrms": "vrms",
    "vmax": "vmax",
    "bullock_spin": "spin_bullock",
    "Xoff": "xoff",
    "Voff": "voff",
    "b_to_a": "b_to_a",
    "c_to_a": "c_to_a",
    "kin_to_pot": "t/|u|",
    "halfmass_radius": "halfmass_radius",
}


def _is_rockstar_binary(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False  # a missing file is named by the text reader
    return len(head) == 8 and int.from_bytes(head, "little") == ROCKSTAR_MAGIC


def _alt_mass_200b(path: Path) -> tuple[bool, str]:
    """Whether alt_m[0] of a binary file is M200b: Rockstar's default MASS_DEFINITION2, unless a
    ``rockstar.cfg`` beside the file (the run's configuration, as Rockstar writes it) says otherwise."""
    config = path.parent / "rockstar.cfg"
    if not config.is_file():
        return True, "alt_m[0], M200b by Rockstar's default MASS_DEFINITION2 (no rockstar.cfg beside the file)"
    for line in config.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "MASS_DEFINITION2":
            found = value.strip().strip('"').lower()
            return found == "200b", f"alt_m[0], MASS_DEFINITION2 = {found!r} in {config}"
    return True, f"alt_m[0], M200b by Rockstar's default MASS_DEFINITION2 (not set in {config})"


def iter_rockstar_binary(
    path: PathLike,
    particles_path: PathLike | Sequence[PathLike] | None = None,
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    hubble: float | None = None,
    *,
    drop_empty: bool = False,
) -> Iterator[xr.Dataset]:
    """Rockstar's binary output ``halos_<snap>.<chunk>.bin`` as ``halos.catalog`` chunks.

    The file is a 256-byte header (magic 0xfadedacec0c0d0d0, snapshot, chunk, a, Om, Ol, h, the
    chunk's bounds, the numbers of halos and particles, the box size in Mpc/h, the particle mass in
    Msun/h, the format revision and the Rockstar version), then one 264-byte ``struct halo`` per halo
    (Rockstar 0.99.9's layout; another record size is refused), then the member particles' IDs
    (int64) only: no positions or velocities, so the halos are read without particles (attach them
    from the simulation's snapshot, or name ``.particles`` files with ``particles_path``). Units and
    definitions are those of the ASCII lists (:func:`iter_rockstar`); M200m is alt_m[0] when it is
    M200b (:func:`_alt_mass_200b`), else Mvir with Rvir.
    """
    _check_chunk_halos(chunk_halos)
    path = Path(path)
    size = path.stat().st_size
    if size < _BINARY_HEADER_BYTES:
        raise HaloCatalogError(f"{path}: {size} bytes, shorter than the 256-byte header of a Rockstar binary file")
    head = np.fromfile(path, dtype=_BINARY_HEADER, count=1)[0]
    n_halos, n_particles = int(head["num_halos"]), int(head["num_particles"])
    version = bytes(head["rockstar_version"]).split(b"\0")[0].decode("ascii", errors="replace")
    record = (size - _BINARY_HEADER_BYTES - 8 * n_particles) / n_halos if n_halos > 0 else 0
    if n_halos < 0 or n_particles < 0 or (n_halos and record != _BINARY_HALO.itemsize):
        raise HaloCatalogError(
            f"{path}: {size} bytes do not hold the header's {n_halos} halos of {_BINARY_HALO.itemsize} bytes and "
            f"{n_particles} particle IDs (Rockstar {version!r}, format revision {int(head['format_revision'])}); "
            "this reader knows Rockstar 0.99.9's layout: a truncated file, or another version (its ASCII output "
            "halos_*.ascii reads with any version)"
        )
    if n_halos == 0:
        raise HaloCatalogError(f"{path}: no halos (the header gives 0)")
    where = f"{path}: header"
    a = checked_redshift(float(head["scale"]), f"{where} scale factor", scale_factor=True)
    header = RockstarHeader(
        path=path,
        scale_factor=a,
        omega_m=checked_number(float(head["Om"]), f"{where} Om", low=0.0, high=2.0, low_open=True),
        hubble=checked_number(float(head["h0"]), f"{where} h0", low=0.0, high=MAX_HUBBLE, low_open=True),
        box_size=(checked_number(float(head["box_size"]), f"{where} box size", low=0.0, low_open=True), "Mpc/h"),
        particle_mass=(
            checked_number(float(head["particle_mass"]), f"{where} particle mass", low=0.0, low_open=True),
            "Msun/h",
        ),
        version=f"Rockstar {version}",
    )
    is_200b, mass_source = _alt_mass_200b(path)
    columns = ["id", "x", "y", "z", "vx", "vy", "vz", *_BINARY_COLUMNS.values()] + (["m200b"] if is_200b else [])
    header.columns = tuple(columns)
    paths = _particle_paths(path, particles_path)
    pheaders = [read_rockstar_header(p, particles=True) for p in paths]
    setup = _rockstar_setup(path, header, pheaders, hubble)
    setup.attrs["mass_definition"] += f" ({mass_source})"
    setup.attrs["particles"] = (
        f"the file's particle section holds the {n_particles} member particles' IDs only (no positions or "
        "velocities); "
        + (f"particles from {[str(p) for p in paths]}" if paths else "attach particles from the simulation snapshot")
    )
    halos = np.memmap(path, dtype=_BINARY_HALO, mode="r", offset=_BINARY_HEADER_BYTES, shape=(n_halos,))
    ids = np.asarray(halos["id"], dtype=np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise HaloCatalogError(f"{path}: halo id(s) repeated ({unique[counts > 1][:5].tolist()}); IDs must be unique")
    _warn_unmeasured(path, setup, ids[halos["alt_m"][:, 0] == 0] if is_200b else ids[halos["m"] == 0], ids.size)
    index = None
    if paths:
        index = _index_particles(paths, pheaders)
        _check_particle_halos(path, paths, index, unique)
    return _binary_chunks(path, header, pheaders, setup, halos, is_200b, index, int(chunk_halos), drop_empty)


def _binary_chunks(
    path: Path,
    header: RockstarHeader,
    pheaders: Sequence[RockstarHeader],
    setup: _RockstarSetup,
    halos: np.ndarray,
    is_200b: bool,
    index: _ParticleIndex | None,
    chunk_halos: int,
    drop_empty: bool,
) -> Iterator[xr.Dataset]:
    with ExitStack() as stack:
        pfiles = _particle_files([p.path for p in pheaders], pheaders, header, setup, stack)
        for start in range(0, halos.shape[0], chunk_halos):
            block = np.asarray(halos[start : start + chunk_halos])
            raw = {"id": block["id"].astype(np.int64)}
            for k, name in enumerate(("x", "y", "z", "vx", "vy", "vz")):
                raw[name] = block["pos"][:, k].astype(np.float64)
            raw |= {name: block[field].astype(np.float64) for field, name in _BINARY_COLUMNS.items()}
            if is_200b:
                raw["m200b"] = block["alt_m"][:, 0].astype(np.float64)
            source = f"{path} (halos {start}..{start + block.shape[0] - 1})"
            yield _halo_chunk(path, setup, raw, index, pfiles, drop_empty, source)


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
