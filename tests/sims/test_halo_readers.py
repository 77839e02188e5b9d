"""Halo catalog readers: Rockstar ASCII with .particles files, the canonical HDF5 file, streaming in chunks.

Fixtures are written in the real layouts (Rockstar's header and units lines) and the expected values
are computed by hand from Rockstar's units: a = 0.5, h = 0.7, so 1 comoving Mpc/h = 1000 * 0.5 / 0.7 kpc.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from data_catalog import check_dataset
from sims.halos.catalog import HALOS_KIND, HaloCatalogError, chunk_bounds, has_particles
from sims.halos.readers import (
    DROPPED_ATTR,
    iter_hdf5,
    open_canonical,
    write_canonical,
)
from sims.halos.rockstar import iter_rockstar, read_rockstar_header

KPC = 1000 * 0.5 / 0.7  # kpc per comoving Mpc/h at a = 0.5, h = 0.7
BOX = 250.0  # Mpc/h

# Rockstar's out_*.list column line (without its '#')
HEADER = (
    "ID DescID Mvir Vmax Vrms Rvir Rs Np X Y Z VX VY VZ JX JY JZ Spin rs_klypin Mvir_all M200b M200c M500c "
    "M2500c Xoff Voff spin_bullock b_to_a c_to_a A[x] A[y] A[z] b_to_a(500c) c_to_a(500c) A[x](500c) A[y](500c) "
    "A[z](500c) T/|U| M_pe_Behroozi M_pe_Diemer Halfmass_Radius"
)
COLUMNS = HEADER.split()
# and the column line of halos_*.ascii, lower case and without M200b (a shortened one)
ASCII_HEADER = "id num_p mvir mbound_vir rvir vmax rvmax vrms x y z vx vy vz Jx Jy Jz E Spin rs"

INFO = """#a = 0.500000
#Om = 0.300000; Ol = 0.700000; h = 0.700000
#FOF linking length: 0.280000
#Unbound Threshold: 0.500000; FOF Refinement Threshold: 0.700000
#Particle mass: 1.40000e+08 Msun/h
#Box size: 250.000000 Mpc/h
#Force resolution assumed: 0.001 Mpc/h
#Units: Masses in Msun / h
#Units: Positions in Mpc / h (comoving)
#Units: Velocities in km / s (physical, peculiar)
#Units: Halo Distances, Lengths, and Radii in kpc / h (comoving)
#Units: Angular Momenta in (Msun/h) * (Mpc/h) * km/s (physical)
#Units: Spins are dimensionless
"""

PARTICLE_PREAMBLE = """#Halo table:
#id internal_id num_p mvir mbound_vir rvir vmax rvmax vrms x y z vx vy vz Jx Jy Jz energy spin
#Particle table:
#x y z vx vy vz particle_id assigned_internal_haloid internal_haloid external_haloid
#Notes: As not all halos are printed, some halos may not have external halo ids.  (Hence the need to print \
internal halo ids).
"""

# ID: (X, Y, Z) Mpc/h, (VX, VY, VZ) km/s, M200b Msun/h, Rvir and Rs kpc/h, Vrms km/s, Spin
HALOS = {
    10: ((100.0, 100.0, 100.0), (120.0, -35.0, 10.0), 7.0e12, 350.0, 35.0, 210.0, 0.031),
    11: ((50.0, 60.0, 70.0), (-5.0, 0.0, 44.0), 1.4e12, 200.0, 25.0, 120.0, 0.045),
    12: ((249.98, 10.0, 20.0), (1.0, 2.0, 3.0), 3.5e11, 130.0, 10.0, 80.0, 0.020),
    13: ((200.0, 200.0, 200.0), (0.0, -7.0, 0.5), 2.8e12, 260.0, 20.0, 150.0, 0.060),
    14: ((5.0, 5.0, 5.0), (9.0, 9.0, -9.0), 7.0e11, 160.0, 16.0, 95.0, 0.038),
}


def _halo_row(hid: int, columns: list[str], **override: object) -> str:
    (x, y, z), (vx, vy, vz), m200b, rvir, rs, vrms, spin = HALOS[hid]
    values = {
        "ID": hid, "DescID": -1, "Mvir": 1.1 * m200b, "Vmax": 1.5 * vrms, "Vrms": vrms, "Rvir": rvir, "Rs": rs,
        "Np": 100, "X": x, "Y": y, "Z": z, "VX": vx, "VY": vy, "VZ": vz, "Spin": 2 * spin, "spin_bullock": spin, "rs_klypin": rs,
        "Mvir_all": 1.2 * m200b, "M200b": m200b, "M200c": 0.8 * m200b, "M500c": 0.6 * m200b, "M2500c": 0.3 * m200b,
    }  # fmt: skip
    values.update(override)
    return " ".join(str(values.get(c, 0.5)) for c in columns)


def _particles(hid: int, offsets: list[tuple[float, float, float]], first_pid: int) -> list[str]:
    (x, y, z), (vx, vy, vz) = HALOS[hid][:2]
    rows = []
    for k, (dx, dy, dz) in enumerate(offsets):
        px, py, pz = ((c + d) % BOX for c, d in zip((x, y, z), (dx, dy, dz), strict=True))
        pid = first_pid + (7 * k) % len(offsets)  # ids out of order: the reader sorts them
        rows.append(f"{px:.7e} {py:.7e} {pz:.7e} {vx + k:.7e} {vy:.7e} {vz - k:.7e} {pid} 3 3 {hid}")
    return rows


SPREAD = [(0.01, 0.0, 0.0), (-0.01, 0.005, 0.0), (0.0, -0.01, 0.01), (0.004, 0.004, -0.004)]
# halo 12 sits at X = 249.98 Mpc/h: these particles straddle the box edge at 250
STRADDLE = [(-0.01, 0.0, 0.0), (0.01, 0.0, 0.0), (0.025, 0.001, 0.0)]


def write_rockstar(
    directory: Path,
    *,
    halos: tuple[int, ...] = (10, 11, 12, 13, 14),
    columns: list[str] = COLUMNS,
    info: str = INFO,
    skip_particles: tuple[int, ...] = (),
    row_override: dict[int, dict[str, object]] | None = None,
) -> Path:
    """out_0.list and two particle files halos_0.0.particles / halos_0.1.particles (Rockstar's names)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["#" + " ".join(columns), info.rstrip("\n"), "#Np is an internal debugging quantity.",
             "#Rockstar Version: 0.99.9-RC3"]  # fmt: skip
    lines += [_halo_row(h, columns, **(row_override or {}).get(h, {})) for h in halos]
    catalog = directory / "out_0.list"
    catalog.write_text("\n".join(lines) + "\n")
    blocks = {h: _particles(h, STRADDLE if h == 12 else SPREAD, 1000 * h) for h in HALOS if h not in skip_particles}
    halo_table = "".join(f"#{h} {i} 4 1e12 1e12 100 100 10 50 1 1 1 0 0 0 0 0 0 0 0.03\n" for i, h in enumerate(HALOS))
    # halo 11 is split over both files (two runs); a halo Rockstar did not print has external id -1
    first = blocks.get(10, []) + blocks.get(11, [])[:2] + ["1.0e+00 1.0e+00 1.0e+00 0 0 0 5 9 9 -1"]
    second = blocks.get(11, [])[2:] + blocks.get(12, []) + blocks.get(13, []) + blocks.get(14, [])
    for k, rows in enumerate((first, second)):
        text = PARTICLE_PREAMBLE + info + "#Halo table begins here:\n" + halo_table + "#Particle table begins here:\n"
        (directory / f"halos_0.{k}.particles").write_text(text + "\n".join(rows) + "\n")
    return catalog


