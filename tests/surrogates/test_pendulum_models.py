"""Exact symmetries of the pendulum surrogates, their features, training resume and artefacts.

The symmetry checks read each model's declared interface (``model.io``): the random rotations,
reflections and changes of units come from ``pipeline.symmetry``, not from transforms written here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.model_io import Port
from pipeline.model_symmetry import measure_equivariance
from pipeline.symmetry import (
    SymmetryError,
    assert_equivariant,
    assert_units_equivariant,
    random_orthogonal,
)
from sims.pendulum import protocols as pp
from sims.pendulum import system as sp
from surrogates.artifacts import load_model
from surrogates.dynamics import rollout
from surrogates.pendulum import models as pm
from surrogates.pendulum import runs as pr
from surrogates.training import TrainConfig, seed_everything

EQUIVARIANT = ("scalar-hnn", "scalar-node", "dimensionless-hnn")
TIMES = Port.single("times", "scalar", "s")


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


def _rollouts(model: torch.nn.Module, times: torch.Tensor | None = None):
    """The model's rollouts and their ModelIO: paths (batch, time, 12) transform as the state does.
    Over fixed ``times`` a function of (z, theta); without them of (z, theta, times), times in s."""
    if times is not None:
        return (lambda z, theta: rollout(model, z, theta, times)), model.io.replace(outputs=(pm.STATE,))
    io = model.io.replace(inputs=(*model.io.inputs, TIMES), outputs=(pm.STATE,))
    return (lambda z, theta, t: rollout(model, z, theta, t)), io


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_vector_fields_and_rollouts_are_o3_equivariant(name):
    """Both components of O(3) (rotations and reflections) are drawn in every check."""
    model = _model(name)
    assert model.io.equivariant and model.io.group == "O(3)"
    assert_equivariant(model, data=_batch(), rtol=1e-10)
    paths, io = _rollouts(model, torch.arange(6, dtype=torch.float64) * 0.2)
    assert_equivariant(paths, io, data=_batch(), trials=4, rtol=1e-10)


@pytest.mark.parametrize("name", ["scalar-hnn", "dimensionless-hnn"])
def test_learned_energies_are_o3_invariant_scalars(name):
    model = _model(name)
    assert_equivariant(model.energy, model.io.replace(outputs=(pm.ENERGY,)), data=_batch(), rtol=1e-10)


@pytest.mark.parametrize("name", ["mlp-hnn", "mlp-node"])
def test_the_mlp_baselines_are_not_equivariant(name):
    model = _model(name)
    assert not model.io.equivariant
    with pytest.raises(SymmetryError, match=r"O\(3\) equivariance") as failed:
        assert_equivariant(model, data=_batch())
    assert min(failed.value.report.errors) > 1e-3  # every rotation and reflection breaks it


def test_dimensionless_hnn_is_exactly_units_equivariant_under_kg_rescaling():
    """kg rescaled by a factor per system: positions unchanged, momenta (and their rates) times it."""
    model = _model("dimensionless-hnn", seed=3)
    z, theta = _batch(seed=4)
    times = torch.arange(11, dtype=torch.float64) * 0.05  # short: an untrained model's flow may blow up
    paths, io = _rollouts(model)
    assert_units_equivariant(paths, io, data=(z, theta, times), dimensions=("[mass]",), per_sample=True, rtol=1e-11)


def test_dimensionless_hnn_follows_any_change_of_units():
    """kg, m and s each changed at random: q, p and time itself, hence dz/dt and whole rollouts."""
    model = _model("dimensionless-hnn", seed=6)
    assert model.io.units == "equivariant"
    assert_units_equivariant(model, data=_batch(seed=7), rtol=1e-10)
    assert_units_equivariant(model.energy, model.io.replace(outputs=(pm.ENERGY,)), data=_batch(seed=7), rtol=1e-10)
    paths, io = _rollouts(model)
    times = torch.arange(11, dtype=torch.float64) * 0.05
    assert_units_equivariant(paths, io, data=(*_batch(seed=7), times), trials=4, rtol=1e-10)


def test_the_dimensional_baseline_is_not_units_equivariant():
    model = _model("dimensional-hnn", seed=3)
    assert model.io.units == "none"
    with pytest.raises(SymmetryError, match="units equivariance") as failed:
        assert_units_equivariant(model, data=_batch(seed=4), dimensions=("[mass]",))
    assert min(failed.value.report.errors) > 1e-3


def test_fast_pi_groups_agree_with_the_feature_plan():
    z, theta = _batch(seed=8)
    reference = pm.feature_plan().compute(pm.named_values(z, theta))["pi"]
    torch.testing.assert_close(pm.pi_groups(z, theta), reference, rtol=1e-13, atol=0)
    assert pm.dimensionless_inputs(z, theta).shape == (z.shape[0], pm.N_DIMENSIONLESS)


def test_a_learned_hamiltonian_conserves_its_own_energy():
    model = _model("scalar-hnn", seed=9)
    z, theta = _batch(8, seed=10)
    path = pr.predict(model, pm.parameters_of(theta), z, 0.05 * np.arange(21), substeps=2)
    energy = model.energy(path.reshape(-1, 12), theta.repeat_interleave(21, 0)).reshape(8, 21).detach()
    assert float((energy - energy[:, :1]).abs().max()) < 1e-6 * float(energy.abs().max())


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
    # the units protocol's measured errors: O(3) (exact here) and the units (not promised by this model)
    assert float(evaluation["symmetry_error"]) < 1e-10 and float(evaluation["units_error"]) > 1e-3
    assert "symmetry_error_about_gravity" not in evaluation


def test_evaluations_measure_each_models_symmetry_errors_and_the_summary_keeps_the_worst(catalog):
    from pipeline.pendulum.summary import SYMMETRY_COLUMNS, pendulum_summary, pendulum_table

    # what an evaluation stores is what the summary reads (two layers, so two tables of the same keys)
    assert set(pr.SYMMETRY_ERRORS) == set(SYMMETRY_COLUMNS)

    data = pp.generate(pp.preset("emlp", "smoke"))
    refs = {split: catalog.write(ds, f"e-{split}", kind=sp.RAW_KIND) for split, ds in data.items()}
    evaluations = {}
    for name in ("scalar-hnn", "mlp-hnn"):
        for seed in (0, 1):
            config = TrainConfig(seed=seed, epochs=2, lr=1e-3, progress=False)
            ref = pr.train_model(catalog, name, refs["train"], refs["val"], config, output_name=f"{name}-{seed}")
            out = pr.evaluate_model(catalog, ref, refs["test"], output_name=f"{name}-{seed}-on-test")
            evaluations.setdefault(name, {}).setdefault("test", []).append(out)
    rows = {r["model"]: r for r in pendulum_summary(catalog, "emlp", evaluations)["rows"]}
    for key in ("symmetry_error", "symmetry_error_about_gravity"):
        assert rows["scalar-hnn"][key] < 1e-10  # exact under O(3), so under O(2) about z too
        per_seed = [float(catalog.open(r)[key]) for r in evaluations["mlp-hnn"]["test"]]
        assert rows["mlp-hnn"][key] == max(per_seed) > 1e-3
    assert rows["mlp-hnn"]["units_error"] is None  # not measured on the EMLP protocol
    table = pendulum_table(pendulum_summary(catalog, "emlp", evaluations))
    assert "symmetry error, O(2) about z (worst) |" in table and "units error" not in table


def test_predicting_from_bad_states_names_the_problem():
    model = _model("scalar-hnn")
    z, theta = _batch(4)
    params = pm.parameters_of(theta)
    bad = z.clone()
    bad[2, 0] = float("nan")
    with pytest.raises(sp.PendulumInputError, match="initial states: 1 state.*system 2"):
        pr.predict(model, params, bad, np.arange(3) * 0.2)
    with pytest.raises(sp.PendulumInputError, match=r"shaped \(4, 12\)"):
        pr.predict(model, params, z[:3], np.arange(3) * 0.2)
    with pytest.raises(ValueError, match="unknown pendulum model 'hnn'; choose one of"):
        pm.build_model("hnn")


# -- the method comparison's models: augmentation, a penalty, a relaxed model -------------------------------


def test_rotated_moves_states_and_gravity_as_the_true_field_transforms():
    """The rotation the augmented and penalised models use, checked on the true vector field, which is
    exactly O(3)-equivariant: f(R z, R theta) = R f(z, theta)."""
    z, theta = _batch(16)
    matrices = torch.as_tensor(np.stack([random_orthogonal(3, np.random.default_rng(i)) for i in range(16)]))
    field = sp.vector_field(z, pm.parameters_of(theta))
    moved_z, moved_theta = pm.rotated(z, theta, matrices)
    moved_field = sp.vector_field(moved_z, pm.parameters_of(moved_theta))
    torch.testing.assert_close(moved_field, pm.rotated(field, theta, matrices)[0], rtol=1e-12, atol=1e-12)
    assert torch.equal(moved_theta[:, :6], theta[:, :6])


def test_the_penalty_is_round_off_for_an_exact_model_and_not_for_the_mlp():
    """The penalty compares the rollout from rotated chunks with the rotated rollout: zero to round-off for
    an exactly equivariant model, so its training loss is its data loss; not for the MLP."""
    z, theta = _batch(8)
    times = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    batch = {"z": rollout(_model("scalar-hnn"), z, theta, times).detach() * 1.01, "theta": theta}
    loss = pm.chunk_loss(times)
    exact = _model("scalar-hnn")
    plain = float(loss(exact.train(), batch))
    exact.equivariance_penalty = 1.0
    assert float(loss(exact, batch)) == pytest.approx(plain, rel=1e-10)
    penalised, mlp = _model("mlp-hnn-penalty").train(), _model("mlp-hnn").train()  # the same weights
    assert float(loss(penalised, batch)) > 1.5 * float(loss(mlp, batch))


def test_the_extra_terms_enter_the_training_loss_only():
    """The relaxed model's energy is its two pathways', its prior is on the free one, and neither the
    prior nor the augmentation acts on the validation loss (evaluation mode)."""
    z, theta = _batch(8)
    times = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    batch = {"z": rollout(_model("scalar-hnn"), z, theta, times).detach(), "theta": theta}
    relaxed = _model("relaxed-hnn")
    torch.testing.assert_close(relaxed.energy(z, theta), relaxed.exact.energy(z, theta) + relaxed.free.energy(z, theta))
    loss = pm.chunk_loss(times)
    prior = pm.RELAXED_WEIGHT * sum(float(p.pow(2).sum()) for p in relaxed.free.parameters())
    evaluated = float(loss(relaxed.eval(), batch))
    assert float(loss(relaxed.train(), batch)) == pytest.approx(evaluated + prior, rel=1e-10)
    augmented, plain = _model("mlp-hnn-augment"), _model("mlp-hnn")  # the same seed: the same weights
    assert float(loss(augmented.eval(), batch)) == float(loss(plain.eval(), batch))  # nothing moved
    torch.manual_seed(0)
    assert float(loss(augmented.train(), batch)) != pytest.approx(float(loss(plain.train(), batch)), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "protocol"), [("mlp-hnn-augment", "emlp"), ("dimensional-hnn-units-augment", "units")]
)
def test_augmented_training_resumes_bit_for_bit(catalog, tmp_path, name, protocol):
    """The random rotations and changes of units come from torch's generator, whose state the checkpoint keeps."""
    data = pp.generate(pp.preset(protocol, "smoke"))
    refs = {s: catalog.write(ds, f"e-{s}", kind=sp.RAW_KIND) for s, ds in data.items()}
    config = TrainConfig(seed=3, epochs=4, lr=1e-3, batch_size=8, checkpoint_every=1, progress=False)
    straight = pr.train_model(catalog, name, refs["train"], refs["val"], config, model_options={"hidden": (8, 8)})
    checkpoint = str(tmp_path / "run.pt")
    args = (catalog, name, refs["train"], refs["val"])
    half = TrainConfig(**{**config.to_dict(), "epochs": 2})
    pr.train_model(*args, half, checkpoint=checkpoint, output_name="half", model_options={"hidden": (8, 8)})
    torch.manual_seed(123)  # the resumed run must not depend on the generator's state before it
    resumed = pr.train_model(
        *args, config, checkpoint=checkpoint, output_name="resumed", model_options={"hidden": (8, 8)}
    )
    a, b = load_model(catalog, straight, device="cpu"), load_model(catalog, resumed, device="cpu")
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


