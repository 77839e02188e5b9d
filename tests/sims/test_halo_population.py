"""The synthetic halo population: mass function, c(M), NFW particles, Jeans velocities, shapes,
the stellar-to-halo relation and its scatter budget, chunking, and colossus leaving HOME alone."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import spence

from data_catalog import validate_dataset
from sims.halos import population as hp
from sims.halos.catalog import CATALOG_PROPERTIES, HALOS_KIND, check_catalog, halo_particles
from sims.halos.properties import measured_properties

ROOT = Path(__file__).resolve().parents[2]


def _props(n: int, seed: int = 7, **kw) -> tuple[hp.PopulationConfig, hp.HaloProperties]:
    config = hp.PopulationConfig(n_halos=n, seed=seed, **kw)
    return config, hp.sample_halo_properties(config)


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q * np.linalg.det(q)


def test_mass_function_sampling_follows_dndlnm():
    from colossus.cosmology import cosmology
    from colossus.lss import mass_function

    config, props = _props(2000)
    lo, hi = config.log_mass_range
    cosmo = cosmology.setCosmology("planck15", persistence="")
    log_m = np.linspace(lo, hi, 4001)
    dn = mass_function.massFunction(10**log_m * cosmo.h, 0.0, mdef="200m", model="tinker08", q_out="dndlnM")
    cdf = np.concatenate([[0], np.cumsum(0.5 * (dn[1:] + dn[:-1]) * np.diff(log_m))])
    cdf /= cdf[-1]
    assert np.max(np.abs(hp.mass_function_cdf(config, log_m) - cdf)) < 1e-4
    sample = np.log10(props.M200m)
    assert sample.min() >= lo and sample.max() <= hi
    assert stats.kstest(sample, lambda x: np.interp(x, log_m, cdf)).pvalue > 0.01
    # R200m encloses 200 times the mean matter density, physical (Omega_m rho_crit h^2 = 39.3 Msun/kpc^3)
    rho = props.M200m / (4 / 3 * np.pi * props.R200m**3)
    np.testing.assert_allclose(rho, 200 * 0.3089 * 277.536627 * 0.6774**2, rtol=1e-3)


def test_concentration_relation_and_scatter_follow_formation_time():
    config, props = _props(4000)
    log_m = np.log10(props.M200m)
    resid = np.log10(props.concentration) - hp.mean_log_concentration(config, log_m)
    assert abs(resid.mean()) < 0.01
    assert resid.std() == pytest.approx(0.14, rel=0.05)
    np.testing.assert_allclose(resid, 0.14 * props.latents["formation"], atol=1e-12)
    # Diemer & Joyce (2019) median c200m at 1e12 Msun/h, z = 0, planck15, from colossus 1.4
    assert 10 ** hp.mean_log_concentration(config, 12 - np.log10(0.6774)) == pytest.approx(13.3439, rel=2e-3)
    # shapes: Allgood et al. c/a = 0.54 (M / M*)^-0.05, scatter 0.1; b/a between c/a and 1
    assert np.log10(hp.nonlinear_mass(config)) == pytest.approx(12.803, abs=0.01)
    s_mean = 0.54 * (props.M200m / hp.nonlinear_mass(config)) ** -0.05
    assert abs(np.mean(props.c_over_a - s_mean)) < 0.01
    assert np.std(props.c_over_a - s_mean) == pytest.approx(0.1, rel=0.1)
    assert np.all((props.b_over_a >= props.c_over_a) & (props.b_over_a <= 1))
    gram = np.einsum("nij,nkj->nik", props.rotation, props.rotation)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(props.rotation), 1.0, atol=1e-12)


@pytest.mark.parametrize("dipole", [0.0, 0.8])
def test_nfw_radii_match_the_enclosed_mass(dipole):
    conc, r200 = 8.0, 300.0
    rng = np.random.default_rng(1)
    pos, _, _ = hp.nfw_particles(
        20000, 1e12, r200, conc, rng, dipole=dipole, dipole_axis=np.array([0.0, 0.6, 0.8]), dipole_radius=0.15
    )
    s = np.linalg.norm(pos, axis=1) / r200
    assert s.max() <= 1.0
    assert stats.kstest(s, lambda s: hp.nfw_mu(conc * s) / hp.nfw_mu(conc)).pvalue > 0.01
    p = np.array([1e-9, 1e-3, 0.5, 3.0])
    np.testing.assert_allclose(hp.nfw_mu(hp.nfw_inverse_mu(p)), p, rtol=1e-6)
    inner = s < 0.1
    shift = pos[inner].mean(axis=0) / r200
    if dipole:  # the inner centre of mass moves along the dipole axis
        assert shift @ np.array([0.0, 0.6, 0.8]) > 10 * np.linalg.norm(
            shift - shift @ [0, 0.6, 0.8] * np.array([0, 0.6, 0.8])
        )
    else:
        assert np.linalg.norm(shift) < 0.003


def test_jeans_dispersion_matches_sigma_r():
    # F(x) against the closed form of Lokas & Mamon (2001, eq. 14, isotropic)
    x = np.logspace(-2, 2, 9)
    bracket = (
        np.pi**2
        - np.log(x)
        - 1 / x
        - 1 / (1 + x) ** 2
        - 6 / (1 + x)
        + (1 + 1 / x**2 - 4 / x - 2 / (1 + x)) * np.log1p(x)
        + 3 * np.log1p(x) ** 2
        + 6 * spence(1 + x)  # Li2(-x)
    )
    np.testing.assert_allclose(hp.nfw_jeans_f(x), 0.5 * x * (1 + x) ** 2 * bracket, rtol=2e-5)
    mass, r200, conc = 1e12, 300.0, 10.0
    _, vel, r = hp.nfw_particles(60000, mass, r200, conc, np.random.default_rng(2))
    sigma = hp.nfw_sigma_r(r, mass, r200 / conc, conc)
    ratio = np.sum(vel**2, axis=1) / (3 * sigma**2)
    edges = np.quantile(r, np.linspace(0, 1, 11))
    for lo, hi in itertools.pairwise(edges):
        sel = (r >= lo) & (r < hi)
        assert abs(ratio[sel].mean() - 1) < 4 * np.sqrt(2 / (3 * sel.sum()))
    assert np.abs(vel.mean(axis=0)).max() < 4 * sigma.mean() / np.sqrt(r.size)


def test_shapes_from_the_inertia_tensor_match_the_drawn_axis_ratios():
    rotation = _rotation(3)
    pos, _, _ = hp.nfw_particles(
        100000, 1e13, 600.0, 6.0, np.random.default_rng(3), c_over_a=0.5, b_over_a=0.7, rotation=rotation
    )
    values, vectors = np.linalg.eigh(pos.T @ pos)
    assert np.sqrt(values[0] / values[2]) == pytest.approx(0.5, abs=0.01)
    assert np.sqrt(values[1] / values[2]) == pytest.approx(0.7, abs=0.01)
    assert abs(vectors[:, 0] @ rotation[:, 2]) > 0.999  # minor axis
    assert abs(vectors[:, 2] @ rotation[:, 0]) > 0.999  # major axis


def test_chunked_generation_equals_one_shot():
    config = hp.PopulationConfig(n_halos=9, seed=11, max_particles=3000)
    whole, latents = hp.generate_population(config, return_latents=True)
    chunks = list(hp.iter_population(config, chunk_halos=4))
    assert [c.sizes["halo"] for c in chunks] == [4, 4, 1]
    names = ("halo_id", "M200m", "R200m", "position", "velocity", "particle_count", *CATALOG_PROPERTIES, "log_mstar")
    for name in names:
        assert np.array_equal(np.concatenate([c[name].values for c in chunks]), whole[name].values), name
    for name in ("particle_position", "particle_velocity", "particle_mass"):
        assert np.array_equal(np.concatenate([c[name].values for c in chunks]), whole[name].values), name
    assert all(c["particle_offset"].values[0] == 0 for c in chunks)
    assert set(latents) >= set(hp.LATENTS) and all(v.shape == (9,) for v in latents.values())


def test_catalog_is_canonical_and_physical(catalog):
    config = hp.PopulationConfig(n_halos=12, seed=5, max_particles=5000)
    ds = hp.generate_population(config)
    assert check_catalog(ds) == []
    validate_dataset(ds, HALOS_KIND, subject="synthetic population")
    with catalog.open(catalog.write(ds, "halos-synthetic", seed=config.seed)) as stored:
        assert np.array_equal(stored["particle_position"].values, ds["particle_position"].values)
        assert stored.attrs["scatter_irreducible_dex"] == 0.1
    assert ds.attrs["source_format"] == "synthetic" and ds.attrs["hubble"] == pytest.approx(0.6774)
    counts, offsets = ds["particle_count"].values, ds["particle_offset"].values
    masses = np.add.reduceat(ds["particle_mass"].values, offsets)
    np.testing.assert_allclose(masses, ds["M200m"].values, rtol=1e-10)
    assert counts.max() <= 5000
    light = ds["M200m"].values < 5000 * config.particle_mass
    np.testing.assert_allclose(ds["particle_mass"].values[offsets[light]], 1e8, rtol=0.01)
    for i in range(3):
        x = ds["particle_position"].values[offsets[i] : offsets[i] + counts[i]] - ds["position"].values[i]
        assert np.mean(np.linalg.norm(x, axis=1) < ds["R200m"].values[i]) > 0.85
    assert np.all((ds["spin"].values > 0) & (ds["spin"].values < 0.3))
    v200 = np.sqrt(hp.G_NEWTON * ds["M200m"].values / ds["R200m"].values)
    assert np.all((ds["sigma_v"].values > 0.4 * v200) & (ds["sigma_v"].values < 1.2 * v200))


def test_the_catalog_properties_are_measured_from_the_particles():
    config = hp.PopulationConfig(n_halos=150, seed=12, max_particles=3000)
    props = hp.sample_halo_properties(config)
    ds = hp.generate_population(config)
    assert set(CATALOG_PROPERTIES) <= set(ds.data_vars)
    for i in (0, 17, 99):
        p = halo_particles(ds, i)
        centre, bulk = ds["position"].values[i], ds["velocity"].values[i]
        measured = measured_properties(
            p["x"] + centre, p["v"], p["m"], centre, bulk, ds["R200m"].values[i], ds["M200m"].values[i],
            seed=config.seed, key=int(ds["halo_id"].values[i]),
        )  # fmt: skip
        for name in CATALOG_PROPERTIES:
            assert ds[name].values[i] == pytest.approx(measured[name], rel=1e-12), name
        _, _, _, spin, sigma_v = hp.halo_particles(config, props, i)
        assert (spin, sigma_v) == (measured["spin"], measured["sigma_v"])
    # what was drawn shows through what is measured
    assert stats.spearmanr(ds["concentration"].values, props.concentration)[0] > 0.6
    assert stats.spearmanr(ds["c_to_a"].values, props.c_over_a)[0] > 0.5  # 0.6 on these 150 halos
    assert stats.spearmanr(ds["spin"].values, props.spin_target)[0] > 0.6
    assert (
        stats.spearmanr(ds["x_offset"].values / ds["R200m"].values, props.offset_amplitude)[0] > 0.2
    )  # substructure blurs it
    v200 = np.sqrt(hp.G_NEWTON * ds["M200m"].values / ds["R200m"].values)
    assert np.all((ds["vmax"].values > v200) & (ds["vmax"].values < 2 * v200))
    assert np.all((ds["virial_ratio"].values > 0.3) & (ds["virial_ratio"].values < 1.2))
    assert np.all((ds["r_half"].values > 0.1 * ds["R200m"].values) & (ds["r_half"].values < 0.7 * ds["R200m"].values))
    assert np.all((ds["c_to_a"].values > 0) & (ds["c_to_a"].values <= ds["b_to_a"].values))


def test_stellar_mass_follows_behroozi13():
    # log10 M* at log10 Mh = 10.5, 11, 12, 13, 14 (eqs. 3-4 of Behroozi et al. 2013, z = 0)
    expected = [7.94495128564, 8.66982815336, 10.4281063769, 10.95368608, 11.2044058266]
    np.testing.assert_allclose(hp.behroozi13_log_mstar(np.array([10.5, 11, 12, 13, 14])), expected, atol=1e-9)
    grid = np.linspace(10.5, 14, 701)
    ratio = hp.behroozi13_log_mstar(grid) - grid
    assert 11.8 < grid[ratio.argmax()] < 12.2 and 0.02 < 10 ** ratio.max() < 0.035  # peak efficiency near 1e12
    config, props = _props(4000)
    log_m = np.log10(props.M200m)
    for lo, hi in ((10.4, 10.8), (10.8, 11.5), (11.5, 13.7)):
        sel = (log_m >= lo) & (log_m < hi)
        resid = props.log_mstar[sel] - hp.behroozi13_log_mstar(log_m[sel])
        assert abs(resid.mean()) < 4 * config.scatter_total / np.sqrt(sel.sum())


def test_recorded_irreducible_scatter_is_what_the_latents_leave():
    config, props = _props(4000)
    ds = hp.generate_population(hp.PopulationConfig(n_halos=3, seed=1, log_mass_range=(10.42, 10.6)))
    assert ds.attrs["scatter_irreducible_dex"] == config.scatter_noise == 0.1
    assert ds.attrs["scatter_total_dex"] == pytest.approx(config.scatter_total)
    assert 0.17 < config.scatter_total < 0.23
    resid = props.log_mstar - props.log_mstar_mean
    assert resid.std() == pytest.approx(config.scatter_total, rel=0.05)
    lat = props.latents
    design = np.column_stack([np.ones(resid.size), lat["formation"], hp.offset_score(lat["offset"]), lat["shape"]])
    coef, *_ = np.linalg.lstsq(design, resid, rcond=None)
    np.testing.assert_allclose(coef[1:], [0.12, -0.10, 0.05], atol=0.01)
    assert np.std(resid - design @ coef) == pytest.approx(ds.attrs["scatter_irreducible_dex"], rel=0.05)
    # the pure-noise latent is independent of every latent the particles see
    for name in ("formation", "offset", "shape", "substructure", "spin"):
        assert abs(np.corrcoef(props.latents["noise"], props.latents[name])[0, 1]) < 0.06


def test_offset_score_is_the_standardised_dipole_amplitude():
    config, props = _props(4000)
    score = hp.offset_score(props.latents["offset"])
    amplitude = props.offset_amplitude / config.offset_amplitude  # uniform on [0, 1]
    np.testing.assert_allclose(score, np.sqrt(12.0) * (amplitude - 0.5), atol=1e-12)
    assert abs(score.mean()) < 0.05 and score.std() == pytest.approx(1.0, rel=0.03)
    assert stats.kstest(amplitude, "uniform").pvalue > 1e-3


def test_particles_carry_information_about_the_latents():
    config = hp.PopulationConfig(n_halos=120, seed=9, log_mass_range=(12.0, 12.3), max_particles=4000)
    props = hp.sample_halo_properties(config)
    inner_fraction, offset, c_over_a = [], [], []
    for i in range(len(props)):
        pos, _, _, _, _ = hp.halo_particles(config, props, i)
        x = (pos - props.position[i]) / props.R200m[i]
        r = np.linalg.norm(x, axis=1)
        inner, within = r < 0.1, r < 1
        inner_fraction.append(inner.mean())
        offset.append(np.linalg.norm(x[inner].mean(axis=0)))
        values = np.linalg.eigvalsh(x[within].T @ x[within])
        c_over_a.append(np.sqrt(values[0] / values[2]))
    lat = props.latents
    assert stats.spearmanr(inner_fraction, lat["formation"])[0] > 0.6
    assert stats.spearmanr(offset, lat["offset"])[0] > 0.6
    assert stats.spearmanr(c_over_a, lat["shape"])[0] > 0.6
    resid = props.log_mstar - props.log_mstar_mean
    design = np.column_stack([np.ones(resid.size), inner_fraction, offset, c_over_a])
    coef, *_ = np.linalg.lstsq(design, resid, rcond=None)
    assert np.std(resid - design @ coef) < 0.85 * np.std(resid)


def test_config_is_checked():
    with pytest.raises(ValueError, match="log_mass_range"):
        hp.PopulationConfig(log_mass_range=(13.0, 11.0))
    with pytest.raises(ValueError, match="scatter_noise"):
        hp.PopulationConfig(scatter_noise=-0.1)
    with pytest.raises(ValueError, match="chunk_halos"):
        next(hp.iter_population(hp.PopulationConfig(n_halos=2), chunk_halos=0))


def test_colossus_writes_nothing_to_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "from sims.halos import population as hp\n"
        "c = hp.PopulationConfig(n_halos=4, seed=2, log_mass_range=(10.5, 11.0), concentration_model='diemer19')\n"
        "hp.generate_population(c)\n"
    )
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    assert list(home.rglob("*")) == []
