"""The shared trainer and device choice: reproducible resume, early stopping, schedules, errors."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates.devices import pick_device
from surrogates.training import CheckpointError, TrainConfig, TrainingDiverged, seed_everything, train


def mlp(dropout: float = 0.0) -> torch.nn.Module:
    layers = [torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Dropout(dropout), torch.nn.Linear(8, 1)]
    return torch.nn.Sequential(*layers).double()


def regression(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return {"x": x, "y": torch.sin(x[:, :1]) + 0.5 * x[:, 1:] ** 2}


def mse(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.mean((model(batch["x"]) - batch["y"]) ** 2)


TRAIN, VAL = regression(48, 1), regression(24, 2)


def config(**overrides) -> TrainConfig:
    base = {"seed": 7, "epochs": 10, "batch_size": 16, "lr": 1e-2, "checkpoint_every": 1, "device": "cpu"}
    base["progress"] = False
    return TrainConfig(**{**base, **overrides})


class Interrupt(Exception):
    pass


def interrupt_after(k: int):
    def on_epoch(epoch: int, logs: dict) -> None:
        if epoch == k:
            raise Interrupt

    return on_epoch


def assert_same_run(model_a, result_a, model_b, result_b) -> None:
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert result_a.history == result_b.history
    assert (result_a.best_val, result_a.best_epoch) == (result_b.best_val, result_b.best_epoch)


def fresh_model(seed: int, dropout: float = 0.1) -> torch.nn.Module:
    seed_everything(seed)
    return mlp(dropout)


# -- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint_every", [1, 4])
def test_interrupted_run_resumes_bit_identically(tmp_path, checkpoint_every):
    cfg = config(epochs=10, lr_decay=0.5, lr_decay_every=3, grad_clip=1.0, checkpoint_every=checkpoint_every)
    full_model = fresh_model(0)
    full = train(full_model, mse, TRAIN, VAL, cfg, checkpoint=tmp_path / "full.pt")

    path = tmp_path / "split.pt"
    with pytest.raises(Interrupt):
        train(fresh_model(0), mse, TRAIN, VAL, cfg, checkpoint=path, on_epoch=interrupt_after(6))
    # dropout draws from the global RNG: a different state here must not matter after resuming
    resumed_model = fresh_model(123)
    resumed = train(resumed_model, mse, TRAIN, VAL, cfg, checkpoint=path)
    assert_same_run(full_model, full, resumed_model, resumed)
    assert [h["epoch"] for h in resumed.history] == list(range(1, 11))


def test_raising_epochs_continues_like_one_run(tmp_path):
    full_model = fresh_model(0)
    full = train(full_model, mse, TRAIN, VAL, config(epochs=12))
    path = tmp_path / "ckpt.pt"
    first = train(fresh_model(0), mse, TRAIN, VAL, config(epochs=6), checkpoint=path)
    assert first.epochs_run == 6
    model = fresh_model(5)
    resumed = train(model, mse, TRAIN, VAL, config(epochs=12, progress=None), checkpoint=path)
    assert_same_run(full_model, full, model, resumed)


def test_checkpoint_loads_without_pickle_and_holds_the_run(tmp_path):
    path = tmp_path / "ckpt.pt"
    train(fresh_model(0), mse, TRAIN, VAL, config(epochs=3), checkpoint=path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert state["config"] == config(epochs=3).to_dict()
    assert {"model", "optimizer", "generator", "best_state", "bad_validations"} <= set(state)


def test_resume_with_another_config_names_the_fields(tmp_path):
    path = tmp_path / "ckpt.pt"
    train(fresh_model(0), mse, TRAIN, VAL, config(epochs=3), checkpoint=path)
    with pytest.raises(CheckpointError, match=r"lr: checkpoint 0\.01, now 0\.02.*seed"):
        train(fresh_model(0), mse, TRAIN, VAL, config(epochs=5, lr=2e-2, seed=8), checkpoint=path)
    with pytest.raises(CheckpointError, match="epochs may only be raised"):
        train(fresh_model(0), mse, TRAIN, VAL, config(epochs=2), checkpoint=path)
    other = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 1)).double()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        train(other, mse, TRAIN, VAL, config(epochs=5), checkpoint=path)


# -- behaviour ------------------------------------------------------------------------------------


class Scalar(torch.nn.Module):
    """One weight w; the losses below are (w - target)^2."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))


