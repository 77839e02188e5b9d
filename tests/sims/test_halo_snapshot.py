"""Particles from a Gadget-HDF5 snapshot (sims.halos.snapshot) against the per-halo tables they came from."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from data_catalog import Catalog
from flows.cli import main
from sims.halos.catalog import PARTICLE_FIELDS, HaloCatalogError, catalog_dataset
from sims.halos.population import PopulationConfig, iter_population
from sims.halos.readers import open_canonical, write_canonical
from sims.halos.snapshot import (
    KPC_CM,
    MSUN_G,
    attach_snapshot_particles,
    read_snapshot_header,
)

Z, H = 0.5, 0.6774
A = 1.0 / (1.0 + Z)
BOX = 4000.0  # physical kpc
HALO_VARS = ("halo_id", "M200m", "R200m", "position", "velocity", "concentration", "spin", "sigma_v", "log_mstar")


@pytest.fixture(scope="module")
def population() -> dict:
    """A small synthetic population with halos at the box edges and two that overlap, its particles with IDs."""
    config = PopulationConfig(n_halos=12, seed=3, max_particles=300, box_size_kpc=BOX)
    chunks = list(iter_population(config, chunk_halos=5))
    halos = {n: np.concatenate([c[n].values for c in chunks]) for n in HALO_VARS}
    counts = np.concatenate([c["particle_count"].values for c in chunks])
    pos = np.concatenate([c["particle_position"].values for c in chunks])
    vel = np.concatenate([c["particle_velocity"].values for c in chunks])
    mass = np.concatenate([c["particle_mass"].values for c in chunks])
    owner = np.repeat(np.arange(counts.size), counts)
    radius = halos["R200m"]
    moved = {  # a face, a corner, and halo 3 overlapping halo 2
        0: np.array([BOX - 0.3 * radius[0], 0.2 * radius[0], BOX / 2]),
        1: np.array([0.1 * radius[1], BOX - 0.1 * radius[1], 0.5 * radius[1]]),
        3: halos["position"][2] + np.array([0.7 * radius[2], 0.0, 0.0]),
    }
    for i, centre in moved.items():
        pos[owner == i] += centre - halos["position"][i]
        halos["position"][i] = centre
    rng = np.random.default_rng(7)
    n_bg = 3000  # unbound background particles, uniform in the box
    pos = np.concatenate([pos, rng.uniform(0.0, BOX, (n_bg, 3))])
    vel = np.concatenate([vel, rng.normal(0.0, 300.0, (n_bg, 3))])
    mass = np.concatenate([mass, np.full(n_bg, 1.0e8)])
    ids = rng.permutation(pos.shape[0]).astype(np.int64) * 3 + 11  # unique, unrelated to the order
    attrs = {k: v for k, v in chunks[0].attrs.items() if k not in ("source_format", "redshift", "hubble")}
    return {"halos": halos, "pos": pos, "vel": vel, "mass": mass, "ids": ids, "attrs": attrs, "sizes": (5, 5, 2)}


def _catalog(pop: dict, *, drop: tuple[int, ...] = (), extra: dict | None = None, **attrs) -> list[xr.Dataset]:
    """The population's halos without particles, in chunks as the readers yield them."""
    halos = {n: v.copy() for n, v in pop["halos"].items()}
    if extra:
        halos = {n: np.concatenate([v, extra[n]]) for n, v in halos.items()}
    out, start = [], 0
    sizes = list(pop["sizes"]) + ([len(extra["halo_id"])] if extra else [])
    for size in sizes:
        rows = slice(start, start + size)
        info = {"redshift": Z, "hubble": H, "box_size_kpc": BOX} | attrs
        out.append(
            catalog_dataset(
                {n: v[rows] for n, v in halos.items() if n not in drop},
                None,
                source_format="synthetic",
                redshift=info.pop("redshift"),
                hubble=info.pop("hubble"),
                box_size_kpc=info.pop("box_size_kpc"),
                attrs=pop["attrs"] | info,
            )
        )
        start += size
    return out


def _reference(pop: dict, halos: dict | None = None) -> dict:
    """Per halo: every particle (any halo's, or background) within R200m of its centre, nearest image, by ID."""
    halos = halos or pop["halos"]
    out = {"count": [], "pos": [], "vel": [], "mass": []}
    for centre, radius in zip(halos["position"], halos["R200m"], strict=True):
        d = pop["pos"] - centre
        d -= BOX * np.round(d / BOX)
        inside = np.flatnonzero(np.einsum("ij,ij->i", d, d) <= radius**2)
        inside = inside[np.argsort(pop["ids"][inside])]
        out["count"].append(inside.size)
        out["pos"].append(centre + d[inside])
        out["vel"].append(pop["vel"][inside])
        out["mass"].append(pop["mass"][inside])
    return {k: np.array(v) if k == "count" else np.concatenate(v) for k, v in out.items()}


