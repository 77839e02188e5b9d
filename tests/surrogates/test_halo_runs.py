"""Halo features (with particles and without), splits, subsampling and the stored models, on a small
synthetic population."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from data_catalog import Catalog, validate_dataset
from pipeline.halos.features import (
    CATALOG_FEATURES,
    CATALOG_MODEL_FIELDS,
    FEATURES_KIND,
    catalog_inputs_valid,
    concentration_from_inner_fraction,
    halo_features,
    mass_threshold_split,
    random_split,
)
from pipeline.halos.scalars import G_KPC_KMS2_MSUN, halo_scalars
from sims.halos.catalog import PARTICLE_FIELDS, halo_particles, subsample_catalog
from sims.halos.population import PopulationConfig, generate_population
from surrogates.artifacts import load_model
from surrogates.halos import runs as hr
from surrogates.halos.models import StellarToHaloRelation
from surrogates.training import TrainConfig


@pytest.fixture(scope="module")
def catalog_and_features():
    ds = generate_population(PopulationConfig(n_halos=80, max_particles=300, seed=11))
    return ds, halo_features(ds, halo_scalars(ds, dask_address="synchronous"))


def test_particle_globals_are_the_particle_spin_and_dispersion(catalog_and_features):
    ds, features = catalog_and_features
    for i in (0, 7, 40):
        p = halo_particles(ds, i)
        inside = np.linalg.norm(p["x"], axis=1) < ds["R200m"].values[i]
        x, v, m = p["x"][inside], p["v"][inside], p["m"][inside]
        v = v - np.average(v, axis=0, weights=m)
        mass, radius = ds["M200m"].values[i], ds["R200m"].values[i]
        v200 = np.sqrt(G_KPC_KMS2_MSUN * mass / radius)
        spin = np.linalg.norm((m[:, None] * np.cross(x, v)).sum(0)) / (np.sqrt(2) * mass * v200 * radius)
        sigma = np.sqrt((m * (v**2).sum(1)).sum() / (3 * m.sum()))
        _, log_spin, log_sigma = features["global_particles"].values[i]
        assert log_spin == pytest.approx(np.log10(spin), abs=1e-12)
        assert log_sigma == pytest.approx(np.log10(sigma / v200), abs=1e-12)
    assert features.attrs["global_source"] == "catalog"
    # measured and catalog values agree roughly (the catalog's spin uses every particle, c is the true one)
    corr = [
        np.corrcoef(features["global"].values[:, k], features["global_particles"].values[:, k])[0, 1] for k in range(3)
    ]
    assert min(corr) > 0.5


def test_concentration_inversion_round_trips():
    c = np.array([2.0, 5.0, 10.0, 30.0])
    mu = lambda y: np.log1p(y) - y / (1 + y)
    np.testing.assert_allclose(concentration_from_inner_fraction(mu(0.1 * c) / mu(c)), c, rtol=1e-12)


def test_splits():
    parts = random_split(1000)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [700, 150, 150]
    assert np.unique(np.concatenate(list(parts.values()))).size == 1000
    np.testing.assert_array_equal(random_split(1000)["test"], parts["test"])  # seed 42, reproducible
    log_m = np.random.default_rng(0).uniform(10, 14, 500)
    split, threshold = mass_threshold_split(log_m)
    assert log_m[split["test"]].min() >= threshold > log_m[np.concatenate([split["train"], split["val"]])].max()
    assert len(split["test"]) == 100


def test_subsample_keeps_mass_and_is_reproducible(catalog_and_features):
    ds, _ = catalog_and_features
    low = subsample_catalog(ds, 4, seed=1, halos=np.arange(0, 80, 2))
    again = subsample_catalog(ds, 4, seed=1, halos=np.arange(0, 80, 2))
    np.testing.assert_array_equal(low["particle_position"].values, again["particle_position"].values)
    kept = np.searchsorted(ds["halo_id"].values, low["halo_id"].values)
    expected = np.rint(ds["particle_count"].values[kept] / 4)
    np.testing.assert_array_equal(low["particle_count"].values, expected)
    mass = np.add.reduceat(low["particle_mass"].values, low["particle_offset"].values)
    full = np.add.reduceat(ds["particle_mass"].values, ds["particle_offset"].values)[kept]
    np.testing.assert_allclose(mass, full, rtol=1e-12)
    assert low.sizes["halo"] + low.attrs["subsample_dropped"] == 40
    with pytest.raises(ValueError, match="factor must be >= 1"):
        subsample_catalog(ds, 0.5, seed=1)


def test_models_round_trip_through_the_catalog(catalog_and_features, tmp_path):
    _, features = catalog_and_features
    cat = Catalog(tmp_path / "c")
    ref = cat.write(features, "f", kind=FEATURES_KIND)
    config = TrainConfig(seed=0, epochs=5, batch_size=32, progress=False)
    for model in hr.MODELS:
        module, result, variables = hr.train_halo_model(model, features, "random", "log_mstar", config)
        stored = hr.store_halo_model(cat, f"m-{model}", model, module, result, config, features_ref=ref,
                                     split="random", target="log_mstar", variables=variables)  # fmt: skip
        loaded = load_model(cat, stored, device="cpu")
        mean, sigma = hr.predict_loaded(loaded, features)
        x = torch.as_tensor(hr.design_matrix(features, variables))
        with torch.no_grad():
            expected = module(x)
        np.testing.assert_array_equal(mean, expected[0].numpy())
        assert (sigma > 0).all() and np.isfinite(mean).all()
        evaluation = cat.open(hr.evaluate_halo_model(cat, stored, ref, "random")).load()
        assert evaluation.sizes["halo"] == 12 and 0 < float(evaluation["sigma68"]) < 1
    # the stored mass-only model is the least-squares relation
    split = random_split(80)["train"]
    fit = StellarToHaloRelation.fit(features["log_m200m"].values[split], features["log_mstar"].values[split])
    mean, sigma = hr.predict_loaded(load_model(cat, "m-mass-only", device="cpu"), features)
    np.testing.assert_allclose(mean, fit.predict(features["log_m200m"].values)[0], atol=1e-12)
    np.testing.assert_allclose(sigma, fit.scatter)


def test_a_catalog_global_model_refuses_particle_globals(catalog_and_features):
    _, features = catalog_and_features
    particles_only = features.assign_attrs(global_source="particles")
    with pytest.raises(ValueError, match="lacks \\(global_source = particles\\)|which this catalog lacks"):
        hr.design_matrix(particles_only, ["log_m200m", "global"])
    assert hr.input_variables("global", particles_only) == ["log_m200m", "global_particles"]


def test_the_scalars_model_reads_the_elementary_scalars_only(catalog_and_features):
    _, features = catalog_and_features
    variables = hr.input_variables("scalars", features)
    x = hr.design_matrix(features, variables)
    products = [str(s) for s in features["scalar"].values if "*" in str(s)]  # products of two single-shell scalars
    assert x.shape == (features.sizes["halo"], 1 + features.sizes["scalar"] - len(products)) == (x.shape[0], 103)
    elementary = features["scalars"].sel(scalar=[s for s in features["scalar"].values if "*" not in str(s)])
    np.testing.assert_array_equal(x[:, 1:], elementary.values)
    with pytest.raises(ValueError, match="unknown variable subset"):
        hr.design_matrix(features, ["log_m200m", "scalars:products"])


def test_the_ensemble_is_the_members_gaussian_mixture(catalog_and_features, tmp_path):
    _, features = catalog_and_features
    cat = Catalog(tmp_path / "c")
    ref = cat.write(features, "f", kind=FEATURES_KIND)
    stored = {}
    for model, seed in (("scalars", 0), ("scalars", 1), ("scalars", 2), ("global", 0)):
        config = TrainConfig(seed=seed, epochs=4, batch_size=32, progress=False)
        module, result, variables = hr.train_halo_model(model, features, "random", "log_mstar", config)
        stored[model, seed] = hr.store_halo_model(cat, f"m-{model}-{seed}", model, module, result, config,
                                                  features_ref=ref, split="random", target="log_mstar",
                                                  variables=variables)  # fmt: skip
    members = [stored["scalars", s] for s in range(3)]
    ensemble = hr.store_halo_ensemble(cat, members, "ens")
    assert set(cat.info(ensemble).parents) == set(members)
    loaded = load_model(cat, ensemble, device="cpu")
    assert isinstance(loaded.model, hr.GaussianEnsemble) and loaded.attrs["halo_model"] == "scalars-ensemble"
    single = [cat.open(hr.evaluate_halo_model(cat, m, ref, "random")).load() for m in members]
    evaluation = cat.open(hr.evaluate_halo_model(cat, ensemble, ref, "random")).load()
    means = np.array([ds["predicted_mean"].values for ds in single])
    sigmas = np.array([ds["predicted_sigma"].values for ds in single])
    assert np.ptp(means, axis=0).max() > 0  # the seeds differ, so the mixture is wider than its members
    np.testing.assert_allclose(evaluation["predicted_mean"].values, means.mean(axis=0), rtol=0, atol=1e-12)
    expected_sigma = np.sqrt((sigmas**2).mean(axis=0) + means.var(axis=0))
    np.testing.assert_allclose(evaluation["predicted_sigma"].values, expected_sigma, rtol=1e-12)
    np.testing.assert_array_equal(evaluation["true"].values, single[0]["true"].values)
    with pytest.raises(ValueError, match="at least two"):
        hr.store_halo_ensemble(cat, members[:1], "one")
    with pytest.raises(ValueError, match=r"must share \['halo_model', 'inputs'\]"):
        hr.store_halo_ensemble(cat, [members[0], stored["global", 0]], "mixed")
    assert "one" not in cat.names() and "mixed" not in cat.names()


def _without_particles(ds):
    return ds.drop_vars([n for n in PARTICLE_FIELDS if n in ds]).drop_dims("particle", errors="ignore")


def test_features_of_a_catalog_without_particles(catalog_and_features):
    ds, features = catalog_and_features
    bare = halo_features(_without_particles(ds), source="bare")
    validate_dataset(bare, FEATURES_KIND, subject="features without particles")
    assert not {"scalars", "global_particles", "particles_within"} & set(bare.data_vars)
    assert bare.attrs["global_source"] == "catalog" and bare.attrs["dropped_invalid"] == 0
    np.testing.assert_array_equal(bare["halo_id"].values, features["halo_id"].values)
    for name in ("log_m200m", "global", "catalog", "catalog_valid", "log_mstar"):
        np.testing.assert_array_equal(bare[name].values, features[name].values)
    assert list(bare["catalog_property"].values) == list(CATALOG_FEATURES) and bare["catalog_valid"].values.all()
    # the dimensionless forms
    v200 = np.sqrt(G_KPC_KMS2_MSUN * ds["M200m"].values / ds["R200m"].values)
    column = {name: bare["catalog"].values[:, k] for k, name in enumerate(CATALOG_FEATURES)}
    np.testing.assert_allclose(column["log_concentration"], np.log10(ds["concentration"].values), rtol=1e-12)
    np.testing.assert_allclose(column["vmax_over_v200m"], ds["vmax"].values / v200, rtol=1e-12)
    np.testing.assert_allclose(column["x_offset_over_r200m"], ds["x_offset"].values / ds["R200m"].values, rtol=1e-12)
    np.testing.assert_allclose(column["c_to_a"], ds["c_to_a"].values, rtol=0)
    # a catalog with mass and radius only: the log mass and the targets
    plain = _without_particles(ds).drop_vars(list(CATALOG_MODEL_FIELDS))
    only_mass = halo_features(plain)
    validate_dataset(only_mass, FEATURES_KIND, subject="features of masses")
    assert only_mass.attrs["global_source"] == "none"
    assert set(only_mass.data_vars) == {"log_m200m", "log_mstar"}


def test_catalog_inputs_are_valid_only_when_measured(catalog_and_features):
    ds, _ = catalog_and_features
    bare = _without_particles(ds)
    assert catalog_inputs_valid(bare).all()
    zeros = bare.copy()
    for name in CATALOG_MODEL_FIELDS:
        zeros[name] = xr.zeros_like(bare[name])
    assert not catalog_inputs_valid(zeros).any()
    # Rockstar writes 0 for shapes it could not measure; NaN and b/a > 1 are no measurement either
    spoiled = bare.copy(deep=True)
    spoiled["b_to_a"].values[3] = 0.0
    spoiled["spin"].values[5] = np.nan
    spoiled["c_to_a"].values[7] = 1.5
    valid = catalog_inputs_valid(spoiled)
    assert list(np.flatnonzero(~valid)) == [3, 5, 7]
    assert not catalog_inputs_valid(bare.drop_vars("virial_ratio")).any()
    assert hr.input_variables("catalog", halo_features(bare)) == ["log_m200m", "catalog"]
    with pytest.raises(ValueError, match="catalog properties .* which this catalog lacks"):
        hr.design_matrix(halo_features(bare.drop_vars("vmax")), ["log_m200m", "catalog"])


def test_the_catalog_model_trains_and_predicts_without_particles(catalog_and_features, tmp_path):
    ds, features = catalog_and_features
    cat = Catalog(tmp_path / "c")
    # two halos a halo finder did not measure: left out of training and of the evaluation
    features = features.copy(deep=True)
    features["catalog_valid"].values[[2, 40]] = False
    ref = cat.write(features, "f", kind=FEATURES_KIND)
    config = TrainConfig(seed=0, epochs=6, batch_size=32, progress=False)
    module, result, variables = hr.train_halo_model("catalog", features, "random", "log_mstar", config)
    assert variables == ["log_m200m", "catalog"] and module.n_in == 1 + len(CATALOG_FEATURES)
    stored = hr.store_halo_model(cat, "m-catalog", "catalog", module, result, config, features_ref=ref,
                                 split="random", target="log_mstar", variables=variables)  # fmt: skip
    loaded = load_model(cat, stored, device="cpu")
    with_particles = hr.predict_loaded(loaded, features)
    without = hr.predict_loaded(loaded, halo_features(_without_particles(ds)))
    np.testing.assert_array_equal(with_particles[0], without[0])
    assert np.isfinite(without[0]).all() and (without[1] > 0).all()
    evaluation = cat.open(hr.evaluate_halo_model(cat, stored, ref, "random")).load()
    test = random_split(80)["test"]
    assert evaluation.sizes["halo"] == len(set(test) - {2, 40})
    assert evaluation.attrs["left_out_unmeasured"] == len(set(test) & {2, 40})
    # what it reads: catalog properties (no particles), as arrays of the catalog's quantities
    io = hr.model_io("catalog")
    assert [p.name for p in io.inputs] == ["M200m", "R200m", *CATALOG_MODEL_FIELDS, "G", "Msun"]
    arrays = (
        ds["M200m"].values, ds["R200m"].values, *(ds[n].values for n in CATALOG_MODEL_FIELDS),
        np.asarray(G_KPC_KMS2_MSUN), np.asarray(1.0),
    )  # fmt: skip
    mean, _ = io.call(loaded.model, *arrays)
    np.testing.assert_allclose(mean.detach().numpy(), without[0], rtol=1e-12)
