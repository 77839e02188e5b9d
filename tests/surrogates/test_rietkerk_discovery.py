"""Equation discovery for the Rietkerk model: sparse regression, the closed form it recovers, rollouts of
the learned equations, and the units-equivariant reaction MLP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline.symmetry import assert_units_equivariant
from sims.rietkerk import system as rk
from sims.rietkerk.solver import simulate
from surrogates.artifacts import load_model, save_model
from surrogates.rietkerk import discovery as rd
from surrogates.sparse_regression import SparseFit, format_equation, sparse_fit, stlsq

TRAIN = [{**rk.RIETKERK_2002, "R": R} for R in rd.TRAIN_RAINFALLS]
SMALL = {"T": 30.0, "dt": 0.05, "snapshot_every": 5.0, "t_min": 5.0}


@pytest.fixture(scope="module")
def grid() -> rk.Grid:
    return rk.Grid(64.0, 2.0)


@pytest.fixture(scope="module")
def data(grid) -> rd.DiscoveryData:
    return rd.discovery_data(TRAIN, grid, rng=np.random.default_rng(0), points_per_system=1500, **SMALL)


@pytest.fixture(scope="module")
def discovery(data) -> rd.Discovery:
    return rd.discover(data)


# -- sparse regression ----------------------------------------------------------------------------


def test_stlsq_recovers_a_sparse_model():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(400, 8)) * np.array([1, 10, 0.1, 1, 100, 1, 1, 0.01])  # scales far apart
    xi = np.zeros((8, 2))
    xi[[1, 4], 0] = [0.5, -0.02]
    xi[[0, 2, 7], 1] = [3.0, 20.0, -100.0]
    y = theta @ xi + 1e-6 * rng.normal(size=(400, 2))
    fitted = stlsq(theta, y, threshold=0.05)
    np.testing.assert_array_equal(fitted != 0, xi != 0)
    np.testing.assert_allclose(fitted, xi, rtol=1e-4, atol=0)
    np.testing.assert_allclose(stlsq(theta, y[:, 1], threshold=0.05), fitted[:, 1])  # 1-D target: (p,)
    assert not stlsq(theta, y, threshold=[10.0, 0.05])[:, 0].any()  # thresholds per target

    fit = sparse_fit(theta, y, 0.05, [f"x{j}" for j in range(8)], ["a", "b"])
    assert isinstance(fit, SparseFit) and fit.residual_rms.max() < 1e-5
    assert fit.equation("a") == "0.5 x1 - 0.02 x4"
    assert format_equation(["1", "x"], [-2.0, 0.0]) == "-2" and format_equation(["x"], [0.0]) == "0"


@pytest.mark.parametrize(
    ("theta", "y", "message"),
    [
        (np.ones(10), np.ones(10), "2-D library"),
        (np.ones((10, 2)), np.ones(9), "must match"),
        (np.ones((10, 2)), np.ones((10, 2, 1)), "samples, targets"),
        (np.ones((1, 2)), np.ones(1), "cannot determine"),
        (np.array([[1.0, np.nan], [2.0, 1.0], [0.0, 1.0]]), np.ones(3), "non-finite"),
        (np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]), np.ones(3), "zero at every sample"),
    ],
)
def test_stlsq_refuses_bad_input(theta, y, message):
    with pytest.raises(ValueError, match=message):
        stlsq(theta, y, 0.1)


def test_stlsq_refuses_bad_options():
    theta, y = np.eye(3), np.ones(3)
    for kwargs, message in (({"threshold": -1.0}, "thresholds"), ({"threshold": 0.1, "ridge": -1.0}, "ridge")):
        with pytest.raises(ValueError, match=message):
            stlsq(theta, y, **kwargs)


# -- the closed form ------------------------------------------------------------------------------


def test_true_coefficients_reproduce_the_model(grid):
    """The dimensionless equations with their true coefficients are the solver's reactions exactly."""
    true = rd.true_coefficients(TRAIN[0], grid.L)
    coefs = np.array([[true.get((eq, t), 0.0) for eq in rd.EQUATIONS] for t in rd.TERMS])
    fit = SparseFit(coefs, coefs != 0, np.zeros(3), rd.TERMS, rd.EQUATIONS, (0.0,) * 3)
    exact = rd.Discovery(fit, true, grid.L)
    rng = np.random.default_rng(2)
    u, w, v = (torch.as_tensor(rng.uniform(0, 20, size=(4, 8, 8))) for _ in range(3))
    params = rk.Parameters.from_mapping({**rk.RIETKERK_2002, "R": np.array([0.5, 0.8, 1.0, 1.3])})
    p = {k: t[:, None, None] for k, t in params.to_mapping().items()}
    for got, want in zip(rd.sparse_reaction(exact)(u, w, v, p), rk.reactions(u, w, v, p), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    learned = rd.learned_values(exact, rk.RIETKERK_2002)
    for name in rk.DIFFUSION:
        assert learned[name] == pytest.approx(rk.RIETKERK_2002[name], rel=1e-12)


def test_noiseless_discovery_recovers_every_term(discovery):
    assert discovery.spurious == [] and discovery.missed == []
    assert discovery.max_relative_error <= 0.02  # the acceptance; we see about 1e-7
    assert {(r["equation"], r["term"]) for r in discovery.table()} == set(discovery.true)
    assert discovery.coefficient("U", "r") == pytest.approx(1.0, rel=0.02)  # r separated from the constant
    json.dumps(discovery.to_dict(), allow_nan=False)


def test_discovery_refuses_systems_that_differ_in_more_than_rainfall(grid):
    mixed = [TRAIN[0], {**TRAIN[1], "dv": 0.3}]
    small = rd.discovery_data(mixed, grid, rng=np.random.default_rng(0), points_per_system=200, **SMALL)
    with pytest.raises(ValueError, match="Pi group nu"):
        rd.discover(small)


def test_recovered_equations_reproduce_the_regime_at_unseen_rainfall(discovery):
    rows = rd.compare_rollouts(discovery, None, grid=rk.Grid(100.0, 2.0), T=200.0, dt=0.5)
    assert [row["truth"]["regime"] for row in rows] == ["spots", "labyrinth", "gaps"]
    for row in rows:
        assert row["sparse"]["same_regime"], row
        assert row["sparse"]["relative_l2_all"] < 1e-3, row


# -- the reaction MLP -----------------------------------------------------------------------------


def test_mlp_reaction_is_exactly_units_equivariant():
    """Its declared interface (fields and R, alpha, k1, k2 in; rates per day out) under random changes of
    l, g, d and m, and in hours, centimetres, millilitres and kilograms, each element to 1e-12."""
    torch.manual_seed(0)
    model = rd.ReactionMLP(hidden=(16, 16)).double()
    assert model.io.units == "equivariant" and model.io.independent_units == ("l",)
    rng = np.random.default_rng(3)
    fields = tuple(torch.as_tensor(rng.uniform(0, 20, size=(2, 6, 6))) for _ in rk.FIELDS)
    params = torch.tensor([[float(rk.RIETKERK_2002[name]) for name in rd.REACTION_PARAMETERS]] * 2)
    assert_units_equivariant(model, data=(*fields, params), rtol=1e-12)
    new = {"l": "ml", "g": "kg", "d": "hour", "m": "cm"}
    assert_units_equivariant(model, data=(*fields, params), substitutions=new, elementwise=True, rtol=1e-12)


def test_tiny_mlp_training_gives_finite_rates_and_round_trips(data, catalog):
    model, result = rd.train_reaction_mlp(data, seed=0, hidden=(8, 8), epochs=4, batch_size=None)
    assert result.epochs_run == 4 and np.isfinite(result.best_val)
    assert model.config == {"hidden": [8, 8], "activation": "silu", "biomass_factor": True}
    params = rk.Parameters.from_mapping(rk.RIETKERK_2002)
    grid = rk.Grid(32.0, 2.0)
    z0 = rk.initial_state(params, grid, seeds=1)
    run = simulate(params, grid, z0, T=2.0, dt=0.5, reaction=model.reaction())
    assert torch.isfinite(run.fields).all()
    x = torch.as_tensor(data.inputs()[:50])
    x[:, 2] = 0.0
    assert (model(x)[:, 2] == 0).all()  # no biomass from nothing: the V factor

    ref = save_model(catalog, "rietkerk-reaction", model, seed=0, training=result)
    loaded = load_model(catalog, ref, device="cpu").model
    x = torch.as_tensor(data.inputs()[:50])
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


# -- the full study (slow) ------------------------------------------------------------------------


@pytest.mark.slow
def test_the_study_with_its_defaults(tmp_path):
    """The command's default run (a few minutes): noiseless recovery, and the learned models reproduce the
    regimes at the unseen rainfalls."""
    out = tmp_path / "study.json"
    assert rd.main(["--out", str(out), "--noise", "0", "1e-3"]) == 0
    results = json.loads(out.read_text())
    assert results["discovery"]["max_relative_error"] <= 0.02 and not results["discovery"]["spurious"]
    clean = [r for r in results["noise_study"] if r["noise"] == 0.0]
    assert all(r["max_relative_error"] <= 0.02 and not r["spurious"] and not r["missed"] for r in clean)
    for row in results["rollouts"]:
        assert row["sparse"]["same_regime"] and row["sparse"]["relative_l2_all"] < 1e-3, row
        assert row["mlp"]["same_regime"] and row["mlp"]["relative_l2_v"] < 0.1, row