def _concat(chunks: list[xr.Dataset]) -> dict[str, np.ndarray]:
    """The chunks' arrays joined (offsets made global), for comparisons."""
    out: dict[str, list[np.ndarray]] = {}
    shift = 0
    for chunk in chunks:
        for name, var in chunk.data_vars.items():
            values = var.values + shift if name == "particle_offset" else var.values
            out.setdefault(str(name), []).append(values)
        shift += chunk.sizes["particle"]
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.fixture
def rockstar(tmp_path) -> Path:
    return write_rockstar(tmp_path / "rockstar")


# -- Rockstar: units, particles, chunks --------------------------------------------------------------


def test_rockstar_header_is_parsed(rockstar):
    header = read_rockstar_header(rockstar)
    assert header.columns[:3] == ("ID", "DescID", "Mvir") and header.scale_factor == 0.5
    assert (header.omega_m, header.hubble) == (0.3, 0.7)
    assert header.box_size == (250.0, "Mpc/h") and header.particle_mass == (1.4e8, "Msun/h")
    assert header.units["radius"] == "kpc / h (comoving)"


def test_rockstar_values_are_converted_to_physical_units(rockstar):
    (ds,) = list(iter_rockstar(rockstar, chunk_halos=100))
    assert check_dataset(ds, HALOS_KIND) == []
    assert ds["halo_id"].values.tolist() == [10, 11, 12, 13, 14]
    assert ds.attrs["source_format"] == "rockstar" and ds.attrs["redshift"] == pytest.approx(1.0)
    assert ds.attrs["hubble"] == 0.7 and ds.attrs["box_size_kpc"] == pytest.approx(250 * 1000 * 0.5 / 0.7)
    assert "M200b" in ds.attrs["mass_definition"]
    h10 = ds.sel(halo=0)
    # 100 Mpc/h comoving at a = 0.5, h = 0.7: 100 * 1000 * 0.5 / 0.7 kpc
    np.testing.assert_allclose(h10["position"].values, [71428.57142857143] * 3, rtol=1e-12)
    np.testing.assert_allclose(h10["velocity"].values, [120.0, -35.0, 10.0])
    assert float(h10["M200m"]) == pytest.approx(1.0e13, rel=1e-12)  # 7e12 Msun/h / 0.7
    # rho_m = 0.3 * 277.536627 * 0.7^2 / 0.5^3 = 326.38307 Msun/kpc^3; R = (3e13 / (4 pi 200 rho_m))^(1/3)
    assert float(h10["R200m"]) == pytest.approx(331.933630, rel=1e-7)
    # R200m / Rs, Rs = 35 kpc/h comoving = 25 kpc: the 200m concentration (Rvir / Rs would be 10)
    assert float(h10["concentration"]) == pytest.approx(331.933630 / 25.0, rel=1e-7)
    assert float(h10["sigma_v"]) == pytest.approx(210.0 / np.sqrt(3.0))  # Vrms is 3-D
    assert float(h10["spin"]) == 0.031  # spin_bullock, not Peebles' Spin
    np.testing.assert_allclose(ds["particle_mass"].values, 2.0e8)  # 1.4e8 Msun/h / 0.7
    first = ds["particle_position"].values[0]  # lowest particle id of halo 10: offset (+0.01, 0, 0) Mpc/h
    np.testing.assert_allclose(first, np.array([100.01, 100.0, 100.0]) * KPC, rtol=1e-7)


