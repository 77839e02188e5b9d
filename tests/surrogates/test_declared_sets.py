"""Relabelled sets in eqs fit (the n-body example): the declaration and the data checks, the Pi-group
surrogate exactly invariant (or equivariant, for a member target) under relabelling, the group and
units, the raw baseline not, and the permutation test set's consistency in an evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from fit_examples import dataset, declaration, declaration_path

from pipeline.declared.data import DataError, checked_data
from pipeline.declared.design import conditions_on_data, view_declaration
from pipeline.declared.evaluation import relative_deviation
from pipeline.declared.splits import (
    factors,
    group_elements,
    moved_by_group,
    permuted,
    random_permutations,
    random_split,
    random_units,
)
from pipeline.declared.splits import testset_dataset as make_testset
from sims.declaration import DeclarationError, SystemDeclaration
from surrogates.declared.models import fit_surrogate, predict
from surrogates.declared.runs import evaluate_model
from surrogates.training import TrainConfig

ROUND_OFF = 1e-10
CONFIG = TrainConfig(seed=0, epochs=3, batch_size=32, lr=3e-3, progress=False)


def _spec() -> dict:
    return json.loads(declaration_path("n-body").read_text())


@pytest.mark.parametrize(
    "permutation, words",
    [
        ({"dim": "body", "quantities": ["mass"]}, "not declared quantities"),
        ({"dim": "body", "quantities": ["a"]}, "at least one input"),
        ({"dim": "sample", "quantities": ["m"]}, "identifier other than sample"),
        ({"dim": "body"}, "exactly 'dim' and 'quantities'"),
    ],
)
def test_bad_permutation_sets_are_refused(permutation, words):
    with pytest.raises(DeclarationError, match=words):
        SystemDeclaration.from_dict({**_spec(), "permutation": permutation}, source="decl.json")


def test_the_pair_view_names_each_member_quantity_twice():
    view = view_declaration(declaration("n-body"))
    assert [q.name for q in view.quantities] == ["G", "m_i", "m_j", "x_i", "x_j", "v_i", "v_j"]
    assert view.permutation is None


def test_member_data_need_the_member_dimension_and_two_members():
    decl = declaration("n-body")
    raw = dataset("n-body", 30)
    with pytest.raises(DataError, match="the set along 'body' has 1 member; at least 2"):
        checked_data(raw.isel(body=slice(0, 1)), decl, "nb.nc")
    bad = raw.copy()
    bad["G"] = xr.DataArray(np.ones(4), dims="body", attrs={"units": "m^3 kg^-1 s^-2"})
    with pytest.raises(DataError, match="'G' has the member dimension 'body' but is not declared"):
        checked_data(bad, decl, "nb.nc")
    bad = raw.copy()
    bad["v"] = (("sample", "space"), raw["v"].values[:, 0], {"units": "m/s"})
    with pytest.raises(DataError, match="a vector member needs"):
        checked_data(bad, decl, "nb.nc")
    out = checked_data(raw, decl, "nb.nc")
    assert out["x"].dims == ("sample", "body", "space") and out["G"].dims == ("sample",)


@pytest.fixture(scope="module")
def nbody():
    decl = declaration("n-body")
    data = checked_data(dataset("n-body", 160), decl, "nb")
    inputs = [q.name for q in decl.inputs_only().quantities]
    conditions = conditions_on_data(decl, {q: data[q].values for q in inputs})
    parts = random_split(160, decl.fit.split)
    models = {}
    for target in ("E", "a"):
        sets = [
            ({q: data[q].values[parts[k]] for q in inputs}, data[target].values[parts[k]]) for k in ("train", "val")
        ]
        for method in ("pi", "scalars", "raw"):
            models[target, method] = fit_surrogate(
                decl.to_dict(),
                target,
                method,
                *sets,
                CONFIG,
                hidden=(8, 8),
                signed=list(conditions.signed),
                zero=list(conditions.zero),
            )[0]
    test = {q: data[q].values[parts["test"]] for q in [*inputs, "E", "a"]}
    return decl, data, parts, test, models


@pytest.mark.parametrize("target", ["E", "a"])
def test_the_pi_model_is_exact_under_relabelling_the_group_and_units(nbody, target):
    decl, _, _, test, models = nbody
    model = models[target, "pi"]
    inputs = {q.name: test[q.name] for q in model.inputs}
    reference = predict(model, inputs)[0]
    perms = random_permutations(len(reference), 4, seed=1)
    expected = permuted({target: reference}, decl, perms)[target]
    assert relative_deviation(predict(model, permuted(inputs, decl, perms))[0], expected) < ROUND_OFF
    matrices, translations = group_elements(decl, len(reference), seed=2, position_spread=30.0)
    expected = moved_by_group({target: reference}, decl, matrices, translations)[target]
    assert (
        relative_deviation(predict(model, moved_by_group(inputs, decl, matrices, translations))[0], expected)
        < ROUND_OFF
    )
    f = factors(decl, random_units(decl, seed=3))
    assert (
        relative_deviation(predict(model, {q: v * f[q] for q, v in inputs.items()})[0], reference * f[target])
        < ROUND_OFF
    )


@pytest.mark.parametrize("target", ["E", "a"])
def test_the_raw_baseline_depends_on_the_labels(nbody, target):
    decl, _, _, test, models = nbody
    model = models[target, "raw"]
    inputs = {q.name: test[q.name] for q in model.inputs}
    reference = predict(model, inputs)[0]
    perms = random_permutations(len(reference), 4, seed=1)
    expected = permuted({target: reference}, decl, perms)[target]
    assert relative_deviation(predict(model, permuted(inputs, decl, perms))[0], expected) > 1e-3


def test_an_evaluation_of_the_permutation_test_set_measures_its_consistency(nbody):
    decl, _, parts, test, models = nbody
    reference = make_testset(test, decl, "test", parts["test"], description="held out")
    perms = random_permutations(len(parts["test"]), 4, seed=4)
    moved = make_testset(
        permuted(test, decl, perms), decl, "permutation", parts["test"], description="relabelled", permutations=perms
    )
    for method, exact in (("pi", True), ("scalars", True), ("raw", False)):
        ds = evaluate_model(models["a", method], f"a-{method}", moved, "moved", reference)
        assert (float(ds["consistency"]) < ROUND_OFF) == exact, method
        assert (float(ds["permutation_error"]) < ROUND_OFF) == exact, method
        assert ds["predicted"].dims == ("sample", "member", "space")


def test_a_set_under_se3_with_cross_products_is_exact():
    """Under SE(3) the pair view adds cross products of the members' vectors (x_i x v_j ...), stacked
    from arrays of every pair."""
    spec = _spec()
    spec["symmetry"] = "SE(3)"
    decl = SystemDeclaration.from_dict(spec)
    data = checked_data(dataset("n-body", 40), decl, "nb")
    inputs = [q.name for q in decl.inputs_only().quantities]
    values = {q: data[q].values for q in inputs}
    conditions = conditions_on_data(decl, values)
    model = fit_surrogate(
        decl.to_dict(), "a", "pi", (values, data["a"].values), (values, data["a"].values), CONFIG, hidden=(8,),
        signed=list(conditions.signed), zero=list(conditions.zero),
    )[0]  # fmt: skip
    assert any("x" in b.name and "v" in b.name for b in model.design.basis)  # a cross product is among them
    reference = predict(model, values)[0]
    matrices, translations = group_elements(decl, 40, seed=5, position_spread=30.0)
    expected = moved_by_group({"a": reference}, decl, matrices, translations)["a"]
    assert (
        relative_deviation(predict(model, moved_by_group(values, decl, matrices, translations))[0], expected)
        < ROUND_OFF
    )
    perms = random_permutations(40, 4, seed=6)
    expected = permuted({"a": reference}, decl, perms)["a"]
    assert relative_deviation(predict(model, permuted(values, decl, perms))[0], expected) < ROUND_OFF


def test_a_shift_by_a_pair_invariant_is_refused_with_the_choices():
    from pipeline.declared.design import input_plan
    from pipeline.declared.splits import shift_values

    decl = declaration("n-body")
    data = checked_data(dataset("n-body", 20), decl, "nb")
    with pytest.raises(DataError, match="nor an invariant scalar of the global inputs; choose from G"):
        shift_values(data, decl, input_plan(decl), "x_i.x_j")
    np.testing.assert_array_equal(shift_values(data, decl, input_plan(decl), "G"), data["G"].values)


def test_predict_writes_member_targets_along_the_member_dimension(nbody, tmp_path):
    from data_catalog import Catalog
    from flows.declared.predict import predict_file
    from surrogates.artifacts import save_model

    decl, _, _, _, models = nbody
    catalog = Catalog(tmp_path / "catalog")
    ref = save_model(catalog, "nbody-a-pi", models["a", "pi"])
    raw_ref = save_model(catalog, "nbody-a-raw", models["a", "raw"])
    dataset("n-body", 12, seed=3).to_netcdf(tmp_path / "new.nc")
    summary = predict_file(catalog, ref, str(tmp_path / "new.nc"), tmp_path / "p.nc")
    assert summary["samples"] == 12 and np.isfinite(summary["median_relative_error"])
    with xr.open_dataset(tmp_path / "p.nc") as out:
        assert out["a"].dims == ("sample", "body", "space") and out["a"].attrs["units"] == "m/s^2"
    dataset("n-body", 12, seed=3, bodies=5).to_netcdf(tmp_path / "five.nc")
    predict_file(catalog, ref, str(tmp_path / "five.nc"), tmp_path / "p5.nc")  # any number of members
    with pytest.raises(DataError, match="5 members along 'body'; model .* reads sets of 4"):
        predict_file(catalog, raw_ref, str(tmp_path / "five.nc"), tmp_path / "r5.nc")
