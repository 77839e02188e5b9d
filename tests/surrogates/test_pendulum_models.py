"""Exact symmetries of the pendulum surrogates, their features, training resume and artefacts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.symmetry import random_orthogonal
from sims import pendulum_protocols as pp
from sims import spring_pendulum as sp
from surrogates import pendulum as pm
from surrogates import pendulum_runs as pr
from surrogates.artifacts import load_model
from surrogates.dynamics import rollout
from surrogates.training import TrainConfig, seed_everything

EQUIVARIANT = ("scalar-hnn", "scalar-node", "dimensionless-hnn")


def _batch(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ranges = dict(mass=(1, 2), stiffness=(1, 2), length=(1, 2), gravity=(1, 2))
    params = sp.Parameters.from_mapping(sp.sample_parameters(n, rng, random_direction=True, **ranges))
    return torch.as_tensor(sp.sample_initial_states(n, rng)), pm.theta_of(params)


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    """An untrained model with fitted normalisation: exact symmetry must not depend on training."""
    seed_everything(seed)
    model = pm.build_model(name, hidden=(32, 32)).double()
    z, theta = _batch(64, seed=seed + 100)
    model.fit_inputs(z, theta)
    return model.eval()


def _transform(z: torch.Tensor, theta: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the orthogonal matrix r to q1, q2, p1, p2 and g."""
    z_new = (z.reshape(-1, 4, 3) @ r.T).reshape(z.shape)
    theta_new = theta.clone()
    theta_new[:, 6:9] = theta[:, 6:9] @ r.T
    return z_new, theta_new


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize("name", EQUIVARIANT)
@pytest.mark.parametrize("reflection", [False, True])
def test_vector_fields_and_rollouts_are_o3_equivariant(name, reflection):
    model = _model(name)
    z, theta = _batch()
    r = torch.as_tensor(random_orthogonal(3, np.random.default_rng(7), reflection=reflection))
    z_r, theta_r = _transform(z, theta, r)
    field, field_r = model(z, theta), model(z_r, theta_r)
    assert _relative(field_r, _transform(field, theta, r)[0]) < 1e-10
    times = torch.arange(6) * 0.2
    path, path_r = rollout(model, z, theta, times), rollout(model, z_r, theta_r, times)
    assert _relative(path_r, (path.reshape(-1, 6, 4, 3) @ r.T).reshape(path.shape)) < 1e-10


@pytest.mark.parametrize("name", ["mlp-hnn", "mlp-node"])
def test_the_mlp_baselines_are_not_equivariant(name):
    model = _model(name)
    z, theta = _batch()
    r = torch.as_tensor(random_orthogonal(3, np.random.default_rng(7), reflection=True))
    z_r, theta_r = _transform(z, theta, r)
    assert _relative(model(z_r, theta_r), _transform(model(z, theta), theta, r)[0]) > 1e-3