def test_rockstar_particles_map_by_external_id_sorted_across_files(rockstar):
    (ds,) = list(iter_rockstar(rockstar))
    assert ds["particle_count"].values.tolist() == [4, 4, 3, 4, 4]  # the row of external id -1 is left out
    offsets, counts = ds["particle_offset"].values, ds["particle_count"].values
    h11 = slice(offsets[1], offsets[1] + counts[1])  # split over halos_0.0 and halos_0.1
    vx = ds["particle_velocity"].values[h11, 0]
    # ids 11000 + (7k mod 4) for k = 0..3 are 11000, 11003, 11002, 11001: sorted back, k = 0, 3, 2, 1
    np.testing.assert_allclose(vx, [-5.0, -2.0, -3.0, -4.0])


def test_rockstar_unwraps_a_halo_across_the_periodic_boundary(rockstar):
    (ds,) = list(iter_rockstar(rockstar))
    i = 2
    start, count = int(ds["particle_offset"][i]), int(ds["particle_count"][i])
    x = ds["particle_position"].values[start : start + count, 0]
    centre = float(ds["position"][i, 0])
    assert centre == pytest.approx(249.98 * KPC)
    # in the file the particle at +0.025 Mpc/h lies at X = 0.005 (wrapped): now beside the centre again
    np.testing.assert_allclose(np.sort(x), np.array([249.97, 249.99, 250.005]) * KPC, rtol=1e-7)
    assert np.abs(x - centre).max() < 0.03 * KPC


