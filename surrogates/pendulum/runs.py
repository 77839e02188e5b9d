"""Training and evaluating the pendulum surrogates on the catalog's protocol datasets.

``train_model`` reads a protocol's train/val datasets, fits the input normalisation, trains through
the RK4 rollout loss and stores the model artefact (parents: the datasets it saw). ``evaluate_model``
rolls a stored model out from the first state of every test trajectory and stores an ``evaluation``
dataset with the protocol's metric. Training presets follow the published recipes (docs/protocols.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from data_catalog import Catalog, parse_ref
from pipeline.matrix_groups import about_z
from pipeline.metrics import evaluation_dataset
from pipeline.model_symmetry import measure_equivariance, measure_units_equivariance
from sims.pendulum import system as sp
from surrogates.artifacts import load_model, save_model
from surrogates.devices import pick_device
from surrogates.dynamics import rollout
from surrogates.pendulum.models import EMLP_MODELS, MODELS, build_model, chunk_loss, theta_of
from surrogates.training import TrainConfig, seed_everything, train

MODELS_BY_PROTOCOL = {
    "emlp": ("scalar-hnn", "scalar-node", "mlp-hnn", "mlp-node"),
    "units": ("dimensional-hnn", "dimensionless-hnn"),
}
# the other ways of building O(3) (and, in the units protocol, the units) in, trained when named (--model),
# for comparing methods
METHOD_MODELS = {
    "emlp": ("mlp-hnn-augment", "mlp-hnn-penalty", "relaxed-hnn", *EMLP_MODELS),
    "units": ("mlp-hnn", "dimensional-hnn-units-augment", "relaxed-units-hnn"),
}


def protocol_models(protocol: str) -> tuple[str, ...]:
    """Every model a protocol can train: its own (the default) and the method comparison's."""
    return MODELS_BY_PROTOCOL[protocol] + METHOD_MODELS[protocol]


# The published recipes (paper) and small ones that finish in minutes on 2 CPU cores (quick).
TRAINING_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # Adam, batch 500 = the whole training set, 2000 epochs (one step each), lr 5e-3 with step decay
    ("emlp", "paper"): dict(epochs=2000, batch_size=500, lr=5e-3, lr_decay=0.5, lr_decay_every=500, val_every=20),
    ("emlp", "quick"): dict(epochs=600, batch_size=None, lr=5e-3, lr_decay=0.5, lr_decay_every=200, val_every=20),
    # Adam lr 1e-3, batch 512, 250 epochs, gradient norm clipped at 0.5
    ("units", "paper"): dict(epochs=250, batch_size=512, lr=1e-3, grad_clip=0.5, val_every=5),
    ("units", "quick"): dict(
        epochs=60, batch_size=100, lr=3e-3, lr_decay=0.5, lr_decay_every=20, grad_clip=0.5, val_every=5
    ),
    ("emlp", "smoke"): dict(epochs=3, lr=1e-3, val_every=1, checkpoint_every=1),
    ("units", "smoke"): dict(epochs=3, batch_size=8, lr=1e-3, grad_clip=0.5, val_every=1, checkpoint_every=1),
}
POSITION_MOMENTUM_BLOCKS = ((0, 6), (6, 12))
STATE_COMPONENTS = (("q1", 0, 3, "m"), ("q2", 3, 6, "m"), ("p1", 6, 9, "kg m s^-1"), ("p2", 9, 12, "kg m s^-1"))
# the EMLP protocol's gravity points along -z in every system: its data are symmetric under O(2) about z
ABOUT_GRAVITY = about_z("O(2)")
SYMMETRY_STATES = 64  # the first states of a test set the symmetry errors are measured on
#: The measured symmetry errors an evaluation stores, by protocol (O(3) for every one).
SYMMETRY_ERRORS = {
    "symmetry_error": "worst relative change of the vector field under 8 random elements of O(3)",
    "symmetry_error_about_gravity": "worst relative change of the vector field under 8 random elements of O(2) "
    "about z (EMLP protocol)",
    "units_error": "worst relative change of the vector field under 8 random changes of kg, m and s (units protocol)",
}


def training_config(protocol: str, preset: str, seed: int, **overrides: Any) -> TrainConfig:
    if (protocol, preset) not in TRAINING_PRESETS:
        raise ValueError(f"no training preset {preset!r} for protocol {protocol!r}")
    return TrainConfig(seed=seed, **{**TRAINING_PRESETS[protocol, preset], **overrides})


def _data(catalog: Catalog, ref: str) -> tuple[dict[str, torch.Tensor], np.ndarray, dict[str, Any]]:
    ds = catalog.open(ref).load()
    params, traj, times = sp.from_dataset(ds, source=ref)
    return {"z": traj, "theta": theta_of(params)}, times - times[0], dict(ds.attrs)


