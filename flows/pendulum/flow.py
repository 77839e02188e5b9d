"""The pendulum pipeline as a Prefect flow: simulate -> features -> train -> evaluate -> summary.

Every step is a cached catalog task (keys: input contents, parameters, code), so a re-run only does
what changed, and training checkpoints under the catalog's cache so that an interrupted flow resumes
a half-trained model instead of starting it again.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from annotated_types import Ge
from prefect import flow, get_run_logger

from data_catalog import Catalog
from pipeline.pendulum.summary import pendulum_summary, summary_rows
from pipeline.results import SystemResult
from sims.pendulum import protocols as pp
from sims.pendulum.system import DECLARATION, RAW_KIND, VARIANTS

from ..conventions import (
    catalog_task,
    checked_choice,
    checked_seeds,
    in_catalog,
    training_checkpoint,
)
from ..feature_steps import run_features
from ..progress import epoch_progress
from ..registry import SystemPreset
from ..schedules import Choices

PRESET_NAMES = tuple(sorted({name for _, name in pp.PRESETS}))  # which a protocol has is checked at run time
DTYPES = ("float64", "float32")


def model_names() -> tuple[str, ...]:
    """Every protocol's models (imported when asked: the surrogates take a moment)."""
    from surrogates.pendulum.runs import MODELS_BY_PROTOCOL, protocol_models

    return tuple(dict.fromkeys(m for protocol in MODELS_BY_PROTOCOL for m in protocol_models(protocol)))


@catalog_task
def simulate(catalog: str, protocol: str, preset: str, data_seed: int | None, variant: str) -> dict[str, str]:
    """Simulate every split of a protocol and store them; returns {split: ref}.

    On the CPU always: cheap next to training, and the same bits (and catalog versions) everywhere.
    """
    overrides: dict[str, Any] = {"variant": variant}
    if data_seed is not None:
        overrides["seed"] = data_seed
    cfg = pp.preset(protocol, preset, **overrides)
    cat = Catalog(catalog)
    datasets = pp.generate(cfg)
    return {
        split: cat.write(
            ds, f"pendulum-{protocol}-{preset}-{split}", kind=RAW_KIND, params=cfg.to_dict(), seed=cfg.seed
        )
        for split, ds in datasets.items()
    }


@catalog_task
def features(catalog: str, ref: str) -> str:
    """The invariant scalars and Pi groups of one split (threads: the datasets are small)."""
    return run_features(catalog, ref, DECLARATION, dask_address="threads")  # already parsed: no JSON round trip


@catalog_task
def train(
    catalog: str,
    model: str,
    train_ref: str,
    val_ref: str,
    features_ref: str,
    preset: str,
    seed: int,
    substeps: int,
    activation: str | None = None,
    dtype: str = "float64",
) -> str:
    """Train one model with the preset's recipe; checkpoints let an interrupted run continue."""
    from surrogates.pendulum import runs as pr

    cat = Catalog(catalog)
    info = cat.info(train_ref, variables=False).params
    protocol = info.get("protocol", "emlp")
    suffix = "" if info.get("variant", "reference") == "reference" else f"-{info['variant']}"
    suffix += f"-{activation}" if activation else ""
    suffix += "" if dtype == "float64" else f"-{dtype}"
    config = pr.training_config(protocol, preset, seed, dtype=dtype)
    identity = [model, cat.stored_hash(train_ref), cat.stored_hash(val_ref), config.to_dict(), substeps, activation]
    progress = epoch_progress(config.epochs, f"training {model} (seed {seed}) on {train_ref}")
    with training_checkpoint(cat, "pendulum", identity) as checkpoint:
        return pr.train_model(
            cat,
            model,
            train_ref,
            val_ref,
            config,
            substeps=substeps,
            parents=(features_ref,),
            checkpoint=str(checkpoint),
            on_epoch=progress,
            model_options={"activation": activation} if activation else None,
            output_name=f"pendulum-{protocol}-{preset}-{model}{suffix}",
        )


@catalog_task
def evaluate(catalog: str, model_ref: str, test_ref: str) -> str:
    from surrogates.pendulum import runs as pr

    return pr.evaluate_model(Catalog(catalog), model_ref, test_ref)


