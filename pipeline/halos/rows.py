"""Particle rows of a halo catalog as the scalar tasks read them: block by block, into reused buffers.

A task reduces its halos' particles block by block (a few hundred thousand rows at a time). Rows
stored in a plain HDF5 dataset of a file (the catalog's files, or any netCDF-4 file opened lazily)
are read with h5py straight into buffers the task's thread keeps from block to block. Reading each
block into a fresh array instead costs a page fault per 4 KiB in a dask worker's threads, whose
memory the allocator returns to the system after every block: there it made the reads about three
times slower than into a reused buffer. Rows that are not a plain stored dataset (decoded, renamed,
computed with dask, or in memory) are read through xarray or dask, or sliced as they are.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import xarray as xr

# the prefixes of the dask layers of a variable opened with chunks
_AS_OPENED = ("open_dataset-", "original-open_dataset-")
# encodings under which xarray's values differ from the stored ones
_DECODING = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")


@dataclass(frozen=True)
class FileRows:
    """Rows ``first:last`` of the HDF5 dataset ``name`` in the file ``path``, read by the task."""

    path: str
    name: str
    first: int
    last: int


def stored_dataset(variable: xr.Variable, name: str) -> str | None:
    """The path of the HDF5 file whose root dataset ``name`` holds exactly ``variable``'s values, else None.

    Only for a variable as opened (lazily indexed, or dask chunks straight from the file with no
    operation after them) and not decoded; the dataset must have its shape and dtype. A renamed
    variable is read through xarray: with dask chunks, its layers carry the stored name; without,
    its first and last rows must equal the dataset's.
    """
    if not variable.ndim or not variable.shape[0]:
        return None
    if variable.chunks is not None:
        # xarray names the layers after the stored variable, and any operation adds another
        layers = [str(k) for k in getattr(getattr(variable.data, "dask", None), "layers", ["?"])]
        if not all(k.startswith(_AS_OPENED) for k in layers) or f"open_dataset-{name}-" not in {
            k[: len(f"open_dataset-{name}-")] for k in layers
        }:
            return None
    elif getattr(variable, "_in_memory", True):
        return None
    source = variable.encoding.get("source")
    encoded = variable.encoding.get("dtype", variable.dtype)
    if not isinstance(source, str) or np.dtype(encoded) != variable.dtype:
        return None
    if any(key in variable.attrs or not _no_op(key, variable.encoding.get(key)) for key in _DECODING):
        return None
    try:
        if not h5py.is_hdf5(source):
            return None
        with h5py.File(source, "r") as f:
            stored = f.get(name)
            if not isinstance(stored, h5py.Dataset) or stored.shape != variable.shape or stored.dtype != variable.dtype:
                return None
            ends = [0, variable.shape[0] - 1]
            if variable.chunks is None and not np.array_equal(stored[ends], variable[ends].values, equal_nan=True):
                return None
    except OSError:
        return None
    return source


def _no_op(key: str, value: Any) -> bool:
    """Whether decoding with this encoding leaves the values as stored (none, or a NaN fill value of floats)."""
    if value is None:
        return True
    if key in ("_FillValue", "missing_value"):
        values = np.atleast_1d(np.asarray(value))
        return values.dtype.kind == "f" and bool(np.isnan(values).all())
    return False


_BUFFERS = threading.local()


def _buffer(slot: str, rows: int, row_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``rows`` rows of this thread's buffer ``slot``, grown when too small and kept for the next block."""
    buffers = _BUFFERS.__dict__.setdefault("buffers", {})
    key = (slot, row_shape, np.dtype(dtype))
    held = buffers.get(key)
    if held is None or held.shape[0] < rows:
        held = buffers[key] = np.empty((rows, *row_shape), dtype=dtype)
    return held[:rows]


@contextlib.contextmanager
def block_readers(
    sources: Sequence[FileRows | xr.Variable | np.ndarray], factors: Sequence[float]
) -> Iterator[list[Callable[[int, int], np.ndarray]]]:
    """One reader per source: ``read(first, last)`` gives its rows ``first:last`` (relative to the
    source), multiplied by its unit factor in float64 when that is not 1, else as stored.

    A reader's array is valid until its next call (it may be a view of a reused buffer). HDF5 files
    are open while the context is.
    """
    with contextlib.ExitStack() as stack:
        files: dict[str, h5py.File] = {}
        readers = []
        for slot, (source, factor) in enumerate(zip(sources, factors, strict=True)):
            if isinstance(source, FileRows):
                if source.path not in files:
                    files[source.path] = stack.enter_context(h5py.File(source.path, "r"))
                raw = _file_reader(files[source.path][source.name], source.first, f"rows{slot}")
            elif isinstance(source, xr.Variable):
                raw = lambda first, last, rows=source: np.asarray(rows[first:last].values)  # noqa: E731
            else:
                raw = lambda first, last, rows=source: np.asarray(rows)[first:last]  # noqa: E731
            readers.append(raw if factor == 1.0 else _scaled(raw, factor, f"scaled{slot}"))
        yield readers


def _file_reader(dataset: h5py.Dataset, offset: int, slot: str) -> Callable[[int, int], np.ndarray]:
    def read(first: int, last: int) -> np.ndarray:
        out = _buffer(slot, last - first, dataset.shape[1:], dataset.dtype)
        if last > first:
            dataset.read_direct(out, np.s_[offset + first : offset + last])
        return out

    return read


def _scaled(raw: Callable[[int, int], np.ndarray], factor: float, slot: str) -> Callable[[int, int], np.ndarray]:
    def read(first: int, last: int) -> np.ndarray:
        values: Any = raw(first, last)
        # in float64 whatever the stored dtype, as the kernel accumulates
        return np.multiply(values, np.float64(factor), out=_buffer(slot, len(values), values.shape[1:], np.float64))

    return read