def train_model(
    catalog: Catalog,
    model_name: str,
    train_ref: str,
    val_ref: str,
    config: TrainConfig,
    *,
    substeps: int = 1,
    parents: tuple[str, ...] = (),
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    output_name: str | None = None,
    model_options: dict[str, Any] | None = None,
) -> str:
    """Train ``model_name`` (see ``surrogates.pendulum.models.MODELS``) and store it; returns the model ref.

    ``model_options`` go to the model's constructor (e.g. ``{"activation": "relu"}``)."""
    if model_name not in MODELS:
        raise ValueError(f"unknown pendulum model {model_name!r}; choose one of {sorted(MODELS)}")
    train_data, times, attrs = _data(catalog, train_ref)
    val_data, val_times, _ = _data(catalog, val_ref)
    if not np.allclose(times, val_times):
        raise ValueError(f"{train_ref} and {val_ref} have different chunk times")
    seed_everything(config.seed)
    model = build_model(model_name, **(model_options or {})).to(torch.float64)
    if config.lr > getattr(model, "max_lr", config.lr):  # recorded with the model: the config saved is the one run
        config = dataclasses.replace(config, lr=model.max_lr)
    n, chunk = train_data["z"].shape[:2]
    model.fit_inputs(train_data["z"].reshape(-1, sp.STATE_DIM), train_data["theta"].repeat_interleave(chunk, 0))
    loss = chunk_loss(torch.as_tensor(times), substeps=substeps)
    result = train(model, loss, train_data, val_data, config, checkpoint=checkpoint, on_epoch=on_epoch)
    protocol = attrs.get("protocol", "custom")
    name = output_name or f"pendulum-{protocol}-{model_name}"
    return save_model(
        catalog,
        name,
        model.to(torch.float64),
        parents=(train_ref, val_ref, *parents),
        params={
            "model": model_name,
            "protocol": protocol,
            "variant": attrs.get("variant"),
            "substeps": substeps,
            "training": {k: v for k, v in config.to_dict().items() if k not in ("device", "progress")},
        },
        seed=config.seed,
        training=result,
    )


def predict(
    model: torch.nn.Module,
    params: sp.Parameters,
    z0: torch.Tensor,
    times: np.ndarray,
    *,
    substeps: int = 1,
    batch_size: int = 4096,
) -> torch.Tensor:
    """Roll ``model`` out from states ``z0`` (n, 12) over ``times``: (n, len(times), 12), float64, on CPU."""
    sp.check_state(z0, source="initial states", batch=params.batch)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    ts = torch.as_tensor(np.asarray(times) - times[0], dtype=dtype)
    theta = theta_of(params).to(device=device, dtype=dtype)
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, z0.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            z = z0[rows].to(device=device, dtype=dtype)
            out.append(rollout(model, z, theta[rows], ts, substeps=substeps).detach().to("cpu", torch.float64))
    return torch.cat(out)


def symmetry_errors(model: torch.nn.Module, z: torch.Tensor, theta: torch.Tensor, protocol: str) -> dict[str, float]:
    """The model's measured symmetry errors on the first SYMMETRY_STATES states ``z`` (n, 12) and their
    parameters ``theta``, in float64 by the project's checks (tests/test_model_symmetry.py): under O(3)
    always, under O(2) about z for the EMLP protocol, under changes of kg, m and s for the units protocol
    (keys and meanings: SYMMETRY_ERRORS)."""
    device = next(model.parameters()).device
    data = [x[:SYMMETRY_STATES].to(device=device, dtype=torch.float64) for x in (z, theta)]
    out = {"symmetry_error": measure_equivariance(model, data=data).worst}
    if protocol == "emlp":
        out["symmetry_error_about_gravity"] = measure_equivariance(model, data=data, group=ABOUT_GRAVITY).worst
    if protocol == "units":
        out["units_error"] = measure_units_equivariance(model, data=data).worst
    return out


def evaluate_model(
    catalog: Catalog, model_ref: str, test_ref: str, *, device: str | None = None, output_name: str | None = None
) -> str:
    """Roll the stored model out on every trajectory of ``test_ref`` and store the ``evaluation``, with the
    model's measured symmetry errors on the test set's first states (:func:`symmetry_errors`)."""
    loaded = load_model(catalog, model_ref, device=str(pick_device(device, dtype=torch.float64)), dtype=torch.float64)
    substeps = int(catalog.info(model_ref, variables=False).params.get("substeps", 1))
    ds = catalog.open(test_ref).load()
    params, truth, times = sp.from_dataset(ds, source=test_ref)
    predicted = predict(loaded.model, params, truth[:, 0], times, substeps=substeps)
    split = ds.attrs.get("split", parse_ref(test_ref).name)
    protocol = ds.attrs.get("protocol", "custom")
    evaluation = evaluation_dataset(
        predicted.numpy(),
        truth.numpy(),
        times,
        blocks=POSITION_MOMENTUM_BLOCKS,
        components=STATE_COMPONENTS,
        model=catalog.resolve(model_ref),
        data=catalog.resolve(test_ref),
        split=split,
        extra_attrs={"protocol": protocol},
    )
    for key, value in symmetry_errors(loaded.model, truth[:, 0], theta_of(params), protocol).items():
        evaluation[key] = ((), value, {"units": "1", "long_name": SYMMETRY_ERRORS[key]})
    name = output_name or f"{parse_ref(model_ref).name}-on-{split}"
    return catalog.write(evaluation, name, kind="evaluation", parents=(model_ref, test_ref))
