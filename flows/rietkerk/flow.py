"""The Rietkerk pipeline as a Prefect flow: simulate -> statistics -> features -> train -> evaluate,
plus the regime map over rainfall and (optionally) equation discovery, then a summary.

Every step is a cached catalog task, so a re-run only computes what changed.
"""

from __future__ import annotations

import json
from typing import Annotated

from annotated_types import Ge
from prefect import flow, get_run_logger

from data_catalog import Catalog
from pipeline.results import SystemResult
from pipeline.rietkerk.summary import rietkerk_summary, summary_rows
from sims.rietkerk import protocols as rp
from sims.rietkerk.data import RAW_KIND
from sims.rietkerk.system import DECLARATION

from ..conventions import (
    catalog_task,
    checked_choice,
    checked_seeds,
    in_catalog,
    training_checkpoint,
)
from ..progress import counted, epoch_progress
from ..registry import SystemPreset
from ..schedules import Choices

EMULATORS = ("pi", "dimensional")
TRAINING = {
    "smoke": {"epochs": 40, "batch_size": None, "lr": 3e-3, "val_every": 5},
    "quick": {"epochs": 2000, "batch_size": None, "lr": 3e-3, "lr_decay": 0.5, "lr_decay_every": 500, "val_every": 20},
    "paper": {"epochs": 3000, "batch_size": 512, "lr": 2e-3, "lr_decay": 0.5, "lr_decay_every": 750, "val_every": 20},
}


@catalog_task
def simulate(catalog: str, preset: str, split: str) -> str:
    """One split of the sweep (CPU always: the same bits, hence the same catalog version, everywhere)."""
    cfg = rp.preset(preset)
    with counted(cfg.size(split), f"simulating the {split} split of the {preset} sweep") as update:
        ds = rp.generate_split(cfg, split, device="cpu", progress=lambda done, total: update(done))
    return Catalog(catalog).write(ds, f"rietkerk-{preset}-{split}", kind=RAW_KIND, params=cfg.to_dict(), seed=cfg.seed)


@catalog_task
def units_copy(catalog: str, ref: str, preset: str) -> str:
    """The test systems in other units (days -> hours, m -> cm, l -> ml, g -> kg): no new simulation."""
    from pipeline.units import change_units

    cat = Catalog(catalog)
    ds = change_units(cat.open(ref).load(), rp.UNITS_SPLIT, independent=DECLARATION.independent_units)
    ds.attrs["split"] = "units"
    params = {"units": rp.UNITS_SPLIT}
    return cat.write(ds, f"rietkerk-{preset}-units", kind=RAW_KIND, parents=(ref,), params=params)


@catalog_task
def pattern_statistics(catalog: str, ref: str) -> str:
    from pipeline.rietkerk.features import STATISTICS_KIND, statistics_dataset

    cat = Catalog(catalog)
    ds = statistics_dataset(cat.open(ref).load(), source=ref)
    return cat.write(ds, f"{cat.resolve(ref).split('@')[0]}-statistics", kind=STATISTICS_KIND, parents=(ref,))


@catalog_task
def features(catalog: str, ref: str) -> str:
    from pipeline.rietkerk.features import FEATURES_KIND
    from pipeline.rietkerk.features import emulator_features as features_of

    cat = Catalog(catalog)
    name = cat.resolve(ref).split("@")[0].removesuffix("-statistics")
    return cat.write(
        features_of(cat.open(ref).load(), source=ref), f"{name}-features", kind=FEATURES_KIND, parents=(ref,)
    )


def training_config(preset: str, seed: int):
    from surrogates.training import TrainConfig

    return TrainConfig(seed=seed, progress=True, **TRAINING[preset])


@catalog_task
def train(catalog: str, kind: str, train_ref: str, val_ref: str, preset: str, seed: int) -> str:
    """Train one emulator; checkpoints (keyed by data, config and code) let an interrupted run continue."""
    from surrogates.rietkerk import runs as sr

    cat = Catalog(catalog)
    config = training_config(preset, seed)
    identity = [kind, cat.stored_hash(train_ref), cat.stored_hash(val_ref), config.to_dict()]
    train_data, val_data = cat.open(train_ref).load(), cat.open(val_ref).load()
    progress = epoch_progress(config.epochs, f"training the {kind} emulator (seed {seed})")
    with training_checkpoint(cat, "rietkerk", identity) as checkpoint:
        model, result = sr.train_emulator(
            kind, train_data, val_data, config, checkpoint=str(checkpoint), on_epoch=progress
        )
        name = f"rietkerk-{preset}-{kind}-emulator"
        return sr.store_emulator(cat, name, kind, model, result, config, (train_ref, val_ref), {"preset": preset})


