"""Open the catalog's own netCDF-4 files through h5py, with xarray's decoding and laziness.

xarray's h5netcdf engine spends most of an open in h5netcdf's per-variable metadata (dimension
scales and HDF5 objects looked up again on every property access): for the small files a flow
writes, about 100 times the cost of reading all their bytes with h5py. This store reads the
structure in one h5py pass and gives xarray the same variables, attributes (decoded by h5netcdf's
own attribute class) and encodings, so that xarray's CF decoding, dask chunking and file caching
are unchanged. It takes the layout the catalog writes (one root group, every dimension a
dimension scale, no unlimited or phony dimensions, numbers, booleans and variable-length strings);
anything else raises ``NotCatalogLayout`` and the caller falls back to the h5netcdf engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from h5netcdf.attrs import Attributes
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.backends.common import AbstractDataStore
from xarray.backends.file_manager import CachingFileManager
from xarray.backends.locks import HDF5_LOCK
from xarray.backends.store import StoreBackendEntrypoint
from xarray.coding.strings import create_vlen_dtype
from xarray.core import indexing
from xarray.core.utils import FrozenDict
from xarray.core.variable import Variable

#: ``xr.open_dataset`` options that give the values as stored: no time decoding, no fill-value masking,
#: no in-memory cache of what was read (the catalog's reads and the halo catalog reader)
AS_STORED: dict[str, Any] = {"decode_times": False, "decode_timedelta": False, "mask_and_scale": False, "cache": False}

# the netCDF-4 bookkeeping attribute that marks a dimension without a coordinate variable
_DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"


class NotCatalogLayout(Exception):
    """The file is valid HDF5 but not laid out as the catalog writes it."""


def _attributes(obj: h5py.HLObject) -> dict[str, Any]:
    """Attributes as xarray's h5netcdf store reads them: h5netcdf's decoding, then bytes to text."""
    out = {}
    for key, value in Attributes(obj.attrs, lambda dtype: None, h5py).items():
        if key not in ("_FillValue", "missing_value") and isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise NotCatalogLayout(f"attribute {key!r} is not UTF-8") from None
        out[key] = value
    return out


class _Array(BackendArray):
    """One variable, read through the store's cached h5py file under the HDF5 lock."""

    __slots__ = ("dtype", "is_text", "manager", "name", "shape")

    def __init__(self, manager: CachingFileManager, name: str, shape: tuple[int, ...], dtype, is_text: bool):
        self.manager, self.name, self.shape, self.dtype, self.is_text = manager, name, shape, dtype, is_text

    def __getitem__(self, key):
        # h5py takes at most one integer-array axis, in increasing order, as h5netcdf does
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._read)

    def _read(self, key):
        with HDF5_LOCK:
            ds = self.manager.acquire()[self.name]
            return np.asarray((ds.asstr() if self.is_text else ds)[key], dtype=self.dtype if self.is_text else None)


