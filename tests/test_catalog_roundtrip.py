"""Round trips, versioning and deduplication, lineage."""

from __future__ import annotations

import dataclasses
import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from support import DEMO_KIND, demo_dataset

from data_catalog import SCHEMA_VERSION, Catalog, NotFoundError, default_root


def test_round_trip_keeps_values_units_and_attributes(catalog):
    ds = demo_dataset()
    ref = catalog.write(ds, "demo", params={"n": 6, "nested": {"b": [1, 2]}}, seed=7)
    assert ref == "demo@v1"
    back = catalog.open(ref)
    assert isinstance(back["x"].data, da.Array), "open() must be lazy and dask-backed"
    for name in ds.variables:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert back[name].dtype.kind == ds[name].dtype.kind
        assert back[name].attrs.get("units") == ds[name].attrs.get("units")
    assert back["weight"].dtype == np.float32
    assert back["x"].attrs["long_name"] == "position"
    assert back.attrs["comment"] == "test data"
    assert list(back.attrs["scales"]) == [1.0, 2.5]
    assert back.attrs["schema_version"] == SCHEMA_VERSION
    assert back.attrs["kind"] == DEMO_KIND
    assert back.attrs["name"] == "demo" and back.attrs["version"] == 1
    assert len(back.attrs["content_sha256"]) == 64
    assert back.attrs["created_utc"].endswith("+00:00")
    assert back.attrs["code_version"]
    assert json.loads(back.attrs["params"]) == {"n": 6, "nested": {"b": [1, 2]}}
    assert back.attrs["seed"] == 7
    assert json.loads(back.attrs["parents"]) == []


def test_identical_content_returns_the_same_version(catalog):
    ds = demo_dataset()
    first = catalog.write(ds, "demo", params={"a": 1, "b": 2}, seed=1)
    # same content: key order of params, chunking and byte order do not matter
    chunked = ds.chunk({"sample": 2})
    swapped = ds.assign(x=ds["x"].astype(">f8"))
    assert catalog.write(chunked, "demo", params={"b": 2, "a": 1}, seed=1) == first
    assert catalog.write(swapped, "demo", params={"a": 1, "b": 2}, seed=1) == first
    assert catalog.versions("demo") == [1]


@pytest.mark.parametrize(
    "change",
    [
        lambda ds, kw: (ds.assign(x=ds["x"] + 1e-12), kw),
        lambda ds, kw: (ds.assign_attrs(comment="other"), kw),
        lambda ds, kw: (ds.assign(weight=ds["weight"].assign_attrs(units="g")), kw),
        lambda ds, kw: (ds, {**kw, "params": {"a": 2}}),
        lambda ds, kw: (ds, {**kw, "seed": 2}),
    ],
    ids=["data", "global-attr", "variable-units", "params", "seed"],
)
def test_changed_content_gives_the_next_version(catalog, change):
    ds = demo_dataset()
    kwargs = {"params": {"a": 1}, "seed": 1}
    first = catalog.write(ds, "demo", **kwargs)
    changed, changed_kwargs = change(ds, kwargs)
    second = catalog.write(changed, "demo", **changed_kwargs)
    assert (first, second) == ("demo@v1", "demo@v2")
    assert catalog.stored_hash(first) != catalog.stored_hash(second)
    # both stay readable and unchanged
    np.testing.assert_array_equal(catalog.open(first)["x"].values, ds["x"].values)


def test_latest_resolution_and_missing_refs(catalog):
    catalog.write(demo_dataset(0), "demo")
    catalog.write(demo_dataset(1), "demo")
    assert catalog.resolve("demo") == catalog.resolve("demo@latest") == "demo@v2"
    np.testing.assert_array_equal(catalog.open("demo")["x"].values, demo_dataset(1)["x"].values)
    with pytest.raises(NotFoundError, match="demo@v3 does not exist.*v1, v2"):
        catalog.open("demo@v3")
    with pytest.raises(NotFoundError, match="no dataset named 'other'.*datasets: demo"):
        catalog.info("other")


