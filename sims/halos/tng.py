"""IllustrisTNG / Illustris halos as canonical ``halos.catalog`` chunks (docs/protocols.md#halos).

``base_path`` is a run's ``output`` folder (as in illustris_python), holding

- ``groups_SSS/fof_subhalo_tab_SSS.N.hdf5``: ``Header``, ``Group/`` (FoF groups), ``Subhalo/`` (Subfind);
- ``snapdir_SSS/snap_SSS.N.hdf5``: ``Header``, ``PartType1/`` (dark matter), particles sorted by FoF
  group, so group i's type-1 particles are one contiguous range of the concatenated files;
- optionally ``offsets_SSS.hdf5`` (in ``base_path`` or ``base_path/../postprocessing/offsets``) whose
  ``Group/SnapByType[:, 1]`` is that range's start; without it the cumulative sum of
  ``GroupLenType[:, 1]`` is used (the two are checked against each other when both exist).

Targets come from the hydro twin: the matching file maps each hydro subhalo to a dark subhalo (-1 when
unmatched); a dark central gets the properties of the hydro *central* matched to it.

Units (TNG data specifications; a = 1 / (1 + z), h = ``HubbleParam``), converted to the canonical
physical units without h (see :data:`TNG_UNITS`, also stored in each chunk's ``tng_units`` attribute):

- lengths ``Group_R_Mean200``, ``GroupPos``, ``Coordinates``, ``SubhaloHalfmassRadType`` are ckpc/h:
  times a / h gives kpc;
- masses ``Group_M_Mean200``, ``MassTable``, ``SubhaloMassType``, ``SubhaloBHMass`` are 1e10 Msun/h:
  times 1e10 / h gives Msun;
- ``GroupVel`` is in (km/s)/a: the documentation says the peculiar velocity is this value times 1/a;
- snapshot ``Velocities`` are in km sqrt(a)/s: the peculiar velocity is this value times sqrt(a);
- ``SubhaloVel``, ``SubhaloVelDisp``, ``SubhaloVmax`` are physical km/s; ``SubhaloSpin`` is physical
  (kpc/h)(km/s) per unit mass, so divided by h; ``SubhaloSFR`` is Msun/yr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from sims.halos.catalog import (
    MAX_HUBBLE,
    MIN_REDSHIFT,
    HaloCatalogError,
    HaloOptionError,
    catalog_dataset,
    checked_number,
    checked_redshift,
    checked_values,
)

G_KPC = 4.300917270e-6  # gravitational constant, kpc (km/s)^2 / Msun
LOG_SSFR_FLOOR = -13.0  # log10 yr^-1 given to galaxies with SFR = 0 (and any below it)
LOG_MBH_FLOOR = 5.0  # log10 Msun given to galaxies without a black hole, below TNG's seed mass (~1e6 Msun)
BLOCK = 1_000_000  # groups per block of the selection pass (bounds its memory)
WITHIN = ("R200m", "fof")
MATCHING_FIELDS = ("SubhaloIndexDark_LHaloTree", "SubhaloIndexDark_SubLink")
TNG_UNITS = {
    "Group/Group_M_Mean200": "1e10 Msun/h -> M200m (Msun): x 1e10 / h",
    "Group/Group_R_Mean200": "ckpc/h -> R200m (kpc): x a / h",
    "Group/GroupPos": "ckpc/h, potential minimum -> position (kpc): x a / h",
    "Group/GroupVel": "(km/s)/a -> velocity (km/s, peculiar): x 1 / a",
    "PartType1/Coordinates": "ckpc/h -> particle_position (kpc): unwrapped around GroupPos, x a / h",
    "PartType1/Velocities": "km sqrt(a)/s -> particle_velocity (km/s, peculiar): x sqrt(a)",
    "Header/MassTable[1]": "1e10 Msun/h -> particle_mass (Msun): x 1e10 / h",
    "Subhalo/SubhaloSpin": "(kpc/h)(km/s) physical, per unit mass -> spin: |S| / h / (sqrt(2) V200m R200m)",
    "Subhalo/SubhaloVelDisp": "km/s (one-dimensional) -> sigma_v (km/s)",
    "hydro Subhalo/SubhaloMassType[:, 4]": "1e10 Msun/h -> log_mstar: log10(x 1e10 / h)",
    "hydro Subhalo/SubhaloSFR": "Msun/yr -> log_ssfr: log10(SFR / M*), floored",
    "hydro Subhalo/SubhaloHalfmassRadType[:, 4]": "ckpc/h -> log_rhalf: log10(x a / h)",
    "hydro Subhalo/SubhaloBHMass": "1e10 Msun/h -> log_mbh: log10(x 1e10 / h), floored",
}
VARIABLE_SOURCES = {
    "M200m": ("Group/Group_M_Mean200", "1e10 Msun/h"),
    "R200m": ("Group/Group_R_Mean200", "ckpc/h"),
    "position": ("Group/GroupPos", "ckpc/h"),
    "velocity": ("Group/GroupVel", "(km/s)/a"),
    "spin": ("Subhalo/SubhaloSpin of GroupFirstSub", "(kpc/h)(km/s)"),
    "sigma_v": ("Subhalo/SubhaloVelDisp of GroupFirstSub", "km/s"),
    "particle_position": ("PartType1/Coordinates", "ckpc/h"),
    "particle_velocity": ("PartType1/Velocities", "km sqrt(a)/s"),
    "particle_mass": ("Header/MassTable[1]", "1e10 Msun/h"),
    "log_mstar": ("hydro Subhalo/SubhaloMassType[:, 4]", "1e10 Msun/h"),
    "log_ssfr": ("hydro Subhalo/SubhaloSFR / SubhaloMassType[:, 4]", "Msun/yr / (1e10 Msun/h)"),
    "log_rhalf": ("hydro Subhalo/SubhaloHalfmassRadType[:, 4]", "ckpc/h"),
    "log_mbh": ("hydro Subhalo/SubhaloBHMass", "1e10 Msun/h"),
}
# reasons a FoF group yields no halo, in the order they are tested; each group counts under the first
SKIPS = ("low_mass", "no_central", "unmatched", "no_stars", "no_particles")


@contextmanager
def _open(path: Path) -> Iterator[h5py.File]:
    """An HDF5 file opened read-only; a missing or unreadable file raises HaloCatalogError naming it."""
    if not path.is_file():
        raise HaloCatalogError(f"{path}: file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise HaloCatalogError(
            f"{path}: cannot be opened as HDF5 ({exc}); the file is truncated or corrupt: download it again"
        ) from None
    try:
        yield handle
    finally:
        handle.close()


_COUNT = {"integer": True, "low": 0}
#: What each Header attribute read must hold (see sims.halos.catalog.checked_number); per-type arrays
#: (NumPart_*, MassTable) are checked element by element and need the dark-matter entry [1].
HEADER_CHECKS: dict[str, dict[str, Any]] = {
    "NumFiles": {"integer": True, "low": 1},
    "NumFilesPerSnapshot": {"integer": True, "low": 1},
    "Ngroups_Total": _COUNT,
    "Nsubgroups_Total": _COUNT,
    "Ngroups_ThisFile": _COUNT,
    "Nsubgroups_ThisFile": _COUNT,
    "NumPart_ThisFile": _COUNT,
    "NumPart_Total": _COUNT,
    "NumPart_Total_HighWord": _COUNT,
    "MassTable": {"low": 0.0},
    "BoxSize": {"low": 0.0, "low_open": True},
    "HubbleParam": {"low": 0.0, "high": MAX_HUBBLE, "low_open": True},
    "Time": {"low": 0.0, "low_open": True},
    "Redshift": {"low": MIN_REDSHIFT},  # a small negative one is warned about once, by iter_tng
}
_PER_TYPE = ("NumPart_ThisFile", "NumPart_Total", "NumPart_Total_HighWord", "MassTable")


def _attrs(path: Path, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Header attributes of one file, checked (:data:`HEADER_CHECKS`); a missing or bad one raises
    naming the file, the attribute and the expectation."""
    with _open(path) as handle:
        header = handle.get("Header")
        if header is None:
            raise HaloCatalogError(f"{path}: no Header group; not an IllustrisTNG group catalog or snapshot file")
        missing = [n for n in names if n not in header.attrs]
        if missing:
            raise HaloCatalogError(f"{path}: Header attribute(s) {missing} missing")
        raw = {n: header.attrs[n] for n in (*names, *optional) if n in header.attrs}
    out = {}
    for name, value in raw.items():
        where = f"{path}: Header attribute {name}"
        if name in _PER_TYPE:
            if np.ndim(value) != 1 or np.size(value) < 2:
                raise HaloCatalogError(f"{where} = {value!r}; expected one value per particle type (6)")
            out[name] = checked_values(value, where, **HEADER_CHECKS[name])
        else:
            out[name] = checked_number(value, where, **HEADER_CHECKS[name])
    return out