def test_rockstar_chunks_of_two_give_the_same_catalog(rockstar, tmp_path):
    chunks = list(iter_rockstar(rockstar, chunk_halos=2))
    assert [c.sizes["halo"] for c in chunks] == [2, 2, 1]
    assert all(check_dataset(c, HALOS_KIND) == [] for c in chunks)
    whole = _concat(list(iter_rockstar(rockstar, chunk_halos=1000)))
    joined = _concat(chunks)
    assert whole.keys() == joined.keys()
    for name in whole:
        np.testing.assert_array_equal(joined[name], whole[name], err_msg=name)
    a = open_canonical(write_canonical(chunks, tmp_path / "two.h5"))
    b = open_canonical(write_canonical(iter_rockstar(rockstar, chunk_halos=1000), tmp_path / "one.h5"))
    xr.testing.assert_identical(a, b)


def test_rockstar_lowercase_ascii_without_m200b_uses_mvir_and_finds_its_particles(tmp_path):
    lines = ["#" + ASCII_HEADER, INFO.rstrip("\n")]
    for h in (10, 12):
        (x, y, z), (vx, vy, vz), m, rvir, rs, vrms, spin = HALOS[h]
        lines.append(f"{h} 100 {m} {m} {rvir} 300 50 {vrms} {x} {y} {z} {vx} {vy} {vz} 0 0 0 -1 {spin} {rs}")
    directory = tmp_path / "ascii"
    directory.mkdir()
    (directory / "halos_0.0.ascii").write_text("\n".join(lines) + "\n")
    rows = _particles(10, SPREAD, 100) + _particles(12, STRADDLE, 200)
    text = PARTICLE_PREAMBLE + INFO + "#Particle table begins here:\n" + "\n".join(rows) + "\n"
    (directory / "halos_0.0.particles").write_text(text)
    (ds,) = list(iter_rockstar(directory / "halos_0.0.ascii"))
    assert "Mvir" in ds.attrs["mass_definition"]
    np.testing.assert_allclose(ds["M200m"].values, [7e12 / 0.7, 3.5e11 / 0.7])
    np.testing.assert_allclose(ds["R200m"].values, [350 * 0.5 / 0.7, 130 * 0.5 / 0.7])  # Rvir, comoving kpc/h
    assert ds["particle_count"].values.tolist() == [4, 3]


# -- the canonical HDF5 file ------------------------------------------------------------------------


@pytest.fixture
def canonical(rockstar, tmp_path) -> Path:
    return write_canonical(iter_rockstar(rockstar, chunk_halos=2), tmp_path / "halos.h5")


@pytest.mark.filterwarnings("ignore:The specified chunks separate the stored chunks")  # tiny file, tiny chunks
def test_canonical_file_reads_back_with_xarray_and_iter_hdf5(rockstar, canonical):
    original = _concat(list(iter_rockstar(rockstar, chunk_halos=3)))
    with xr.open_dataset(canonical, engine="h5netcdf") as ds:
        assert check_dataset(ds.load(), HALOS_KIND) == []
        assert ds.attrs["source_format"] == "rockstar" and ds["R200m"].attrs["units"] == "kpc"
    for chunk_halos in (2, 1000):
        chunks = list(iter_hdf5(canonical, chunk_halos=chunk_halos))
        assert all(check_dataset(c, HALOS_KIND) == [] for c in chunks)
        read = _concat(chunks)
        assert read.keys() == original.keys()
        for name in original:
            np.testing.assert_array_equal(read[name], original[name], err_msg=name)
    lazy = open_canonical(canonical, chunks={"halo": 2, "particle": 5})
    assert lazy["particle_position"].chunks is not None
    np.testing.assert_array_equal(lazy["particle_position"].values, original["particle_position"])
    lazy.close()


