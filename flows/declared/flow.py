"""A system of the user's own, from a data file and a declaration, as a Prefect flow (docs/fit.md).

ingest (checked against the declaration, all or nothing) -> features (invariant scalars and Pi
groups, dask) -> splits (random train/val/test; range shift) and test sets (held out; moved by the
group; in other units; rescaled) -> per target, method and seed: train on the random split and on the
range-shift split -> evaluate on every test set -> summary.

Every step is a cached catalog task; training checkpoints under the catalog's cache, so an
interrupted fit resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge
from prefect import flow, get_run_logger

from data_catalog import Catalog, parse_ref
from pipeline.declared.methods import DEFAULT_METHODS, METHODS
from pipeline.results import SystemResult

from ..conventions import (
    catalog_task,
    checked_choice,
    checked_seeds,
    in_catalog,
    training_checkpoint,
)
from ..progress import epoch_progress
from ..schedules import Choices

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "seeds": 1,
        "hidden": (16, 16),
        "training": {"epochs": 20, "batch_size": 64, "lr": 3e-3, "val_every": 5},
    },
    "quick": {
        "seeds": 3,
        "hidden": (64, 64),
        "training": {
            "epochs": 400,
            "batch_size": 128,
            "lr": 3e-3,
            "lr_decay": 0.5,
            "lr_decay_every": 100,
            "val_every": 2,
            "patience": 25,
        },
    },
    "full": {
        "seeds": 3,
        "hidden": (128, 128, 128),
        "training": {
            "epochs": 2000,
            "batch_size": 128,
            "lr": 2e-3,
            "lr_decay": 0.5,
            "lr_decay_every": 400,
            "val_every": 5,
            "patience": 40,
        },
    },
}


def preset_settings(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown fit preset {name!r}; choose from {list(PRESETS)}")
    return PRESETS[name]


def training_config(preset_name: str, seed: int):
    from surrogates.training import TrainConfig

    return TrainConfig(seed=seed, progress=False, **preset_settings(preset_name)["training"])


def load_declaration(path: str, shift_by: str | None = None):
    """The declaration file, with ``shift_by`` (the --shift-by option) in place of its own when given."""
    from sims.declaration import DeclarationError, SystemDeclaration

    declaration = SystemDeclaration.from_file(path)
    if shift_by is not None:
        try:  # checked like one written in the file (replace runs the declaration's checks)
            declaration = dataclasses.replace(declaration, fit=dataclasses.replace(declaration.fit, shift_by=shift_by))
        except DeclarationError as exc:
            raise DeclarationError(f"--shift-by {shift_by}: {exc}") from None
    return declaration


def checked_input(
    data: str,
    declaration_path: str,
    shift_by: str | None,
    targets: list[str] | None,
    units_equivariant: bool = True,
):
    """Everything about the input that can be checked before any work, as the ``eqs fit`` command and
    the flow both need: the declaration, the data against it, the targets' designs (with
    ``units_equivariant``, that each target admits the Pi-group model), the shift quantity. Returns
    (declaration, canonical data, conditions, targets); raises DeclarationError."""
    from pipeline.declared.data import checked_data, read_data
    from pipeline.declared.design import (
        conditions_on_data,
        design_for,
        input_plan,
        targets_of,
    )
    from pipeline.declared.splits import shift_values
    from pipeline.units import check_declaration

    declaration = load_declaration(declaration_path, shift_by)
    check_declaration(declaration)  # its unit strings first: a bad one is the declaration's fault, not the data's
    with read_data(data) as raw:
        canonical = checked_data(raw, declaration, str(data))
    chosen = targets_of(declaration, targets, option="--target")
    names = [q.name for q in declaration.inputs_only().quantities]
    conditions = conditions_on_data(declaration, {n: canonical[n].values for n in names})
    plan = input_plan(declaration, conditions.signed)
    for target in chosen:
        design_for(declaration, target, plan, units_equivariant=units_equivariant)
    if declaration.fit.shift_by:
        shift_values(canonical, declaration, plan, declaration.fit.shift_by)
    return declaration, canonical, conditions, chosen


def method_refusals(methods: Sequence[str], declaration) -> dict[str, str]:
    """Why each method that cannot model the declared system cannot (``eqs fit --method``)."""
    from surrogates.declared.models import method_refusal

    return {m: why for m in methods if (why := method_refusal(m, declaration))}


def checked_methods(methods: Sequence[str] | None, declaration) -> list[str]:
    """The methods to train (the default ones when none are named), refused with a ValueError when one
    is unknown or cannot model the system."""
    chosen = checked_choice(list(methods or DEFAULT_METHODS), METHODS, "method(s)")
    refused = method_refusals(chosen, declaration)
    if refused:
        raise ValueError("; ".join(f"method {m!r}: {why}" for m, why in refused.items()))
    return chosen


@catalog_task(cache=False)  # the file may change under the same path; identical content gives the same ref
def ingest(catalog: str, data: str, declaration_path: str, shift_by: str | None, name: str) -> str:
    """The data file, checked against the declaration, stored in its canonical layout."""
    from pipeline.declared.data import DATA_KIND, file_digest

    declaration, canonical, _, _ = checked_input(data, declaration_path, shift_by, None, units_equivariant=False)
    params = {"source": str(data), "sha256": file_digest(data), "declaration": declaration.to_dict()}
    return Catalog(catalog).write(canonical, name, kind=DATA_KIND, params=params)


@catalog_task
def features(catalog: str, ref: str, dask_address: str | None = "threads") -> str:
    """The invariant scalars and Pi groups of every sample (dask), with what the data say about them."""
    from pipeline.cluster import dask_scheduler
    from pipeline.declared.design import conditions_on_data, input_plan, view_dataset
    from pipeline.features import FEATURES_KIND, declaration_of, extract, features_name

    cat = Catalog(catalog)
    data = cat.open(ref).load()
    declaration = declaration_of(data, source=ref)
    names = [q.name for q in declaration.inputs_only().quantities]
    conditions = conditions_on_data(declaration, {n: data[n].values for n in names})
    plan = input_plan(declaration, conditions.signed)
    inputs = view_dataset(data, declaration)
    with dask_scheduler(dask_address), warnings.catch_warnings():
        if declaration.permutation is not None:  # the diagonal's 0 / 0, masked below
            warnings.simplefilter("ignore", RuntimeWarning)
        out = extract(inputs, plan, source=ref).compute()
    if declaration.permutation is not None:  # a member paired with itself is not a pair
        dim = declaration.permutation.dim
        distinct = out[f"{dim}_i"] != out[f"{dim}_j"]
        out = out.map(lambda v: v.where(distinct) if {f"{dim}_i", f"{dim}_j"} <= set(v.dims) else v, keep_attrs=True)
    out.attrs["conditions"] = json.dumps(conditions.to_dict())
    return cat.write(out, features_name(parse_ref(ref).name), kind=FEATURES_KIND, parents=[ref])


@catalog_task
def splits(catalog: str, ref: str, features_ref: str) -> dict[str, Any]:
    """The random and range-shift splits (index sets) and the test sets, each stored; their refs and
    how each test set was made."""
    from pipeline.declared import splits as sp
    from pipeline.features import declaration_of

    cat = Catalog(catalog)
    data = cat.open(ref).load()
    declaration = declaration_of(data, source=ref)
    prefix = parse_ref(ref).name
    names = [q.name for q in declaration.quantities]
    n = data.sizes["sample"]
    values = {q: np.asarray(data[q].values) for q in names}
    out: dict[str, Any] = {"splits": {}, "testsets": {}, "notes": {}}

    def store_split(parts: dict[str, np.ndarray], split: str, attrs: dict[str, Any]) -> str:
        return cat.write(
            sp.split_dataset(parts, split, attrs), f"{prefix}-split-{split}", kind=sp.SPLIT_KIND, parents=[ref]
        )

    def store_testset(ds: Any, split: str, parents: list[str]) -> None:
        out["testsets"][split] = cat.write(ds, f"{prefix}-test-{split}", kind=sp.TESTSET_KIND, parents=parents)
        out["notes"][split] = ds.attrs["description"]

    random = sp.random_split(n, declaration.fit.split)
    out["splits"]["random"] = split_ref = store_split(random, "random", {"fractions": list(declaration.fit.split)})
    test_values = {q: v[random["test"]] for q, v in values.items()}
    train_values = {q: v[random["train"]] for q, v in values.items()}
    store_testset(
        sp.testset_dataset(test_values, declaration, "test", random["test"], description="the held-out samples"),
        "test",
        [ref, split_ref],
    )
    if declaration.group != "none":
        positions = [values[q.name] for q in declaration.quantities if q.kind.value == "position"]
        spread = float(np.std(np.concatenate([p.ravel() for p in positions]))) if positions else 1.0
        matrices, translations = sp.group_elements(declaration, len(random["test"]), sp.SPLIT_SEED + 1, spread)
        moved = sp.moved_by_group(test_values, declaration, matrices, translations)
        desc = f"each held-out sample moved by its own random element of {declaration.symmetry}"
        ds = sp.testset_dataset(
            moved, declaration, "group", random["test"], description=desc, matrices=matrices, translations=translations
        )
        store_testset(ds, "group", [ref, split_ref])
    if declaration.permutation is not None:
        members = test_values[declaration.permutation.quantities[0]].shape[1]
        perms = sp.random_permutations(len(random["test"]), members, sp.SPLIT_SEED + 3)
        desc = f"the members of each held-out sample relabelled by a random permutation along {declaration.permutation.dim!r}"
        ds = sp.testset_dataset(
            sp.permuted(test_values, declaration, perms),
            declaration,
            "permutation",
            random["test"],
            description=desc,
            permutations=perms,
        )
        store_testset(ds, "permutation", [ref, split_ref])
    scales = sp.random_units(declaration, sp.SPLIT_SEED + 2)
    factors = sp.factors(declaration, scales)
    desc = "the held-out samples in other units: " + ", ".join(f"{dim} numbers x{s:.3g}" for dim, s in scales.items())
    converted = {q: v * factors[q] for q, v in test_values.items()}
    store_testset(
        sp.testset_dataset(converted, declaration, "units", random["test"], description=desc, quantity_factors=factors),
        "units",
        [ref, split_ref],
    )
    rescale, reason = sp.rescaling(declaration, train_values, test_values)
    if rescale is None:
        out["notes"]["rescaled"] = f"no rescaled split: {reason}"
    else:
        factors = sp.factors(declaration, rescale)
        scaled = {q: v * factors[q] for q, v in test_values.items()}
        desc = f"the held-out samples at another scale, every dimensional input outside its training range ({reason})"
        ds = sp.testset_dataset(
            scaled, declaration, "rescaled", random["test"], description=desc, quantity_factors=factors
        )
        store_testset(ds, "rescaled", [ref, split_ref])
    if declaration.fit.shift_by:
        from pipeline.declared.design import DataConditions, input_plan

        conditions = DataConditions.from_json(cat.open(features_ref).attrs["conditions"])
        plan = input_plan(declaration, conditions.signed)
        by = sp.shift_values(data, declaration, plan, declaration.fit.shift_by)
        parts = sp.shift_split(by, declaration.fit.split)
        threshold = float(by[parts["test"]].min())
        out["splits"]["shift"] = shift_ref = store_split(
            parts, "shift", {"shift_by": declaration.fit.shift_by, "threshold": threshold}
        )
        desc = (
            f"trained with {declaration.fit.shift_by} below {threshold:.4g} ({by[parts['train']].min():.4g} to "
            f"{by[parts['train']].max():.4g}), tested from {threshold:.4g} to {by[parts['test']].max():.4g}"
        )
        shifted = {q: v[parts["test"]] for q, v in values.items()}
        store_testset(
            sp.testset_dataset(shifted, declaration, "shift", parts["test"], description=desc),
            "shift",
            [ref, shift_ref],
        )
    else:
        out["notes"]["shift"] = "no range-shift split: the declaration names no fit.shift_by (or give --shift-by)"
    return out


@catalog_task
def train(
    catalog: str, ref: str, features_ref: str, split_ref: str, target: str, method: str, preset_name: str, seed: int
) -> str:
    """One surrogate (checkpointed: keyed by data, split, config and code), stored in the catalog."""
    from pipeline.declared.design import DataConditions
    from surrogates.declared import runs

    cat = Catalog(catalog)
    config = training_config(preset_name, seed)
    hidden = preset_settings(preset_name)["hidden"]
    data, split = cat.open(ref).load(), cat.open(split_ref).load()
    conditions = DataConditions.from_json(cat.open(features_ref).attrs["conditions"])
    identity = [target, method, cat.stored_hash(ref), cat.stored_hash(split_ref), config.to_dict(), list(hidden)]
    split_name = str(split.attrs["split"])
    progress = epoch_progress(config.epochs, f"{target} by {method} on the {split_name} split (seed {seed})")
    with training_checkpoint(cat, "fit", identity) as checkpoint:
        model, result = runs.train_model(
            data,
            split,
            conditions,
            target,
            method,
            config,
            hidden=hidden,
            checkpoint=str(checkpoint),
            on_epoch=progress,
        )
        name = f"{parse_ref(ref).name}-{target}-{method}-{split_name}-s{seed}"
        return runs.store_model(
            cat, name, model, result, config, parents=[ref, features_ref, split_ref], split=split_name
        )


@catalog_task
def evaluate(catalog: str, model_ref: str, testset_ref: str, reference_ref: str | None = None) -> str:
    """One model on one test set (and its measured symmetry errors), stored as an evaluation."""
    from pipeline.declared.evaluation import EVALUATION_KIND
    from surrogates.artifacts import load_model
    from surrogates.declared import runs

    cat = Catalog(catalog)
    model = load_model(cat, model_ref, device="cpu", dtype="float64").model
    testset = cat.open(testset_ref).load()
    reference = cat.open(reference_ref).load() if reference_ref else None
    ds = runs.evaluate_model(model, cat.resolve(model_ref), testset, cat.resolve(testset_ref), reference)
    name = f"{parse_ref(model_ref).name}-on-{testset.attrs['split']}"
    parents = [model_ref, testset_ref] + ([reference_ref] if reference_ref else [])
    return cat.write(ds, name, kind=EVALUATION_KIND, parents=parents)


@flow(name="fit")
def fit_flow(
    data: str,
    declaration: str,
    targets: list[str] | None = None,
    shift_by: str | None = None,
    preset: Annotated[str, Choices(PRESETS)] = "quick",
    seeds: Annotated[int, Ge(1)] | None = None,
    methods: list[Annotated[str, Choices(METHODS)]] | None = None,
    name: str | None = None,
    catalog: str | None = None,
    dask_address: str | None = "threads",
    report_dir: str | None = None,
) -> SystemResult:
    """Data file + declaration file -> ingest -> features -> splits and test sets -> surrogates per
    target, method and seed on the random and range-shift splits -> evaluations -> summary.
    ``seeds`` defaults to the preset's; ``name`` (the catalog name of the data) to the declaration's;
    the report (HTML and Markdown) is stored in the catalog and written to ``report_dir`` (default
    ``reports/fit-<system>``)."""
    from pipeline.declared.summary import fit_summary, summary_rows

    settings = preset_settings(preset)
    seeds = checked_seeds(settings["seeds"] if seeds is None else seeds)
    from pipeline.declared.design import targets_of

    decl = load_declaration(declaration, shift_by)  # the data are checked by the ingest step
    chosen_methods = checked_methods(methods, decl)
    chosen = targets_of(decl, targets)
    if "pi" in chosen_methods:  # before anything is stored: the Pi-group model needs each target's units made
        from pipeline.declared.design import design_for

        for target in chosen:
            design_for(decl, target)
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    dataset = name or f"fit-{decl.name}".replace("_", "-")
    raw = in_catalog(ingest, root)(
        root, str(Path(data).absolute()), str(Path(declaration).absolute()), shift_by, dataset
    )
    features_ref = in_catalog(features, root)(root, raw, dask_address)
    made = in_catalog(splits, root)(root, raw, features_ref)
    testsets = made["testsets"]
    models: dict[str, dict[str, dict[str, list[str]]]] = {}
    evaluations: dict[str, dict[str, dict[str, list[str]]]] = {}
    for target in chosen:
        for method in chosen_methods:
            for seed in range(seeds):
                for split_name, split_ref in made["splits"].items():
                    ref = in_catalog(train, root)(root, raw, features_ref, split_ref, target, method, preset, seed)
                    models.setdefault(target, {}).setdefault(method, {}).setdefault(split_name, []).append(ref)
                    tests = ["shift"] if split_name == "shift" else [s for s in testsets if s != "shift"]
                    for test in tests:
                        reference = testsets["test"] if test in ("group", "permutation", "units", "rescaled") else None
                        done = in_catalog(evaluate, root)(root, ref, testsets[test], reference)
                        evaluations.setdefault(target, {}).setdefault(method, {}).setdefault(test, []).append(done)
            log.info("%s by %s: %d seed(s) trained and evaluated", target, method, seeds)
    cat = Catalog(root)
    feature_attrs = cat.open(features_ref).attrs  # what the features step derived, for the report
    summary = fit_summary(cat, evaluations)
    summary.update(
        preset=preset,
        seeds=seeds,
        data=raw,
        notes=made["notes"],
        declaration=decl.to_dict(),
        features=json.loads(feature_attrs["feature_plan"]),
        conditions=json.loads(feature_attrs["conditions"]),
    )

    result = SystemResult(
        system=result_name(decl.name),
        data={"raw": raw, "features": features_ref, "splits": made["splits"], "testsets": testsets},
        models=models,
        evaluations=evaluations,
        rows=summary_rows(summary),
        details=summary,
    )
    report = in_catalog(build_report, root)(root, result.to_dict(), decl.name, preset)
    from ..main import publish_report

    paths = publish_report(cat, report, report_dir or Path("reports") / result.system)
    log.info("report: %s", paths["html"])
    return result


@catalog_task
def build_report(catalog: str, result: dict[str, Any], system: str, preset: str) -> str:
    """The OOD report of one declared system, stored as kind ``report``; its ref."""
    from pipeline.declared.report import section
    from pipeline.report import REPORT_KIND, report_dataset
    from pipeline.report import build_report as build

    typed = SystemResult.from_dict(result)
    cat = Catalog(catalog)
    report = build(
        cat,
        {typed.system: typed},
        [section(typed.system, f"{system} (eqs fit)")],
        title=f"eqs fit: {system}",
        preset=preset,
    )
    return cat.write(report_dataset(report), f"report-{typed.system}", kind=REPORT_KIND, parents=report.refs)


def result_name(system: str) -> str:
    """The report's key (and HTML id) of a declared system."""
    from pipeline.report import figure_name

    return "fit-" + figure_name(system)