def _rescale_kg(z: torch.Tensor, theta: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every input carrying kg (m1, m2, k1, k2, p1, p2) multiplied by s (one factor per system)."""
    z_s, theta_s = z.clone(), theta.clone()
    z_s[:, 6:] *= s[:, None]
    theta_s[:, :4] *= s[:, None]
    return z_s, theta_s


def test_dimensionless_hnn_is_exactly_units_equivariant_under_kg_rescaling():
    model = _model("dimensionless-hnn", seed=3)
    z, theta = _batch(seed=4)
    s = torch.as_tensor(np.random.default_rng(5).uniform(3, 7, z.shape[0]))
    times = torch.arange(11) * 0.05  # short: an untrained model's flow may blow up over long times
    path = rollout(model, z, theta, times)
    path_s = rollout(model, *_rescale_kg(z, theta, s), times)
    torch.testing.assert_close(path_s[..., :6], path[..., :6], rtol=1e-11, atol=1e-12)  # positions unchanged
    torch.testing.assert_close(path_s[..., 6:], s[:, None, None] * path[..., 6:], rtol=1e-11, atol=1e-12)


def test_dimensionless_hnn_follows_any_change_of_units():
    """kg -> a kg, m -> b m, s -> c s: q / b, p / (a b / c), and time itself / c."""
    model = _model("dimensionless-hnn", seed=6)
    z, theta = _batch(seed=7)
    a, b, c = 0.37, 2.9, 0.61
    z_u = torch.cat([z[:, :6] / b, z[:, 6:] * c / (a * b)], dim=-1)
    theta_u = theta.clone()
    theta_u[:, :2] /= a
    theta_u[:, 2:4] *= c**2 / a
    theta_u[:, 4:6] /= b
    theta_u[:, 6:9] *= c**2 / b
    field, field_u = model(z, theta), model(z_u, theta_u)
    expected = torch.cat([field[:, :6] * c / b, field[:, 6:] * c**2 / (a * b)], dim=-1)  # d/dt gains a factor c
    torch.testing.assert_close(field_u, expected, rtol=1e-10, atol=1e-12)


def test_the_dimensional_baseline_is_not_units_equivariant():
    model = _model("dimensional-hnn", seed=3)
    z, theta = _batch(seed=4)
    s = torch.full((z.shape[0],), 5.0, dtype=torch.float64)
    field, field_s = model(z, theta), model(*_rescale_kg(z, theta, s))
    assert _relative(field_s[:, :6], field[:, :6]) > 1e-3


def test_fast_pi_groups_agree_with_the_feature_plan():
    z, theta = _batch(seed=8)
    reference = pm.feature_plan().compute(pm.named_values(z, theta))["pi"]
    torch.testing.assert_close(pm.pi_groups(z, theta), reference, rtol=1e-13, atol=0)
    assert pm.dimensionless_inputs(z, theta).shape == (z.shape[0], pm.N_DIMENSIONLESS)


def test_a_learned_hamiltonian_conserves_its_own_energy():
    model = _model("scalar-hnn", seed=9)
    z, theta = _batch(8, seed=10)
    path = pr.predict(model, sp.Parameters.from_mapping(_params_of(theta)), z, 0.05 * np.arange(21), substeps=2)
    energy = model.energy(path.reshape(-1, 12), theta.repeat_interleave(21, 0)).reshape(8, 21).detach()
    assert float((energy - energy[:, :1]).abs().max()) < 1e-6 * float(energy.abs().max())


def _params_of(theta: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**{n: theta[:, i] for i, n in enumerate(sp.SCALAR_PARAMETERS)}, "g": theta[:, 6:9]}


@pytest.fixture
def smoke_data(catalog):
    data = pp.generate(pp.preset("units", "smoke"))
    return {split: catalog.write(ds, f"p-{split}", kind=sp.RAW_KIND) for split, ds in data.items()}


def test_resumed_training_gives_the_same_model_as_an_uninterrupted_run(catalog, smoke_data, tmp_path):
    config = TrainConfig(seed=11, epochs=4, batch_size=8, lr=1e-3, checkpoint_every=1, progress=False)
    straight = pr.train_model(catalog, "dimensionless-hnn", smoke_data["train"], smoke_data["val"], config)

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch, logs):
        if epoch == 2:
            raise Interrupt

    checkpoint = str(tmp_path / "run.pt")
    resume_args = (catalog, "dimensionless-hnn", smoke_data["train"], smoke_data["val"], config)
    with pytest.raises(Interrupt):
        pr.train_model(*resume_args, checkpoint=checkpoint, on_epoch=stop_after_two, output_name="resumed")
    resumed = pr.train_model(*resume_args, checkpoint=checkpoint, output_name="resumed")
    a, b = load_model(catalog, straight, device="cpu"), load_model(catalog, resumed, device="cpu")
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert a.training["history"] == b.training["history"]


def test_a_stored_model_predicts_exactly_as_before_and_evaluates(catalog, smoke_data):
    config = TrainConfig(seed=1, epochs=2, batch_size=8, progress=False)
    ref = pr.train_model(catalog, "scalar-node", smoke_data["train"], smoke_data["val"], config)
    info = catalog.info(ref)
    assert set(info.parents) == {catalog.resolve(smoke_data["train"]), catalog.resolve(smoke_data["val"])}
    assert info.seed == 1 and info.params["model"] == "scalar-node"
    evaluation = catalog.open(pr.evaluate_model(catalog, ref, smoke_data["exp1"]))
    params, truth, times = sp.from_dataset(catalog.open(smoke_data["exp1"]))
    again = pr.predict(load_model(catalog, ref, device="cpu").model, params, truth[:, 0], times)
    np.testing.assert_array_equal(evaluation["predicted_p2"].values, again[..., 9:12].numpy())
    assert 0 < float(evaluation["score"]) < 1 and evaluation.attrs["split"] == "exp1"


def test_predicting_from_bad_states_names_the_problem():
    model = _model("scalar-hnn")
    z, theta = _batch(4)
    params = sp.Parameters.from_mapping(_params_of(theta))
    bad = z.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(sp.PendulumInputError, match="initial states: 1 state.*system 2"):
        pr.predict(model, params, bad, np.arange(3) * 0.2)
    with pytest.raises(sp.PendulumInputError, match=r"shaped \(4, 12\)"):
        pr.predict(model, params, z[:3], np.arange(3) * 0.2)
    with pytest.raises(ValueError, match="unknown pendulum model 'hnn'; choose one of"):
        pm.build_model("hnn")
