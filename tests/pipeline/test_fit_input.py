"""eqs fit's input: the declaration's fit options (JSON and TOML), and the data checked against the
declaration, with one clear error per problem naming the file, the variable and the expectation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
from fit_examples import NAMES, dataset, declaration, declaration_path

from pipeline.declared.data import DataError, checked_data, read_data
from pipeline.declared.design import (
    conditions_on_data,
    design_for,
    input_plan,
    targets_of,
)
from pipeline.features import FeatureError
from sims.declaration import DeclarationError, FitOptions, SystemDeclaration

BASE = {
    "name": "toy",
    "symmetry": "O(3)",
    "quantities": [
        {"name": "m", "units": "kg", "role": "parameter"},
        {"name": "v", "units": "m/s", "kind": "vector", "role": "state"},
        {"name": "E", "units": "J", "role": "target"},
    ],
}


def toy_data(n: int = 40, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    m, v = rng.uniform(1, 2, n), rng.normal(size=(n, 3))
    return xr.Dataset(
        {
            "m": ("sample", m, {"units": "g"}),
            "v": (("sample", "space"), v, {"units": "km/hr"}),
            "E": ("sample", 0.5 * m * (v**2).sum(1), {"units": "J"}),
        }
    )


def test_fit_options_parse_from_json_and_toml_alike(tmp_path):
    spec = {**BASE, "fit": {"shift_by": "m", "split": {"train": 0.6, "val": 0.2, "test": 0.2}, "noisy": ["E"]}}
    (tmp_path / "d.json").write_text(json.dumps(spec))
    toml = """name = "toy"
