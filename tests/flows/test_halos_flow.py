"""The halo flow on the smoke preset (run once for the module), its cache, `eqs reproduce halos` and
`eqs predict-galaxies`, including exact invariance of the predictions."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from support import REAL_HALOS

from data_catalog import Catalog
from flows.cli import main
from flows.halos.flow import halos_flow
from pipeline.symmetry import random_orthogonal, random_permutation
from sims.halos.catalog import CATALOG_PROPERTIES, HALOS_KIND
from sims.halos.population import PopulationConfig, generate_population
from sims.halos.readers import write_canonical
from surrogates.halos import runs as hr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("halos") / "catalog")
    return root, halos_flow(preset="smoke", seeds=1, catalog=root)


def _eqs(root, *args):
    return CliRunner().invoke(main, ["--catalog", str(root), *map(str, args)])


def _read_csv(path) -> dict[str, np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {
        name: np.array([r[j] if name.endswith("_model") else float(r[j]) for r in rows[1:]])
        for j, name in enumerate(rows[0])
    }


def test_the_flow_runs_every_step_and_reuses_its_cache(smoke, monkeypatch):
    root, result = smoke
    cat = Catalog(root)
    rows = {(r["model"], r["split"]): r for r in result.details["rows"]}
    assert set(rows) == {(m, s) for m in hr.MODELS for s in ("random", "subsampled", "mass_threshold")}
    typed = {(r.model, r.split): r for r in result.rows}
    assert typed.keys() == rows.keys() and typed["scalars", "random"].in_distribution
    assert typed["scalars", "random"].mean == rows["scalars", "random"]["sigma68"]
    for row in rows.values():
        assert 0 < row["sigma68"] < 1 and 0 <= row["within_1sigma"] <= 1
    raw, low = cat.open(result.data["raw"]), cat.open(result.data["subsampled"])
    assert raw.sizes["halo"] == 300 and low.attrs["subsample_factor"] == 4
    assert rows["scalars", "subsampled"]["halos"] == low.sizes["halo"] <= rows["scalars", "random"]["halos"]
    model = result.models["log_mstar/scalars"]["random"][0]
    assert model == "halos-smoke-log_mstar-s0-scalars@v1"
    assert result.data["features"] in cat.lineage(model) and result.data["raw"] in cat.lineage(model)
    steps = result.details["importance"]["log_mstar"]["steps"]
    assert len(steps) == 13 and steps[-1]["sigma68"] <= steps[0]["sigma68"]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(hr, "train_halo_model", must_not_train)
    again = halos_flow(preset="smoke", seeds=1, catalog=root)
    assert again == result


def test_reproduce_and_predict_galaxies_commands(smoke, tmp_path):
    root, result = smoke
    out = tmp_path / "summary.md"
    done = _eqs(root, "reproduce", "halos", "--preset", "smoke", "--seeds", 1, "--out", out)
    assert done.exit_code == 0, done.output
    assert "| log_mstar | scalars | subsampled |" in out.read_text() and "Forward selection" in out.read_text()
    ids = Catalog(root).open(result.data["raw"])["halo_id"].values
    for suffix in (".csv", ".h5"):
        path = tmp_path / f"galaxies{suffix}"
        done = _eqs(root, "predict-galaxies", result.data["raw"], "--format", "catalog", "--out", path)
        assert done.exit_code == 0, done.output
        assert "halos-smoke-log_mstar-s0-scalars@v1" in done.output
        table = _read_csv(path) if suffix == ".csv" else xr.load_dataset(path, engine="h5netcdf")
        np.testing.assert_array_equal(np.asarray(table["halo_id"]).astype(np.int64), ids)
        assert np.isfinite(np.asarray(table["log_mstar"])).all() and (np.asarray(table["log_mstar_sigma"]) > 0).all()
    bad = _eqs(root, "predict-galaxies", result.data["raw"], "--format", "catalog", "--out", tmp_path / "x.txt")
    assert bad.exit_code == 2 and ".csv" in bad.output


@pytest.mark.skipif(not REAL_HALOS.is_dir(), reason="shared real halo files absent")
def test_predict_galaxies_picks_the_best_model_a_real_catalog_supports(smoke, tmp_path):
    root, result = smoke
    scalars = result.models["log_mstar/scalars"]["random"][0]
    best = {kind: result.models[f"log_mstar/{kind}"]["random"][0] for kind in ("catalog", "global")}
    for path, fmt, n_halos, kind in (
        (REAL_HALOS / "halodatamanager_out_list" / "out_160.list", "rockstar", 4867, "catalog"),
        (REAL_HALOS / "turnaround_gevolution_ascii" / "halos_0.0.bin", "rockstar", 126, "catalog"),
        # consistent-trees writes no half-mass radius: the global model is the best it supports
        (REAL_HALOS / "halotools_ctrees_hlist" / "dummy_halocat_0.07812.list", "ctrees", 431, "global"),
    ):
        out = tmp_path / f"{path.stem}.csv"
        done = _eqs(root, "predict-galaxies", path, "--format", fmt, "--out", out)
        assert done.exit_code == 0, done.output
        # no particles: not the scalars model, and said why
        assert f"not scalars ({scalars}): {path} lacks particles" in done.stdout
        assert f"{best[kind]}: the {kind} model" in done.stdout
        if kind == "global":
            assert f"not catalog ({best['catalog']}): {path} lacks r_half" in done.stdout
        table = _read_csv(out)
        assert table["halo_id"].size == n_halos and np.isfinite(table["log_mstar"]).all()
        used = set(table["log_mstar_model"])
        assert best[kind] in used and scalars not in used
        # halos whose properties the halo finder wrote as 0 go to a model that does not read them
        fallback = int((table["log_mstar_model"] != best[kind]).sum())
        assert (fallback > 0) == (" halo(s) by " in done.stdout)
        # trained at z = 0 on the population's particles: another epoch is said, and masses beyond the training's
        assert "warning: " in done.stderr and "was trained on halos at z = 0" in done.stderr
        if path.suffix == ".bin":  # the gevolution halos are all heavier than the smoke population's
            assert "126 of 126 halo(s)" in done.stderr and "lie outside that range" in done.stderr
    as_json = _eqs(root, "predict-galaxies", path, "--format", "ctrees", "--out", tmp_path / "j.csv", "--json")
    summary = json.loads(as_json.stdout)
    assert summary["choices"][0]["target"] == "log_mstar" and summary["warnings"]


@pytest.mark.skipif(not REAL_HALOS.is_dir(), reason="shared real halo files absent")
def test_a_model_that_needs_particles_is_refused_for_a_catalog_without_them(smoke, tmp_path):
    root, result = smoke
    scalars = result.models["log_mstar/scalars"]["random"][0]
    path = REAL_HALOS / "halodatamanager_out_list" / "out_163.list"
    args = ("--format", "rockstar", "--model", scalars, "--out", tmp_path / "p.csv")
    done = _eqs(root, "predict-galaxies", path, *args, "--json")
    assert done.exit_code == 2
    error = json.loads(done.stdout)["error"]
    assert f"--model {scalars}: a scalars model reads particles" in error and "which " in error
    assert not (tmp_path / "p.csv").exists()
    # one model per target, and a model that is not there is said before the file is read
    mass_only = result.models["log_mstar/mass-only"]["random"][0]
    both = _eqs(root, "predict-galaxies", path, *args[:-2], "--model", mass_only, "--out", tmp_path / "p.csv")
    assert both.exit_code == 2 and "both predict log_mstar; give one per target" in both.output
    missing = _eqs(root, "predict-galaxies", tmp_path / "nothing.list", "--format", "rockstar", "--model", "nosuch@v1",
                   "--out", tmp_path / "p.csv")  # fmt: skip
    assert missing.exit_code == 2 and "nosuch" in missing.output and "nothing.list" not in missing.output
    # a catalog with particles is predicted by the scalars model
    out = tmp_path / "raw.csv"
    done = _eqs(root, "predict-galaxies", result.data["raw"], "--format", "catalog", "--out", out)
    assert done.exit_code == 0 and f"{scalars}: the scalars model" in done.stdout, done.output
    assert set(_read_csv(out)["log_mstar_model"]) == {scalars}


def test_predict_galaxies_without_a_model_says_what_to_run(tmp_path):
    done = _eqs(tmp_path / "empty", "predict-galaxies", "x@v1", "--format", "catalog", "--out", tmp_path / "p.csv")
    assert done.exit_code == 2 and "eqs reproduce halos" in done.output


def _variants(path, tmp_path) -> dict[str, object]:
    """The catalog rotated, reflected, in Mpc and m/s, and with particles permuted within halos."""
    ds = xr.load_dataset(path, engine="h5netcdf")
    rng = np.random.default_rng(3)
    out = {}
    for label, reflection in (("rotated", False), ("reflected", True)):
        q = random_orthogonal(3, rng, reflection=reflection)
        moved = ds.copy()
        for name in ("position", "velocity", "particle_position", "particle_velocity"):
            moved[name] = (ds[name].dims, ds[name].values @ q.T, ds[name].attrs)
        out[label] = write_canonical([moved], tmp_path / f"{label}.h5")
    counts, offsets = ds["particle_count"].values, ds["particle_offset"].values
    order = np.concatenate([o + random_permutation(c, rng) for o, c in zip(offsets, counts, strict=True)])
    shuffled = ds.copy()
    for name in ("particle_position", "particle_velocity", "particle_mass"):
        shuffled[name] = (ds[name].dims, ds[name].values[order], ds[name].attrs)
    out["permuted"] = write_canonical([shuffled], tmp_path / "permuted.h5")
    units = write_canonical([ds], tmp_path / "units.h5")
    with h5py.File(units, "r+") as f:
        for name, factor, unit in (("position", 1e-3, "Mpc"), ("R200m", 1e-3, "Mpc"), ("particle_position", 1e-3, "Mpc"),
                                   ("velocity", 1e3, "m/s"), ("particle_velocity", 1e3, "m/s"), ("sigma_v", 1e3, "m/s")):  # fmt: skip
            f[name][...] = f[name][...] * factor
            f[name].attrs["units"] = unit
    out["units"] = units
    return out


def test_predictions_are_invariant_to_rotations_reflections_units_and_permutations(smoke, tmp_path):
    root, result = smoke
    base = write_canonical([generate_population(PopulationConfig(n_halos=25, max_particles=300, seed=5))],
                           tmp_path / "base.h5")  # fmt: skip
    variants = _variants(base, tmp_path)
    for key in ("log_mstar/mass-only", "log_mstar/global", "log_mstar/scalars"):
        model = result.models[key]["random"][0]
        predicted = {}
        for label, path in {"base": base, **variants}.items():
            out = tmp_path / f"{label}.csv"
            # the same files for each model: --force replaces the previous model's predictions
            done = _eqs(root, "predict-galaxies", path, "--format", "hdf5", "--model", model, "--out", out, "--force")
            assert done.exit_code == 0, done.output
            predicted[label] = _read_csv(out)
        for label in variants:
            for column in ("halo_id", "log_mstar", "log_mstar_sigma"):
                np.testing.assert_allclose(predicted[label][column], predicted["base"][column], rtol=0, atol=1e-9,
                                           err_msg=f"{key}, {label}, {column}")  # fmt: skip


def test_a_snapshot_without_a_tng_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match="a snapshot number is only read with a source"):
        halos_flow(preset="smoke", seeds=1, catalog=str(tmp_path / "c"), snapshot=99)
    source = tmp_path / "halos.list"
    source.write_text("")
    with pytest.raises(ValueError, match="--snapshot is only read with --format tng or --format ctrees, not rockstar"):
        halos_flow(
            preset="smoke", seeds=1, catalog=str(tmp_path / "c"), source=str(source), format="rockstar", snapshot=9
        )
    assert Catalog(tmp_path / "c").names() == []


def test_a_catalog_without_particles_trains_the_models_of_its_properties(tmp_path):
    population = generate_population(PopulationConfig(n_halos=160, max_particles=200, seed=11))
    alone = population.drop_vars([n for n in population.data_vars if n.startswith("particle_")])
    source = write_canonical([alone], tmp_path / "properties.h5")
    root = str(tmp_path / "c")
    result = halos_flow(preset="smoke", seeds=1, catalog=root, source=str(source), format="hdf5")
    assert {r["model"] for r in result.details["rows"]} == {"mass-only", "global", "catalog"}
    assert {r["split"] for r in result.details["rows"]} == {"random", "mass_threshold"}
    assert result.data["subsampled"] is None and "scalars" not in Catalog(root).open(result.data["features"])
    with pytest.raises(ValueError, match="has no particles, which the scalars model"):
        halos_flow(preset="smoke", seeds=1, catalog=root, source=str(source), format="hdf5", models=["scalars"])


def test_the_catalog_model_needs_catalog_properties(tmp_path):
    root = str(tmp_path / "c")
    ds = generate_population(PopulationConfig(n_halos=40, max_particles=200, seed=3))
    ref = Catalog(root).write(ds.drop_vars(list(CATALOG_PROPERTIES)), "halos-bare", kind=HALOS_KIND)
    with pytest.raises(ValueError, match="the catalog model reads the halo finder's properties, which this catalog"):
        halos_flow(preset="smoke", seeds=1, catalog=root, raw_ref=ref, models=["mass-only", "catalog"])


def test_several_seeds_add_their_ensemble(smoke, tmp_path):
    # last in the file: its ensemble becomes predict-galaxies' default model
    root, first = smoke
    result = halos_flow(preset="smoke", seeds=2, catalog=root, models=["scalars"])
    rows = {(r["model"], r["split"]): r for r in result.details["rows"]}
    assert set(rows) == {
        (m, s) for m in ("scalars", "scalars-ensemble") for s in ("random", "subsampled", "mass_threshold")
    }
    members = result.models["log_mstar/scalars"]["random"]
    assert members[0] == first.models["log_mstar/scalars"]["random"][0] and len(members) == 2
    cat = Catalog(root)
    for (model, split), row in rows.items():
        if model == "scalars-ensemble":
            assert row["seeds"] == 1 and row["halos"] == rows["scalars", split]["halos"]
    (ensemble,) = result.models["log_mstar/scalars-ensemble"]["random"]
    assert ensemble == "halos-smoke-log_mstar-scalars-ensemble@v1" and set(cat.info(ensemble).parents) == set(members)
    assert cat.info(rows["scalars-ensemble", "random"]["evaluations"][0]).parents[0] == ensemble
    out = tmp_path / "galaxies.csv"
    done = _eqs(root, "predict-galaxies", result.data["raw"], "--format", "catalog", "--out", out)
    assert done.exit_code == 0 and ensemble in done.output, done.output
