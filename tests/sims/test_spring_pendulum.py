"""The pendulum simulator against an independent reference, its physics, protocols and input checks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sims.integrate import AdaptiveStats, integrate_fixed
from sims.pendulum import protocols as pp
from sims.pendulum import system as sp


def _systems(n: int, seed: int = 0) -> tuple[sp.Parameters, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ranges = dict(mass=(1, 2), stiffness=(1, 2), length=(1, 2), gravity=(1, 2))
    params = sp.Parameters.from_mapping(sp.sample_parameters(n, rng, random_direction=True, **ranges))
    return params, torch.as_tensor(sp.sample_initial_states(n, rng))


def _scipy_reference(params: sp.Parameters, z0: torch.Tensor, times: np.ndarray, variant: str) -> np.ndarray:
    """DOP853 at rtol 1e-12 on the Hamiltonian written independently in numpy (one system at a time)."""
    c2 = 0.5 if variant == "physical" else 1.0
    out = []
    for i in range(z0.shape[0]):
        m1, m2, k1, k2, l1, l2 = (float(getattr(params, n)[i]) for n in sp.SCALAR_PARAMETERS)
        g = params.g[i].numpy()

        def rhs(t, z, m1=m1, m2=m2, k1=k1, k2=k2, l1=l1, l2=l2, g=g):
            q1, q2, p1, p2 = z[0:3], z[3:6], z[6:9], z[9:12]
            d = q1 - q2
            f1 = k1 * (np.linalg.norm(q1) - l1) * q1 / np.linalg.norm(q1)
            f2 = 2 * c2 * k2 * (np.linalg.norm(d) - l2) * d / np.linalg.norm(d)
            return np.concatenate([p1 / m1, p2 / m2, -f1 - f2 + m1 * g, f2 + m2 * g])

        sol = solve_ivp(
            rhs, (times[0], times[-1]), z0[i].numpy(), method="DOP853", rtol=1e-12, atol=1e-14, t_eval=times
        )
        assert sol.success
        out.append(sol.y.T)
    return np.stack(out)


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_simulator_agrees_with_scipy_dop853_over_30_time_units(variant):
    params, z0 = _systems(4)
    times = 0.2 * np.arange(151)
    traj = sp.simulate(params, z0, times, variant=variant).numpy()
    reference = _scipy_reference(params, z0, times, variant)
    error = np.linalg.norm(traj - reference, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert error.max() <= 1e-8, error.max()


def test_energy_is_conserved_to_the_integration_tolerance():
    params, z0 = _systems(16, seed=1)
    stats = AdaptiveStats()
    traj = sp.simulate(params, z0, 0.2 * np.arange(151), stats=stats)
    energy = sp.hamiltonian(traj, params)
    drift = ((energy - energy[:, :1]).abs() / energy[:, :1].abs().clamp_min(1e-3)).max()
    assert drift <= 1e-8
    assert stats.accepted > 0 and stats.evaluations > 6 * stats.accepted


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_vector_field_is_hamiltons_equations_of_the_written_energy(variant):
    params, z0 = _systems(8, seed=2)
    z = z0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sp.hamiltonian(z, params, variant).sum(), z)
    expected = torch.cat([grad[:, 6:], -grad[:, :6]], dim=-1)
    torch.testing.assert_close(sp.vector_field(z0, params, variant), expected, rtol=1e-12, atol=1e-12)


def test_reference_variant_doubles_the_second_spring_energy():
    params, z0 = _systems(8, seed=3)
    q1, q2 = z0[:, :3], z0[:, 3:6]
    spring2 = 0.5 * params.k2 * ((q1 - q2).norm(dim=-1) - params.l2) ** 2
    difference = sp.hamiltonian(z0, params, "reference") - sp.hamiltonian(z0, params, "physical")
    torch.testing.assert_close(difference, spring2, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("method", "order"), [("rk4", 4), ("dopri5", 5)])
def test_fixed_step_methods_converge_at_their_order(method, order):
    params, z0 = _systems(4, seed=4)
    times = torch.tensor([0.0, 2.0])
    exact = sp.simulate(params, z0, times, rtol=1e-13, atol=1e-15)[:, -1]

    def error(substeps: int) -> float:
        end = integrate_fixed(lambda t, z: sp.vector_field(z, params), z0, times, method=method, substeps=substeps)
        return float((end[:, -1] - exact).norm())

    observed = np.log2(error(20) / error(40))
    assert abs(observed - order) < 0.3, observed


def test_bad_inputs_give_clear_errors():
    params, z0 = _systems(3)
    with pytest.raises(sp.PendulumInputError, match="m1 must be positive"):
        sp.Parameters.from_mapping({**params.to_mapping(), "m1": torch.tensor([1.0, 0.0, 1.0])})
    with pytest.raises(sp.PendulumInputError, match="k2 must be positive"):
        sp.Parameters.from_mapping({**params.to_mapping(), "k2": torch.tensor([1.0, -2.0, 1.0])})
    with pytest.raises(sp.PendulumInputError, match="l1 has 1 non-finite"):
        sp.Parameters.from_mapping({**params.to_mapping(), "l1": torch.tensor([1.0, float("nan"), 1.0])})
    with pytest.raises(sp.PendulumInputError, match="missing parameter.*g"):
        sp.Parameters.from_mapping({n: params.to_mapping()[n] for n in sp.SCALAR_PARAMETERS})
    with pytest.raises(sp.PendulumInputError, match=r"g must be shaped \(systems, 3\)"):
        sp.Parameters.from_mapping({**params.to_mapping(), "g": torch.ones(3, 2)})
    bad = z0.clone()
    bad[1, 4] = float("nan")
    with pytest.raises(sp.PendulumInputError, match="initial state: 1 state.*NaN.*system 1"):
        sp.simulate(params, bad, [0.0, 0.2])
    with pytest.raises(sp.PendulumInputError, match=r"shaped \(3, 12\)"):
        sp.simulate(params, z0[:, :9], [0.0, 0.2])
    with pytest.raises(ValueError, match="strictly increasing"):
        sp.simulate(params, z0, [0.0, 0.2, 0.2])
    with pytest.raises(sp.PendulumInputError, match="variant must be one of"):
        sp.hamiltonian(z0, params, "half")


def test_protocols_are_reproducible_and_the_kg_rescaled_test_set_obeys_the_units():
    cfg = pp.preset("units", "smoke")
    first, again = pp.generate(cfg), pp.generate(cfg)
    for split in pp.SPLITS["units"]:
        assert first[split].identical(again[split])
    exp1, exp2 = first["exp1"], first["exp2"]
    s = exp2["kg_scale"].values
    assert ((s >= 3) & (s <= 7)).all()
    # scaling kg by s leaves trajectories in metres unchanged and multiplies momenta by s
    for name in ("q1", "q2"):
        np.testing.assert_allclose(exp2[name].values, exp1[name].values, rtol=0, atol=1e-8)
    for name in ("p1", "p2"):
        np.testing.assert_allclose(exp2[name].values, s[:, None, None] * exp1[name].values, rtol=0, atol=1e-8 * 7)
    exp3 = first["exp3"]
    assert exp3["m1"].max() > 2 and (exp3["g"].values == exp1["g"].values).all()
    assert first["train"].sizes["time"] == cfg.chunk and exp1.sizes["time"] == cfg.n_times


def test_emlp_test_rollouts_start_at_a_chunk_of_the_original_trajectory():
    cfg = pp.preset("emlp", "smoke")
    data = pp.generate(cfg)
    assert data["train"].sizes == {"sample": 16, "time": 5, "space": 3}
    assert data["test"].sizes == {"sample": 8, "time": 20, "space": 3}
    assert (data["train"]["m1"] == 1).all() and (data["train"]["g"].values == [0, 0, -1]).all()
    starts = data["test"]["t_start"].values
    assert ((starts >= 0) & (starts <= cfg.dt * (cfg.n_times - cfg.chunk) + 1e-12)).all()


def test_an_undeclared_background_moves_the_trajectories_not_the_declared_gravity(catalog):
    """The broken-symmetry data of the relaxed study: simulated under g + background (checked against the
    independent numpy equations), stored with the declared g and the background as an attribute."""
    cfg = pp.preset("emlp", "smoke")
    plain, broken = pp.generate(cfg), pp.generate(cfg, background=(0.5, 0.0, 0.0))
    test = broken["test"]
    np.testing.assert_array_equal(test["g"].values, plain["test"]["g"].values)
    stored = catalog.open(catalog.write(test, "broken", kind=sp.RAW_KIND))
    np.testing.assert_array_equal(stored.attrs["undeclared_background"], [0.5, 0.0, 0.0])
    params, traj, times = sp.from_dataset(test)
    true = sp.Parameters.from_mapping({**params.to_mapping(), "g": params.g + torch.tensor([0.5, 0.0, 0.0])})
    reference = _scipy_reference(true.index(slice(0, 2)), traj[:2, 0], times, cfg.variant)
    error = np.linalg.norm(traj[:2].numpy() - reference, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert error.max() <= 1e-8, error.max()
    moved = np.linalg.norm(traj.numpy() - sp.from_dataset(plain["test"])[1].numpy(), axis=-1)
    assert moved[:, -1].min() > 1e-3
    with pytest.raises(ValueError, match="background must be 3 finite numbers"):
        pp.generate(cfg, background=(1.0, 2.0))


def test_raw_datasets_are_stored_with_their_schema_and_read_back(catalog):
    data = pp.generate(pp.preset("emlp", "smoke"))
    ref = catalog.write(data["val"], "pend-val", kind=sp.RAW_KIND, params={"split": "val"}, seed=2021)
    params, traj, times = sp.from_dataset(catalog.open(ref), source=ref)
    assert traj.shape == (8, 5, 12) and np.allclose(times, 0.2 * np.arange(5))
    bad = data["val"].copy()
    bad["p1"] = bad["p1"].assign_attrs(units="g m s^-1")
    with pytest.raises(sp.PendulumInputError, match="'p1' is in 'g m s\\^-1', expected 'kg m s\\^-1'"):
        sp.from_dataset(bad, source="val.h5")
    broken = data["val"].copy()
    broken["k1"] = broken["k1"].copy(data=np.where(np.arange(8) == 2, -1.0, 1.0))
    with pytest.raises(Exception, match="k1"):
        catalog.write(broken, "pend-bad", kind=sp.RAW_KIND)
    assert "pend-bad" not in catalog.names()


def test_singular_or_diverging_systems_are_named_not_looped_on():
    from sims.integrate import IntegrationError

    params, z0 = _systems(3, seed=5)
    singular = z0.clone()
    singular[1, 3:6] = singular[1, 0:3]  # both bobs at one point: the spring direction is undefined
    with pytest.raises(IntegrationError, match=r"1 system\(s\), first rows \[1\]"):
        sp.simulate(params, singular, [0.0, 0.2])
    with pytest.raises(sp.PendulumInputError, match="float32"):
        sp.simulate(params, z0.float(), [0.0, 0.2])


# -- the compiled per-system stepper against the batched torch one ---------------------------


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_compiled_stepper_takes_the_torch_steps_on_one_system(variant):
    """Alone in its batch, a system gets the same step sequence from both backends: equal to round-off."""
    params, z0 = _systems(3, seed=6)
    times = 0.2 * np.arange(51)
    batch = sp.simulate(params, z0, times, variant=variant, rtol=1e-10, atol=1e-12, backend="compiled")
    for i in range(3):
        one = params.index(slice(i, i + 1))
        counted = {}
        for backend in ("compiled", "torch"):
            counted[backend] = AdaptiveStats()
            single = sp.simulate(
                one,
                z0[i : i + 1],
                times,
                variant=variant,
                rtol=1e-10,
                atol=1e-12,
                stats=counted[backend],
                backend=backend,
            )
            torch.testing.assert_close(single[0], batch[i], rtol=1e-12, atol=1e-12)
        assert counted["compiled"] == counted["torch"]
        # each system's steps do not depend on the rest of the batch
        assert torch.equal(sp.simulate(one, z0[i : i + 1], times, variant=variant, rtol=1e-10, atol=1e-12)[0], batch[i])


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_compiled_and_torch_batches_agree_with_dop853_to_the_tolerance(variant):
    params, z0 = _systems(6, seed=7)
    times = 0.2 * np.arange(151)
    reference = _scipy_reference(params, z0, times, variant)
    runs = {}
    for backend in ("compiled", "torch"):
        stats = AdaptiveStats()
        runs[backend] = sp.simulate(
            params, z0, times, variant=variant, rtol=1e-10, atol=1e-12, stats=stats, backend=backend
        )
        error = np.linalg.norm(runs[backend].numpy() - reference, axis=-1) / np.linalg.norm(reference, axis=-1)
        assert error.max() <= 1e-8, (backend, error.max())
        assert stats.evaluations == 6 * (stats.accepted + stats.rejected) + (
            len(z0) if backend == "compiled" else 1
        )  # one first evaluation per system
    difference = (runs["compiled"] - runs["torch"]).norm(dim=-1) / runs["torch"].norm(dim=-1)
    assert float(difference.max()) <= 1e-8


@pytest.mark.parametrize("backend", ["compiled", "torch"])
def test_both_backends_name_the_systems_they_cannot_integrate(backend):
    from sims.integrate import IntegrationError

    params, z0 = _systems(3, seed=5)
    singular = z0.clone()
    singular[2, 3:6] = singular[2, 0:3]
    with pytest.raises(IntegrationError, match=r"non-finite .* 1 system\(s\), first rows \[2\]"):
        sp.simulate(params, singular, [0.0, 0.2], backend=backend)
    with pytest.raises(IntegrationError, match="more than 10 steps before t = "):
        sp.simulate(params, z0, [0.0, 30.0], max_steps=10, backend=backend)
    # a spring stiff enough to overflow every trial step: the step size shrinks until it underflows
    stiff = params.to_mapping() | {"k1": torch.tensor([1.0, 1e200, 1.0], dtype=torch.float64)}
    with pytest.raises(IntegrationError, match="step size underflow"):
        sp.simulate(sp.Parameters.from_mapping(stiff), z0, [0.0, 0.2], backend=backend)


def test_compiled_backend_errors_name_rows_and_refuse_other_dtypes():
    from sims.integrate import IntegrationError

    params, z0 = _systems(4, seed=5)
    stiff = params.to_mapping() | {"k1": torch.tensor([1.0, 1e200, 1.0, 1e200], dtype=torch.float64)}
    with pytest.raises(IntegrationError, match=r"underflow at t = 0 for 2 system\(s\), first rows \[1, 3\]"):
        sp.simulate(sp.Parameters.from_mapping(stiff), z0, [0.0, 0.2])
    with pytest.raises(IntegrationError, match=r"more than 10 steps before t = 30 for 4 system\(s\)"):
        sp.simulate(params, z0, [0.0, 30.0], max_steps=10)
    with pytest.raises(sp.PendulumInputError, match="compiled backend takes float64 states on the CPU"):
        sp.simulate(params.to(dtype=torch.float32), z0.float(), [0.0, 0.2], rtol=1e-4, atol=1e-6, backend="compiled")
    with pytest.raises(sp.PendulumInputError, match="backend must be one of"):
        sp.simulate(params, z0, [0.0, 0.2], backend="numba")


def test_a_compiled_simulation_leaves_torch_on_its_threads():
    """Numba's OpenMP layer sets the calling thread's OpenMP thread count, which torch shares: a process
    that asked torch for one thread must keep one after reading numba's thread count (which starts the
    layer: the benchmarks record it) and after simulating on two."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import torch, numpy as np\n"
        "from sims.pendulum import compiled\n"
        "assert compiled.numba_threads() == 2\n"
        "print(torch.get_num_threads())\n"
        "z = np.zeros((64, 12)); z[:, 2], z[:, 5] = -1.5, -3.0\n"
        "compiled.integrate(z, np.ones((64, 9)), 1.0, np.linspace(0, 1, 5), rtol=1e-6, atol=1e-9)\n"
        "print(torch.get_num_threads())\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