class _SplitFiles:
    """Tables (``Group``, ``Subhalo``, ``PartType1``) split over numbered files, read by global row."""

    def __init__(self, paths: list[Path], counts: dict[str, np.ndarray], count_attrs: dict[str, str]) -> None:
        self.paths = paths
        self.counts = {k: np.asarray(v, dtype=np.int64) for k, v in counts.items()}
        self.starts = {k: np.concatenate([[0], np.cumsum(v)]) for k, v in self.counts.items()}
        self.count_attrs = count_attrs  # table -> the header attribute that gives its per-file rows

    def total(self, table: str) -> int:
        return int(self.starts[table][-1])

    def _dataset(self, handle: h5py.File, i: int, table: str, field: str) -> h5py.Dataset:
        path, rows = self.paths[i], int(self.counts[table][i])
        group = handle.get(table)
        if group is None or field not in group:
            raise HaloCatalogError(
                f"{path}: field {table}/{field} is missing (the header promises {rows} rows); "
                "the file is incomplete or from another code: download it again"
            )
        dataset = group[field]
        if dataset.shape[:1] != (rows,):
            raise HaloCatalogError(
                f"{path}: field {table}/{field} has shape {dataset.shape} but Header {self.count_attrs[table]} "
                f"says {rows} rows; the file is truncated or inconsistent"
            )
        return dataset

    def _checked(self, data: np.ndarray, i: int, table: str, field: str, global_rows: np.ndarray) -> np.ndarray:
        if data.dtype.kind == "f":
            bad = ~np.isfinite(data.reshape(len(data), -1)).all(axis=1)
            if bad.any():
                raise HaloCatalogError(
                    f"{self.paths[i]}: field {table}/{field} has {int(bad.sum())} row(s) with NaN or infinite "
                    f"values (first at global row {int(global_rows[bad][0])}); the catalog is corrupt"
                )
        return data

    def _read(self, i: int, table: str, field: str, local: slice | np.ndarray) -> np.ndarray:
        with _open(self.paths[i]) as handle:
            dataset = self._dataset(handle, i, table, field)
            try:
                return dataset[local]
            except OSError as exc:
                raise HaloCatalogError(
                    f"{self.paths[i]}: field {table}/{field} cannot be read ({exc}); the file is truncated or "
                    "corrupt: download it again"
                ) from None

    def has_field(self, table: str, field: str) -> bool:
        """Whether the first file with rows of ``table`` holds ``field``."""
        for i, rows in enumerate(self.counts[table]):
            if rows > 0:
                with _open(self.paths[i]) as handle:
                    return table in handle and field in handle[table]
        return False

    def read_range(self, table: str, field: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (global) of ``table/field`` across files, checked for NaN."""
        starts, pieces = self.starts[table], []
        for i in range(len(self.paths)):
            lo, hi = max(start, starts[i]), min(stop, starts[i + 1])
            if lo < hi:
                data = self._read(i, table, field, slice(int(lo - starts[i]), int(hi - starts[i])))
                pieces.append(self._checked(data, i, table, field, np.arange(lo, hi)))
        if not pieces:
            raise HaloCatalogError(f"{self.paths[0].parent}: {table}/{field} has no rows {start}:{stop}")
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def read_rows(self, table: str, field: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (global indices, any order, repeats allowed) of ``table/field``, checked for NaN."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.total(table)):
            raise HaloCatalogError(
                f"{self.paths[0].parent}: {table}/{field}: row {int(rows.max())} asked for but there are only "
                f"{self.total(table)} rows; a referencing index (GroupFirstSub, matching) is out of range"
            )
        unique, inverse = np.unique(rows, return_inverse=True)
        starts, pieces = self.starts[table], []
        for i in range(len(self.paths)):
            local = unique[(unique >= starts[i]) & (unique < starts[i + 1])] - starts[i]
            if local.size == 0:
                continue
            span = int(local[-1] - local[0] + 1)
            if span <= 4 * local.size + 1024:  # a contiguous read beats h5py's point selection when dense
                data = self._read(i, table, field, slice(int(local[0]), int(local[-1]) + 1))[local - local[0]]
            else:
                data = self._read(i, table, field, local)
            pieces.append(self._checked(data, i, table, field, local + starts[i]))
        if not pieces:
            return np.zeros(0)
        return np.concatenate(pieces)[inverse]


def _check_num_files(folder: Path, pattern: str, n_files: int, attr: str, first: Path) -> list[Path]:
    paths = [folder / pattern.format(i) for i in range(n_files)]
    for path in paths:
        if not path.is_file():
            raise HaloCatalogError(f"{path}: file not found, but {first} says Header {attr} = {n_files}")
    extra = folder / pattern.format(n_files)
    if extra.is_file():
        raise HaloCatalogError(f"{extra}: unexpected file, {first} says Header {attr} = {n_files}")
    return paths


def _group_catalog(base: Path, snapshot: int) -> tuple[_SplitFiles, dict[str, Any]]:
    """The split group catalog of ``snapshot`` and its header, with per-file counts checked."""
    folder = base / f"groups_{snapshot:03d}"
    pattern = f"fof_subhalo_tab_{snapshot:03d}.{{}}.hdf5"
    first = folder / pattern.format(0)
    if not first.is_file():
        raise HaloCatalogError(f"{first}: file not found; is {base} an IllustrisTNG 'output' folder?")
    names = ("NumFiles", "Ngroups_Total", "Nsubgroups_Total", "BoxSize", "HubbleParam", "Redshift", "Time")
    header = _attrs(first, names)
    if not np.isclose(header["Time"], 1.0 / (1.0 + header["Redshift"]), rtol=1e-5, atol=0.0):
        raise HaloCatalogError(
            f"{first}: Header Time = {header['Time']} but Redshift = {header['Redshift']} gives a = "
            f"{1.0 / (1.0 + header['Redshift']):.8g}; expected Time = 1 / (1 + Redshift)"
        )
    n_files = int(header["NumFiles"])
    paths = _check_num_files(folder, pattern, n_files, "NumFiles", first)
    counts: dict[str, list[int]] = {"Group": [], "Subhalo": []}
    for path in paths:
        info = _attrs(path, ("NumFiles", "Ngroups_ThisFile", "Nsubgroups_ThisFile"))
        if int(info["NumFiles"]) != n_files:
            raise HaloCatalogError(
                f"{path}: Header NumFiles = {int(info['NumFiles'])} but {first} says {n_files}; "
                "files of different catalogs are mixed"
            )
        counts["Group"].append(int(info["Ngroups_ThisFile"]))
        counts["Subhalo"].append(int(info["Nsubgroups_ThisFile"]))
    for table, attr in (("Group", "Ngroups"), ("Subhalo", "Nsubgroups")):
        if sum(counts[table]) != int(header[f"{attr}_Total"]):
            raise HaloCatalogError(
                f"{folder}: Header {attr}_ThisFile sums to {sum(counts[table])} over {n_files} files but "
                f"{attr}_Total = {int(header[f'{attr}_Total'])}; a file is missing or from another catalog"
            )
    count_attrs = {"Group": "Ngroups_ThisFile", "Subhalo": "Nsubgroups_ThisFile"}
    return _SplitFiles(paths, {k: np.array(v) for k, v in counts.items()}, count_attrs), header


def _snapshot(base: Path, snapshot: int) -> tuple[_SplitFiles, dict[str, Any]]:
    """The split snapshot (dark matter only) and its header, with per-file counts checked."""
    folder = base / f"snapdir_{snapshot:03d}"
    pattern = f"snap_{snapshot:03d}.{{}}.hdf5"
    first = folder / pattern.format(0)
    names = ("NumPart_ThisFile", "NumPart_Total", "MassTable", "NumFilesPerSnapshot", "BoxSize", "HubbleParam")
    header = _attrs(first, (*names, "Redshift", "Time"), optional=("NumPart_Total_HighWord",))
    n_files = int(header["NumFilesPerSnapshot"])
    paths = _check_num_files(folder, pattern, n_files, "NumFilesPerSnapshot", first)
    counts = []
    for path in paths:
        info = _attrs(path, ("NumPart_ThisFile", "NumFilesPerSnapshot", "MassTable"))
        if int(info["NumFilesPerSnapshot"]) != n_files:
            raise HaloCatalogError(
                f"{path}: Header NumFilesPerSnapshot = {int(info['NumFilesPerSnapshot'])} but {first} says "
                f"{n_files}; files of different snapshots are mixed"
            )
        if float(info["MassTable"][1]) != float(header["MassTable"][1]):
            raise HaloCatalogError(f"{path}: Header MassTable[1] differs from {first}'s")
        counts.append(int(info["NumPart_ThisFile"][1]))
    total = int(header["NumPart_Total"][1])
    if "NumPart_Total_HighWord" in header:  # Gadget stores counts above 2^32 in a second word
        total += int(header["NumPart_Total_HighWord"][1]) << 32
    if sum(counts) != total:
        raise HaloCatalogError(
            f"{folder}: Header NumPart_ThisFile[1] sums to {sum(counts)} over {n_files} files but "
            f"NumPart_Total[1] = {total}; a file is missing or from another snapshot"
        )
    if float(header["MassTable"][1]) <= 0:
        raise HaloCatalogError(
            f"{first}: Header MassTable[1] = {float(header['MassTable'][1])}; dark-matter particles of "
            "individual masses (PartType1/Masses) are not supported"
        )
    return _SplitFiles(paths, {"PartType1": np.array(counts)}, {"PartType1": "NumPart_ThisFile[1]"}), header


def _same_snapshot(a: dict[str, Any], a_name: Path, b: dict[str, Any], b_name: Path) -> None:
    for attr in ("Redshift", "BoxSize", "HubbleParam"):
        x, y = float(a[attr]), float(b[attr])
        if not np.isclose(x, y, rtol=1e-6, atol=1e-9):
            raise HaloCatalogError(f"{b_name}: Header {attr} = {y} but {a_name} has {x}; not the same snapshot")


def _first_sub(values: np.ndarray, folder: Path) -> np.ndarray:
    """GroupFirstSub as int64 with -1 for 'no subhalo' (some catalogs store it unsigned, -1 as the maximum)."""
    where = f"{folder}: field Group/GroupFirstSub"
    if values.dtype.kind == "u":
        out = values.astype(np.int64)
        out[values == np.iinfo(values.dtype).max] = -1
        return checked_values(out, where, integer=True, low=-1)
    return checked_values(values, where, integer=True, low=-1)  # -1: no subhalo


def _find_offsets(base: Path, snapshot: int) -> Path | None:
    name = f"offsets_{snapshot:03d}.hdf5"
    for path in (
        base / name,
        base / "postprocessing" / "offsets" / name,
        base.parent / "postprocessing" / "offsets" / name,
    ):
        if path.is_file():
            return path
    return None


class _Hydro:
    """The hydro twin's group catalog and the matching dark central -> hydro central."""

    def __init__(
        self,
        hydro_base: Path,
        snapshot: int,
        matching: Path,
        field: str,
        n_dark_subs: int,
        dark: dict[str, Any],
        dark_path: Path,
    ) -> None:
        self.cat, self.header = _group_catalog(hydro_base, snapshot)
        _same_snapshot(dark, dark_path, self.header, self.cat.paths[0])
        self.matching, self.field = matching, field
        n_groups, n_subs = self.cat.total("Group"), self.cat.total("Subhalo")
        first = _first_sub(
            self.cat.read_range("Group", "GroupFirstSub", 0, n_groups) if n_groups else np.zeros(0, np.int64),
            self.cat.paths[0].parent,
        )
        centrals = np.asarray(first[first >= 0], dtype=np.int64)
        with _open(matching) as handle:
            if field not in handle:
                raise HaloCatalogError(
                    f"{matching}: field {field} is missing (found {sorted(handle.keys())}); choose matching_field "
                    f"among {list(MATCHING_FIELDS)}"
                )
            dataset = handle[field]
            if dataset.shape != (n_subs,) or dataset.dtype.kind not in "iu":
                raise HaloCatalogError(
                    f"{matching}: field {field} has shape {dataset.shape} and dtype {dataset.dtype}; expected one "
                    f"integer per hydro subhalo ({n_subs}, from {self.cat.paths[0].parent})"
                )
            dark_of = np.asarray(dataset[()], dtype=np.int64)[centrals]
        if dark_of.size and (dark_of.max() >= n_dark_subs or dark_of.min() < -1):
            raise HaloCatalogError(
                f"{matching}: field {field} holds dark subhalo index {int(dark_of.max())} but the dark catalog has "
                f"{n_dark_subs} subhalos; the matching file belongs to another run or snapshot"
            )
        ok = dark_of >= 0
        # several hydro centrals may point at one dark subhalo: keep the lowest index, the most massive group
        sentinel = np.iinfo(np.int64).max
        self.hydro_of = np.full(n_dark_subs, sentinel, dtype=np.int64)
        np.minimum.at(self.hydro_of, dark_of[ok], centrals[ok])
        self.hydro_of[self.hydro_of == sentinel] = -1
        self.n_duplicates = int(ok.sum() - np.unique(dark_of[ok]).size)
        self.has_bh = self.cat.has_field("Subhalo", "SubhaloBHMass")

    def stellar(self, hydro: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stellar mass and half-mass radius of hydro subhalos, raw (1e10 Msun/h, ckpc/h)."""
        mstar = self.cat.read_rows("Subhalo", "SubhaloMassType", hydro)[:, 4].astype(np.float64)
        rhalf = self.cat.read_rows("Subhalo", "SubhaloHalfmassRadType", hydro)[:, 4].astype(np.float64)
        return mstar, rhalf

    def targets(self, hydro: np.ndarray, a: float, h: float) -> dict[str, np.ndarray]:
        """log_mstar (Msun), log_ssfr (yr^-1, floored), log_rhalf (kpc), log_mbh (Msun, floored)."""
        mstar, rhalf = self.stellar(hydro)
        mstar_msun = mstar * 1e10 / h
        folder = self.cat.paths[0].parent
        sfr = self.cat.read_rows("Subhalo", "SubhaloSFR", hydro)
        sfr = checked_values(sfr, f"{folder}: field Subhalo/SubhaloSFR", low=0.0)
        with np.errstate(divide="ignore"):
            out = {
                "log_mstar": np.log10(mstar_msun),
                "log_ssfr": np.maximum(np.log10(sfr / mstar_msun), LOG_SSFR_FLOOR),
                "log_rhalf": np.log10(rhalf * a / h),
            }
            if self.has_bh:
                bh = self.cat.read_rows("Subhalo", "SubhaloBHMass", hydro)
                bh = checked_values(bh, f"{folder}: field Subhalo/SubhaloBHMass", low=0.0)
                out["log_mbh"] = np.maximum(np.log10(bh * 1e10 / h), LOG_MBH_FLOOR)
        return out


@dataclass
class _Selection:
    """Groups that become halos (pending the particle cut) and why the others were skipped."""

    status: np.ndarray  # int8 per group: 0 kept, 1 + index in SKIPS otherwise
    group: np.ndarray
    first_sub: np.ndarray
    offset: np.ndarray  # first type-1 row of the group in the snapshot
    length: np.ndarray  # GroupLenType[:, 1]
    hydro: np.ndarray  # matched hydro central (-1 without matching)


def _select(
    groups: _SplitFiles,
    n_particles: int,
    offsets: Path | None,
    min_log_mass: float | None,
    hydro: _Hydro | None,
    snap_dir: Path,
) -> _Selection:
    """One pass over the group catalog in blocks: the cuts that need no particles, and the particle ranges."""
    n_groups = groups.total("Group")
    status = np.zeros(n_groups, dtype=np.int8)
    kept: list[tuple[np.ndarray, ...]] = []
    running = 0
    for start in range(0, n_groups, BLOCK):
        stop = min(start + BLOCK, n_groups)
        mass = groups.read_range("Group", "Group_M_Mean200", start, stop).astype(np.float64)
        radius = groups.read_range("Group", "Group_R_Mean200", start, stop).astype(np.float64)
        first = _first_sub(groups.read_range("Group", "GroupFirstSub", start, stop), groups.paths[0].parent)
        length = checked_values(
            groups.read_range("Group", "GroupLenType", start, stop)[:, 1],
            f"{groups.paths[0].parent}: field Group/GroupLenType[:, 1]",
            integer=True,
            low=0,
        )
        offset = running + np.concatenate([[0], np.cumsum(length)[:-1]])
        running += int(length.sum())
        if offsets is not None:
            _check_offsets(offsets, start, stop, offset, groups.paths[0].parent)
        low = (mass <= 0) | (radius <= 0)
        if min_log_mass is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                low |= np.log10(mass * 1e10) < min_log_mass  # the cut is in Msun/h, as in docs/protocols.md#halos
        reason = np.where(low, 1, np.where(first < 0, 2, 0)).astype(np.int8)
        match = np.full(stop - start, -1, dtype=np.int64)
        if hydro is not None:
            todo = reason == 0
            match[todo] = hydro.hydro_of[first[todo]]
            reason[todo & (match < 0)] = 3
            todo = reason == 0
            if todo.any():
                mstar, rhalf = hydro.stellar(match[todo])
                no_stars = np.zeros(stop - start, dtype=bool)
                no_stars[todo] = (mstar <= 0) | (rhalf <= 0)
                reason[no_stars] = 4
        status[start:stop] = reason
        rows = np.flatnonzero(reason == 0)
        kept.append((rows + start, first[rows], offset[rows], length[rows], match[rows]))
    if running > n_particles:
        raise HaloCatalogError(
            f"{groups.paths[0].parent}: GroupLenType[:, 1] sums to {running} particles but {snap_dir} holds "
            f"{n_particles}; the group catalog and the snapshot do not belong together"
        )
    columns = [np.concatenate(c) for c in zip(*kept, strict=True)] or [np.zeros(0, np.int64)] * 5
    return _Selection(status, *columns)


def _check_offsets(path: Path, start: int, stop: int, expected: np.ndarray, group_dir: Path) -> None:
    """The offsets file's Group/SnapByType[:, 1] must equal the cumulative GroupLenType[:, 1]."""
    with _open(path) as handle:
        if "Group" not in handle or "SnapByType" not in handle["Group"]:
            raise HaloCatalogError(f"{path}: field Group/SnapByType is missing; not an IllustrisTNG offsets file")
        dataset = handle["Group"]["SnapByType"]
        if dataset.ndim != 2 or dataset.shape[0] < stop or dataset.shape[1] < 2:
            raise HaloCatalogError(
                f"{path}: field Group/SnapByType has shape {dataset.shape}; expected ({stop} or more, 6) rows "
                f"for the groups of {group_dir}"
            )
        found = np.asarray(dataset[start:stop, 1], dtype=np.int64)
    differ = np.flatnonzero(found != expected)
    if differ.size:
        i = int(differ[0])
        raise HaloCatalogError(
            f"{path}: Group/SnapByType[{start + i}, 1] = {int(found[i])} but the cumulative GroupLenType[:, 1] of "
            f"{group_dir} gives {int(expected[i])}; the offsets file belongs to another run or snapshot"
        )


def _plan(sel: _Selection, chunk_halos: int, max_particles: int) -> list[tuple[int, int]]:
    """Slices of the selected groups, each at most ``chunk_halos`` halos and (unless one halo) particles."""
    bounds, start, particles = [], 0, 0
    for k, n in enumerate(sel.length.tolist()):
        if k > start and (k - start >= chunk_halos or particles + n > max_particles):
            bounds.append((start, k))
            start, particles = k, 0
        particles += n
    if start < sel.group.size:
        bounds.append((start, sel.group.size))
    return bounds


def _particles(snap: _SplitFiles, sel: _Selection, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw coordinates and velocities of the selected groups ``rows``, reading adjacent groups together."""
    offset, length = sel.offset[rows], sel.length[rows]
    coords, vels = [], []
    k = 0
    while k < rows.size:
        end = k + 1
        while end < rows.size and offset[end] == offset[end - 1] + length[end - 1]:
            end += 1
        lo, hi = int(offset[k]), int(offset[end - 1] + length[end - 1])
        if hi > lo:
            coords.append(snap.read_range("PartType1", "Coordinates", lo, hi).astype(np.float64))
            vels.append(snap.read_range("PartType1", "Velocities", lo, hi).astype(np.float64))
        k = end
    if not coords:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return np.concatenate(coords), np.concatenate(vels)


def iter_tng(
    base_path: str | Path,
    snapshot: int,
    *,
    chunk_halos: int = 1000,
    min_log_mass: float | None = None,
    matching: str | Path | None = None,
    hydro_base_path: str | Path | None = None,
    within: str = "R200m",
    matching_field: str = "SubhaloIndexDark_LHaloTree",
    max_chunk_particles: int = 20_000_000,
) -> Iterator[xr.Dataset]:
    """Halos of an IllustrisTNG / Illustris snapshot as canonical ``halos.catalog`` chunks (physical units).

    One halo per FoF group: ``halo_id`` is the group index; ``M200m`` (Msun) and ``R200m`` (kpc) from
    ``Group_M_Mean200`` / ``Group_R_Mean200``; ``position`` (kpc) is ``GroupPos`` (the potential minimum);
    ``velocity`` (km/s) the group's peculiar bulk velocity ``GroupVel / a``; ``spin`` is the Bullock
    lambda' = |j| / (sqrt(2) V200m R200m) with j the specific angular momentum ``SubhaloSpin / h``
    (kpc km/s) of the central subhalo (its bound particles, about its own centre) and
    V200m = sqrt(G M200m / R200m); ``sigma_v`` (km/s) is the central's one-dimensional
    ``SubhaloVelDisp``. No concentration: the catalog has none, and inverting Vmax / V200 (Prada et al.
    2012) needs a 200c radius and fails for Vmax / V200 < 1. Particles are the group's FoF dark-matter
    particles, unwrapped periodically around ``GroupPos``: those within R200m (``within="R200m"``; FoF
    members only, as the snapshot order gives no others) or all of them (``within="fof"``).

    Groups are skipped, and counted per chunk in ``n_skipped_<reason>`` attributes (each group under the
    first reason that applies): ``low_mass`` (log10 Group_M_Mean200 in Msun/h below ``min_log_mass``,
    or M200m / R200m not positive), ``no_central`` (GroupFirstSub = -1), and with ``matching``:
    ``unmatched`` (no hydro central is matched to the dark central; the canonical check refuses NaN
    targets, so these are dropped, not filled), ``no_stars`` (matched hydro central with zero stellar
    mass or half-mass radius); finally ``no_particles`` (no particle within R200m). Chunks cover
    consecutive group ranges ``[group_start, group_stop)`` that together cover every group, so summing
    a count over chunks gives the total.

    With ``matching`` (the ``subhalo_matching_to_dark`` file; ``matching_field`` one of
    :data:`MATCHING_FIELDS`) and ``hydro_base_path`` (the hydro run's ``output`` folder) the targets
    ``log_mstar`` (Msun), ``log_ssfr`` (yr^-1, at least :data:`LOG_SSFR_FLOOR`), ``log_rhalf`` (kpc)
    and, when the catalog has ``SubhaloBHMass``, ``log_mbh`` (Msun, at least :data:`LOG_MBH_FLOOR`)
    are attached.

    Memory: two chunks (``chunk_halos`` halos each, at most ``max_chunk_particles`` FoF particles read unless
    a single halo has more) plus one byte per group and, with matching, one integer per dark subhalo.
    Raises :class:`HaloCatalogError` naming the file and field for missing, truncated, inconsistent
    or non-finite data, and for Header numbers out of range (:data:`HEADER_CHECKS`); a Redshift
    between -0.5 and 0 is accepted with a :class:`~sims.halos.catalog.NegativeRedshiftWarning`.
    ``min_log_mass`` must be finite, in [0, 20] (:class:`~sims.halos.catalog.HaloOptionError` otherwise).
    """
    if within not in WITHIN:
        raise ValueError(f"within must be one of {WITHIN}, got {within!r}")
    if chunk_halos < 1 or max_chunk_particles < 1:
        raise ValueError("chunk_halos and max_chunk_particles must be positive")
    if (matching is None) != (hydro_base_path is None):
        raise ValueError("matching and hydro_base_path go together: give both (targets) or neither")
    if min_log_mass is not None:  # NaN would compare False and cut nothing
        min_log_mass = checked_number(min_log_mass, "min_log_mass", low=0.0, high=20.0, error=HaloOptionError)
    if matching_field not in MATCHING_FIELDS:
        raise ValueError(f"matching_field must be one of {MATCHING_FIELDS}, got {matching_field!r}")
    base = Path(base_path)
    groups, header = _group_catalog(base, snapshot)
    if groups.total("Group") == 0:
        raise HaloCatalogError(f"{groups.paths[0]}: no halos (Header Ngroups_Total = 0)")
    snap, snap_header = _snapshot(base, snapshot)
    _same_snapshot(header, groups.paths[0], snap_header, snap.paths[0])
    z = checked_redshift(header["Redshift"], f"{groups.paths[0]}: Header attribute Redshift")  # warns if < 0
    h, box = float(header["HubbleParam"]), float(header["BoxSize"])
    a = 1.0 / (1.0 + z)
    hydro = None
    if matching is not None:
        hydro = _Hydro(
            Path(hydro_base_path),
            snapshot,
            Path(matching),
            matching_field,
            groups.total("Subhalo"),
            header,
            groups.paths[0],
        )
    offsets = _find_offsets(base, snapshot)
    sel = _select(groups, snap.total("PartType1"), offsets, min_log_mass, hydro, snap.paths[0].parent)
    if sel.group.size == 0:
        counts = {f"n_skipped_{r}": int((sel.status == i + 1).sum()) for i, r in enumerate(SKIPS)}
        raise HaloCatalogError(f"{groups.paths[0].parent}: no group passes the selection ({counts})")

    particle_mass = float(snap_header["MassTable"][1]) * 1e10 / h
    attrs: dict[str, Any] = {
        "snapshot": int(snapshot),
        "expansion_factor": a,  # not "scale_factor": netCDF reserves that name
        "box_size_ckpc_h": box,
        "base_path": str(base),
        "within": within,
        "n_groups_total": groups.total("Group"),
        "particle_mass_msun": particle_mass,
        "offsets_source": str(offsets) if offsets is not None else "cumulative GroupLenType[:, 1]",
        "tng_units": json.dumps(TNG_UNITS),
        "spin_definition": "Bullock lambda' = |SubhaloSpin| / h / (sqrt(2) V200m R200m), central subhalo",
        "sigma_v_definition": "SubhaloVelDisp of the central subhalo (one-dimensional, km/s)",
        "concentration_note": "not provided: TNG catalogs have no concentration",
    }
    if min_log_mass is not None:
        attrs["min_log_mass_msun_h"] = float(min_log_mass)
    if hydro is not None:
        attrs |= {
            "hydro_base_path": str(Path(hydro_base_path)),
            "matching_file": str(Path(matching)),
            "matching_field": matching_field,
            "n_matching_duplicates": hydro.n_duplicates,
            "log_ssfr_floor": LOG_SSFR_FLOOR,
            "log_mbh_floor": LOG_MBH_FLOOR,
        }

    def build(halos: dict, particles: dict, no_particles: int, index: int, span: tuple[int, int]) -> xr.Dataset:
        reasons = np.bincount(sel.status[span[0] : span[1]], minlength=len(SKIPS) + 1)
        skips = {f"n_skipped_{r}": int(reasons[i + 1]) for i, r in enumerate(SKIPS[:-1])}
        chunk_attrs = attrs | skips | {"n_skipped_no_particles": no_particles, "chunk_index": index}
        chunk_attrs |= {"group_start": span[0], "group_stop": span[1]}
        ds = catalog_dataset(
            halos,
            particles,
            source_format="tng",
            redshift=z,
            hubble=h,
            box_size_kpc=box * a / h,
            attrs=chunk_attrs,
            source=f"{groups.paths[0].parent} (groups {span[0]}:{span[1]})",
        )
        for name, (field, units) in VARIABLE_SOURCES.items():
            if name in ds:
                ds[name].attrs |= {"tng_field": field, "tng_units": units}
        return ds

    # A chunk whose halos all lose their particles is folded into a neighbour, so that no chunk is empty
    # and the group ranges still tile [0, n_groups): hence one chunk of look-ahead.
    plan = _plan(sel, chunk_halos, max_chunk_particles)
    pending: list[Any] | None = None  # halos, particles, no_particles, [group_start, group_stop]
    emitted, next_start, carried = 0, 0, 0
    for k, (lo, hi) in enumerate(plan):
        stop = groups.total("Group") if k == len(plan) - 1 else int(sel.group[hi - 1]) + 1
        halos, particles, no_particles = _chunk(
            groups, snap, sel, np.arange(lo, hi), hydro, a, h, box, within, particle_mass
        )
        if particles["particle_mass"].size == 0:
            if pending is None:
                carried += no_particles
            else:
                pending[2] += no_particles
                pending[3][1] = stop
            continue
        if pending is not None:
            yield build(pending[0], pending[1], pending[2], emitted, tuple(pending[3]))
            emitted += 1
            next_start = pending[3][1]
        pending = [halos, particles, no_particles + carried, [next_start, stop]]
        carried = 0
    if pending is None:
        raise HaloCatalogError(
            f"{groups.paths[0].parent}: none of the {sel.group.size} selected groups has a particle within R200m "
            f"in {snap.paths[0].parent}"
        )
    yield build(pending[0], pending[1], pending[2], emitted, tuple(pending[3]))


def _chunk(
    groups: _SplitFiles,
    snap: _SplitFiles,
    sel: _Selection,
    rows: np.ndarray,
    hydro: _Hydro | None,
    a: float,
    h: float,
    box: float,
    within: str,
    particle_mass: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Canonical halo and particle arrays of the selected groups ``rows``, and how many had no particles.

    ``particle_mass`` is in Msun; ``a`` the scale factor, ``h`` the Hubble parameter, ``box`` in ckpc/h.
    """
    g, first = sel.group[rows], sel.first_sub[rows]
    mass = groups.read_rows("Group", "Group_M_Mean200", g).astype(np.float64)
    radius = groups.read_rows("Group", "Group_R_Mean200", g).astype(np.float64)
    centre = groups.read_rows("Group", "GroupPos", g).astype(np.float64)
    velocity = groups.read_rows("Group", "GroupVel", g).astype(np.float64)
    spin = groups.read_rows("Subhalo", "SubhaloSpin", first).astype(np.float64)
    veldisp = groups.read_rows("Subhalo", "SubhaloVelDisp", first).astype(np.float64)
    coords, vels = _particles(snap, sel, rows)

    keep_halo = np.zeros(rows.size, dtype=bool)
    counts = np.zeros(rows.size, dtype=np.int64)
    positions, velocities = [], []
    start = 0
    for k in range(rows.size):
        stop = start + int(sel.length[rows[k]])
        dx = coords[start:stop] - centre[k]
        dx -= box * np.round(dx / box)  # nearest periodic image of each particle: no jumps inside a halo
        inside = (dx * dx).sum(axis=1) <= radius[k] ** 2 if within == "R200m" else np.ones(len(dx), bool)
        if inside.any():
            keep_halo[k] = True
            counts[k] = int(inside.sum())
            positions.append((centre[k] + dx[inside]) * (a / h))
            velocities.append(vels[start:stop][inside] * np.sqrt(a))
        start = stop

    m_phys, r_phys = mass * 1e10 / h, radius * a / h
    v200 = np.sqrt(G_KPC * m_phys / r_phys)
    halos = {
        "halo_id": g,
        "M200m": m_phys,
        "R200m": r_phys,
        "position": centre * (a / h),
        "velocity": velocity / a,
        "particle_count": counts,
        "spin": np.linalg.norm(spin, axis=1) / h / (np.sqrt(2.0) * v200 * r_phys),
        "sigma_v": veldisp,
    }
    if hydro is not None:
        halos |= hydro.targets(sel.hydro[rows], a, h)
    halos = {name: values[keep_halo] for name, values in halos.items()}
    n = int(counts.sum())
    particles = {
        "particle_position": np.concatenate(positions) if positions else np.zeros((0, 3)),
        "particle_velocity": np.concatenate(velocities) if velocities else np.zeros((0, 3)),
        "particle_mass": np.full(n, particle_mass),
    }
    return halos, particles, int((~keep_halo).sum())