class CatalogFileStore(AbstractDataStore):
    """The variables, attributes and dimensions of one catalog file, read in one pass."""

    def __init__(self, path: str | Path):
        self._path = str(path)
        self._manager = CachingFileManager(h5py.File, self._path, mode="r")
        try:
            with HDF5_LOCK:
                self._variables, self._attrs, self._dims, self._unlimited = self._scan(self._manager.acquire())
        except BaseException:
            self._manager.close()
            raise

    def _scan(self, f: h5py.File):
        dims: dict[str, int] = {}
        unlimited: set[str] = set()
        entries = []
        for name, obj in f.items():
            if not isinstance(obj, h5py.Dataset):
                raise NotCatalogLayout(f"{name!r} is a group")
            is_scale = h5py.h5ds.is_scale(obj.id)
            if is_scale:
                if obj.ndim != 1:
                    raise NotCatalogLayout(f"dimension scale {name!r} is not one-dimensional")
                dims[name] = obj.shape[0]
                if obj.maxshape == (None,):  # h5netcdf stores an empty dimension as unlimited
                    unlimited.add(name)
                if bytes(obj.attrs.get("NAME", b"")).startswith(_DIMENSION_ONLY):
                    continue
            entries.append((name, obj, is_scale))
        variables = {}
        for name, obj, is_scale in entries:
            variables[name] = self._variable(f, name, obj, dims, is_scale)
        return variables, _attributes(f), dims, unlimited

    def _variable(self, f: h5py.File, name: str, obj: h5py.Dataset, dims: dict[str, int], is_scale: bool) -> Variable:
        if is_scale:
            names = (name,)
        elif obj.ndim == 0:
            names = ()
        else:
            refs = obj.attrs.get("DIMENSION_LIST")
            if refs is None or len(refs) != obj.ndim:
                raise NotCatalogLayout(f"{name!r} has no dimension scale on every axis")
            names = tuple(f[axis[0]].name.rsplit("/", 1)[-1] for axis in refs)
        if any(dims.get(d) != n for d, n in zip(names, obj.shape, strict=True)):
            # shorter than an unlimited dimension: h5netcdf pads it, which this store does not
            raise NotCatalogLayout(f"{name!r} does not match its dimensions' lengths")
        text = h5py.check_string_dtype(obj.dtype)
        if text is not None and text.length is None:
            dtype, encoded = create_vlen_dtype(str), str
        elif obj.dtype.kind in "biuf":
            dtype = encoded = obj.dtype
        else:
            raise NotCatalogLayout(f"{name!r} has dtype {obj.dtype}, which the catalog does not write")
        encoding: dict[str, Any] = {"dtype": encoded}
        if obj.chunks:
            encoding.update(contiguous=False, chunksizes=obj.chunks, preferred_chunks=dict(zip(names, obj.chunks)))
        else:
            encoding.update(contiguous=True, chunksizes=None)
        encoding.update(
            zlib=obj.compression == "gzip", szip=False, bzip2=False, blosc=False, zstd=False,
            shuffle=obj.shuffle, fletcher32=obj.fletcher32,
        )  # fmt: skip
        if obj.compression == "gzip":
            encoding["complevel"] = obj.compression_opts
        elif obj.compression is not None:
            raise NotCatalogLayout(f"{name!r} is compressed with {obj.compression}")
        data = indexing.LazilyIndexedArray(_Array(self._manager, name, obj.shape, dtype, text is not None))
        encoding.update(source=self._path, original_shape=obj.shape)
        return Variable(names, data, _attributes(obj), encoding)

    def get_variables(self):
        return FrozenDict(self._variables)

    def get_attrs(self):
        return FrozenDict(self._attrs)

    def get_dimensions(self):
        return FrozenDict(self._dims)

    def get_encoding(self):
        return {"unlimited_dims": set(self._unlimited)}

    def close(self, **kwargs):
        self._manager.close(**kwargs)


class CatalogFileEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine=CatalogFileEntrypoint, ...)`` for files the catalog wrote."""

    description = "netCDF-4 files in the layout the eqs data catalog writes, read through h5py"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "mask_and_scale", "decode_times",
                               "decode_timedelta", "decode_coords", "concat_characters", "use_cftime")  # fmt: skip

    def open_dataset(
        self,
        filename_or_obj,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale=True,
        decode_times=True,
        decode_timedelta=None,
        decode_coords=True,
        concat_characters=True,
        use_cftime=None,
    ):
        store = CatalogFileStore(filename_or_obj)
        try:
            return StoreBackendEntrypoint().open_dataset(
                store,
                mask_and_scale=mask_and_scale,
                decode_times=decode_times,
                concat_characters=concat_characters,
                decode_coords=decode_coords,
                drop_variables=drop_variables,
                use_cftime=use_cftime,
                decode_timedelta=decode_timedelta,
            )
        except BaseException:
            store.close()
            raise


def open_netcdf(path: str | Path, **options: Any):
    """``xr.open_dataset(path, **options)`` through this store, or through the h5netcdf engine for a
    file in another layout (a group, phony or padded dimensions, other dtypes or filters)."""
    try:
        return xr.open_dataset(path, engine=CatalogFileEntrypoint, **options)
    except NotCatalogLayout:
        return xr.open_dataset(path, engine="h5netcdf", **options)
