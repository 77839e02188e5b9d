"""The project's halo readers against independent peer readers on the real halo catalogs in
../shared/real_halos (see its SOURCES.md): halotools' TabularAsciiReader and ytree read each file
themselves, and the project's halo count, IDs, M200m, R200m, concentration, positions, velocities
and epoch attributes must agree with theirs after the project's unit conversions
(Msun/h -> Msun: / h; comoving Mpc/h -> physical kpc: x 1000 a / h; comoving kpc/h -> physical
kpc: x a / h; physical km/s unchanged).

Peers used when this was written (the optional extra `peers`: pip install -e ".[peers]"; nothing the project pins
changed): halotools 0.9.5 (with astropy 8.0.2), ytree 3.3.1 (with yt 4.4.3, unyt 3.2.0):
    .venv/bin/python -m pip install halotools==0.9.5 ytree==3.3.1
Each test skips when its peer is not installed or the shared files are absent. Run with -m slow.

Which peer reads which file (tried with those versions):
- halotools reads every text file, by column index and dtype given here; it parses no header
  names or units, so the header's a, h and Om are read here by a few regular expressions.
- ytree reads Rockstar out_*.list (RockstarArbor) and consistent-trees hlist_*.list
  (ConsistentTreesHlistArbor), but only by file name: the files are linked into a temporary folder
  under names ytree recognises (never copied). ytree has no reader for Rockstar's per-chunk
  halos_*.ascii or halos_*.bin. It stores floats as float32.
- Neither peer reads halos_*.bin.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from support import REAL_HALOS

from sims.halos.ingest import iter_source

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_HALOS.is_dir(), reason="shared real halo files absent"),
]

# the project's format names (one place, in case they change)
ROCKSTAR_FORMAT = "rockstar"
CTREES_FORMAT = "ctrees"

# 3 (100 km/s/Mpc)^2 / (8 pi G) in h^2 Msun kpc^-3 (astropy 8.0 constants give 277.5366272)
RHO_CRIT0 = 277.536627

# halotools parses float64 from the same text as the project: only rounding in the unit factors
RTOL_FLOAT64 = 1e-12
# ytree stores every float column (and the scale factor) as float32: one float32 rounding (6e-8)
# of each value, plus one more in ytree's float32 unit conversion
RTOL_YTREE = 1e-6


@dataclass(frozen=True)
class RealFile:
    """A real file, the project's format for it, and where its columns are: (header spelling,
    0-based index) for id, Mvir, M200b, Rvir, Rs, X, Y, Z, VX, VY, VZ, written out here from
    SOURCES.md (checked against the header line), not found by the project's column lookup."""

    path: Path
    format: str
    columns: dict[str, tuple[str, int]]
    n_rows: int  # from SOURCES.md
    ytree_name: str | None  # the name ytree recognises the file by; None: ytree does not read it


def _columns(names: str, indices: tuple[int, ...]) -> dict[str, tuple[str, int]]:
    keys = ("id", "mvir", "m200b", "rvir", "rs", "x", "y", "z", "vx", "vy", "vz")
    return dict(zip(keys, zip(names.split(), indices, strict=True), strict=True))


OUT_COLUMNS = _columns("ID Mvir M200b Rvir Rs X Y Z VX VY VZ", (0, 2, 20, 5, 6, 8, 9, 10, 11, 12, 13))
ASCII_COLUMNS = _columns("id mvir m200b rvir Rs x y z vx vy vz", (0, 2, 26, 4, 43, 8, 9, 10, 11, 12, 13))
HLIST_COLUMNS = _columns("id mvir M200b rvir rs x y z vx vy vz", (1, 10, 39, 11, 12, 17, 18, 19, 20, 21, 22))

OUT_LIST = REAL_HALOS / "halodatamanager_out_list"
FILES = [
    *(
        RealFile(OUT_LIST / f"out_{snap}.list", ROCKSTAR_FORMAT, OUT_COLUMNS, n, f"out_{snap}.list")
        for snap, n in ((160, 4867), (161, 4834), (162, 4791), (163, 4764))
    ),
    RealFile(REAL_HALOS / "turnaround_gevolution_ascii" / "halos_0.0.ascii", ROCKSTAR_FORMAT, ASCII_COLUMNS, 126, None),
    RealFile(
        REAL_HALOS / "halotools_ctrees_hlist" / "dummy_halocat_0.07812.list",
        CTREES_FORMAT,
        HLIST_COLUMNS,
        436,
        "hlist_0.07812.list",
    ),
]


