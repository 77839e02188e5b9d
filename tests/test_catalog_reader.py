"""The catalog's own file reader (h5py) gives exactly what xarray's h5netcdf engine gives."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import xarray as xr
from support import DEMO_KIND, PENDULUM_RAW_KIND, demo_dataset, pendulum_dataset

import data_catalog.store as store
from data_catalog import read_dataset_file
from data_catalog.h5read import AS_STORED, CatalogFileStore, NotCatalogLayout
from data_catalog.hashing import content_sha256


def _odd_dataset() -> xr.Dataset:
    """A 0-d variable, a coordinate that is not a dimension, and attributes of every stored type."""
    ds = demo_dataset(n=5)
    ds["total"] = ((), 3.5, {"units": "kg"})
    ds = ds.assign_coords(tag=("sample", np.array(["a", "bb", "", "ünï", "e"]), {"note": "per sample"}))
    ds.attrs.update(
        count=np.int64(7), ratio=0.25, words=["one", "two"], single=["alone"], values=np.arange(3.0), text="é ø"
    )
    return ds


def _empty_dataset() -> xr.Dataset:
    """No samples: h5netcdf stores an empty dimension as unlimited."""
    ds = demo_dataset(n=0)
    return ds.assign(label=ds["label"].astype(str))


def _pendulum_dataset() -> xr.Dataset:
    return pendulum_dataset(n=12, steps=4).assign_attrs(kind=PENDULUM_RAW_KIND)


CASES = {"demo": lambda: demo_dataset(n=6), "empty": _empty_dataset, "odd": _odd_dataset, "pendulum": _pendulum_dataset}


def _same_attrs(a, b, where):
    assert list(a) == list(b), where
    for key in a:
        assert type(a[key]) is type(b[key]), (where, key, a[key], b[key])
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (where, key)


def _assert_same(ours: xr.Dataset, reference: xr.Dataset):
    xr.testing.assert_identical(ours, reference)
    assert list(ours.variables) == list(reference.variables)
    assert ours.encoding.get("unlimited_dims") == reference.encoding.get("unlimited_dims")
    _same_attrs(ours.attrs, reference.attrs, "dataset")
    for name, var in reference.variables.items():
        mine = ours.variables[name]
        _same_attrs(mine.attrs, var.attrs, name)
        assert mine.dtype == var.dtype and type(mine.data) is type(var.data), name
        assert mine.chunks == var.chunks, name
        assert mine.encoding.keys() == var.encoding.keys(), name
        for key, value in var.encoding.items():
            assert np.array_equal(mine.encoding[key], value) if key != "dtype" else mine.encoding[key] == value, (
                name,
                key,
            )


@pytest.mark.parametrize("chunk_bytes", [None, 64], ids=["contiguous", "chunked"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_stored_layout_reads_as_h5netcdf_reads_it(catalog, monkeypatch, case, chunk_bytes):
    if chunk_bytes:
        monkeypatch.setattr(store, "_CHUNK_BYTES", chunk_bytes)  # HDF5 chunks, and with them dask chunks
    ref = catalog.write(CASES[case](), case)
    path = catalog.path_of(ref)
    with h5py.File(path) as f:
        assert any(ds.chunks for ds in f.values()) == (bool(chunk_bytes) or case == "empty")  # empty: unlimited
    for lazy in (False, True):
        chunks = {} if lazy else None
        with xr.open_dataset(path, engine="h5netcdf", chunks=chunks, **AS_STORED) as reference:
            with read_dataset_file(path, lazy=lazy) as ours:
                _assert_same(ours, reference)
                ours.load(), reference.load()
                _assert_same(ours, reference)


@pytest.mark.parametrize("case", sorted(CASES))
def test_files_hashed_through_h5netcdf_verify_and_deduplicate(catalog, case):
    """The recorded content hash is the one the h5netcdf engine gives, so versions written before
    this reader verify, and the same content written again is recognised."""
    ref = catalog.write(CASES[case](), case)
    path = catalog.path_of(ref)
    with store._open_stored(path) as (_, identity):
        with xr.open_dataset(path, engine="h5netcdf", **AS_STORED) as reference:
            assert content_sha256(reference, identity) == catalog.stored_hash(ref)
    assert not catalog.verify(ref).corrupt
    assert catalog.write(CASES[case](), case) == ref


def test_another_layout_falls_back_to_h5netcdf(catalog, tmp_path):
    ref = catalog.write(demo_dataset(n=4), "demo")
    other = tmp_path / "with-group.h5"
    other.write_bytes(catalog.path_of(ref).read_bytes())
    with h5py.File(other, "r+") as f:
        f.create_group("extra")
    with pytest.raises(NotCatalogLayout, match="'extra' is a group"):
        CatalogFileStore(other)
    with (
        xr.open_dataset(other, engine="h5netcdf", **AS_STORED) as reference,
        read_dataset_file(other, lazy=False) as ds,
    ):
        xr.testing.assert_identical(ds, reference)


def test_a_lazy_variable_reads_in_another_process(catalog, monkeypatch):
    """Dask tasks travel to workers pickled: the file reopens there."""
    monkeypatch.setattr(store, "_CHUNK_BYTES", 64)
    ds = demo_dataset(n=40)
    ref = catalog.write(ds, "demo", kind=DEMO_KIND)
    with catalog.open(ref) as opened:
        data = opened["x"].data
        assert len(data.chunks[0]) > 1
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(data)).compute(), ds["x"].values)
