"""Training and evaluating a declared system's surrogates on catalog datasets (the ``eqs fit`` steps)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import Catalog
from pipeline.declared.design import DataConditions
from pipeline.declared.evaluation import evaluation_dataset, relative_deviation
from pipeline.declared.splits import moved_by_group, permuted, random_permutations
from pipeline.features import declaration_of
from pipeline.model_symmetry import measure_equivariance, measure_units_equivariance
from surrogates.artifacts import save_model
from surrogates.declared.models import DeclaredSurrogate, fit_surrogate, predict
from surrogates.training import TrainConfig, TrainResult

SYMMETRY_SAMPLES = 64  # test inputs the symmetry measurements run on
SYMMETRY_TRIALS = 8


def rows(ds: xr.Dataset, names: Sequence[str], index: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
    return {n: np.asarray(ds[n].values[index], dtype=np.float64) for n in names}


def train_model(
    data: xr.Dataset,
    split: xr.Dataset,
    conditions: DataConditions,
    target: str,
    method: str,
    config: TrainConfig,
    *,
    hidden: Sequence[int],
    checkpoint: str | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[DeclaredSurrogate, TrainResult]:
    """One surrogate of ``target`` trained on the split's train part (validated on its val part)."""
    declaration = declaration_of(data, source="the data")
    names = [q.name for q in declaration.inputs_only().quantities]
    train_idx, val_idx = np.asarray(split["train"].values), np.asarray(split["val"].values)
    target_values = np.asarray(data[target].values, dtype=np.float64)
    return fit_surrogate(
        declaration.to_dict(),
        target,
        method,
        (rows(data, names, train_idx), target_values[train_idx]),
        (rows(data, names, val_idx), target_values[val_idx]),
        config,
        hidden=hidden,
        gaussian=target in declaration.fit.noisy,
        signed=list(conditions.signed),
        zero=list(conditions.zero),
        checkpoint=checkpoint,
        on_epoch=on_epoch,
    )


def store_model(
    catalog: Catalog,
    name: str,
    model: DeclaredSurrogate,
    result: TrainResult,
    config: TrainConfig,
    *,
    parents: Sequence[str],
    split: str,
) -> str:
    params = {"target": model.target, "method": model.method, "split": split, "training": config.to_dict()}
    return save_model(catalog, name, model, parents=parents, params=params, seed=config.seed, training=result.to_dict())


def _factors(testset: xr.Dataset) -> dict[str, float]:
    return json.loads(testset.attrs.get("quantity_factors", "{}"))


def symmetry_errors(model: DeclaredSurrogate, values: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The model's worst relative errors under random group elements and changes of units (float64),
    measured on the first test samples."""
    data = [values[q.name][:SYMMETRY_SAMPLES] for q in model.inputs]
    out = {"units": measure_units_equivariance(model, data=data, trials=SYMMETRY_TRIALS).worst}
    if model.decl.group != "none":
        out["group"] = measure_equivariance(model, data=data, trials=SYMMETRY_TRIALS).worst
    if model.decl.permutation is not None:
        out["permutation"] = permutation_error(model, dict(zip((q.name for q in model.inputs), data)))
    return out


def permutation_error(
    model: DeclaredSurrogate, values: Mapping[str, np.ndarray], trials: int = SYMMETRY_TRIALS
) -> float:
    """The worst relative change of the output when the members are relabelled (a member target
    relabelled alike), over ``trials`` random relabellings of every sample."""
    decl, target = model.decl, model.target
    reference = predict(model, values)[0]
    members = values[decl.inputs_only().permutation.quantities[0]].shape[1]
    worst = 0.0
    for trial in range(trials):
        perms = random_permutations(len(reference), members, seed=trial)
        moved = predict(model, permuted(values, decl, perms))[0]
        expected = permuted({target: reference}, decl, perms)[target] if decl.is_member(target) else reference
        worst = max(worst, relative_deviation(moved, expected))
    return worst


def evaluate_model(
    model: DeclaredSurrogate,
    model_ref: str,
    testset: xr.Dataset,
    testset_ref: str,
    reference: xr.Dataset | None = None,
) -> xr.Dataset:
    """The model on one test set. For a test set made by moving held-out samples (``reference`` is
    the held-out set), also the deviation of its predictions from the moved predictions on the originals."""
    names = [q.name for q in model.inputs]
    target = model.target
    values = rows(testset, names)
    mean, sigma = predict(model, values)
    true = np.asarray(testset[target].values, dtype=np.float64)
    factors = _factors(testset)
    consistency = None
    if reference is not None:
        index = np.asarray(testset["source_index"].values)
        position = {int(s): i for i, s in enumerate(np.asarray(reference["source_index"].values))}
        rows_of = np.array([position[int(s)] for s in index])
        original, _ = predict(model, rows(reference, names, rows_of))
        if "permutation" in testset:
            expected = original
            if model.decl.is_member(target):
                expected = permuted({target: original}, model.decl, np.asarray(testset["permutation"].values))[target]
        elif "group_matrix" in testset:
            translations = testset["group_translation"].values if "group_translation" in testset else None
            expected = moved_by_group({target: original}, model.decl, testset["group_matrix"].values, translations)[
                target
            ]
        else:
            expected = original * factors.get(target, 1.0)
        consistency = relative_deviation(mean, expected)
    return evaluation_dataset(
        mean,
        sigma,
        true,
        target=target,
        units=model.design.target.units,
        target_factor=factors.get(target, 1.0),
        method=model.method,
        model=model_ref,
        data=testset_ref,
        split=str(testset.attrs["split"]),
        symmetry=symmetry_errors(model, values),
        consistency=consistency,
        member_target=model.member_target,
        attrs={"description": str(testset.attrs.get("description", ""))},
    )
