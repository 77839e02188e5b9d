"""Galaxy properties from dark-matter halos (docs/protocols.md#halos) as a Prefect flow.

simulate (the synthetic population) or ingest (a file) -> features (invariant scalars, dask) ->
train (mass-only, global, scalars, catalog) x seeds on the random 70/15/15 split and on the
mass-threshold split -> evaluate on the random test halos, above the mass threshold, and on the test halos
subsampled to a quarter of their particles; with several seeds, also of the seeds' deep ensemble,
stored as one model -> forward selection of the scalars -> summary.

Every step is a cached catalog task; MLP training checkpoints under the catalog's cache, so an
interrupted flow resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge
from prefect import flow, get_run_logger

from data_catalog import Catalog, parse_ref
from pipeline.halos.summary import halos_summary, summary_rows
from pipeline.results import SystemResult
from sims.halos.catalog import HALOS_KIND

from ..conventions import (
    catalog_task,
    checked_choice,
    checked_seeds,
    in_catalog,
    training_checkpoint,
)
from ..progress import epoch_progress, tracked
from ..registry import SystemPreset
from ..schedules import Choices

MODELS = ("mass-only", "global", "scalars", "catalog")
SPLITS = ("random", "mass_threshold")
SUBSAMPLE_SEED = 7
# Training per preset; the scalars MLP (103 inputs, a few thousand halos) overfits within a few
# epochs without a strong weight decay, which in turn costs the 4-input global MLP accuracy.
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "population": {"n_halos": 300, "max_particles": 400},
        "subsample": 4,
        "training": {"epochs": 30, "batch_size": 64, "lr": 3e-3, "val_every": 5},
        "model_training": {},
    },
    "quick": {
        "population": {"n_halos": 4000, "max_particles": 2000},
        "subsample": 4,
        "training": {
            "epochs": 300,
            "batch_size": 256,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "lr_decay": 0.5,
            "lr_decay_every": 100,
            "val_every": 2,
            "patience": 12,
        },
        # the catalog MLP (11 inputs): weight decay chosen on the validation halos among 1e-4 ... 1e-1
        # (RESULTS, "the catalog model, quick preset")
        "model_training": {"scalars": {"lr": 1e-3, "weight_decay": 0.1}, "catalog": {"weight_decay": 1e-2}},
    },
    "paper": {
        # the published sample: about 31,000 halos at TNG100-1-Dark's particle mass (6.0e6 Msun/h,
        # h = 0.6774); halos above 8.9e10 Msun get 10,000 heavier particles: 212 M particles, 12 GB on disk
        "population": {"n_halos": 31000, "particle_mass": 8.86e6, "max_particles": 10000},
        "subsample": 4,
        "training": {
            "epochs": 400,
            "batch_size": 256,
            "lr": 2e-3,
            "weight_decay": 1e-4,
            "lr_decay": 0.5,
            "lr_decay_every": 120,
            "val_every": 2,
            "patience": 15,
        },
        # tuned on 20,000 halos: with this many the scalars MLP is best wider and lightly regularised
        "model_training": {
            "scalars": {
                "weight_decay": 1e-3,
                "batch_size": 512,
                "epochs": 300,
                "lr_decay_every": 100,
                "val_every": 5,
                "patience": None,  # as tuned; early stopping (patience 15) scored the same within the seeds' spread
            }
        },
        "hidden": {"scalars": (128, 128)},
    },
}


def preset_settings(name: str) -> dict[str, Any]:
    """The settings of a preset (population size, subsampling factor, training); unknown names raise."""
    if name not in PRESETS:
        raise ValueError(f"unknown halos preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]


def population_config(name: str, seed: int = 42):
    from sims.halos.population import PopulationConfig

    return PopulationConfig(seed=seed, **preset_settings(name)["population"])


@catalog_task
def simulate(catalog: str, preset_name: str, seed: int = 42) -> str:
    """The synthetic population of a preset, streamed into the catalog (kind ``halos.catalog``)."""
    from sims.halos.ingest import store_catalog
    from sims.halos.population import iter_population

    config = population_config(preset_name, seed)
    chunk = 500
    chunks = tracked(
        iter_population(config, chunk_halos=chunk),
        -(-config.n_halos // chunk),
        f"synthetic population: {config.n_halos} halos in chunks of {chunk}",
    )
    params = {"population": json.loads(config.to_json()), "preset": preset_name}
    return store_catalog(Catalog(catalog), chunks, f"halos-{preset_name}-synthetic", params=params, seed=config.seed)


@catalog_task(cache=False)  # the file may change under the same path; identical content gives the same ref
def ingest(catalog: str, path: str, format: str, snapshot: int | None, name: str) -> str:
    from sims.halos.ingest import ingest_halos

    return ingest_halos(Catalog(catalog), path, format, name, snapshot=snapshot)


@catalog_task
def features(catalog: str, ref: str, dask_address: str | None = "threads") -> str:
    """The invariant scalars (dask over chunks of halos) and the features of a catalog."""
    from pipeline.halos.features import FEATURES_KIND, halo_features
    from pipeline.halos.scalars import halo_scalars
    from sims.halos.catalog import has_particles

    cat = Catalog(catalog)
    with cat.open(ref) as ds:
        # a catalog of halo properties only (as halo finders publish them) has no scalars
        scalars = halo_scalars(ds, dask_address=dask_address, too_few="mark") if has_particles(ds) else None
        dataset = halo_features(ds, scalars, source=cat.resolve(ref))  # reads the per-halo rows only
    return cat.write(dataset, f"{parse_ref(ref).name}-features", kind=FEATURES_KIND, parents=(ref,))


@catalog_task
def subsample_test_halos(catalog: str, ref: str, features_ref: str, factor: float, seed: int) -> str:
    """The random split's test halos with 1 / ``factor`` of their particles (heavier, lower resolution)."""
    from pipeline.halos.features import random_split
    from sims.halos.catalog import HALOS_KIND, subsample_catalog

    cat = Catalog(catalog)
    features = cat.open(features_ref).load()
    test_ids = features["halo_id"].values[random_split(features.sizes["halo"])["test"]]
    with cat.open(ref) as ds:
        position = {int(h): i for i, h in enumerate(ds["halo_id"].values)}
        low = subsample_catalog(ds, factor, seed, halos=np.array([position[int(h)] for h in test_ids]))
    name = f"{parse_ref(ref).name}-test-subsampled{factor:g}"
    return cat.write(low, name, kind=HALOS_KIND, parents=(ref, features_ref), params={"factor": factor}, seed=seed)