@catalog_task
def evaluate(catalog: str, model_ref: str, features_ref: str, split: str) -> str:
    from surrogates.rietkerk import runs as sr

    return sr.evaluate_emulator(Catalog(catalog), model_ref, features_ref, split=split)


@catalog_task
def regime_map(catalog: str, name: str, preset: str) -> str:
    from pipeline.rietkerk.regimes import REGIMES_KIND
    from pipeline.rietkerk.regimes import regime_map as compute

    size = {
        "smoke": {"L": 64.0, "dl": 4.0, "T": 20.0, "rainfall": [0.3, 0.4, 0.5] if name == "talk" else [0.75, 1.0, 1.25]}
    }
    ds = compute(name, **size.get(preset, {}))
    return Catalog(catalog).write(
        ds, f"rietkerk-regimes-{name}-{preset}", kind=REGIMES_KIND, params={"map": name, "preset": preset}
    )


DISCOVERY_SIZES = {
    "smoke": {"n": 16, "train_n": 16, "T": 20.0, "epochs": 20, "points": 500, "noise": (0.0, 1e-3)},
    "quick": {},
    "paper": {"n": 100, "train_n": 64, "epochs": 3000, "points": 8000},
}


@catalog_task
def equation_discovery(catalog: str, preset: str, seed: int = 0) -> str:
    """Sparse regression and the reaction MLP on simulated fields, their rollouts and the noise study."""
    from surrogates.rietkerk import discovery as rd

    study = rd.run_study(rd.StudySettings(seed=seed, **DISCOVERY_SIZES[preset]))
    ds = rd.discovery_dataset(study)
    return Catalog(catalog).write(
        ds, f"rietkerk-discovery-{preset}", kind=rd.DISCOVERY_KIND, params={"preset": preset}, seed=seed
    )


@flow(name="rietkerk")
def rietkerk_flow(
    preset: Annotated[str, Choices(rp.PRESETS)] = "quick",
    seeds: Annotated[int, Ge(1)] = 3,
    catalog: str | None = None,
    emulators: list[Annotated[str, Choices(EMULATORS)]] | None = None,
    regime_maps: bool = True,
    discovery: bool = True,
) -> SystemResult:
    """Simulate the sweep's splits, summarise them, train the emulators with ``seeds`` seeds each and
    evaluate them in distribution and on every OOD split; compute the regime maps. Returns the refs of
    every step and the summary (``details``: the table's rows by emulator and split; ``artifacts``:
    the regime maps by name and the equation discovery's ref)."""
    rp.preset(preset)  # a clear error for an unknown preset before anything runs
    checked_seeds(seeds)
    emulators = checked_choice(emulators, EMULATORS, "emulator(s)")
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    raw = {split: in_catalog(simulate, root)(root, preset, split) for split in rp.SIMULATED_SPLITS}
    raw["units"] = in_catalog(units_copy, root)(root, raw["test"], preset)
    stats = {split: in_catalog(pattern_statistics, root)(root, ref) for split, ref in raw.items()}
    feature_refs = {split: in_catalog(features, root)(root, ref) for split, ref in stats.items()}
    models: dict[str, list[str]] = {}
    evaluations: dict[str, dict[str, list[str]]] = {}
    for kind in emulators:
        for seed in range(seeds):
            model_ref = in_catalog(train, root)(root, kind, feature_refs["train"], feature_refs["val"], preset, seed)
            models.setdefault(kind, []).append(model_ref)
            for split in ("test", *rp.OOD_SPLITS):
                ref = in_catalog(evaluate, root)(root, model_ref, feature_refs[split], split)
                evaluations.setdefault(kind, {}).setdefault(split, []).append(ref)
            log.info("%s emulator seed %d: %s", kind, seed, model_ref)
    maps = {}
    if regime_maps:
        from pipeline.rietkerk.regimes import MAPS

        maps = {name: in_catalog(regime_map, root)(root, name, preset) for name in MAPS}
    discovered = in_catalog(equation_discovery, root)(root, preset) if discovery else None
    summary = rietkerk_summary(Catalog(root), evaluations)
    summary["preset"] = preset
    log.info("summary: %s", json.dumps(summary["rows"]))
    return SystemResult(
        system="rietkerk",
        data={"raw": raw, "statistics": stats, "features": feature_refs},
        models=models,
        evaluations=evaluations,
        rows=summary_rows(summary),
        details=summary,
        artifacts={"regime_maps": maps, "discovery": discovered},
    )


def run_system(catalog: str, preset: SystemPreset, dask_address: str | None = None) -> SystemResult:
    """The main job's step (see :mod:`flows.registry`): the flow at ``preset``'s sizes and seeds."""
    return rietkerk_flow(preset=preset.preset, seeds=preset.seeds, catalog=catalog, **preset.options)
