"""The Rietkerk model and solver: linear stability against docs/protocols.md#rietkerk, the solver against an independent
explicit reference, its order, exact symmetries and units covariance, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_catalog import check_dataset
from pipeline.units import change_units, scale_factor, substitute_units
from sims.rietkerk import data as rd
from sims.rietkerk import system as rk
from sims.rietkerk.solver import METHODS, explicit_reference, phi_functions, simulate


def _system(R: float = 1.0, base=rk.RIETKERK_2002, n: int = 24, seed: int = 1, dtype=torch.float64):
    values = {**base, "R": R}
    params = rk.Parameters.from_mapping(values, dtype=dtype)
    grid = rk.Grid(2.0 * n, 2.0)
    return values, params, grid, rk.initial_state(params, grid, seeds=seed)


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- uniform states and linear stability (docs/protocols.md#rietkerk) -------------------------


def test_fastest_turing_wavelength_and_unstable_band_match_anchors():
    at = rk.linear_stability(rk.TALK)
    assert at.turing_unstable and 41.0 < at.fastest_wavelength < 43.0  # "about 42 m at R = 0.375"
    unstable = [R for R in np.arange(0.34, 0.50, 0.005) if rk.linear_stability({**rk.TALK, "R": R}).turing_unstable]
    assert 0.36 <= min(unstable) <= 0.38 and 0.44 <= max(unstable) <= 0.46  # "about 0.37 < R < 0.45"
    assert not rk.linear_stability({**rk.TALK, "R": 0.5}).turing_unstable  # "R >= 0.5 is uniform"


def test_2002_parameters_uniform_above_about_1_26():
    assert rk.linear_stability({**rk.RIETKERK_2002, "R": 1.25}).turing_unstable
    assert not rk.linear_stability({**rk.RIETKERK_2002, "R": 1.27}).turing_unstable
    assert not rk.linear_stability({**rk.RIETKERK_2002, "R": 0.75}).exists  # spots live where no uniform cover does


def test_vegetation_threshold_is_one_third_with_the_talk_parameters():
    assert rk.uniform_states({**rk.TALK, "R": 0.333})["vegetated"] is None
    assert rk.uniform_states({**rk.TALK, "R": 0.334})["vegetated"] is not None


@pytest.mark.parametrize("base, R", [(rk.TALK, 0.4), (rk.RIETKERK_2002, 1.2)])
def test_uniform_states_zero_the_reaction_terms(base, R):
    values = {**base, "R": R}
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    for state in rk.uniform_states(values).values():
        rates = rk.reactions(*(torch.tensor(s, dtype=torch.float64) for s in state), p)
        assert max(abs(float(r)) for r in rates) < 1e-12


def test_jacobian_matches_finite_differences():
    values = {**rk.TALK, "R": 0.4}
    state = np.array(rk.uniform_states(values)["vegetated"]) * np.array([1.1, 0.9, 1.2])
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    z = torch.tensor(state, requires_grad=True)
    auto = torch.autograd.functional.jacobian(lambda z: torch.stack(rk.reactions(z[0], z[1], z[2], p)), z)
    np.testing.assert_allclose(rk.jacobian(values, tuple(state)), auto.numpy(), rtol=1e-12, atol=1e-14)


# -- the solver -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def euler_at_200_days():
    """The independent explicit Euler solution at 200 days (40,000 steps), computed once for the methods."""
    values, params, grid, z0 = _system(R=1.0)
    return explicit_reference(values, z0[0].numpy(), grid.dl, 200.0, dt=0.005)


@pytest.mark.parametrize("method, dt", [("sbdf2", 0.5), ("etdrk4", 5.0), ("etdrk2", 2.0)])
def test_solver_agrees_with_independent_explicit_euler_at_200_days(method, dt, euler_at_200_days):
    _, params, grid, z0 = _system(R=1.0)
    reference = euler_at_200_days
    fields = simulate(params, grid, z0, T=200.0, dt=dt, method=method).fields[0, -1].numpy()
    assert reference[2].std() > 0.1 * reference[2].mean()  # a pattern, not a uniform state
    assert _rel(fields, reference) < 1e-2
    assert _rel(fields[2], reference[2]) < 1e-2


@pytest.mark.parametrize("method, order", [("sbdf2", 2.0), ("sbdf1", 1.0)])
def test_convergence_order(method, order):
    _, params, grid, z0 = _system(R=1.0, n=16)
    fine = simulate(params, grid, z0, T=40.0, dt=1 / 64, method=method).fields[0, -1].numpy()
    errors = [
        _rel(simulate(params, grid, z0, T=40.0, dt=dt, method=method).fields[0, -1].numpy(), fine)
        for dt in (1.0, 0.5, 0.25)
    ]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(observed - order) < 0.25), observed


@pytest.mark.parametrize("method, order, dts", [("etdrk4", 4.0, (4.0, 2.0, 1.0)), ("etdrk2", 2.0, (1.0, 0.5, 0.25))])
def test_exponential_convergence_order(method, order, dts):
    """Error ratios when halving dt, against ETDRK4 at dt = 1/32 d (which agrees with SBDF2 at 1/64 d to 4e-7).

    ETDRK4 (Cox-Matthews) shows order 4 at these steps; below dt = 1 d its error (1e-5) falls more slowly
    (order reduction of the scheme on this stiff problem, Hochbruck & Ostermann 2005), far below 1e-2.
    """
    _, params, grid, z0 = _system(R=1.0, n=16)
    fine = simulate(params, grid, z0, T=40.0, dt=1 / 32, method="etdrk4").fields[0, -1].numpy()
    sbdf2 = simulate(params, grid, z0, T=40.0, dt=1 / 64, method="sbdf2").fields[0, -1].numpy()
    assert _rel(sbdf2, fine) < 1e-6  # the same semi-discrete system, so the same limit
    errors = [_rel(simulate(params, grid, z0, T=40.0, dt=dt, method=method).fields[0, -1].numpy(), fine) for dt in dts]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(observed > order - 0.3), observed


def test_phi_functions_are_accurate_across_the_series_switch():
    z = torch.tensor([0.0, -1e-12, -0.5, -1.0 + 1e-12, -1.0, -1.0 - 1e-12, -7.0, -1e6], dtype=torch.float64)
    p1, p2, p3 = phi_functions(z, 3)
    torch.testing.assert_close(p1[:2], torch.tensor([1.0, 1.0 - 5e-13], dtype=torch.float64), rtol=1e-15, atol=0)
    torch.testing.assert_close(p3[0], torch.tensor(1 / 6, dtype=torch.float64))
    exact = np.array([1 - np.exp(-1.0), np.exp(-1.0), 0.5 - np.exp(-1.0)])  # phi_1..3(-1)
    for i in (3, 4, 5):  # the series just inside |z| = 1, the closed forms on and just outside it
        np.testing.assert_allclose([p1[i], p2[i], p3[i]], exact, rtol=1e-11)
    e = np.exp(-7.0)
    np.testing.assert_allclose(
        [p1[6], p2[6], p3[6]], [(e - 1) / -7, (e - 1 + 7) / 49, (e - 1 + 7 - 24.5) / -343], rtol=1e-14
    )
    np.testing.assert_allclose(
        [p1[7], p2[7], p3[7]], [1e-6, 1e-6 * (1 - 1e-6), 1e-6 * (0.5 - 1e-6 + 1e-12)], rtol=1e-12
    )


def test_method_is_selectable_and_sbdf2_is_the_default():
    import inspect

    assert inspect.signature(simulate).parameters["method"].default == "sbdf2"
    assert set(METHODS) == {"sbdf2", "sbdf1", "etdrk4", "etdrk2"}
    _, params, grid, z0 = _system(R=1.0, n=16)
    with pytest.raises(rk.RietkerkInputError, match="method must be one of"):
        simulate(params, grid, z0, T=1.0, dt=0.5, method="rk4")
    etd = simulate(params, grid, z0, T=20.0, dt=2.0, method="etdrk4").fields
    assert _rel(etd.numpy(), simulate(params, grid, z0, T=20.0, dt=0.25).fields.numpy()) < 1e-3


def test_batch_equals_single_runs_and_float32_agrees():
    values = rk.sample_parameters(3, np.random.default_rng(0), {"R": (0.8, 1.2), "Dv": (0.05, 0.2)})
    params = rk.Parameters.from_mapping(values)
    grid = rk.Grid(32.0, 2.0)
    z0 = rk.initial_state(params, grid, seeds=np.array([3, 4, 5]))
    batch = simulate(params, grid, z0, T=20.0, dt=0.5).fields
    for i in range(3):
        single = simulate(params.index([i]), grid, z0[i : i + 1], T=20.0, dt=0.5).fields
        torch.testing.assert_close(batch[i], single[0], rtol=1e-12, atol=1e-12)
    low = simulate(params.to(dtype=torch.float32), grid, z0.float(), T=20.0, dt=0.5).fields
    assert low.dtype == torch.float32 and _rel(low.double().numpy(), batch.numpy()) < 1e-4
    etd = simulate(params, grid, z0, T=20.0, dt=2.0, method="etdrk4").fields
    etd_single = simulate(params.index([1]), grid, z0[1:2], T=20.0, dt=2.0, method="etdrk4").fields
    torch.testing.assert_close(etd[1], etd_single[0], rtol=1e-12, atol=1e-12)
    etd32 = simulate(params.to(dtype=torch.float32), grid, z0.float(), T=20.0, dt=2.0, method="etdrk4").fields
    assert etd32.dtype == torch.float32 and _rel(etd32.double().numpy(), etd.numpy()) < 1e-4


def test_fields_stay_non_negative_even_where_the_spectral_laplacian_rings():
    _, params, grid, z0 = _system(R=0.75)
    solution = simulate(params, grid, z0, T=50.0, dt=0.5, save_every=5.0, laplacian="spectral")
    assert solution.clipped > 0 and float(solution.fields.min()) >= 0.0
    assert solution.fields.shape == (1, 11, 3, grid.n, grid.n)
    np.testing.assert_allclose(solution.times, np.arange(0, 51, 5.0))


@pytest.mark.parametrize("method", ["sbdf2", "etdrk4"])
def test_translations_and_square_symmetries_are_exact(method):
    _, params, grid, z0 = _system(R=1.0, n=16)
    run = lambda z: simulate(params, grid, z, T=30.0, dt=0.5 if method == "sbdf2" else 3.0, method=method).fields[0, -1]
    base = run(z0)
    torch.testing.assert_close(
        run(torch.roll(z0, (3, -5), dims=(-2, -1))), torch.roll(base, (3, -5), dims=(-2, -1)), rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(run(z0.transpose(-2, -1)), base.transpose(-1, -2), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(run(torch.flip(z0, (-1,))), torch.flip(base, (-1,)), rtol=1e-10, atol=1e-10)


def test_solution_is_units_covariant():
    """Hours, centimetres, millilitres and kilograms: the same fields after converting back."""
    values, params, grid, z0 = _system(R=1.0, n=16)
    new = {"l": "ml", "g": "kg", "d": "hour", "m": "cm"}  # plain "h" would be little h

    def factor(units: str) -> float:
        return scale_factor(units, substitute_units(units, new), independent=("l",))

    converted = {k: v * factor(rk.UNITS[k]) for k, v in values.items()}
    f_len, f_time = factor("m"), factor("d")
    field_factors = torch.tensor([factor(rk.UNITS[n]) for n in rk.FIELDS], dtype=torch.float64)[:, None, None]
    grid2 = rk.Grid(grid.L * f_len, grid.dl * f_len)
    other = simulate(rk.Parameters.from_mapping(converted), grid2, z0 * field_factors, T=30.0 * f_time, dt=0.5 * f_time)
    base = simulate(params, grid, z0, T=30.0, dt=0.5)
    torch.testing.assert_close(other.fields[0, -1] / field_factors, base.fields[0, -1], rtol=1e-10, atol=1e-12)


def test_learned_reaction_hook_is_used():
    _, params, grid, z0 = _system(R=1.0, n=16)
    calls = []

    def reaction(u, w, v, p):
        calls.append(u.shape)
        return rk.reactions(u, w, v, p)

    torch.testing.assert_close(
        simulate(params, grid, z0, T=2.0, dt=0.5, reaction=reaction).fields,
        simulate(params, grid, z0, T=2.0, dt=0.5).fields,
    )
    assert len(calls) == 4


# -- input checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"Dw": -0.1}, "Dw is a diffusivity and must be >= 0"),
        ({"alpha": float("nan")}, "alpha has 1 non-finite value"),
        ({"W0": 1.5}, "W0 is a fraction"),
        ({"k1": 0.0}, "k1 must be > 0"),
        ({"R": [1.0, -1.0]}, "R (rainfall) must be >= 0"),
    ],
)
def test_bad_parameters_are_named(change, message):
    with pytest.raises(rk.RietkerkInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rk.Parameters.from_mapping({**rk.TALK, **change}, source="sweep.json")


def test_missing_parameter_and_grids():
    with pytest.raises(rk.RietkerkInputError, match="missing parameter.*Dv"):
        rk.Parameters.from_mapping({k: v for k, v in rk.TALK.items() if k != "Dv"})
    with pytest.raises(rk.RietkerkInputError, match="grid too coarse for L"):
        rk.Grid(200.0, 20.0)
    with pytest.raises(rk.RietkerkInputError, match="not a whole number of cells"):
        rk.Grid(200.0, 3.0)
    with pytest.raises(rk.RietkerkInputError, match="dl must be a positive"):
        rk.Grid(200.0, -2.0)


def test_bad_runs_and_states():
    _, params, grid, z0 = _system(n=16)
    with pytest.raises(rk.RietkerkInputError, match="not a whole number of steps"):
        simulate(params, grid, z0, T=10.0, dt=3.0)
    with pytest.raises(rk.RietkerkInputError, match=r"shaped \(1, 3, 16, 16\)"):
        simulate(params, grid, z0[:, :2], T=1.0, dt=0.5)
    bad = z0.clone()
    bad[0, 2, 0, 0] = float("nan")
    with pytest.raises(rk.RietkerkInputError, match="non-finite values in system"):
        simulate(params, grid, bad, T=1.0, dt=0.5)
    with pytest.raises(rk.RietkerkInputError, match="non-negative"):
        simulate(params, grid, -z0, T=1.0, dt=0.5)
    with pytest.raises(rk.RietkerkInputError, match="the step dt = 8 d is unstable for system"):
        simulate(params, grid, z0, T=200.0, dt=8.0)  # the reactions are too fast for 8 d
    with pytest.raises(rk.RietkerkInputError, match="unstable at dt"):
        explicit_reference(rk.TALK, z0[0].numpy(), 2.0, 1.0, dt=0.05)


# -- datasets ---------------------------------------------------------------------------------


def test_dataset_round_trip_and_schema():
    values = rk.sample_parameters(2, np.random.default_rng(1), {"R": (0.9, 1.1)})
    params = rk.Parameters.from_mapping(values)
    grid = rk.Grid(32.0, 2.0)
    z0 = rk.initial_state(params, grid, seeds=np.array([7, 8]))
    solution = simulate(params, grid, z0, T=4.0, dt=0.5, save_every=2.0)
    ds = rd.to_dataset(params, grid, solution, dt=0.5, seeds=np.array([7, 8]))
    assert check_dataset(ds, rd.RAW_KIND) == []
    p2, g2, run, fields, times = rd.from_dataset(ds)
    assert g2 == grid and run == {"T": 4.0, "dt": 0.5}
    np.testing.assert_array_equal(times, [0.0, 2.0, 4.0])
    torch.testing.assert_close(fields, solution.fields, rtol=0, atol=0)
    torch.testing.assert_close(p2.R, params.R, rtol=0, atol=0)
    ds["v"].attrs["units"] = "kg m^-2"
    with pytest.raises(rk.RietkerkInputError, match="'v' is in 'kg m\\^-2', expected 'g m\\^-2'"):
        rd.from_dataset(ds, source="run.h5")
    ds["v"].attrs["units"] = "g m^-2"
    ds["u"][0, 1, 0, 0] = -1.0
    assert any("u: fields must be non-negative" in p for p in check_dataset(ds, rd.RAW_KIND))


def test_initial_conditions():
    _, params, grid, _ = _system(R=1.2, n=32)
    seeded = rk.initial_state(params, grid, seeds=5, seeded_fraction=0.1)
    fraction = float((seeded[0, 2] > 0).double().mean())
    assert 0.06 < fraction < 0.14 and set(np.unique(seeded[0, 2].numpy())) == {0.0, 10.0}
    torch.testing.assert_close(seeded, rk.initial_state(params, grid, seeds=5))  # seeded means reproducible
    perturbed = rk.initial_state(params, grid, kind="perturbed", noise=0.01)
    veg = rk.uniform_states({**rk.RIETKERK_2002, "R": 1.2})["vegetated"]
    np.testing.assert_allclose(perturbed[0].mean(dim=(-2, -1)).numpy(), veg, rtol=0.01)
    trace = rk.initial_state(rk.Parameters.from_mapping({**rk.RIETKERK_2002, "R": 0.5}), grid, kind="perturbed")
    assert 0 < float(trace[0, 2].max()) < 0.1 * rk.RIETKERK_2002["k2"]  # bare soil with a trace of biomass
    with pytest.raises(rk.RietkerkInputError, match="no uniform state to perturb"):
        rk.initial_state(rk.Parameters.from_mapping({**rk.RIETKERK_2002, "R": 0.5, "W0": 0.0}), grid, kind="perturbed")


def test_change_units_converts_a_dataset_and_back():
    values = rk.sample_parameters(2, np.random.default_rng(3), {"R": (0.9, 1.1)})
    params = rk.Parameters.from_mapping(values)
    grid = rk.Grid(32.0, 2.0)
    solution = simulate(params, grid, rk.initial_state(params, grid, seeds=np.array([1, 2])), T=2.0, dt=0.5)
    ds = rd.to_dataset(params, grid, solution, dt=0.5, seeds=np.array([1, 2]))
    other = change_units(ds, {"l": "ml", "g": "kg", "d": "hour", "m": "cm"}, independent=("l",))
    assert other["R"].attrs["units"] == "ml hour^-1 cm^-2" and other["time"].attrs["units"] == "hour"
    np.testing.assert_allclose(other["R"].values, ds["R"].values * 1000 / 24 / 1e4, rtol=1e-14)
    np.testing.assert_allclose(other["v"].values, ds["v"].values * 1e-3 / 1e4, rtol=1e-14)
    np.testing.assert_allclose(other["x"].values, ds["x"].values * 100, rtol=1e-14)
    back = change_units(other, {"ml": "l", "kg": "g", "hour": "d", "cm": "m"}, independent=("l",))
    xr_testing = __import__("xarray").testing
    xr_testing.assert_allclose(back, ds, rtol=1e-13)
    assert back["W0"].attrs["units"] == "1"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_solver_on_cuda_agrees_with_cpu():
    _, params, grid, z0 = _system(R=1.0, n=32)
    cpu = simulate(params, grid, z0, T=50.0, dt=0.5).fields
    gpu = simulate(params.to(device="cuda"), grid, z0.cuda(), T=50.0, dt=0.5).fields
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)


def test_a_replicate_is_the_same_systems_from_other_initial_fields():
    from dataclasses import replace as with_

    from pipeline.rietkerk.floor import replicate_floor
    from sims.rietkerk import protocols as rp

    cfg = with_(rp.preset("smoke"), n_test=4, T=4.0)
    first, again, other = (rp.generate_split(cfg, "test", replicate=r) for r in (0, 0, 1))
    np.testing.assert_array_equal(first["v"].values, again["v"].values)  # replicate 0 is the split itself
    for name in ("R", "k2", "dv"):
        np.testing.assert_array_equal(first[name].values, other[name].values)
    assert not np.array_equal(first["v"].isel(time=0).values, other["v"].isel(time=0).values)
    floor = replicate_floor("smoke")
    assert floor["systems"] == rp.preset("smoke").n_test and 0 < floor["score"] < 1