def training_config(preset_name: str, seed: int, model: str):
    """The TrainConfig of one model of a preset (common settings, then the model's own)."""
    from surrogates.training import TrainConfig

    settings = preset_settings(preset_name)
    return TrainConfig(
        seed=seed, progress=False, **{**settings["training"], **settings["model_training"].get(model, {})}
    )


@catalog_task
def train(
    catalog: str, model: str, features_ref: str, split: str, target: str, preset_name: str, seed: int, prefix: str
) -> str:
    """Train one model on one split (checkpointed: keyed by data, config and code) and store it."""
    from surrogates.halos import runs as hr

    cat = Catalog(catalog)
    config = training_config(preset_name, seed, model)
    hidden = preset_settings(preset_name).get("hidden", {}).get(model)
    features = cat.open(features_ref).load()
    identity = [model, split, target, cat.stored_hash(features_ref), config.to_dict(), hidden]
    progress = None if model == "mass-only" else epoch_progress(config.epochs, f"{model} on {split} (seed {seed})")
    with training_checkpoint(cat, "halos", identity) as checkpoint:
        module, result, variables = hr.train_halo_model(
            model, features, split, target, config, hidden=hidden, checkpoint=str(checkpoint), on_epoch=progress
        )
        return hr.store_halo_model(
            cat,
            f"{prefix}-{target}-s{seed}-{model}{_split_suffix(split)}",
            model,
            module,
            result,
            None if model == "mass-only" else config,
            features_ref=features_ref,
            split=split,
            target=target,
            variables=variables,
            params={"preset": preset_name},
        )