def _write_snapshot(
    folder: Path,
    pop: dict,
    *,
    n_files: int = 3,
    style: str = "gadget",
    mass_table: float | None = None,
    name: str = "snap_099",
) -> list[Path]:
    """The particles as a Gadget-HDF5 snapshot: comoving kpc/h wrapped into the box, sqrt(a) velocities,
    1e10 Msun/h masses (``style``: gadget, gadget4 (units in Parameters, 64-bit totals), arepo
    (per-dataset a_scaling/h_scaling/to_cgs, units in Mpc/h), swift (h-free Mpc, per-dataset exponents,
    peculiar velocities, Scale-factor, 3-vector BoxSize)), rows shuffled and split over ``n_files``."""
    folder.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(1).permutation(pop["ids"].size)
    length = {"gadget": 1.0, "gadget4": 1.0, "arepo": 1000.0, "swift": 1000.0}[style]  # kpc per unit
    h_len = 1.0 if style == "swift" else H
    box = BOX / A * h_len / length
    x = np.mod(pop["pos"][order] / A * h_len / length, box)
    v = pop["vel"][order] if style == "swift" else pop["vel"][order] / np.sqrt(A)
    m = pop["mass"][order] * (1.0 if style == "swift" else H) / 1e10
    ids = pop["ids"][order]
    edges = np.linspace(0, ids.size, n_files + 1).astype(int)
    edges[1:-1] += 17  # uneven files
    paths = []
    for k in range(n_files):
        path = folder / (f"{name}.{k}.hdf5" if n_files > 1 else f"{name}.hdf5")
        rows = slice(edges[k], edges[k + 1])
        n = edges[k + 1] - edges[k]
        with h5py.File(path, "w") as f:
            hd = f.create_group("Header")
            hd.attrs["NumPart_ThisFile"] = np.array([0, n, 0, 0, 0, 0], dtype=np.uint32)
            total = np.array([0, ids.size, 0, 0, 0, 0], dtype=np.uint64 if style == "gadget4" else np.uint32)
            hd.attrs["NumPart_Total"] = total
            if style != "gadget4":
                hd.attrs["NumPart_Total_HighWord"] = np.zeros(6, dtype=np.uint32)
            hd.attrs["NumFilesPerSnapshot"] = n_files
            hd.attrs["MassTable"] = np.array([0.0, mass_table or 0.0, 0, 0, 0, 0])
            hd.attrs["Redshift"] = Z
            hd.attrs["BoxSize"] = np.full(3, box) if style == "swift" else box
            if style == "swift":
                hd.attrs["Scale-factor"] = A
                hd.attrs["Time"] = 0.0123  # SWIFT: cosmic time, not a
                hd.attrs["Code"] = "SWIFT"
                f.create_group("Cosmology").attrs["h"] = H
                units = f.create_group("Units")
                units.attrs["Unit length in cgs (U_L)"] = 1000.0 * KPC_CM
                units.attrs["Unit mass in cgs (U_M)"] = 1.98841e43
                units.attrs["Unit time in cgs (U_t)"] = 1000.0 * KPC_CM / 1e5
            else:
                hd.attrs["Time"] = A
            if style == "gadget4":
                params = f.create_group("Parameters")
                params.attrs["HubbleParam"] = H
                params.attrs["UnitLength_in_cm"] = 3.085678e21
                params.attrs["UnitMass_in_g"] = 1.989e43
                params.attrs["UnitVelocity_in_cm_per_s"] = 1e5
            elif style != "swift":
                hd.attrs["HubbleParam"] = H
            part = f.create_group("PartType1")
            fields = {"Coordinates": x[rows], "Velocities": v[rows], "ParticleIDs": ids[rows].astype(np.uint64)}
            if not mass_table:
                fields["Masses"] = m[rows]
            for field_name, values in fields.items():
                dataset = part.create_dataset(field_name, data=values)
                kind, p, q = {"Coordinates": ("length", 1, -1), "Velocities": ("velocity", 0.5, 0)}.get(
                    field_name, ("mass", 0, -1)
                )
                if field_name == "ParticleIDs":
                    continue
                cgs = {"length": length * KPC_CM, "velocity": 1e5, "mass": 1e10 * MSUN_G}[kind]
                if style == "arepo":
                    dataset.attrs.update({"a_scaling": p, "h_scaling": q, "to_cgs": cgs})
                elif style == "swift":
                    p = 0 if field_name == "Velocities" else p
                    dataset.attrs["a-scale exponent"] = p
                    dataset.attrs["h-scale exponent"] = 0.0
                    dataset.attrs["Conversion factor to CGS (not including cosmological corrections)"] = cgs
        paths.append(path)
    return paths