def test_writer_leaves_no_file_when_a_chunk_raises(rockstar, tmp_path):
    target = tmp_path / "out" / "halos.h5"
    target.parent.mkdir()

    def failing():
        chunks = iter_rockstar(rockstar, chunk_halos=2)
        yield next(chunks)
        raise RuntimeError("reader failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        write_canonical(failing(), target)
    assert list(target.parent.iterdir()) == []
    bad = next(iter_rockstar(rockstar, chunk_halos=2))
    bad["R200m"].attrs["units"] = "Mpc"
    with pytest.raises(HaloCatalogError, match=r"chunk 1.*R200m"):
        write_canonical([next(iter_rockstar(rockstar, chunk_halos=2)), bad], target)
    assert list(target.parent.iterdir()) == []


def test_writer_sums_dropped_halos_and_rejects_repeated_ids(tmp_path):
    catalog = write_rockstar(tmp_path / "r", skip_particles=(14,))
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: particle_count: 1 halo.*\[14\]"):
        list(iter_rockstar(catalog))
    chunks = list(iter_rockstar(catalog, chunk_halos=2, drop_empty=True))
    assert [c.attrs[DROPPED_ATTR] for c in chunks] == [0, 0, 1]
    ds = open_canonical(write_canonical(chunks, tmp_path / "dropped.h5"))
    assert ds.attrs[DROPPED_ATTR] == 1 and ds["halo_id"].values.tolist() == [10, 11, 12, 13]
    with pytest.raises(HaloCatalogError, match=r"halo_id.*repeat"):
        write_canonical([chunks[0], chunks[0]], tmp_path / "twice.h5")
    assert not (tmp_path / "twice.h5").exists()


def test_iter_hdf5_converts_known_unit_spellings(canonical):
    expected = _concat(list(iter_hdf5(canonical)))["R200m"]
    with h5py.File(canonical, "r+") as f:
        f["R200m"][...] = f["R200m"][...] / 1000.0
        f["R200m"].attrs["units"] = "Mpc"
    np.testing.assert_allclose(_concat(list(iter_hdf5(canonical)))["R200m"], expected, rtol=1e-12)
    with pytest.raises(HaloCatalogError, match=r"halos\.h5.*R200m.*'Mpc', expected 'kpc'"):
        open_canonical(canonical)  # the canonical file itself must use the canonical units


# -- errors name the file and the field ---------------------------------------------------------------


def test_rockstar_missing_column(tmp_path):
    columns = [c for c in COLUMNS if c != "X"]
    catalog = write_rockstar(tmp_path / "r", columns=columns)
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: missing column\(s\) \['X'\]"):
        iter_rockstar(catalog)


def test_rockstar_nan_in_a_field(tmp_path):
    catalog = write_rockstar(tmp_path / "r", row_override={12: {"M200b": "nan"}})
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: column 'M200b' has NaN.*\[12\]"):
        list(iter_rockstar(catalog))


def test_rockstar_unknown_units(tmp_path):
    info = INFO.replace("Positions in Mpc / h (comoving)", "Positions in furlongs (comoving)")
    catalog = write_rockstar(tmp_path / "r", info=info)
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: unknown units for position.*furlongs"):
        iter_rockstar(catalog)


def test_rockstar_without_particle_files_is_a_catalog_of_halo_properties(tmp_path):
    catalog = write_rockstar(tmp_path / "r")
    with_particles = _concat(list(iter_rockstar(catalog, chunk_halos=2)))
    for p in catalog.parent.glob("*.particles"):
        p.unlink()
    alone = xr.concat(list(iter_rockstar(catalog, chunk_halos=2)), dim="halo")
    assert not has_particles(alone) and "particle" not in alone.dims
    expected = {n for n in with_particles if not n.startswith("particle_")}
    assert set(alone.data_vars) == expected
    for name in expected:
        np.testing.assert_array_equal(alone[name].values, with_particles[name])
    stored = open_canonical(write_canonical(iter_rockstar(catalog, chunk_halos=2), tmp_path / "alone.h5"))
    assert not has_particles(stored) and stored.sizes["halo"] == alone.sizes["halo"]


def test_hdf5_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(HaloCatalogError, match=r"nothing\.h5: file not found"):
        iter_hdf5(tmp_path / "nothing.h5")
    text = tmp_path / "catalog.h5"
    text.write_text("#ID DescID Mvir\n1 -1 1e12\n")
    for reader in (iter_hdf5, open_canonical):
        with pytest.raises(HaloCatalogError, match=r"catalog\.h5: not an HDF5 file"):
            reader(text)


def test_hdf5_truncated_file(canonical):
    data = canonical.read_bytes()
    canonical.write_bytes(data[: len(data) // 2])
    for reader in (iter_hdf5, open_canonical):
        with pytest.raises(HaloCatalogError, match=r"halos\.h5: .*truncated or corrupted"):
            reader(canonical)


def test_hdf5_missing_field(canonical):
    with h5py.File(canonical, "r+") as f:
        del f["R200m"]
    with pytest.raises(HaloCatalogError, match=r"halos\.h5: missing field\(s\) \['R200m'\]"):
        iter_hdf5(canonical)
    with pytest.raises(HaloCatalogError, match=r"halos\.h5: .*'R200m' is missing"):
        open_canonical(canonical)


@pytest.mark.filterwarnings("ignore:The specified chunks separate the stored chunks")
def test_hdf5_nan_in_a_field(canonical):
    with h5py.File(canonical, "r+") as f:
        f["M200m"][3] = np.nan
    chunks = iter_hdf5(canonical, chunk_halos=2)
    next(chunks)  # halos 0 and 1 are fine
    with pytest.raises(HaloCatalogError, match=r"halos\.h5 \(halos 2\.\.3\): M200m: 1 NaN"):
        next(chunks)
    with pytest.raises(HaloCatalogError, match=r"halos\.h5: .*M200m: 1 NaN"):
        open_canonical(canonical, chunks={"halo": 2})


def test_chunks_bound_both_halos_and_particles():
    counts = np.random.default_rng(0).integers(1, 50, 500)
    counts[17] = 1000  # heavier than a chunk's particle budget: a chunk of its own
    bounds = list(chunk_bounds(counts, 64, 200))
    ends = np.cumsum(counts)
    assert bounds[0][0] == 0 and bounds[-1][1] == counts.size and bounds[-1][3] == ends[-1]
    for (i0, i1, p0, p1), following in zip(bounds, bounds[1:] + [None]):
        assert 0 < i1 - i0 <= 64 and p1 - p0 == counts[i0:i1].sum() and p0 == ends[i0] - counts[i0]
        assert p1 - p0 <= 200 or i1 - i0 == 1
        if following is not None:
            assert following[0] == i1 and following[2] == p1


@pytest.mark.filterwarnings("ignore:The specified chunks separate the stored chunks")
def test_lazy_checks_find_bad_particles(canonical):
    """A lazily opened catalog is checked by chunked reductions; they must still see every value."""
    with h5py.File(canonical, "r+") as f:
        f["particle_position"][-1, 2] = np.inf
        f["particle_mass"][0] = -1.0
    with pytest.raises(HaloCatalogError) as error:
        open_canonical(canonical, chunks={"halo": 2, "particle": 3})
    assert "particle_position: 1 NaN or infinite" in str(error.value)
    assert "particle_mass: values must be positive, found -1" in str(error.value)
    ds = xr.open_dataset(canonical, engine="h5netcdf", chunks={"halo": 2, "particle": 3})
    problems = check_dataset(ds, HALOS_KIND)
    assert any("particle_position: 1 NaN" in p for p in problems), problems
    assert any("particle_mass: values must be positive" in p for p in problems), problems


def test_hdf5_unknown_units(canonical):
    with h5py.File(canonical, "r+") as f:
        f["particle_velocity"].attrs["units"] = "furlong / fortnight"
    with pytest.raises(HaloCatalogError, match=r"halos\.h5: field 'particle_velocity' has unknown .*'furlong"):
        iter_hdf5(canonical)


def test_hdf5_empty_halo(canonical):
    with h5py.File(canonical, "r+") as f:
        counts = f["particle_count"][...]
        counts[1], counts[2] = 0, counts[2] + counts[1]  # halo 11 loses its particles to halo 12
        f["particle_count"][...] = counts
        f["particle_offset"][...] = np.concatenate([[0], np.cumsum(counts)[:-1]])
    with pytest.raises(HaloCatalogError, match=r"halos\.h5: particle_count: 1 empty halo\(s\) \(halo_id \[11\]\)"):
        iter_hdf5(canonical)
