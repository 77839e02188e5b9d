"""The catalog properties measured from a halo's particles (sims/halos/properties.py), each against an
analytic case, their invariance under rotations and reflections, and the batch against one halo."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from sims.halos import population as hp
from sims.halos import properties as pr

G = pr.G_NEWTON
M, R = 1e12, 200.0


def _measure(x, v=None, m=None, **kw):
    x = np.asarray(x, dtype=float)
    v = np.zeros_like(x) if v is None else np.asarray(v, dtype=float)
    m = np.full(len(x), M / len(x)) if m is None else np.asarray(m, dtype=float)
    return pr.measured_properties(x, v, m, kw.pop("centre", np.zeros(3)), kw.pop("bulk", np.zeros(3)), R, M, **kw)


def _cubic_directions() -> np.ndarray:
    """Unit vectors closed under the 48 signed permutations of the axes (the cube's symmetry group)."""
    out = []
    for base in ((1.0, 0.3, 0.1), (0.8, 0.5, 0.2), (0.6, 0.6, 0.4)):
        for perm in itertools.permutations(base):
            for signs in itertools.product((-1.0, 1.0), repeat=3):
                out.append(np.multiply(perm, signs))
    out = np.array(out)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _nfw_shells(n_shells: int, conc: float, radius: float = R) -> np.ndarray:
    """Cubically symmetric shells at radii of equal NFW mass (their midpoints in enclosed mass)."""
    p = (np.arange(n_shells) + 0.5) / n_shells * hp.nfw_mu(conc)
    shell_r = hp.nfw_inverse_mu(p) * radius / conc
    directions = _cubic_directions()
    return (shell_r[:, None, None] * directions[None]).reshape(-1, 3)


def _rotation(seed: int, reflect: bool = False) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    q = q * np.linalg.det(q)
    return q @ np.diag([1.0, 1.0, -1.0]) if reflect else q


def test_a_sphere_is_round():
    measured = _measure(_nfw_shells(40, 8.0))
    assert measured["b_to_a"] == pytest.approx(1.0, abs=1e-12)
    assert measured["c_to_a"] == pytest.approx(1.0, abs=1e-12)
    assert measured["x_offset"] == pytest.approx(0.0, abs=1e-12 * R)


@pytest.mark.parametrize("axes", [(1.0, 0.7, 0.4), (1.0, 0.9, 0.85), (1.0, 0.5, 0.5)])
def test_an_ellipsoid_has_its_axis_ratios(axes):
    # a homoeoid (density constant on similar ellipsoids), stretched and turned: the iteration
    # converges to its axis ratios within its 1 % stopping rule
    rotation = _rotation(3)
    x = (_nfw_shells(60, 10.0, radius=0.99 * R) * np.array(axes)) @ rotation.T
    measured = _measure(x)
    assert measured["b_to_a"] == pytest.approx(axes[1], rel=0.02)
    assert measured["c_to_a"] == pytest.approx(axes[2], rel=0.02)
    # and a random NFW halo drawn with those axes
    pos, _, _ = hp.nfw_particles(
        40000, M, R, 8.0, np.random.default_rng(1), c_over_a=axes[2], b_over_a=axes[1], rotation=rotation
    )
    drawn = _measure(pos)
    assert drawn["b_to_a"] == pytest.approx(axes[1], abs=0.02)
    assert drawn["c_to_a"] == pytest.approx(axes[2], abs=0.02)


def test_too_few_particles_for_a_shape_give_zero():
    x = _cubic_directions()[:9] * 50.0
    measured = _measure(x)
    assert measured["b_to_a"] == measured["c_to_a"] == 0.0


def test_potential_energy_by_direct_summation():
    # two and three point masses: exact
    x = np.array([[10.0, 0, 0], [-10.0, 0, 0]])
    v = np.array([[0, 30.0, 0], [0, -30.0, 0]])
    m = np.array([1e10, 3e10])
    measured = _measure(x, v, m)
    mean_v = (m[:, None] * v).sum(0) / m.sum()
    kinetic = 0.5 * np.sum(m * np.sum((v - mean_v) ** 2, axis=1))
    assert measured["virial_ratio"] == pytest.approx(kinetic / (G * 1e10 * 3e10 / 20.0), rel=1e-12)
    rng = np.random.default_rng(4)
    x, v, m = rng.uniform(-50, 50, (40, 3)), rng.normal(0, 100, (40, 3)), rng.uniform(1e9, 2e9, 40)
    potential = G * np.sum(np.outer(m, m)[np.triu_indices(40, 1)] / pdist(x))
    kinetic = 0.5 * np.sum(m * np.sum((v - np.average(v, axis=0, weights=m)) ** 2, axis=1))
    assert _measure(x, v, m)["virial_ratio"] == pytest.approx(kinetic / potential, rel=1e-12)


def test_sampled_potential_energy_is_unbiased():
    # a uniform sphere of 3,000 particles: |U| = 3/5 G M^2 / R (1 - 1/N-ish); the pair estimate is
    # unbiased over its seeds and within a few per cent for each
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.standard_normal((n, 3))
    x *= (0.999 * R * rng.random(n) ** (1 / 3) / np.linalg.norm(x, axis=1))[:, None]
    v = rng.normal(0, 100, (n, 3))
    m = np.full(n, M / n)
    exact = G * (M / n) ** 2 * np.sum(1.0 / pdist(x))
    assert exact == pytest.approx(0.6 * G * M**2 / R, rel=0.02)
    kinetic = 0.5 * np.sum(m * np.sum((v - v.mean(0)) ** 2, axis=1))
    ratios = np.array([_measure(x, v, m, seed=s)["virial_ratio"] for s in range(40)])
    estimates = kinetic / ratios
    errors = estimates / exact - 1
    assert abs(errors.mean()) < 4 * errors.std() / np.sqrt(errors.size)
    assert errors.std() < 0.04


def test_vmax_half_mass_radius_and_concentration_of_an_nfw_halo():
    conc, n = 8.0, 20000
    rs = R / conc
    # radii at which the enclosed mass is exactly k / n of the halo's
    radii = hp.nfw_inverse_mu(np.arange(1, n + 1) / n * hp.nfw_mu(conc)) * rs
    radii[-1] = R * (1 - 1e-12)
    directions = np.random.default_rng(6).standard_normal((n, 3))
    x = directions / np.linalg.norm(directions, axis=1, keepdims=True) * radii[:, None]
    measured = _measure(x)
    v200 = np.sqrt(G * M / R)
    # NFW: Vmax at 2.163 rs, Vmax^2 = V200^2 c mu(2.163) / (2.163 mu(c)) = 0.216 c / mu(c) V200^2
    expected = v200 * np.sqrt(conc * hp.nfw_mu(pr.X_MAX) / (pr.X_MAX * hp.nfw_mu(conc)))
    assert measured["vmax"] == pytest.approx(expected, rel=1e-5)
    assert measured["vmax"] / v200 == pytest.approx(np.sqrt(0.216 * conc / hp.nfw_mu(conc)), rel=2e-3)
    assert measured["r_half"] == pytest.approx(hp.nfw_inverse_mu(0.5 * hp.nfw_mu(conc)) * rs, rel=1e-3)
    assert measured["concentration"] == pytest.approx(conc, rel=0.01)
    # with fewer than 100 particles: Rockstar's rs_klypin from Vmax / V200
    few = _measure(x[:: n // 60][:60] * 1.0)
    assert few["concentration"] == pytest.approx(conc, rel=0.25)


def test_spin_dispersion_and_offsets():
    # a ring of particles turning rigidly about z, the whole moving with the bulk velocity plus a drift
    n = 400
    phi = np.arange(n) * 2 * np.pi / n
    x = 100.0 * np.column_stack([np.cos(phi), np.sin(phi), np.zeros(n)]) + [5.0, 0, 0]
    bulk, drift, speed = np.array([200.0, -50.0, 30.0]), np.array([3.0, 4.0, 0.0]), 80.0
    v = speed * np.column_stack([-np.sin(phi), np.cos(phi), np.zeros(n)]) + bulk + drift
    measured = _measure(x + [1e4, 0, 0], v, centre=[1e4, 0, 0], bulk=bulk)
    m_p = M / n
    # J about the centre, in the halo's frame: the ring's own plus the offset's (5 kpc x drift)
    j = n * m_p * 100.0 * speed + M * 5.0 * 4.0
    assert measured["spin"] == pytest.approx(j / (np.sqrt(2) * M * np.sqrt(G * M / R) * R), rel=1e-12)
    assert measured["sigma_v"] == pytest.approx(speed / np.sqrt(3), rel=1e-12)
    assert measured["x_offset"] == pytest.approx(5.0, rel=1e-12)
    assert measured["v_offset"] == pytest.approx(5.0, rel=1e-12)


def test_every_property_is_invariant_under_rotations_and_reflections():
    config = hp.PopulationConfig(n_halos=6, seed=3, max_particles=3000)
    props = hp.sample_halo_properties(config)
    for i in range(len(props)):
        pos, vel, m = hp._particles(config, props, i)
        centre, bulk = props.position[i], props.velocity[i]
        base = pr.measured_properties(pos, vel, m, centre, bulk, props.R200m[i], props.M200m[i], key=i)
        for seed, reflect in ((1, False), (2, True)):
            q = _rotation(seed, reflect)
            turned = pr.measured_properties(
                (pos - centre) @ q.T + centre, (vel - bulk) @ q.T + bulk, m, centre, bulk,
                props.R200m[i], props.M200m[i], key=i,
            )  # fmt: skip
            for name in pr.PROPERTIES:
                assert turned[name] == pytest.approx(base[name], rel=1e-9, abs=1e-12), name


def test_many_halos_at_once_equal_one_at_a_time_and_edge_cases():
    config = hp.PopulationConfig(n_halos=5, seed=8, max_particles=1500)
    props = hp.sample_halo_properties(config)
    parts = [hp._particles(config, props, i) for i in range(5)]
    # halo 5: no particle within R200m (NaN); halo 6: a single one inside
    far = np.array([[1e6, 0.0, 0.0]])
    single = np.array([[1.0, 0.0, 0.0], [5e5, 0.0, 0.0]])
    positions = np.concatenate([p[0] for p in parts] + [far, single])
    velocities = np.zeros_like(positions)
    velocities[: sum(len(p[0]) for p in parts)] = np.concatenate([p[1] for p in parts])
    masses = np.concatenate([p[2] for p in parts] + [np.ones(1), np.ones(2)])
    counts = np.array([len(p[2]) for p in parts] + [1, 2])
    centres = np.vstack([props.position, np.zeros((2, 3))])
    bulk = np.vstack([props.velocity, np.zeros((2, 3))])
    radius = np.concatenate([props.R200m, [100.0, 100.0]])
    mass = np.concatenate([props.M200m, [1.0, 1.0]])
    keys = np.array([0, 1, 2, 3, 4, 5, 6]) * 7
    batch = pr.measure_halos(positions, velocities, masses, counts, centres, bulk, radius, mass, seed=8, keys=keys)
    for i, (pos, vel, m) in enumerate(parts):
        one = pr.measured_properties(
            pos, vel, m, props.position[i], props.velocity[i], props.R200m[i], props.M200m[i], seed=8, key=keys[i]
        )
        for name in pr.PROPERTIES:
            assert batch[name][i] == pytest.approx(one[name], rel=1e-12), name
    assert all(np.isnan(batch[name][5]) for name in pr.PROPERTIES)
    assert batch["virial_ratio"][6] == 0.0 and batch["b_to_a"][6] == 0.0 and batch["r_half"][6] == 1.0