@dataclass
class PeerTable:
    """What a peer read, in the project's canonical units."""

    ids: np.ndarray
    m200b: np.ndarray  # Msun
    rvir: np.ndarray  # physical kpc
    rs: np.ndarray  # physical kpc
    position: np.ndarray  # (halo, 3) physical kpc
    velocity: np.ndarray  # (halo, 3) km/s
    a: float
    h: float
    omega_m: float
    box_kpc: float  # physical kpc at a
    rtol: float


# -- the project --------------------------------------------------------------------------------------


def _project(real: RealFile) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gevolution run's z < 0, the hlist's halos with M200b = 0
        chunks = list(iter_source(real.path, real.format))
    return xr.concat(chunks, dim="halo") if len(chunks) > 1 else chunks[0]


# -- halotools ----------------------------------------------------------------------------------------


def _header(path: Path) -> tuple[list[str], str]:
    """The column names of the first header line (consistent-trees' '(n)' suffixes dropped) and
    all header text."""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line)
    names = [re.sub(r"\(\d+\)$", "", name) for name in lines[0][1:].split()]
    return names, "".join(lines)


def _header_number(text: str, pattern: str) -> float:
    match = re.search(pattern + r"\s*([-+0-9.eE]+)", text, re.MULTILINE)
    assert match, f"no {pattern!r} in the header"
    return float(match.group(1))