def to_target(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.mean((model.w - batch["t"]) ** 2)


def constant(value: float, n: int = 4) -> dict[str, torch.Tensor]:
    return {"t": torch.full((n,), value, dtype=torch.float64)}


def test_early_stopping_restores_the_best_weights():
    # training pulls w from 0 towards 1; validation prefers 0.3, so it gets worse past that point
    model, seen = Scalar(), {}
    result = train(
        model,
        to_target,
        constant(1.0),
        constant(0.3),
        config(epochs=100, lr=0.05, batch_size=None, patience=3),
        on_epoch=lambda epoch, logs: seen.update({epoch: model.w.item()}),
    )
    val = [h["val_loss"] for h in result.history]
    assert result.stopped_early and result.epochs_run < 100
    assert result.epochs_run == result.best_epoch + 3
    assert result.best_epoch == 1 + val.index(min(val))
    assert result.best_val == min(val)
    assert model.w.item() == seen[result.best_epoch] != seen[result.epochs_run]


def test_lr_step_decay_and_logs():
    logs = []
    result = train(
        Scalar(),
        to_target,
        constant(1.0),
        constant(1.0),
        config(epochs=7, lr=0.1, lr_decay=0.5, lr_decay_every=2, val_every=3),
        on_epoch=lambda epoch, entry: logs.append(entry),
    )
    assert [h["lr"] for h in result.history] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    assert [("val_loss" in h) for h in result.history] == [False, False, True, False, False, True, True]
    assert all({"epoch", "train_loss", "lr", "seconds"} <= set(entry) for entry in logs)
    assert all("seconds" not in h for h in result.history)  # timings are not reproducible
    assert result.device == "cpu" and result.steps == 7 and result.steps_per_second > 0


def test_grad_clip_bounds_the_steps(monkeypatch):
    # Adam's update ~ g / (|g| + eps): clipping the gradient far below eps nearly freezes the weight
    free, clipped = Scalar(), Scalar()
    train(free, to_target, constant(1.0), constant(1.0), config(epochs=5, lr=0.01))
    train(clipped, to_target, constant(1.0), constant(1.0), config(epochs=5, lr=0.01, grad_clip=1e-12))
    assert free.w.item() == pytest.approx(0.05, rel=1e-3)
    assert 0 < clipped.w.item() < 1e-5


def test_validation_keeps_autograd_for_hamiltonian_losses():
    def hamiltonian_loss(model, batch):
        x = batch["x"].detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return torch.mean((grad - batch["x"]) ** 2)  # H = |x|^2 / 2 has gradient x

    model = fresh_model(0, dropout=0.0)
    result = train(model, hamiltonian_loss, TRAIN, VAL, config(epochs=4))
    assert all(math.isfinite(h["val_loss"]) for h in result.history)
    assert all(p.grad is None for p in model.parameters())


def test_non_finite_loss_raises_with_the_epoch():
    calls = {"n": 0}

    def exploding(model, batch):
        if model.training:
            calls["n"] += 1
        loss = mse(model, batch)
        return loss * math.inf if calls["n"] >= 3 else loss

    with pytest.raises(TrainingDiverged, match="epoch 3"):
        train(fresh_model(0), exploding, TRAIN, VAL, config(batch_size=None))


def test_progress_bar_runs(capsys):
    train(Scalar(), to_target, constant(1.0), constant(1.0), config(epochs=2, progress=True))
    assert "epoch" in capsys.readouterr().err


# -- validation of inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "train_data, val_data, message",
    [
        ({"x": torch.zeros(4, 2), "y": torch.zeros(3, 1)}, VAL, r"train_data\['y'\] has 3 samples"),
        ({}, VAL, "non-empty"),
        ({"x": torch.zeros(0, 2), "y": torch.zeros(0, 1)}, VAL, "empty"),
        ({"x": torch.tensor([[0.0, math.nan]]), "y": torch.zeros(1, 1)}, VAL, r"train_data\['x'\] holds 1 non-finite"),
        (TRAIN, {"x": VAL["x"]}, "keys"),
    ],
)
def test_data_errors_name_the_key(train_data, val_data, message):
    with pytest.raises(ValueError, match=message):
        train(mlp(), mse, train_data, val_data, config(epochs=1))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr_decay": 0.5}, "lr_decay_every"),
        ({"grad_clip": math.nan}, "grad_clip"),
        ({"dtype": "float16"}, "dtype"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        config(**overrides)


def test_config_round_trips_through_dict():
    cfg = config(lr_decay=0.5, lr_decay_every=10, patience=4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({**cfg.to_dict(), "momentum": 0.9})
    with pytest.raises(ValueError, match="seed is required"):
        TrainConfig.from_dict({"epochs": 3})


def test_float32_training_casts_model_and_data():
    model = fresh_model(0, dropout=0.0)
    train(model, mse, TRAIN, VAL, config(epochs=2, dtype="float32"))
    assert all(p.dtype == torch.float32 for p in model.parameters())


# -- devices --------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_unavailable_device_is_refused(monkeypatch):
    monkeypatch.delenv("EQS_DEVICE", raising=False)
    with pytest.raises(ValueError, match="not available on this machine; available: .*cpu"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        pick_device("gpu0")
    monkeypatch.setenv("EQS_DEVICE", "cuda:1")
    with pytest.raises(ValueError, match=r"\$EQS_DEVICE 'cuda:1'"):
        pick_device()


def test_auto_prefers_cuda_and_honours_the_environment(monkeypatch):
    monkeypatch.delenv("EQS_DEVICE", raising=False)
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device().type == "cuda"
    monkeypatch.setenv("EQS_DEVICE", "cpu")
    assert pick_device() == pick_device("auto") == torch.device("cpu")