def test_rewriting_an_opened_dataset_under_another_name_keeps_its_content_hash(catalog):
    ref = catalog.write(demo_dataset(), "demo", params={"a": 1}, seed=3)
    reopened = catalog.open(ref)
    copy_ref = catalog.write(reopened, "copy", params={"a": 1}, seed=3)
    assert catalog.stored_hash(copy_ref) == catalog.stored_hash(ref)


def test_list_versions_info_and_lineage(catalog):
    raw = catalog.write(demo_dataset(0), "raw", seed=0)
    catalog.write(demo_dataset(1), "raw", seed=1)
    other = catalog.write(demo_dataset(2), "other")
    derived = catalog.write(demo_dataset(3), "derived", parents=["raw@v1", "other"])
    assert catalog.names() == ["derived", "other", "raw"]
    assert catalog.versions("raw") == [1, 2]
    assert [i.ref for i in catalog.list()] == ["derived@v1", "other@v1", "raw@v2"]
    assert [i.ref for i in catalog.list(all_versions=True)] == ["derived@v1", "other@v1", "raw@v1", "raw@v2"]

    info = catalog.info(derived)
    assert info.parents == [raw, other]
    assert info.kind == DEMO_KIND and info.seed is None and info.params == {}
    assert {v.name: v.units for v in info.variables}["x"] == "m"
    assert info.size_bytes > 0
    header = catalog.info(derived, variables=False)  # the attributes alone: the same but the variables
    assert header.variables == [] and dataclasses.replace(info, variables=[]) == header

    graph = catalog.lineage(derived)
    assert list(graph)[0] == derived
    assert set(graph) == {derived, raw, other}
    assert graph[derived]["parents"] == [raw, other]
    assert graph[raw]["parents"] == []


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EQS_CATALOG", str(tmp_path / "env-catalog"))
    assert Catalog().root == tmp_path / "env-catalog"
    monkeypatch.delenv("EQS_CATALOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "eqs" / "catalog"


def test_empty_catalog_lists_nothing(tmp_path):
    catalog = Catalog(tmp_path / "does-not-exist")
    assert catalog.list() == [] and catalog.names() == []
    assert catalog.verify().ok
    assert not (tmp_path / "does-not-exist").exists(), "reading must not create the catalog"


def test_write_accepts_lazy_input_without_loading_it_twice(catalog):
    calls = []

    def block(x):
        if x.shape == (3, 3):  # dask also calls it on tiny arrays to infer the dtype
            calls.append(1)
        return x

    ds = demo_dataset()
    lazy = ds.assign(
        x=(("sample", "space"), da.from_array(ds["x"].values, chunks=(3, 3)).map_blocks(block), {"units": "m"})
    )
    ref = catalog.write(lazy, "lazy")
    np.testing.assert_array_equal(catalog.open(ref)["x"].values, ds["x"].values)
    assert len(calls) == 2, "each of the two chunks should be computed exactly once"


def test_large_variables_are_chunked_for_dask_and_read_back_exactly(catalog):
    values = np.random.default_rng(0).random((5000, 500))  # 20 MB: above the 16 MiB chunk size
    ds = xr.Dataset(
        {"x": (("sample", "space"), values, {"units": "m"}), "count": ("sample", np.arange(5000), {"units": "1"})},
        coords={"space": [f"s{i}" for i in range(500)]},
    )
    ref = catalog.write(ds, "big", kind=DEMO_KIND)
    x = catalog.open(ref)["x"]
    assert len(x.data.chunks[0]) == 2 and x.data.chunks[1] == (500,)
    np.testing.assert_array_equal(x.values, values)


def test_benchmark_writes_its_numbers(tmp_path):
    from data_catalog import benchmark

    out = tmp_path / "bench.json"
    benchmark.main(["--sizes-mb", "0.1", "--repeat", "1", "--small-files", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "catalog-io" and result["results"][0]["write_s"] > 0
    small = result["small_files"]
    assert small["files"] == 2 and small["catalog_reader_ms_per_file"] > 0 and small["h5netcdf_engine_ms_per_file"] > 0