@pytest.fixture(scope="module", autouse=True)
def _astropy_cache_outside_home(tmp_path_factory):
    """halotools makes ~/.astropy/cache/halotools when imported (Path.home()), and astropy its cache
    and config folders: both go to a temporary home here."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        yield


def _halotools_table(real: RealFile) -> PeerTable:
    pytest.importorskip("halotools")
    from halotools.sim_manager import TabularAsciiReader

    names, text = _header(real.path)
    for spelled, index in real.columns.values():  # the indices written above are the header's
        assert names[index] == spelled, (real.path.name, index, names[index], spelled)
    keep = {key: (index, "i8" if key == "id" else "f8") for key, (_, index) in real.columns.items()}
    if real.format == CTREES_FORMAT:
        keep["scale"] = (names.index("scale"), "f8")
    reader = TabularAsciiReader(str(real.path), keep)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        t = reader.read_ascii()
    assert reader.data_len() == real.n_rows
    if real.format == CTREES_FORMAT:  # '#Omega_M = ...; Omega_L = ...; h0 = ...', a per row
        assert np.unique(t["scale"]).size == 1
        a = float(t["scale"][0])
        h = _header_number(text, r"\bh0 =")
        omega_m = _header_number(text, r"Omega_M =")
        box = _header_number(text, r"^#Full box size =")
    else:  # '#a = ...', '#Om = ...; Ol = ...; h = ...', '#Box size: ... Mpc/h'
        a = _header_number(text, r"^#a =")
        h = _header_number(text, r"\bh =")
        omega_m = _header_number(text, r"^#Om =")
        box = _header_number(text, r"^#Box size:")
    return PeerTable(
        ids=t["id"].astype(np.int64),
        m200b=t["m200b"] / h,
        rvir=t["rvir"] * a / h,
        rs=t["rs"] * a / h,
        position=np.stack([t[c] for c in "xyz"], axis=1) * 1000.0 * a / h,
        velocity=np.stack([t[f"v{c}"] for c in "xyz"], axis=1),
        a=a,
        h=h,
        omega_m=omega_m,
        box_kpc=box * 1000.0 * a / h,
        rtol=RTOL_FLOAT64,
    )


# -- ytree --------------------------------------------------------------------------------------------


def _ytree_table(real: RealFile, tmp_path: Path) -> PeerTable:
    ytree = pytest.importorskip("ytree")
    # ytree finds a catalog's other snapshots by its name (out_<n>.list, hlist_<a>.list) in its
    # folder, and its Rockstar reader takes the snapshot number from the first 'out_' in the whole
    # path, which here is the folder 'halodatamanager_out_list' (ValueError: invalid literal for
    # int() with base 10: 'list/out_160'): so each file is linked alone into a folder of its own
    folder = tmp_path / "ytree"
    folder.mkdir()
    (folder / real.ytree_name).symlink_to(real.path)
    arbor = ytree.load(str(folder / real.ytree_name))
    assert arbor.size == real.n_rows
    h = float(arbor.hubble_constant)
    col = {key: spelled for key, (spelled, _) in real.columns.items()}

    def values(key: str, unit: str | None) -> np.ndarray:
        field = arbor[col[key]]
        if unit is None:  # ytree gives no units to this column
            assert not hasattr(field, "units") or str(field.units) == "dimensionless", (key, field.units)
            return np.asarray(field, dtype=np.float64)
        return np.asarray(field.to_value(unit), dtype=np.float64)

    scale = np.asarray(arbor["scale_factor"], dtype=np.float64)
    assert np.unique(scale).size == 1
    a = float(scale[0])
    # ytree's units: masses Msun/h, radii kpc/h, positions Mpc/h, all comoving without saying so
    # ('comoving' is dropped from the header's unit text); velocities km/s
    if real.format == CTREES_FORMAT:
        # ytree reads no units for consistent-trees' M200b ('#M200b--M2500c: ... (Msun/h)' is not
        # one field's line): it is Msun/h by that header line
        m200b = values("m200b", None) / h
    else:
        m200b = values("m200b", "Msun")
    return PeerTable(
        ids=np.asarray(arbor[col["id"]], dtype=np.int64),
        m200b=m200b,
        rvir=values("rvir", "kpc") * a,
        rs=values("rs", "kpc") * a,
        position=np.stack([values(c, "kpc") for c in "xyz"], axis=1) * a,
        velocity=np.stack([values(f"v{c}", "km/s") for c in "xyz"], axis=1),
        a=a,
        h=h,
        omega_m=float(arbor.omega_matter),
        box_kpc=float(arbor.box_size.to_value("kpc")) * a,
        rtol=RTOL_YTREE,
    )


# -- the comparison -----------------------------------------------------------------------------------


def _compare(real: RealFile, peer: PeerTable, ds: xr.Dataset) -> None:
    rtol = peer.rtol
    assert peer.ids.size == real.n_rows
    assert np.unique(peer.ids).size == peer.ids.size
    # the project leaves out halos whose M200b is 0 (not measured); all the others, once each
    measured = peer.m200b > 0
    assert ds.sizes["halo"] == measured.sum()
    ids = ds["halo_id"].values
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(np.sort(ids), np.sort(peer.ids[measured]))
    mine = np.argsort(ids)
    theirs = np.flatnonzero(measured)[np.argsort(peer.ids[measured])]

    assert ds.attrs["hubble"] == pytest.approx(peer.h, rel=rtol)
    assert ds.attrs["expansion_factor"] == pytest.approx(peer.a, rel=rtol)
    assert ds.attrs["redshift"] == pytest.approx(1.0 / peer.a - 1.0, rel=rtol, abs=rtol)
    assert ds.attrs["box_size_kpc"] == pytest.approx(peer.box_kpc, rel=rtol)
    assert ds.attrs["mass_definition"].startswith("M200b")  # every real file has an M200b column

    m200b = peer.m200b[theirs]
    np.testing.assert_allclose(ds["M200m"].values[mine], m200b, rtol=rtol)
    np.testing.assert_allclose(ds["position"].values[mine], peer.position[theirs], rtol=rtol)
    np.testing.assert_allclose(ds["velocity"].values[mine], peer.velocity[theirs], rtol=rtol)

    # no file has an R200b column: R200m is from M200b and the mean matter density at a
    rho_m = peer.omega_m * RHO_CRIT0 * peer.h**2 / peer.a**3  # Msun / physical kpc^3
    r200m = np.cbrt(3.0 * m200b / (4.0 * np.pi * 200.0 * rho_m))
    np.testing.assert_allclose(ds["R200m"].values[mine], r200m, rtol=rtol)
    # the concentration is R200m over the NFW scale radius Rs
    np.testing.assert_allclose(ds["concentration"].values[mine], r200m / peer.rs[theirs], rtol=rtol)
    # Rvir: the peer read it; the project is compared where it exposes it
    assert (peer.rvir[theirs] > 0).all()
    for name in ("rvir", "Rvir", "R_vir"):
        if name in ds:
            np.testing.assert_allclose(ds[name].values[mine], peer.rvir[theirs], rtol=rtol)


@pytest.mark.parametrize("real", FILES, ids=lambda r: r.path.name)
def test_project_reader_agrees_with_halotools(real):
    peer = _halotools_table(real)
    _compare(real, peer, _project(real))


@pytest.mark.parametrize("real", [r for r in FILES if r.ytree_name], ids=lambda r: r.path.name)
def test_project_reader_agrees_with_ytree(real, tmp_path):
    peer = _ytree_table(real, tmp_path)
    _compare(real, peer, _project(real))
