"""`eqs ingest halos` and `eqs sim halos`: canonical datasets in the catalog, all or nothing."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from test_halo_readers import write_rockstar
from tng_fixture import write_tng_fixture

from data_catalog import Catalog
from flows.cli import main
from pipeline.halos.scalars import halo_scalars
from sims.halos.catalog import HALOS_KIND
from sims.halos.population import PopulationConfig, generate_population
from sims.halos.readers import write_canonical


def _eqs(root, *args):
    return CliRunner().invoke(main, ["--catalog", str(root), *map(str, args)])


@pytest.fixture(scope="module")
def population():
    return generate_population(PopulationConfig(n_halos=12, max_particles=150, seed=3))


@pytest.fixture
def canonical(population, tmp_path):
    return write_canonical([population], tmp_path / "pop.h5")


def test_ingest_hdf5_stores_the_catalog_unchanged(population, canonical, tmp_path):
    root = tmp_path / "c"
    result = _eqs(root, "ingest", "halos", canonical, "--format", "hdf5", "--json")
    assert result.exit_code == 0, result.output
    ref = json.loads(result.output)["ref"]
    assert ref == "halos-pop@v1" and json.loads(result.output)["halos"] == 12
    stored = Catalog(root).open(ref).load()
    assert stored.attrs["kind"] == HALOS_KIND
    for name in ("M200m", "particle_position", "particle_velocity", "log_mstar"):
        np.testing.assert_array_equal(stored[name].values, population[name].values)
    again = _eqs(root, "ingest", "halos", canonical, "--format", "hdf5")
    assert again.exit_code == 0 and again.output.strip() == ref  # identical content: the same version


def test_ingest_rockstar(tmp_path):
    path = write_rockstar(tmp_path / "rockstar")
    result = _eqs(tmp_path / "c", "ingest", "halos", path, "--format", "rockstar", "--name", "rs")
    assert result.exit_code == 0, result.output
    assert Catalog(tmp_path / "c").open("rs").sizes["halo"] == 5


def test_tng_ingested_and_its_canonical_file_reingested_give_identical_scalars(tmp_path):
    truth = write_tng_fixture(tmp_path / "tng", n_groups=8)
    root = tmp_path / "c"
    result = _eqs(root, "ingest", "halos", truth["base_path"], "--format", "tng", "--snapshot", truth["snapshot"],
                  "--matching", truth["matching"], "--hydro", truth["hydro_base_path"], "--name", "tng")  # fmt: skip
    assert result.exit_code == 0, result.output
    cat = Catalog(root)
    first = cat.open("tng").load()
    assert "log_mstar" in first and "concentration" not in first
    exported = write_canonical([first], tmp_path / "tng.h5")
    result = _eqs(root, "ingest", "halos", exported, "--format", "hdf5", "--name", "tng-again")
    assert result.exit_code == 0, result.output
    second = cat.open("tng-again").load()
    a = halo_scalars(first, dask_address="synchronous", too_few="mark")
    b = halo_scalars(second, dask_address="synchronous", too_few="mark")
    assert a["valid"].values.any()
    np.testing.assert_array_equal(a["halo_id"].values, b["halo_id"].values)
    np.testing.assert_array_equal(a["scalars"].values, b["scalars"].values)
    # a mass cut in Msun/h, as in docs/protocols.md#halos: the heaviest halo alone passes a cut just below its mass
    heaviest = float(np.log10(first["M200m"].values.max() * first.attrs["hubble"]))
    cut = ("--min-log-mass", heaviest - 1e-6, "--name", "tng-cut")
    result = _eqs(root, "ingest", "halos", truth["base_path"], "--format", "tng", "--snapshot", truth["snapshot"],
                  "--matching", truth["matching"], "--hydro", truth["hydro_base_path"], *cut)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert cat.open("tng-cut")["M200m"].values.tolist() == [first["M200m"].values.max()]
    assert cat.info(cat.resolve("tng-cut")).params["min_log_mass"] == heaviest - 1e-6


def _missing_field(path):
    with h5py.File(path, "r+") as f:
        del f["particle_mass"]


def _nan(path):
    with h5py.File(path, "r+") as f:
        f["M200m"][5] = np.nan


def _unknown_units(path):
    with h5py.File(path, "r+") as f:
        f["particle_position"].attrs["units"] = "furlong"


def _empty_halo(path):
    with h5py.File(path, "r+") as f:
        counts = f["particle_count"][...]
        counts[1], counts[2] = 0, counts[2] + counts[1]
        f["particle_count"][...] = counts
        f["particle_offset"][...] = np.concatenate([[0], np.cumsum(counts)[:-1]])


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage, message",
    [
        (_missing_field, r"missing field\(s\) \['particle_mass'\]"),
        (_nan, r"M200m: 1 NaN"),
        (_unknown_units, r"'particle_position' has unknown or invalid units 'furlong'"),
        (_empty_halo, r"1 empty halo"),
        (_truncated, r"truncated or corrupted"),
    ],
)
def test_bad_files_are_named_and_leave_nothing_in_the_catalog(canonical, tmp_path, damage, message):
    damage(canonical)
    root = tmp_path / "c"
    result = _eqs(root, "ingest", "halos", canonical, "--format", "hdf5")
    assert result.exit_code == 2, result.output  # a bad input file is an input error, like a bad option
    assert "pop.h5" in result.output and "nothing was written" in result.output
    assert re.search(message, result.output), result.output
    assert Catalog(root).names() == []
    assert not list(root.glob(".tmp/*.h5"))


def test_ingest_usage_errors(canonical, tmp_path):
    no_snapshot = _eqs(tmp_path / "c", "ingest", "halos", canonical, "--format", "tng")
    assert no_snapshot.exit_code == 2 and "--snapshot" in no_snapshot.output
    assert _eqs(tmp_path / "c", "ingest", "halos", tmp_path / "nope.h5", "--format", "hdf5").exit_code == 2
    # options that the format would ignore are refused, not silently recorded
    ignored = _eqs(tmp_path / "c", "ingest", "halos", canonical, "--format", "hdf5", "--particles", canonical)
    assert ignored.exit_code == 2 and "--particles is only read with --format rockstar" in ignored.output
    hydro = tmp_path / "hydro"
    hydro.mkdir()
    args = ("--matching", canonical, "--hydro", hydro)
    ignored = _eqs(tmp_path / "c", "ingest", "halos", canonical, "--format", "hdf5", *args)
    assert ignored.exit_code == 2 and "--matching is only read with --format tng" in ignored.output
    snapshot = _eqs(tmp_path / "c", "predict-galaxies", canonical, "--snapshot", 3, "--out", tmp_path / "p.csv")
    assert snapshot.exit_code == 2 and "only read with --format tng" in snapshot.output
    assert Catalog(tmp_path / "c").names() == []


def test_sim_halos_writes_a_population(tmp_path):
    args = ("sim", "halos", "--halos", 6, "--max-particles", 100, "--seed", 5, "--json")
    result = _eqs(tmp_path / "c", *args)
    assert result.exit_code == 0, result.output
    ref = json.loads(result.output)["ref"]
    assert ref == "halos-synthetic-6-s5@v1"
    ds = Catalog(tmp_path / "c").open(ref).load()
    expected = generate_population(PopulationConfig(n_halos=6, max_particles=100, seed=5))
    np.testing.assert_array_equal(ds["particle_position"].values, expected["particle_position"].values)