@catalog_task
def evaluate(catalog: str, model_ref: str, features_ref: str, split: str) -> str:
    from surrogates.halos import runs as hr

    return hr.evaluate_halo_model(Catalog(catalog), model_ref, features_ref, split)


@catalog_task
def store_halo_ensemble(catalog: str, model_refs: list[str], name: str) -> str:
    """The seeds' deep ensemble as one stored model (what ``predict-galaxies`` uses by default)."""
    from surrogates.halos import runs as hr

    return hr.store_halo_ensemble(Catalog(catalog), model_refs, name)


@catalog_task
def feature_importance(catalog: str, features_ref: str, target: str) -> str:
    from surrogates.halos import runs as hr

    return hr.feature_importance(Catalog(catalog), features_ref, target)


def _split_suffix(split: str) -> str:
    """What a model's name carries for its training split (the random split carries nothing)."""
    return "" if split == "random" else "-masscut"


def _test_sets(features: str, low_features: str | None, split: str) -> list[tuple[str, str]]:
    """The (features ref, split name) pairs a model trained on ``split`` is evaluated on (no
    subsampled set for a catalog without particles)."""
    return [(features, split)] + ([(low_features, "subsampled")] if split == "random" and low_features else [])


@flow(name="halos")
def halos_flow(
    preset: Annotated[str, Choices(PRESETS)] = "quick",
    seeds: Annotated[int, Ge(1)] = 3,
    catalog: str | None = None,
    source: str | None = None,
    format: Annotated[str, Choices(ref="sims.halos.ingest:FORMATS")] | None = None,
    snapshot: Annotated[int, Ge(0)] | None = None,
    name: str | None = None,
    targets: list[str] | None = None,
    models: list[Annotated[str, Choices(MODELS)]] | None = None,
    dask_address: str | None = "threads",
    raw_ref: str | None = None,
) -> SystemResult:
    """Catalog -> features -> models x seeds -> evaluations (random test, above the mass threshold,
    subsampled test halos) -> feature importance -> summary. ``source`` and ``format`` ingest a halo
    file (tng, rockstar, hdf5) instead of simulating the preset's population, and ``raw_ref`` names a
    ``halos.catalog`` already in the catalog; the preset then sets only the training. Returns the refs
    of every step (``models``: ``target/model`` -> training split -> refs) and the summary
    (``details``: the sigma68 table's rows and the forward-selection ranking; ``artifacts``: the
    feature-importance refs by target)."""
    from pipeline.halos.features import feature_targets

    settings = preset_settings(preset)  # a clear error for an unknown preset before anything runs
    checked_seeds(seeds)
    chosen = checked_choice(models, MODELS, "model(s)")
    if raw_ref is not None and source is not None:
        raise ValueError("give either source (a file to ingest) or raw_ref (a catalog already ingested), not both")
    if (source is None) != (format is None):
        raise ValueError("source and format go together: give both to ingest a file, or neither to simulate")
    if snapshot is not None and format is None:
        raise ValueError("a snapshot number is only read with a source (a tng run), not with the synthetic population")
    if format is not None:  # the format's own options, checked before anything runs
        from sims.halos.formats import checked_options, get_reader

        checked_options(get_reader(format), source, {"snapshot": snapshot})
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    if raw_ref is not None:
        info = Catalog(root).info(raw_ref, variables=False)
        raw, kind = info.ref, info.kind
        if kind != HALOS_KIND:
            raise ValueError(f"raw_ref {raw} is a {kind!r} dataset, expected a 'halos.catalog'")
        stem = parse_ref(raw).name
        prefix = stem if stem.startswith("halos-") else f"halos-{stem}"
    elif source is None:
        raw = in_catalog(simulate, root)(root, preset)
        prefix = f"halos-{preset}"
    else:
        dataset = name or f"halos-{Path(source).stem}"
        raw = in_catalog(ingest, root)(root, str(Path(source).absolute()), format, snapshot, dataset)
        prefix = dataset if dataset.startswith("halos-") else f"halos-{dataset}"
    features_ref = in_catalog(features, root)(root, raw, dask_address)
    cat = Catalog(root)
    with cat.open(features_ref) as ds:
        present = feature_targets(ds)
        has_properties = "catalog" in ds.data_vars
        has_scalars = "scalars" in ds.data_vars
        global_source = ds.attrs.get("global_source")
    needs_particles = [m for m in chosen if m == "scalars" or (m == "global" and global_source != "catalog")]
    if needs_particles and not has_scalars:  # a catalog of halo properties only
        if models:
            raise ValueError(f"{raw}: has no particles, which the {', '.join(needs_particles)} model(s) read")
        log.info("%s has no particles: the %s model(s) are left out", raw, ", ".join(needs_particles))
        chosen = [m for m in chosen if m not in needs_particles]
    if "catalog" in chosen and not has_properties:  # a catalog without the halo finder's properties (TNG)
        if models:
            raise ValueError(
                f"{raw}: the catalog model reads the halo finder's properties, which this catalog lacks; "
                "leave it out of the models"
            )
        log.info("%s has no catalog properties: the catalog model is left out", raw)
        chosen = [m for m in chosen if m != "catalog"]
    wanted = list(targets or (["log_mstar"] if "log_mstar" in present else present[:1]))
    missing = [t for t in wanted if t not in present]
    if not wanted or missing:
        raise ValueError(f"{raw}: no target {missing or 'at all'} to train on; the catalog has {present or 'none'}")
    low = low_features_ref = None
    if has_scalars:  # the subsampled test set needs particles to drop
        factor = float(settings["subsample"])
        low = in_catalog(subsample_test_halos, root)(root, raw, features_ref, factor, SUBSAMPLE_SEED)
        low_features_ref = in_catalog(features, root)(root, low, dask_address)
    trained: dict[str, dict[str, list[str]]] = {}
    evaluations: dict[str, dict[str, list[str]]] = {}
    for target in wanted:
        for model in chosen:
            key = f"{target}/{model}"
            for seed in range(1 if model == "mass-only" else seeds):
                for split in SPLITS:
                    ref = in_catalog(train, root)(root, model, features_ref, split, target, preset, seed, prefix)
                    trained.setdefault(key, {}).setdefault(split, []).append(ref)
                    for data, name_of_split in _test_sets(features_ref, low_features_ref, split):
                        done = in_catalog(evaluate, root)(root, ref, data, name_of_split)
                        evaluations.setdefault(key, {}).setdefault(name_of_split, []).append(done)
                log.info("%s %s seed %d trained", target, model, seed)
            if model != "mass-only" and seeds > 1:  # the seeds' deep ensemble, evaluated on the same halos
                for split in SPLITS:
                    name = f"{prefix}-{target}-{model}-ensemble{_split_suffix(split)}"
                    ref = in_catalog(store_halo_ensemble, root)(root, trained[key][split], name)
                    trained.setdefault(f"{key}-ensemble", {}).setdefault(split, []).append(ref)
                    for data, name_of_split in _test_sets(features_ref, low_features_ref, split):
                        done = in_catalog(evaluate, root)(root, ref, data, name_of_split)
                        evaluations.setdefault(f"{key}-ensemble", {}).setdefault(name_of_split, []).append(done)
    importance = {t: in_catalog(feature_importance, root)(root, features_ref, t) for t in wanted} if has_scalars else {}
    summary = halos_summary(cat, evaluations, importance)
    summary.update(preset=preset, catalog=raw, seeds=seeds, settings=settings)
    log.info("summary: %s", json.dumps(summary["rows"]))
    return SystemResult(
        system="halos",
        data={"raw": raw, "features": features_ref, "subsampled": low, "subsampled_features": low_features_ref},
        models=trained,
        evaluations=evaluations,
        rows=summary_rows(summary),
        details=summary,
        artifacts={"importance": importance},
    )


def run_system(catalog: str, preset: SystemPreset, dask_address: str | None = None) -> SystemResult:
    """The main job's step (see :mod:`flows.registry`): the synthetic population at ``preset``'s sizes."""
    return halos_flow(
        preset=preset.preset, seeds=preset.seeds, catalog=catalog, dask_address=dask_address, **preset.options
    )