def _concat(chunks: list[xr.Dataset]) -> dict[str, np.ndarray]:
    names = [n for n in chunks[0].data_vars if n != "particle_offset"]
    return {n: np.concatenate([c[n].values for c in chunks]) for n in names}


def _assert_exact(chunks: list[xr.Dataset], ref: dict, halos: dict) -> None:
    got = _concat(chunks)
    np.testing.assert_array_equal(got["halo_id"], halos["halo_id"])
    np.testing.assert_array_equal(got["particle_count"], ref["count"])
    np.testing.assert_allclose(got["particle_position"], ref["pos"], rtol=1e-12, atol=1e-12 * BOX)
    np.testing.assert_allclose(got["particle_velocity"], ref["vel"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["particle_mass"], ref["mass"], rtol=1e-12)
    for name in HALO_VARS:
        np.testing.assert_array_equal(got[name], halos[name])
    for chunk in chunks:
        offsets = chunk["particle_offset"].values
        assert offsets[0] == 0 and np.array_equal(offsets[1:], np.cumsum(chunk["particle_count"].values)[:-1])


def test_exact_against_the_per_halo_tables_multi_file(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population)
    ref = _reference(population)
    assert (ref["count"] > 0).all()
    chunks = list(attach_snapshot_particles(_catalog(population), paths[1], scheduler="synchronous", scratch=tmp_path))
    _assert_exact(chunks, ref, population["halos"])
    assert [c.sizes["halo"] for c in chunks] == [5, 5, 2]  # the input chunks, none heavier than chunk_particles
    attrs = chunks[0].attrs
    assert attrs["source_format"] == "synthetic" and attrs["redshift"] == Z and attrs["box_size_kpc"] == BOX
    assert attrs["snapshot_redshift"] == Z and attrs["population_seed"] == 3
    assert "3: " in json.loads(attrs["snapshot_conversions"])["files"]
    # halo 3 sits inside halo 2: the particles of both spheres are in both tables
    d = population["halos"]["position"][3] - population["halos"]["position"][2]
    assert np.linalg.norm(d) < population["halos"]["R200m"][2]
    assert not list(tmp_path.glob("eqs-snapshot-*"))  # scratch removed


def test_tiny_slabs_and_chunks_give_the_same_particles(population, tmp_path):
    """Bounded memory, structurally: with 97-row slabs, buckets that overflow and are split, chunks of
    at most 97 particles, the result is the same."""
    paths = _write_snapshot(tmp_path / "snap", population)
    chunks = list(
        attach_snapshot_particles(_catalog(population), tmp_path / "snap", chunk_particles=97, scheduler="threads")
    )
    _assert_exact(chunks, _reference(population), population["halos"])
    assert all(c.sizes["particle"] <= 97 or c.sizes["halo"] == 1 for c in chunks)
    assert len(chunks) == 12  # every halo has more than 97 particles: a chunk of its own
    assert read_snapshot_header(paths[0]).n_particles == population["ids"].size


def test_default_scheduler_runs_slabs_in_a_worker_process(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population, n_files=1)
    chunks = list(attach_snapshot_particles(_catalog(population), paths, chunk_particles=4000, workers=1))
    _assert_exact(chunks, _reference(population), population["halos"])


@pytest.mark.parametrize("style", ["gadget4", "arepo", "swift"])
def test_conventions_of_each_code(population, tmp_path, style):
    paths = _write_snapshot(tmp_path / style, population, n_files=2, style=style)
    header = read_snapshot_header(paths[0])
    assert header.scale_factor == pytest.approx(A, rel=1e-15) and header.hubble == H
    assert header.box_kpc == pytest.approx(BOX, rel=1e-12)
    chunks = list(attach_snapshot_particles(_catalog(population), paths, scheduler="synchronous"))
    _assert_exact(chunks, _reference(population), population["halos"])
    conversions = header.conversions
    if style == "gadget4":  # Gadget's own kpc and solar mass are taken as the named units
        assert "1.989e+43 g = 1e+10 Msun" in conversions["PartType1/Masses"]
        assert "Parameters/UnitLength_in_cm" in conversions["PartType1/Coordinates"]
    elif style == "swift":
        assert "SWIFT attributes: a^0 h^0" in conversions["PartType1/Velocities"]
        assert conversions["scale_factor"].startswith("Header/Scale-factor")


def test_default_units_are_said(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population, n_files=1, mass_table=0.01)
    header = read_snapshot_header(paths[0])
    assert header.particle_mass_msun == pytest.approx(0.01e10 / H, rel=1e-15)
    for field_name in ("PartType1/Coordinates", "PartType1/Velocities", "Header/MassTable[1]"):
        assert "absent: Gadget's default" in header.conversions[field_name]
    chunk = next(attach_snapshot_particles(_catalog(population), header, scheduler="synchronous"))
    np.testing.assert_array_equal(chunk["particle_mass"].values, 0.01e10 / H)
    assert chunk.attrs["particle_mass_msun"] == header.particle_mass_msun


def test_periodic_wrapping_at_the_corner(tmp_path):
    """Eight particles, one near each corner of the box, all within R200m of a halo at the corner:
    each comes back as the image nearest the centre."""
    offsets = np.array([[x, y, z] for x in (-3.0, 2.0) for y in (-1.0, 4.0) for z in (-2.5, 1.5)])
    centre = np.array([0.5, BOX - 0.5, 0.5])
    pop = {
        "pos": np.mod(centre + offsets, BOX),
        "vel": np.zeros((8, 3)),
        "mass": np.full(8, 1e8),
        "ids": np.arange(8) + 100,
    }
    paths = _write_snapshot(tmp_path / "corner", pop, n_files=1)
    halos = {"halo_id": [7], "M200m": [1e9], "R200m": [10.0], "position": [centre], "velocity": [[0.0, 0.0, 0.0]]}
    cat = catalog_dataset(halos, None, source_format="hdf5", redshift=Z, hubble=H)  # no box_size_kpc: the snapshot's
    (chunk,) = attach_snapshot_particles([cat], paths[0], scheduler="synchronous")
    np.testing.assert_allclose(chunk["particle_position"].values, centre + offsets, rtol=0, atol=1e-11)
    assert chunk.attrs["box_size_kpc"] == pytest.approx(BOX, rel=1e-12)


def test_empty_halos_raise_or_are_dropped_and_counted(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population)
    halos = population["halos"]
    far = {n: halos[n][:2].copy() for n in HALO_VARS}
    far["halo_id"] = np.array([900, 901])
    far["R200m"] = np.array([1e-3, 1e-3])  # a tiny sphere: no particle in it
    with pytest.raises(HaloCatalogError, match=r"2 halo\(s\) without a particle within R200m .*halo_id \[900, 901\]"):
        list(attach_snapshot_particles(_catalog(population, extra=far), paths[0], scheduler="synchronous"))
    cat = _catalog(population, extra=far)
    cat[0].attrs["dropped_empty_halos"] = 4  # the reader dropped some already: the counts add up
    chunks = list(attach_snapshot_particles(cat, paths[0], scheduler="synchronous", drop_empty=True))
    _assert_exact(chunks, _reference(population), halos)
    assert sum(c.attrs["dropped_empty_halos"] for c in chunks) == 6
    path = write_canonical(chunks, tmp_path / "with-particles.h5")
    ds = open_canonical(path)
    assert ds.attrs["dropped_empty_halos"] == 6 and all(n in ds for n in PARTICLE_FIELDS)


def test_closing_early_removes_the_scratch(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    chunks = attach_snapshot_particles(_catalog(population), paths[0], scheduler="synchronous", scratch=scratch)
    next(chunks)
    assert list(scratch.iterdir())
    chunks.close()
    assert not list(scratch.iterdir())


def _edit(path: Path, fn) -> None:
    with h5py.File(path, "r+") as f:
        fn(f)


def test_snapshot_errors_name_the_file_and_field(population, tmp_path):
    with pytest.raises(HaloCatalogError, match=r"a folder with 0 .hdf5 file\(s\)"):
        read_snapshot_header(tmp_path)
    paths = _write_snapshot(tmp_path / "snap", population)
    with pytest.raises(HaloCatalogError, match="nope.hdf5: file not found"):
        read_snapshot_header(tmp_path / "nope.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(HaloCatalogError, match="text.hdf5: not an HDF5 file"):
        read_snapshot_header(tmp_path / "text.hdf5")
    with h5py.File(tmp_path / "empty.hdf5", "w"):
        pass
    with pytest.raises(HaloCatalogError, match="empty.hdf5: no Header group"):
        read_snapshot_header(tmp_path / "empty.hdf5")
    with pytest.raises(HaloCatalogError, match=r"NumFilesPerSnapshot = 3 but 2 file\(s\) were given"):
        read_snapshot_header(paths[:2])

    def broken(edit, name: str) -> list[Path]:
        copies = _write_snapshot(tmp_path / name, population)
        _edit(copies[1], edit)
        return copies

    cases = [
        (lambda f: f["Header"].attrs.modify("Redshift", 0.7), r"snap_099.1.hdf5: Header Redshift = 0.7 but .*0.5"),
        (lambda f: f["Header"].attrs.modify("NumFilesPerSnapshot", 2), "NumFilesPerSnapshot = 2 but .* says 3"),
        (lambda f: f["Header"].attrs.modify("BoxSize", 1.0), "Header BoxSize = 1.0 but"),
        (lambda f: f["Header"].attrs.__delitem__("NumPart_ThisFile"), r"missing; a Gadget-HDF5 snapshot header"),
        (lambda f: f.__delitem__("PartType1"), "snap_099.1.hdf5: no PartType1 group but Header NumPart_ThisFile"),
        (lambda f: f["PartType1"].__delitem__("Masses"), r"PartType1/Masses is missing \(Header MassTable\[1\] is 0"),
        (
            lambda f: f["Header"].attrs.modify("NumPart_ThisFile", np.array([0, 5, 0, 0, 0, 0], np.uint32)),
            r"PartType1/Coordinates has shape \(\d+, 3\) .* expected shape \(5, 3\)",
        ),
        (
            lambda f: f["Header"].attrs.modify("NumPart_Total", np.array([0, 5, 0, 0, 0, 0], np.uint32)),
            r"NumPart_Total\[1\] = 5 but",
        ),
    ]
    for k, (edit, message) in enumerate(cases):
        with pytest.raises(HaloCatalogError, match=message):
            read_snapshot_header(broken(edit, f"case{k}")[0])

    def swap_coordinates(f):
        data = f["PartType1/Coordinates"][:, :2]
        del f["PartType1/Coordinates"]
        f["PartType1"].create_dataset("Coordinates", data=data)

    with pytest.raises(HaloCatalogError, match=r"snap_099.1.hdf5: field PartType1/Coordinates has shape \(\d+, 2\)"):
        read_snapshot_header(broken(swap_coordinates, "shape")[0])
    total = _write_snapshot(tmp_path / "sums", population)  # the files agree but do not add up
    for p in total:
        _edit(p, lambda f: f["Header"].attrs.modify("NumPart_Total", np.array([0, 99, 0, 0, 0, 0], np.uint32)))
    with pytest.raises(HaloCatalogError, match=r"NumPart_ThisFile\[1\] sums to \d+ over 3 file\(s\) but NumPart_Total"):
        read_snapshot_header(total[0])
    missing = _write_snapshot(tmp_path / "missing", population)
    missing[2].unlink()
    with pytest.raises(HaloCatalogError, match=r"snap_099.2.hdf5: file not found, but .*NumFilesPerSnapshot = 3"):
        read_snapshot_header(missing[0])
    swift = _write_snapshot(tmp_path / "swift", population, n_files=1, style="swift")
    _edit(swift[0], lambda f: f["PartType1/Coordinates"].attrs.__delitem__("a-scale exponent"))
    with pytest.raises(HaloCatalogError, match="a SWIFT snapshot whose PartType1/Coordinates has no"):
        read_snapshot_header(swift[0])
    box = _write_snapshot(tmp_path / "box", population, n_files=1, style="swift")
    _edit(box[0], lambda f: f["Header"].attrs.modify("BoxSize", np.array([1.0, 1.0, 2.0])))
    with pytest.raises(HaloCatalogError, match=r"BoxSize = \[1.0, 1.0, 2.0\]; expected a cubic box"):
        read_snapshot_header(box[0])
    time = _write_snapshot(tmp_path / "time", population, n_files=1)
    _edit(time[0], lambda f: f["Header"].attrs.modify("Time", 0.9))
    with pytest.raises(HaloCatalogError, match=r"Header/Time = 0.9 but Header Redshift = 0.5 gives a = 0.6666"):
        read_snapshot_header(time[0])


def test_catalog_errors_name_both_sides(population, tmp_path):
    paths = _write_snapshot(tmp_path / "snap", population)

    def attach(chunks, **kwargs):
        return list(attach_snapshot_particles(chunks, paths[0], scheduler="synchronous", catalog="cat.h5", **kwargs))

    with pytest.raises(
        HaloCatalogError, match=r"snap_099.0.hdf5: Header Redshift = 0.5 .* but cat.h5 has redshift 0.6"
    ):
        attach(_catalog(population, redshift=0.6))
    attach(_catalog(population, redshift=Z * (1 + 1e-5)))  # within the tolerance
    with pytest.raises(HaloCatalogError, match=r"is 4000 kpc \(physical\) but cat.h5 has box_size_kpc = 4100"):
        attach(_catalog(population, box_size_kpc=4100.0))
    with pytest.raises(HaloCatalogError, match=r"cat.h5 \(chunk 0\): already holds particles"):
        attach(list(iter_population(PopulationConfig(n_halos=2, seed=1, max_particles=50), chunk_halos=2)))
    big = {n: population["halos"][n][:1].copy() for n in HALO_VARS}
    big["halo_id"], big["R200m"] = np.array([77]), np.array([0.6 * BOX])
    with pytest.raises(HaloCatalogError, match=r"R200m of halo_id \[77\] is half the snapshot's box"):
        attach(_catalog(population, extra=big))
    with pytest.raises(HaloCatalogError, match="cat.h5: no halos"):
        attach([])
    dup = _write_snapshot(tmp_path / "dup", population, n_files=1)
    _edit(
        dup[0], lambda f: f["PartType1/ParticleIDs"].write_direct(np.zeros(f["PartType1/ParticleIDs"].shape, np.uint64))
    )
    with pytest.raises(HaloCatalogError, match=r"particle ID 0 appears more than once within R200m of halo_id"):
        list(attach_snapshot_particles(_catalog(population), dup[0], scheduler="synchronous"))
    far = _write_snapshot(tmp_path / "far", population, n_files=1)
    _edit(far[0], lambda f: f["PartType1/Coordinates"].write_direct(f["PartType1/Coordinates"][:] * 10))
    with pytest.raises(HaloCatalogError, match=r"Coordinates row \d+ = .* lies more than a box outside"):
        list(attach_snapshot_particles(_catalog(population), far[0], scheduler="synchronous"))


# -- the command line: --particles-snapshot on ingest halos and predict-galaxies ---------------------------


def _eqs(root, *args):
    return CliRunner().invoke(main, ["--catalog", str(root), *map(str, args)])


def test_ingest_attaches_a_snapshot_to_a_catalog_without_particles(population, tmp_path):
    _write_snapshot(tmp_path / "snap", population)
    source = write_canonical(_catalog(population), tmp_path / "properties.h5")
    args = ("ingest", "halos", source, "--format", "hdf5", "--particles-snapshot", tmp_path / "snap", "--json")
    done = _eqs(tmp_path / "c", *args)
    assert done.exit_code == 0, done.output
    ref = json.loads(done.stdout)["ref"]
    with Catalog(tmp_path / "c").open(ref) as ds:
        _assert_exact([ds.load()], _reference(population), population["halos"])
        assert Catalog(tmp_path / "c").info(ref).params["particles_snapshot"] == str(tmp_path / "snap")
    assert not list((tmp_path / "c").glob(".tmp/*"))  # the scratch folder is gone


def test_the_snapshot_options_are_checked_before_any_work(population, tmp_path):
    source = write_canonical(_catalog(population), tmp_path / "properties.h5")
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5")
    done = _eqs(tmp_path / "c", "ingest", "halos", source, "--format", "hdf5", "--particles-snapshot", bad, "--json")
    assert done.exit_code == 2 and "bad.hdf5" in json.loads(done.stdout)["error"]
    done = _eqs(tmp_path / "c", "ingest", "halos", source, "--format", "hdf5", "--drop-empty")
    assert done.exit_code == 2 and "--drop-empty is only read with --particles-snapshot" in done.output
    args = ("predict-galaxies", "x@v1", "--format", "catalog", "--particles-snapshot", bad, "--out", tmp_path / "p.csv")
    done = _eqs(tmp_path / "c", *args)
    assert done.exit_code == 2 and "not --format catalog" in done.output
    assert not Catalog(tmp_path / "c").names()
