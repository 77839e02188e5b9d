"""Hostile halo inputs: every number read is checked (type, finiteness, sign, range) and named with its
file and field; options that do not apply are usage errors; nothing is accepted silently or crashes.

Exit statuses of the halo commands: 2 for usage and input errors (a bad option, a malformed file).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from support import REAL_HALOS
from test_halo_readers import INFO, write_rockstar
from tng_fixture import write_tng_fixture

from data_catalog import Catalog
from flows.cli import main
from sims.halos.catalog import (
    HaloCatalogError,
    NegativeRedshiftWarning,
    checked_number,
    checked_values,
)
from sims.halos.population import PopulationConfig, generate_population
from sims.halos.readers import iter_hdf5, write_canonical
from sims.halos.rockstar import iter_rockstar, read_rockstar_header
from sims.halos.tng import iter_tng

REAL = REAL_HALOS


def _eqs(root, *args):
    return CliRunner().invoke(main, ["--catalog", str(root), *map(str, args)])


@pytest.fixture(scope="module")
def population():
    return generate_population(PopulationConfig(n_halos=5, max_particles=60, seed=3))


# -- the helper every reader uses ---------------------------------------------------------------------


def test_checked_number_unwraps_netcdf_scalars_and_names_the_field():
    assert checked_number(np.array([0.5]), "f.h5: attribute 'redshift'") == 0.5  # how xarray stores numbers
    assert checked_number(np.float32(2.0), "x", integer=True) == 2
    assert checked_number(" 1e3", "x", low=0.0, low_open=True, text=True) == 1000.0
    for value, message in [
        (np.array([1.0, 2.0]), r"holds 2 values"),
        ("0.5", r"a str\): expected a finite number"),  # text only where the format is text
        (True, r"a bool\)"),
        (float("nan"), r"= nan: expected a finite number > 0"),
        (0.0, r"= 0.0: expected a finite number > 0"),
        (np.bytes_(b"\xff\xfe"), r"binary data"),
    ]:
        with pytest.raises(HaloCatalogError, match=r"^f\.h5: attribute 'a'.*" + message):
            checked_number(value, "f.h5: attribute 'a'", low=0.0, low_open=True)
    with pytest.raises(HaloCatalogError, match=r"= 30\.4: expected an integer >= 0 \(integer-valued"):
        checked_number(30.4, "n", integer=True, low=0)
    with pytest.raises(HaloCatalogError, match=r"col: 2 value\(s\) not an integer >= 1 \(first \[30\.4, 0\.0\] at ID"):
        checked_values(np.array([30.4, 2.0, 0.0]), "col", integer=True, low=1, ids=np.array([7, 8, 9]))


# -- Rockstar: header lines and columns -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line, bad, message",
    [
        ("#Box size: 250.000000 Mpc/h", "#Box size: -100 Mpc/h", r"'#Box size: -100 Mpc/h'.* = -100: expected .* > 0"),
        ("#Box size: 250.000000 Mpc/h", "#Box size: 0 Mpc/h", r"Box size = 0: expected a finite number > 0"),
        ("#Particle mass: 1.40000e+08 Msun/h", "#Particle mass: nan Msun/h", r"Particle mass = nan: expected"),
        ("#a = 0.500000", "#a = 0", r"a = 0: expected a finite number in \(0, 2\]"),
        ("#a = 0.500000", "#a = 3.5", r"a = 3\.5: expected a finite number in \(0, 2\]"),
        ("#a = 0.500000", "#a = 1.0.0", r"a = 1\.0\.0: not a number"),
        ("h = 0.700000", "h = 0", r"h = 0: expected a finite number in \(0, 2\]"),
        ("h = 0.700000", "h = 67.74", r"h = 67\.74: expected a finite number in \(0, 2\]"),
        ("Om = 0.300000", "Om = -0.3", r"Om = -0\.3: expected"),
    ],
)
def test_rockstar_header_numbers_are_checked(tmp_path, line, bad, message):
    assert line in INFO
    path = write_rockstar(tmp_path, info=INFO.replace(line, bad))
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: header line .*" + message):
        iter_rockstar(path)


def test_rockstar_columns_are_checked_for_sign_and_integers(tmp_path):
    path = write_rockstar(tmp_path / "a", row_override={11: {"Vrms": -3.0}})
    message = r"out_0\.list: column 'Vrms': 1 value\(s\) not a finite number >= 0 .*\[11\]"
    with pytest.raises(HaloCatalogError, match=message):
        list(iter_rockstar(path))
    path = write_rockstar(tmp_path / "b", row_override={11: {"ID": 30.4}})
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: line \d+: column 'ID' holds '30\.4'; expected an int"):
        iter_rockstar(path)


def test_rockstar_particles_of_halos_not_in_the_list_are_refused(tmp_path):
    path = write_rockstar(tmp_path, halos=(10, 11, 12, 13))  # the particle files still hold halo 14's
    with pytest.raises(
        HaloCatalogError,
        match=r"halos_0\.1\.particles: 4 particle\(s\) of 1 halo\(s\) not in .*out_0\.list \(external_haloid \[14\]\)",
    ):
        iter_rockstar(path)


def test_rockstar_particles_with_a_negative_halo_id_other_than_minus_one_are_refused(tmp_path):
    path = write_rockstar(tmp_path)  # -1 marks halos Rockstar did not print; -5 is no halo at all
    with open(tmp_path / "halos_0.0.particles", "a") as f:
        f.write("1.0e+00 1.0e+00 1.0e+00 0 0 0 6 9 9 -5\n")
    with pytest.raises(HaloCatalogError, match=r"halos_0\.0\.particles: 1 particle\(s\) .*\[-5\]"):
        iter_rockstar(path)


def test_a_small_negative_redshift_is_accepted_with_a_warning_and_a_large_one_refused(tmp_path):
    path = write_rockstar(tmp_path, info=INFO.replace("#a = 0.500000", "#a = 1.030000"))
    with pytest.warns(NegativeRedshiftWarning, match=r"out_0\.list: .*a = 1\.03: a negative redshift z = -0\.02913"):
        (ds,) = list(iter_rockstar(path))
    assert ds.attrs["redshift"] == pytest.approx(1 / 1.03 - 1)


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real halo files absent")
def test_the_real_gevolution_file_past_z0_is_warned_about(tmp_path):
    path = REAL / "turnaround_gevolution_ascii" / "halos_0.0.ascii"
    message = r"halos_0\.0\.ascii: .*a = 1\.03086: a negative redshift z = -0\.02994"
    with pytest.warns(NegativeRedshiftWarning, match=message):
        header = read_rockstar_header(path)
    assert header.scale_factor == 1.030863
    # the command says so too, and ingests its halo properties (Rockstar wrote no particles)
    result = _eqs(tmp_path / "c", "ingest", "halos", path, "--format", "rockstar")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "z = -0.02994" in result.output


def test_an_empty_rockstar_list_names_the_file_not_a_temporary_one(tmp_path):
    path = write_rockstar(tmp_path, halos=())
    with pytest.raises(HaloCatalogError, match=r"out_0\.list: no halos"):
        iter_rockstar(path)
    result = _eqs(tmp_path / "c", "ingest", "halos", path, "--format", "rockstar")
    assert result.exit_code == 2 and "out_0.list: no halos" in result.output and ".h5" not in result.output


# -- the canonical HDF5 file ---------------------------------------------------------------------------


def _rewrite(path: Path, name: str, values: np.ndarray) -> None:
    with h5py.File(path, "r+") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        f[name] = values
        f[name].attrs["units"] = attrs["units"]


def test_a_fractional_particle_count_is_refused_not_truncated(population, tmp_path):
    path = write_canonical([population], tmp_path / "pop.h5")
    counts = population["particle_count"].values.astype(np.float64)
    counts[2] += 0.4
    _rewrite(path, "particle_count", counts)
    with pytest.raises(HaloCatalogError, match=r"pop\.h5: field 'particle_count': 1 value\(s\) not an integer"):
        iter_hdf5(path)


def test_a_file_written_the_ordinary_xarray_way_is_accepted(population, tmp_path):
    path = tmp_path / "xr.h5"
    population.to_netcdf(path, engine="h5netcdf")  # numeric attributes become 1-element arrays
    with h5py.File(path) as f:
        assert f.attrs["redshift"].shape == (1,)
    (ds,) = list(iter_hdf5(path))
    assert ds.attrs["redshift"] == 0.0 and ds.attrs["n_halos_total"] == 5
    result = _eqs(tmp_path / "c", "ingest", "halos", path, "--format", "hdf5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["halos"] == 5


@pytest.mark.parametrize(
    "attr, value, message",
    [
        ("redshift", np.float64(-2.0), r"attribute 'redshift' = -2\.0: expected a finite number >= -0\.5"),
        ("hubble", np.array([0.0]), r"attribute 'hubble' = 0\.0: expected a finite number in \(0, 2\]"),
        ("box_size_kpc", np.float64(np.inf), r"attribute 'box_size_kpc' = inf: expected a finite number > 0"),
        ("redshift", np.array([0.1, 0.2]), r"attribute 'redshift' = \[0\.1, 0\.2\] \(a list\): expected a finite"),
        ("format_version", np.bytes_(b"\xff\xfe1"), r"attribute 'format_version' holds binary data"),
        ("source_format", np.int64(3), r"attribute 'source_format' = 3; expected text"),
    ],
)
def test_canonical_attributes_are_checked(population, tmp_path, attr, value, message):
    path = write_canonical([population], tmp_path / "pop.h5")
    with h5py.File(path, "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(HaloCatalogError, match=r"pop\.h5: " + message):
        iter_hdf5(path)


def test_negative_dispersions_and_concentrations_are_refused(population, tmp_path):
    path = write_canonical([population], tmp_path / "pop.h5")
    _rewrite(path, "sigma_v", -population["sigma_v"].values)
    with pytest.raises(HaloCatalogError, match=r"pop\.h5 \(halos 0\.\.4\): sigma_v: values must be >= 0"):
        list(iter_hdf5(path))


def test_a_canonical_file_without_halos_names_the_file(population, tmp_path):
    path = tmp_path / "none.h5"
    population.isel(halo=slice(0, 0), particle=slice(0, 0)).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(HaloCatalogError, match=r"none\.h5: no halos"):
        iter_hdf5(path)


# -- TNG Header attributes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attr, value, message",
    [
        ("BoxSize", 0.0, r"fof_subhalo_tab_099\.0\.hdf5: Header attribute BoxSize = 0\.0: expected a finite .* > 0"),
        ("HubbleParam", 0.0, r"Header attribute HubbleParam = 0\.0: expected a finite number in \(0, 2\]"),
        ("Redshift", -2.0, r"Header attribute Redshift = -2\.0: expected a finite number >= -0\.5"),
        ("Time", 0.7, r"Header Time = 0\.7 but Redshift = 1\.0 gives a = 0\.5"),
        ("NumFiles", 2.5, r"Header attribute NumFiles = 2\.5: expected an integer >= 1"),
        ("Ngroups_Total", -1, r"Header attribute Ngroups_Total = -1: expected an integer >= 0"),
    ],
)
def test_tng_header_numbers_are_checked(tmp_path, attr, value, message):
    truth = write_tng_fixture(tmp_path, with_matching=False)
    with h5py.File(truth["group_files"][0], "r+") as f:
        f["Header"].attrs[attr] = value
    with pytest.raises(HaloCatalogError, match=message):
        list(iter_tng(truth["base_path"], truth["snapshot"]))


def test_tng_mass_table_nan_and_a_negative_redshift(tmp_path):
    truth = write_tng_fixture(tmp_path / "a", with_matching=False)
    with h5py.File(truth["snap_files"][0], "r+") as f:
        f["Header"].attrs["MassTable"] = np.array([0.0, np.nan, 0, 0, 0, 0])
    with pytest.raises(HaloCatalogError, match=r"snap_099\.0\.hdf5: Header attribute MassTable: 1 value\(s\) not"):
        list(iter_tng(truth["base_path"], truth["snapshot"]))
    truth = write_tng_fixture(tmp_path / "b", with_matching=False, redshift=-0.03)
    with pytest.warns(NegativeRedshiftWarning, match=r"fof_subhalo_tab_099\.0\.hdf5: Header attribute Redshift"):
        chunks = list(iter_tng(truth["base_path"], truth["snapshot"]))
    assert chunks[0].attrs["redshift"] == pytest.approx(-0.03)


# -- the commands: usage and input errors exit 2, limits stated at once ------------------------------------


def test_options_that_do_not_apply_or_are_not_finite_are_usage_errors(tmp_path):
    rockstar = write_rockstar(tmp_path / "r")
    result = _eqs(tmp_path / "c", "ingest", "halos", rockstar, "--format", "rockstar", "--snapshot", 3)
    assert (
        result.exit_code == 2
        and "--snapshot is only read with --format tng or --format ctrees, not rockstar" in result.output
    )
    truth = write_tng_fixture(tmp_path / "t", with_matching=False)
    args = ("--format", "tng", "--snapshot", truth["snapshot"], "--particles", rockstar)
    result = _eqs(tmp_path / "c", "ingest", "halos", truth["base_path"], *args)
    assert result.exit_code == 2 and "--particles is only read with --format rockstar, not tng" in result.output
    for value in ("nan", "inf", "-3"):
        args = ("--format", "tng", "--snapshot", truth["snapshot"], "--min-log-mass", value)
        result = _eqs(tmp_path / "c", "ingest", "halos", truth["base_path"], *args)
        assert result.exit_code == 2 and "--min-log-mass" in result.output and "expected" in result.output
    assert Catalog(tmp_path / "c").names() == []


def test_sim_halos_refuses_sizes_and_seeds_beyond_its_limits_at_once(tmp_path):
    result = _eqs(tmp_path / "c", "sim", "halos", "--halos", 10**12)
    assert result.exit_code == 2 and "--halos 1000000000000: at most 10,000,000" in result.output
    result = _eqs(tmp_path / "c", "sim", "halos", "--halos", 5, "--seed", 2**70)
    assert result.exit_code == 2 and "--seed" in result.output and "2**63 - 1" in result.output
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2\\*\\*63 - 1"):
        PopulationConfig(seed=2**63)


# -- stored models ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_catalog(tmp_path_factory):
    from pipeline.halos.features import FEATURES_KIND, halo_features
    from pipeline.halos.scalars import halo_scalars
    from surrogates.halos import runs as hr

    ds = generate_population(PopulationConfig(n_halos=24, max_particles=80, seed=1))
    features = halo_features(ds, halo_scalars(ds, dask_address="synchronous"))
    cat = Catalog(tmp_path_factory.mktemp("models") / "c")
    ref = cat.write(features, "f", kind=FEATURES_KIND)
    module, result, variables = hr.train_halo_model("mass-only", features, "random", "log_mstar", None)
    model = hr.store_halo_model(
        cat, "halos-t-scalars", "mass-only", module, result, None,
        features_ref=ref, split="random", target="log_mstar", variables=variables,
    )  # fmt: skip
    return cat, model


@pytest.mark.parametrize(
    "attr, value, message",
    [
        ("config", "not json", r"attribute 'config' is not valid JSON \(Expecting value.*expected a JSON object"),
        ("config", "[1, 2]", r"attribute 'config' holds '\[1, 2\]'; expected a JSON object"),
        ("inputs", '{"a": 1}', r"attribute 'inputs' holds .*; expected a JSON list of feature variable names"),
    ],
)
def test_a_model_with_a_bad_json_attribute_is_named(model_catalog, tmp_path, attr, value, message):
    from surrogates.artifacts import ModelArtifactError
    from surrogates.halos.predict import load_halo_models

    cat, model = model_catalog
    path = cat.path_of(model)
    original = path.read_bytes()
    try:
        with h5py.File(path, "r+") as f:
            f.attrs[attr] = value
        with pytest.raises(ModelArtifactError, match=rf"model {model}: " + message):
            load_halo_models(cat, [model])
    finally:
        path.write_bytes(original)


def test_predict_galaxies_exits_2_for_a_bad_halo_file(model_catalog, tmp_path):
    cat, _ = model_catalog
    empty = write_rockstar(tmp_path, halos=())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = ("--format", "rockstar", "--out", tmp_path / "p.csv")
        result = _eqs(cat.root, "predict-galaxies", empty, *args)
    assert result.exit_code == 2 and "out_0.list: no halos" in result.output, result.output
    assert not (tmp_path / "p.csv").exists()


def test_predict_galaxies_reads_rockstar_particle_files_named_with_particles(model_catalog, tmp_path):
    cat, model = model_catalog
    listing = write_rockstar(tmp_path / "r")
    named = tmp_path / "elsewhere"
    named.mkdir()
    particle_files = []
    for path in sorted(listing.parent.glob("*.particles")):  # moved away: found only when named
        particle_files += ["--particles", path.rename(named / path.name)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = ("--format", "rockstar", "--model", model, "--out", tmp_path / "p.csv", "--json")
        result = _eqs(cat.root, "predict-galaxies", listing, *particle_files, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["halos"] == 5
    # the particle files are the listing's: --particles is a reader option, refused with hdf5
    bad = _eqs(cat.root, "predict-galaxies", listing, "--format", "hdf5", *particle_files, "--out", tmp_path / "q.csv")
    assert bad.exit_code == 2 and "--particles is only read with --format rockstar" in bad.output