symmetry = "O(3)"
[[quantities]]
name = "m"
units = "kg"
role = "parameter"
[[quantities]]
name = "v"
units = "m/s"
kind = "vector"
role = "state"
[[quantities]]
name = "E"
units = "J"
role = "target"
[fit]
shift_by = "m"
noisy = ["E"]
split = { train = 0.6, val = 0.2, test = 0.2 }
"""
    (tmp_path / "d.toml").write_text(toml)
    a, b = SystemDeclaration.from_file(tmp_path / "d.json"), SystemDeclaration.from_file(tmp_path / "d.toml")
    assert a == b
    assert a.fit == FitOptions(shift_by="m", split=(0.6, 0.2, 0.2), noisy=("E",))
    assert SystemDeclaration.from_json(a.to_json()) == a  # the fit options round-trip


def test_a_declaration_without_fit_options_keeps_its_json_form():
    decl = SystemDeclaration.from_dict(BASE)
    assert "fit" not in decl.to_dict() and decl.fit.is_default


@pytest.mark.parametrize(
    "fit, message",
    [
        ({"split": {"train": 0.7, "val": 0.2, "test": 0.2}}, "add up to 1"),
        ({"split": {"train": 0.8, "test": 0.2}}, "exactly the fractions train, val and test"),
        ({"noisy": ["m"]}, "not declared targets"),
        ({"shift_by": "v"}, "needs a scalar input"),
        ({"shift_by": "E"}, "needs a scalar input"),
        ({"seed": 3}, "unknown fields"),
        ({"split": {"train": 1.0, "val": 0.0, "test": 0.0}}, r"in \(0, 1\)"),
    ],
)
def test_bad_fit_options_are_refused_naming_the_field(fit, message, tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({**BASE, "fit": fit}))
    with pytest.raises(DeclarationError, match=message) as err:
        SystemDeclaration.from_file(path)
    assert str(path) in str(err.value)


def test_bad_toml_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text("name = \n")
    with pytest.raises(DeclarationError, match="not valid TOML") as err:
        SystemDeclaration.from_file(path)
    assert str(path) in str(err.value)


def test_data_are_converted_to_the_declared_units():
    decl = SystemDeclaration.from_dict(BASE)
    raw = toy_data()
    out = checked_data(raw, decl, "toy.nc")
    np.testing.assert_allclose(out["m"].values, raw["m"].values / 1000, rtol=1e-15)
    np.testing.assert_allclose(out["v"].values, raw["v"].values / 3.6, rtol=1e-15)
    assert out["v"].dims == ("sample", "space") and out["m"].attrs["units"] == "kg"


def test_missing_units_mean_the_declared_units_and_a_constant_parameter_is_broadcast():
    decl = SystemDeclaration.from_dict(BASE)
    raw = toy_data()
    raw["v"].attrs.pop("units")
    raw["m"] = xr.DataArray(1.5, attrs={"units": "kg"})
    out = checked_data(raw, decl, "toy.nc")
    assert out.attrs["units_assumed"] == "v"  # eqs fit says so
    np.testing.assert_array_equal(out["v"].values, raw["v"].values)
    assert out["m"].shape == (40,) and (out["m"].values == 1.5).all()


def _problems(ds: xr.Dataset, spec=BASE) -> str:
    with pytest.raises(DataError) as err:
        checked_data(ds, SystemDeclaration.from_dict(spec), "toy.nc")
    return str(err.value)


def test_every_data_problem_is_named_at_once():
    raw = toy_data()
    raw = raw.drop_vars("E")
    raw["m"].attrs["units"] = "m"  # a length for a mass
    raw["v"] = (("sample", "component"), raw["v"].values[:, :2], {"units": "m/s"})  # two components for O(3)
    text = _problems(raw)
    assert "3 problem(s) with toy.nc" in text and "(toy.nc has variables m, v)" in text
    assert "variable 'E' is missing (declared as a scalar target in J)" in text
    assert "variable 'm'" in text and "kg" in text
    assert "variable 'v'" in text and "have length (2,), expected 3" in text


def test_nan_no_sample_dimension_too_few_samples_and_extra_dimensions_are_refused():
    raw = toy_data()
    raw["E"][3] = np.nan
    assert "variable 'E' has 1 NaN or infinite value(s)" in _problems(raw)
    assert "no dimension named 'sample'" in _problems(toy_data().rename({"sample": "row"}))
    assert "at least 10 are needed" in _problems(toy_data(n=5))
    raw = toy_data()
    raw["E"] = raw["E"].expand_dims(time=2, axis=1)
    assert "variable 'E' has dims ('sample', 'time'); a scalar needs (sample,)" in _problems(raw)


def test_a_target_no_monomial_reaches_is_refused_naming_what_is_missing():
    spec = {**BASE, "quantities": BASE["quantities"][1:]}  # without the mass, nothing carries kg
    decl = SystemDeclaration.from_dict(spec)
    with pytest.raises(FeatureError, match="no monomial of the invariant scalars of the inputs has the units 'J'"):
        design_for(decl, "E")


def test_unknown_target_and_unreadable_files_are_refused(tmp_path):
    decl = SystemDeclaration.from_dict(BASE)
    with pytest.raises(FeatureError, match="declares no target F; targets: E"):
        targets_of(decl, ["F"])
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file")
    with pytest.raises(DataError, match="bad.nc: cannot be opened by xarray"):
        read_data(bad)
    with pytest.raises(DataError, match="no such file"):
        read_data(tmp_path / "missing.nc")


@pytest.mark.parametrize("name", NAMES)
def test_the_examples_generate_data_their_declarations_accept(name):
    decl = declaration(name)
    assert SystemDeclaration.from_file(declaration_path(name)) == decl
    out = checked_data(dataset(name, 60), decl, name)
    assert out.sizes["sample"] == 60
    conditions = conditions_on_data(decl, {q.name: out[q.name].values for q in decl.inputs_only().quantities})
    for target in targets_of(decl):
        design_for(decl, target, input_plan(decl, conditions.signed))


def test_massless_momenta_are_zero_on_the_data_and_stay_out_of_every_power():
    decl = declaration("ee-to-mumu")
    data = checked_data(dataset("ee-to-mumu", 200), decl, "ee")
    values = {q.name: data[q.name].values for q in decl.inputs_only().quantities}
    conditions = conditions_on_data(decl, values)
    assert set(conditions.zero) == {"p1.p1", "p2.p2", "p3.p3"}
    plan = input_plan(decl, conditions.signed)
    design = design_for(decl, "dsigma_domega", plan)
    assert design.scaling.quantities == ("p1.p2",)  # 1/s, never 1/p1.p1
    for group in plan.pi_groups:
        assert not set(group.quantities) & {"p1.p1", "p2.p2", "p3.p3"} or all(
            p > 0 for q, p in group.exponents if q in conditions.zero
        )


def test_a_zarr_store_is_read_like_a_netcdf_file(tmp_path):
    decl = declaration("charged-particle")
    raw = dataset("charged-particle", 40)
    raw.to_netcdf(tmp_path / "d.nc")
    with warnings.catch_warnings():  # zarr 3 says consolidated metadata is not in its specification
        warnings.simplefilter("ignore")
        raw.to_zarr(tmp_path / "d.zarr")
    from_nc = checked_data(read_data(tmp_path / "d.nc"), decl, "d.nc")
    from_zarr = checked_data(read_data(tmp_path / "d.zarr"), decl, "d.zarr")
    for name in ("m", "q", "B", "v0", "t", "dx"):
        np.testing.assert_array_equal(from_nc[name].values, from_zarr[name].values)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: cannot be opened by xarray as a zarr store"):
        read_data(tmp_path / "empty")
