"""Refusals: bad names, bad datasets, bad metadata. A refused write leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
from support import DEMO_KIND, demo_dataset

from data_catalog import CatalogError, InvalidNameError, NotFoundError, SchemaError, parse_ref, validate_name


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", "..", "a..b", ".hidden", "a\\b", "with space", "x" * 129, "-dash", "a@b", None, 3]
)
def test_invalid_names_are_refused(catalog, name):
    with pytest.raises(InvalidNameError):
        validate_name(name)
    with pytest.raises(InvalidNameError):
        catalog.write(demo_dataset(), name)
    assert not catalog.root.exists() or catalog.names() == []


@pytest.mark.parametrize("name", ["a", "pendulum.raw", "halo_tng-100", "A1", "x" * 128])
def test_valid_names_are_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("ref", ["demo@3", "demo@v0", "demo@vx", "demo@v01", "../demo@v1", "demo@"])
def test_malformed_refs_are_refused(ref):
    with pytest.raises(InvalidNameError):
        parse_ref(ref)


def _assert_refused(catalog, ds, match, **kwargs):
    with pytest.raises((SchemaError, CatalogError), match=match):
        catalog.write(ds, "demo", **kwargs)
    assert catalog.names() == [], "a refused write must not create a version"


def test_missing_units_names_the_variable(catalog):
    ds = demo_dataset()
    del ds["weight"].attrs["units"]
    _assert_refused(catalog, ds, r"variable 'weight' has no 'units' attribute")


def test_schema_mismatches_are_all_reported(catalog):
    ds = demo_dataset().drop_vars("count")
    ds["x"] = ds["x"].transpose("space", "sample")
    with pytest.raises(SchemaError) as info:
        catalog.write(ds, "demo")
    message = str(info.value)
    assert "dataset 'demo' (kind 'test.demo')" in message
    assert "variable 'x' has dims ('space', 'sample'), expected ('sample', 'space')" in message
    assert "variable 'count' is missing" in message
    assert catalog.names() == []


def test_wrong_dtype_and_units_are_reported(catalog):
    ds = demo_dataset()
    ds["count"] = ds["count"].astype(float)
    ds["x"].attrs["units"] = "cm"
    _assert_refused(catalog, ds, r"(?s)units 'cm', expected 'm'.*'count' has dtype float64, expected integer")


def test_unknown_or_missing_kind(catalog):
    _assert_refused(catalog, demo_dataset(), r"unknown dataset kind 'no.such.kind'", kind="no.such.kind")
    ds = demo_dataset()
    del ds.attrs["kind"]
    _assert_refused(catalog, ds, "no kind given")


@pytest.mark.parametrize(
    "value, match",
    [(True, "boolean"), ({"a": 1}, "JSON"), (None, "type NoneType"), ([1, "a"], "mixes types"), ([], "empty")],
)
def test_unstorable_attributes_are_refused(catalog, value, match):
    ds = demo_dataset().assign_attrs(bad=value)
    _assert_refused(catalog, ds, f"attribute 'bad'.*{match}")


@pytest.mark.parametrize("key", ["dtype", "_private", "coordinates", "NAME", "DIMENSION_LIST", "scale_factor"])
def test_attribute_names_with_a_format_meaning_are_refused(catalog, key):
    ds = demo_dataset()
    ds["x"].attrs[key] = "bool"
    _assert_refused(catalog, ds, f"variable 'x': attribute name '{key}' is reserved")
    _assert_refused(catalog, demo_dataset().assign_attrs({key: "x"}), f"global attribute name '{key}' is reserved")


@pytest.mark.parametrize(
    "value, match",
    [
        (2**64, "does not fit in 64 bits"),
        ("a\x00b", "NUL"),
        ([1, 2**70], "does not fit in 64 bits"),
        ("a\ud800", "lone surrogate"),
        ([1, 2.5], "mixes types"),
        ([np.int64(1), np.uint64(2)], "mixes types"),
    ],
)
def test_attribute_values_that_would_not_round_trip_are_refused(catalog, value, match):
    _assert_refused(catalog, demo_dataset().assign_attrs(bad=value), match)


def test_string_variables_must_hold_only_strings(catalog):
    with_none = demo_dataset().assign(label=("sample", np.array(["a", None, "c", "d", "e", "f"], dtype=object)))
    # xarray turns None into nan when it builds the variable
    _assert_refused(catalog, with_none, r"variable 'label' holds nan \(float\) among strings")
    with_nul = demo_dataset().assign(label=("sample", np.array(["a", "b\x00c", "c", "d", "e", "f"], dtype=object)))
    _assert_refused(catalog, with_nul, "variable 'label': a string contains a NUL character")
    empty = demo_dataset().assign_coords(tag=("tag", np.array([], dtype=object)))
    _assert_refused(catalog, empty, "coordinate 'tag' is an empty object array")


def test_names_with_nul_are_refused(catalog):
    ds = demo_dataset().rename({"weight": "we\x00ight"})
    _assert_refused(catalog, ds, r"variable name 'we\\x00ight' contains a NUL character")


def test_structures_that_netcdf_reinterprets_are_refused_naming_the_variable(catalog):
    ds = demo_dataset().assign(x_bnds=(("sample", "bnd"), np.zeros((6, 2)), {"units": "m"}))
    ds["x"].attrs["bounds"] = "x_bnds"  # CF bounds: xarray drops the units of x_bnds on writing
    with pytest.raises(SchemaError, match=r"variable 'x_bnds': attrs .* is stored as"):
        catalog.write(ds, "demo")
    assert catalog.names() == []


def test_units_must_be_a_string(catalog):
    ds = demo_dataset()
    ds["weight"].attrs["units"] = 1
    _assert_refused(catalog, ds, "variable 'weight' has no 'units' attribute: add one as a string")


def test_numpy_strings_in_attributes_are_stored_as_text(catalog):
    ds = demo_dataset().assign_attrs(source=np.str_("tng100"), bands=np.array(["g", "r"]))
    back = catalog.open(catalog.write(ds, "demo"))
    assert back.attrs["source"] == "tng100" and list(back.attrs["bands"]) == ["g", "r"]


def test_unstorable_dtypes_are_refused(catalog):
    ds = demo_dataset().assign(when=("sample", np.arange(6).astype("datetime64[s]"), {"units": "s"}))
    _assert_refused(catalog, ds, r"variable 'when' has dtype datetime64\[s\].*store times as numbers")


def test_bad_params_seed_and_parents(catalog):
    _assert_refused(catalog, demo_dataset(), "params are not JSON-serialisable", params={"f": object()})
    _assert_refused(catalog, demo_dataset(), "seed must be a 64-bit integer", seed=1.5)
    _assert_refused(catalog, demo_dataset(), "seed must be a 64-bit integer", seed=True)
    _assert_refused(catalog, demo_dataset(), "seed must be a 64-bit integer", seed=np.uint64(2**63))
    with pytest.raises(NotFoundError, match="no dataset named 'ghost'"):
        catalog.write(demo_dataset(), "demo", parents=["ghost@v1"])
    assert catalog.names() == []


def test_schema_required_params(catalog):
    from data_catalog import DatasetSchema, register_schema

    register_schema(DatasetSchema(kind="test.needs_params", description="", params=("dt",)), replace=True)
    ds = demo_dataset().assign_attrs(kind="test.needs_params")
    _assert_refused(catalog, ds, "parameter 'dt' is missing")
    assert catalog.write(ds, "demo", params={"dt": 0.2}) == "demo@v1"
    assert DEMO_KIND != "test.needs_params"