def test_the_method_benchmark_scores_an_exact_model_alike_on_rotated_rollouts():
    """The benchmark's rotated split and symmetry error: an exactly equivariant model scores the same on
    the rotated test rollouts as on the originals and has a round-off symmetry error; the MLP does not."""
    from surrogates.pendulum import methods_benchmark as mb

    test = pp.generate(pp.preset("emlp", "smoke"))["test"]
    params, truth, times = sp.from_dataset(test)
    exact, mlp = _model("scalar-hnn"), _model("mlp-hnn")
    moved = mb.rotated_split(test)
    assert mb.score(exact, *moved) == pytest.approx(mb.score(exact, params, truth, times), rel=1e-9)
    z, theta = truth[:, 0], pm.theta_of(params)
    # the benchmark's symmetry column: the project's check on these states
    worst = {name: measure_equivariance(m, data=[z, theta]).worst for name, m in (("exact", exact), ("mlp", mlp))}
    assert worst["exact"] < 1e-12 < 1e-3 < worst["mlp"]


def test_the_method_benchmark_records_each_trainings_best_validation_loss():
    from surrogates.pendulum import methods_benchmark as mb

    result = mb.run("smoke", ["scalar-hnn"], [8], 1, (8, 8))
    (row,) = result["rows"]
    assert row["model"] == "scalar-hnn" and row["train_chunks"] == 8
    assert 0 < row["best_val_loss"] < float("inf") and row["symmetry_error"] < 1e-12


