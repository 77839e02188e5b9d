"""Content hash of a dataset: sha256 over a canonical encoding of its data and identifying attributes.

The encoding is independent of the HDF5 layout, of chunking and of library versions: variables in
name order; for each its name, dims, shape, canonical dtype and attributes as canonical JSON, then
its values in C order as little-endian bytes (strings as length-prefixed UTF-8). Attributes whose
names start with '_' belong to the file format (fill values, netCDF bookkeeping) and are skipped;
the catalog refuses such names in user attributes, so nothing a user gives is left out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .filesystem import open_regular_file
from .schema import RESERVED_ATTRS

HASH_FORMAT = b"eqs-content-sha256/1"
_BLOCK_BYTES = 32 * 2**20


def normalize_value(value: Any) -> Any:
    """Plain JSON-compatible Python for attribute and parameter values (numpy scalars and arrays,
    tuples); a one-element sequence becomes its element because netCDF reads it back as a scalar."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, (list, tuple)):
        items = [normalize_value(v) for v in value]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            items = np.asarray(items).tolist()  # [1, 2.5] is stored as [1.0, 2.5]
        return items[0] if len(items) == 1 else items
    if isinstance(value, Mapping):
        return {str(k): normalize_value(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"value of type {type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, numpy values as plain numbers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def user_attrs(attrs: Mapping[str, Any], reserved: Sequence[str] = RESERVED_ATTRS) -> dict[str, Any]:
    """The attributes that belong to the content: not reserved by the catalog, not format-internal."""
    return {k: normalize_value(v) for k, v in attrs.items() if k not in reserved and not k.startswith("_")}


def identity(
    *, kind: str, params: Mapping[str, Any] | None, seed: int | None, parents: Sequence[str], attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """The identifying metadata that enters the content hash besides the data."""
    return {
        "kind": kind,
        "params": json.loads(canonical_json(params or {})),
        "seed": seed,
        "parents": list(parents),
        "attrs": user_attrs(attrs),
    }


def _canonical_dtype(var: xr.Variable) -> str:
    kind = var.dtype.kind
    if kind in "fiu":
        return var.dtype.newbyteorder("<").str
    if kind == "b":
        return "bool"
    if kind in "UO":
        return "str"
    raise TypeError(f"dtype {var.dtype} cannot be hashed")


def _blocks(var: xr.Variable) -> Iterator[np.ndarray]:
    """The variable's values in C order, in blocks along its first axis (bounded memory)."""
    if var.ndim == 0:
        yield np.asarray(var.values)
        return
    row = max(1, math.prod(var.shape[1:]) * max(var.dtype.itemsize, 8))
    step = max(1, _BLOCK_BYTES // row)
    for start in range(0, var.shape[0], step):
        yield np.asarray(var[start : start + step].values)


def _update_bytes(h: "hashlib._Hash", data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _update_values(h: "hashlib._Hash", name: str, block: np.ndarray) -> None:
    kind = block.dtype.kind
    if kind in "fiu":
        h.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).tobytes())
    elif kind == "b":
        h.update(np.ascontiguousarray(block, dtype=np.uint8).tobytes())
    else:
        for item in block.ravel():
            if not isinstance(item, str):
                raise TypeError(f"variable {name!r} holds a {type(item).__name__}, expected str")
            _update_bytes(h, item.encode("utf-8"))


def variable_headers(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Everything about each variable except its values, in canonical form."""
    return {
        str(name): {
            "name": str(name),
            "dims": [str(d) for d in var.dims],
            "shape": list(var.shape),
            "dtype": _canonical_dtype(var),
            "coordinate": name in ds.coords,
            "attrs": user_attrs(var.attrs, reserved=()),
        }
        for name, var in ds.variables.items()
    }


def content_sha256(ds: xr.Dataset, ident: Mapping[str, Any]) -> str:
    """Hex sha256 of ``ds``'s variables (coordinates included) and the identifying metadata."""
    h = hashlib.sha256()
    _update_bytes(h, HASH_FORMAT)
    _update_bytes(h, canonical_json(ident).encode())
    headers = variable_headers(ds)
    for name in sorted(ds.variables, key=str):
        _update_bytes(h, canonical_json(headers[str(name)]).encode())
        for block in _blocks(ds.variables[name]):
            _update_values(h, str(name), block)
    return h.hexdigest()


def metadata_differences(expected: xr.Dataset, stored: xr.Dataset, ident: Mapping[str, Any], stored_ident: Mapping[str, Any]) -> list[str]:
    """How the metadata of a dataset changed on its way through the file (empty when it did not)."""
    problems = []
    if canonical_json(ident) != canonical_json(stored_ident):
        problems.append("global attributes or catalog metadata change when stored")
    before, after = variable_headers(expected), variable_headers(stored)
    for name in sorted(set(before) | set(after)):
        if name not in after:
            problems.append(f"variable {name!r} is lost when stored")
        elif name not in before:
            problems.append(f"variable {name!r} appears when stored")
        else:
            for key in ("dims", "shape", "dtype", "coordinate", "attrs"):
                if canonical_json(before[name][key]) != canonical_json(after[name][key]):
                    problems.append(
                        f"variable {name!r}: {key} {before[name][key]!r} is stored as {after[name][key]!r} "
                        "(netCDF/xarray conventions reinterpret it; rename or restructure the variable)"
                    )
    return problems


def file_sha256(path: str, chunk: int = 4 * 2**20) -> str:
    """Hex sha256 of a file's bytes (the integrity checksum kept beside each stored version); only a
    regular file is read (see :mod:`data_catalog.filesystem`)."""
    h = hashlib.sha256()
    with open(open_regular_file(path), "rb") as f:
        while data := f.read(chunk):
            h.update(data)
    return h.hexdigest()