@flow(name="pendulum")
def pendulum_flow(
    protocol: Annotated[str, Choices(pp.PROTOCOLS)] = "emlp",
    preset: Annotated[str, Choices(PRESET_NAMES)] = "quick",
    seeds: Annotated[int, Ge(1)] = 3,
    catalog: str | None = None,
    models: list[Annotated[str, Choices(ref="flows.pendulum.flow:model_names")]] | None = None,
    variant: Annotated[str, Choices(VARIANTS)] = "reference",
    data_seed: Annotated[int, Ge(0)] | None = None,
    substeps: Annotated[int, Ge(1)] = 1,
    activation: Annotated[str, Choices(ref="surrogates.mlp:ACTIVATIONS")] | None = None,
    dtype: Annotated[str, Choices(DTYPES)] = "float64",
) -> SystemResult:
    """Reproduce one pendulum protocol (``emlp`` or ``units``) with ``seeds`` training seeds per model.

    Returns the refs of every step and the summary (mean and std over seeds per model and test split,
    beside the published numbers; ``details`` maps the protocol to its table in the published shape;
    ``data`` maps the protocol to its splits and their features). ``activation`` replaces the models' default (SiLU,
    the swish of the published MLP baselines), e.g. "relu" to compare. ``dtype="float32"`` trains
    in single precision (about 1.6x faster on a CPU; models are stored and evaluated in float64).
    """
    from surrogates.pendulum.runs import MODELS_BY_PROTOCOL, protocol_models

    if protocol not in pp.PROTOCOLS:
        raise ValueError(f"protocol must be one of {pp.PROTOCOLS}, got {protocol!r}")
    checked_seeds(seeds)
    chosen = models or MODELS_BY_PROTOCOL[protocol]  # the method comparison's models when named
    models = checked_choice(chosen, protocol_models(protocol), f"model(s) of protocol {protocol!r}")
    from surrogates.mlp import ACTIVATIONS
    from surrogates.pendulum.models import DEFAULT_ACTIVATION

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    activation = None if activation == DEFAULT_ACTIVATION else activation  # one cache key per model
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    data = in_catalog(simulate, root)(root, protocol, preset, data_seed, variant)
    feature_refs = {split: in_catalog(features, root)(root, ref) for split, ref in data.items()}
    trained: dict[str, list[str]] = {}
    evaluations: dict[str, dict[str, list[str]]] = {}
    for model in models:
        for seed in range(seeds):
            model_ref = in_catalog(train, root)(
                root,
                model,
                data["train"],
                data["val"],
                feature_refs["train"],
                preset,
                seed,
                substeps,
                activation,
                dtype,
            )
            trained.setdefault(model, []).append(model_ref)
            for split in pp.TEST_SPLITS[protocol]:
                ref = in_catalog(evaluate, root)(root, model_ref, data[split])
                evaluations.setdefault(model, {}).setdefault(split, []).append(ref)
            log.info("%s seed %d: %s", model, seed, model_ref)
    summary = pendulum_summary(Catalog(root), protocol, evaluations, variant)
    summary.update(activation=activation or DEFAULT_ACTIVATION, substeps=substeps, preset=preset, dtype=dtype)
    log.info("summary: %s", json.dumps(summary["rows"]))
    return SystemResult(
        system="pendulum",
        data={protocol: {"splits": data, "features": feature_refs}},
        models=trained,
        evaluations=evaluations,
        rows=summary_rows(summary),
        details={protocol: summary},
    )


def run_system(catalog: str, preset: SystemPreset, dask_address: str | None = None) -> SystemResult:
    """The main job's step (see :mod:`flows.registry`): each protocol of ``preset.options``
    (``protocols``, ``dtype``) at ``preset``'s sizes and seeds, as one result; with the option
    ``methods``, every model of each protocol (its own and its method comparison's)."""
    from surrogates.pendulum.runs import protocol_models

    options = dict(preset.options)
    protocols = options.pop("protocols", pp.PROTOCOLS)
    methods = options.pop("methods", False)
    parts = [
        pendulum_flow(
            protocol=protocol,
            preset=preset.preset,
            seeds=preset.seeds,
            catalog=catalog,
            models=list(protocol_models(protocol)) if methods else None,
            **options,
        )
        for protocol in protocols
    ]
    return merge_protocols(parts)


def merge_protocols(parts: list[SystemResult]) -> SystemResult:
    """One result of the protocols' results (their models and splits have distinct names)."""
    merged: dict[str, dict[str, Any]] = {"data": {}, "models": {}, "evaluations": {}, "details": {}}
    for part in parts:
        for key in merged:
            merged[key].update(getattr(part, key))
    return SystemResult(system="pendulum", rows=tuple(r for p in parts for r in p.rows), **merged)