# -- the same methods for the units (the units protocol) ------------------------------------------------------


def _unit_scales(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {dim: np.exp(rng.uniform(np.log(0.1), np.log(10.0), n)) for dim in ("[mass]", "[length]")}


def test_units_rescaled_moves_each_system_as_its_units_say():
    """Checked on the true system, whose equations hold in any units: in kg' = kg / a and m' = m / b the
    energy is a b^2 times the old (kg m^2 s^-2), and the moved system's field is the moved field (the unit
    of time is unchanged, so dz/dt scales as z)."""
    z, theta = _batch(16)
    scales = _unit_scales(16)
    moved_z, moved_theta, state_scale = pm.units_rescaled(z, theta, scales)
    a, b = (torch.as_tensor(scales[d]) for d in ("[mass]", "[length]"))
    params, moved_params = pm.parameters_of(theta), pm.parameters_of(moved_theta)
    energy, moved_energy = sp.hamiltonian(z, params), sp.hamiltonian(moved_z, moved_params)
    torch.testing.assert_close(moved_energy, a * b**2 * energy, rtol=1e-12, atol=0)
    field, moved_field = sp.vector_field(z, params), sp.vector_field(moved_z, moved_params)
    torch.testing.assert_close(moved_field, field * state_scale, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(moved_z, z * state_scale, rtol=0, atol=0)
    torch.testing.assert_close(state_scale[:, :6], b[:, None].expand(16, 6), rtol=1e-15, atol=0)


def test_the_units_augmented_loss_is_taken_in_the_data_units():
    """For an exactly units-equivariant model, the chunks moved to other units give the loss of the chunks
    as they are (the residual is taken back to the data's units); the augmented model moves them in
    training only, and its loss then differs from the plain one."""
    z, theta = _batch(8)
    times = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    chunks = rollout(_model("dimensionless-hnn"), z, theta, times).detach() * 1.01
    loss = pm.chunk_loss(times)
    exact = _model("dimensionless-hnn").train()
    moved_z, moved_theta, state_scale = pm.units_rescaled(chunks, theta, _unit_scales(8, seed=1))
    moved = {"z": moved_z, "theta": moved_theta, "state_scale": state_scale}
    plain = float(loss(exact, {"z": chunks, "theta": theta}).detach())
    assert float(loss(exact, moved).detach()) == pytest.approx(plain, rel=1e-10)
    assert float(loss(exact, {"z": moved_z, "theta": moved_theta})) != pytest.approx(plain, rel=1e-3)
    augmented, dimensional = _model("dimensional-hnn-units-augment"), _model("dimensional-hnn")  # same weights
    batch = {"z": chunks, "theta": theta}
    assert float(loss(augmented.eval(), batch)) == float(loss(dimensional.eval(), batch))
    torch.manual_seed(0)
    assert float(loss(augmented.train(), batch)) != pytest.approx(float(loss(dimensional.train(), batch)), rel=1e-6)
    moved = augmented.moved_batch(batch)["state_scale"]  # m by b, kg m s^-1 by a b: both in the range
    low, high = pm.UNITS_AUGMENT_RANGE
    b, ab = moved[:, 0, 0], moved[:, 0, 6]
    assert bool(((b >= low) & (b <= high)).all()) and bool(((ab / b >= low) & (ab / b <= high)).all())


def test_the_relaxed_units_model_adds_a_dimensional_pathway_under_its_prior():
    """H = the dimensionless HNN's energy + the dimensional-scalars HNN's; the prior is on the latter only
    and acts in training only."""
    z, theta = _batch(8)
    relaxed = _model("relaxed-units-hnn")
    assert isinstance(relaxed.exact, pm.DimensionlessHNN) and relaxed.free.inputs == "scalars"
    torch.testing.assert_close(relaxed.energy(z, theta), relaxed.exact.energy(z, theta) + relaxed.free.energy(z, theta))
    times = torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64)
    batch = {"z": rollout(_model("dimensionless-hnn"), z, theta, times).detach(), "theta": theta}
    loss = pm.chunk_loss(times)
    prior = pm.RELAXED_WEIGHT * sum(float(p.pow(2).sum()) for p in relaxed.free.parameters())
    assert float(loss(relaxed.train(), batch)) == pytest.approx(float(loss(relaxed.eval(), batch)) + prior, rel=1e-10)
    with torch.no_grad():  # without its free pathway it is the exactly units-equivariant model
        for p in relaxed.free.mlp.net[-1].parameters():
            p.zero_()
    io = relaxed.io.replace(units="equivariant")
    assert_units_equivariant(relaxed.eval(), io, data=[z, theta], rtol=1e-10)


def test_the_units_method_benchmark_scores_the_exact_model_alike_on_rotated_rollouts():
    """The units protocol's columns: Exp 1 rotated scores as Exp 1 for the O(3)-exact models; the units
    error is round-off for the dimensionless HNN only."""
    from surrogates.pendulum import methods_benchmark as mb

    data = pp.generate(pp.preset("units", "smoke"))
    sets = mb._test_sets("units", data)
    params, truth, _ = sets["exp1"]
    z, theta = truth[:, 0], pm.theta_of(params)
    exact, dimensional = _model("dimensionless-hnn"), _model("dimensional-hnn")
    scores = {name: mb._units_scores(m, sets, z, theta) for name, m in (("exact", exact), ("dim", dimensional))}
    assert scores["exact"]["rotated"] == pytest.approx(scores["exact"]["exp1"], rel=1e-9)
    assert scores["dim"]["rotated"] == pytest.approx(scores["dim"]["exp1"], rel=1e-9)
    assert scores["exact"]["units_error"] < 1e-12 < 1e-3 < scores["dim"]["units_error"]
    assert max(s["symmetry_error"] for s in scores.values()) < 1e-12
    rows = [
        {
            "model": "dimensionless-hnn",
            "train_chunks": 8,
            "seed": 0,
            "parameters": 1,
            "seconds_per_epoch": 1.0,
            "fields_per_second": 1.0,
            **scores["exact"],
        }
    ]
    text = mb.table({"protocol": "units", "rows": rows})
    assert "| Exp 1 | Exp 2 (kg x s) |" in text and "| dimensionless-hnn | 8 |" in text


def test_the_method_benchmark_refuses_a_model_of_the_other_protocol(capsys):
    from surrogates.pendulum import methods_benchmark as mb

    with pytest.raises(SystemExit) as raised:
        mb.main(["--protocol", "units", "--models", "emlp-hnn-o2", "--out", "never.json"])
    assert raised.value.code == 2
    assert "--models emlp-hnn-o2: not compared in --protocol units" in capsys.readouterr().err


def test_the_method_benchmark_counts_the_memory_each_training_loss_keeps(tmp_path):
    """At least every hidden activation of every RK4 stage is kept for the backward pass; the penalty's
    second rollout keeps about as much again; --memory-only writes the table without training."""
    import json

    from surrogates.pendulum import methods_benchmark as mb

    train = pp.generate(pp.preset("emlp", "smoke"))["train"]
    chunks, points = train.sizes["sample"], train.sizes["time"]
    saved = {name: mb.training_memory(_model(name), train) for name in ("mlp-hnn", "mlp-hnn-penalty")}
    activations = 4 * (points - 1) * min(chunks, mb.MEMORY_CHUNKS) * 2 * 32 * 8  # stages, states, (32, 32), f64
    assert saved["mlp-hnn"] >= activations
    assert saved["mlp-hnn-penalty"] == pytest.approx(2 * saved["mlp-hnn"], rel=0.1)
    out = tmp_path / "memory.json"
    argv = ["--preset", "smoke", "--memory-only", "--models", "scalar-hnn", "--out", str(out)]
    assert mb.main([*argv, "--report", str(tmp_path / "page")]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["model"] == "scalar-hnn" and row["training_memory_bytes"] > 0
    assert "| scalar-hnn |" in (tmp_path / "memory.md").read_text()
    page = (tmp_path / "page" / "report.html").read_text()
    assert '<td class="label">scalar-hnn</td>' in page and "training memory, emlp protocol, smoke preset" in page
