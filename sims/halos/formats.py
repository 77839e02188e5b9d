"""Halo catalog formats as registered readers, each declaring the options it reads.

A :class:`HaloReader` names its format, what its path is, the function that streams the source as
``halos.catalog`` chunks (which imports its reader when called) and its :class:`ReaderOption` s:
the option's command-line flag, whether it is required, and how its value is checked. Commands and
flows ask this registry which formats exist and which options apply (the way xarray registers
its backends), so no code elsewhere says "option X only with format Y". :func:`register_reader`
adds a format.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from sims.halos.catalog import HaloCatalogError, HaloOptionError, checked_number


@dataclass(frozen=True)
class ReaderOption:
    """One option of a reader: its keyword, its flag on the command line, and its check (which
    returns the value to use and raises :class:`HaloOptionError` naming the flag)."""

    name: str
    flag: str
    help: str
    required: bool = False
    check: Callable[[Any, str], Any] | None = None


@dataclass(frozen=True)
class HaloReader:
    """A halo catalog format: ``read(path, chunk_halos=..., **options)`` returns an iterator of chunks."""

    name: str
    description: str
    read: Callable[..., Iterator[xr.Dataset]]
    options: tuple[ReaderOption, ...] = ()

    def option(self, name: str) -> ReaderOption | None:
        return next((o for o in self.options if o.name == name), None)


def _snapshot(value: Any, flag: str) -> int:
    return checked_number(value, flag, integer=True, low=0, error=HaloOptionError)


def _log_mass(value: Any, flag: str) -> float:  # NaN would compare False and cut nothing
    return checked_number(value, f"{flag} (log10 M200m in Msun/h)", low=0.0, high=20.0, error=HaloOptionError)


def _files(value: Any, flag: str) -> list[str]:
    paths = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise HaloOptionError(f"{flag}: expected file paths, got {paths!r}")
    return [os.fspath(p) for p in paths]


def _path(value: Any, flag: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise HaloOptionError(f"{flag}: expected a path, got {value!r}")
    return os.fspath(value)


_READERS: dict[str, HaloReader] = {}


def register_reader(reader: HaloReader, *, replace: bool = False) -> HaloReader:
    if reader.name in _READERS and not replace:
        raise ValueError(f"a halo reader named {reader.name!r} is registered already")
    _READERS[reader.name] = reader
    return reader


def unregister_reader(name: str) -> None:
    _READERS.pop(name, None)


def readers() -> dict[str, HaloReader]:
    """The registered formats by name, in registration order."""
    return dict(_READERS)


def get_reader(name: str) -> HaloReader:
    try:
        return _READERS[name]
    except KeyError:
        raise HaloOptionError(f"--format {name}: unknown format; choose from {', '.join(_READERS)}") from None


def checked_options(reader: HaloReader, path: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given (not None, not empty) checked against what ``reader`` reads: an option of
    another format, a missing required option and a bad value are :class:`HaloOptionError` s
    naming the flag."""
    given = {k: v for k, v in options.items() if v is not None and not (isinstance(v, (list, tuple)) and not v)}
    problems = []
    for name in given:
        if reader.option(name) is None:
            others = [r for r in _READERS.values() if r.option(name) is not None]
            flag = others[0].option(name).flag if others else f"--{name.replace('_', '-')}"
            where = " or ".join(f"--format {r.name}" for r in others) or "no format"
            problems.append(f"{flag} is only read with {where}, not {reader.name}")
    if problems:
        raise HaloOptionError("; ".join(problems))
    checked = {}
    for option in reader.options:
        if option.name not in given:
            if option.required:
                raise HaloOptionError(f"{path}: --format {reader.name} needs {option.flag} ({option.help})")
            continue
        value = given[option.name]
        checked[option.name] = option.check(value, option.flag) if option.check else value
    return checked


def guess_format(path: str | os.PathLike[str]) -> str | None:
    """The format a file looks like from its first bytes: ``hdf5``, ``rockstar`` (a Rockstar list or
    binary file), ``ctrees`` (a consistent-trees list), or None (a folder, or none of these)."""
    import h5py

    from sims.halos.rockstar import _is_rockstar_binary, read_rockstar_header

    path = Path(path)
    if not path.is_file():
        return None
    if h5py.is_hdf5(path):
        return "hdf5"
    if _is_rockstar_binary(path):
        return "rockstar"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the header is read again, and warned about, by its reader
            return read_rockstar_header(path).writer
    except (HaloCatalogError, OSError):
        return None


def read_source(path: str | os.PathLike[str], format: str, *, chunk_halos: int, **options: Any) -> Iterator[xr.Dataset]:
    """The chunks of ``path`` read by the reader of ``format``, its options checked first. A file
    given as the canonical HDF5 that is a halo finder's list is refused naming the format to use."""
    reader = get_reader(format)
    checked = checked_options(reader, path, options)
    if format == "hdf5":
        guessed = guess_format(path)
        if guessed not in (None, "hdf5"):
            raise HaloOptionError(
                f"{path}: {readers()[guessed].description}, not the canonical halo HDF5 file; read it with "
                f"--format {guessed}"
            )
    return reader.read(path, chunk_halos=chunk_halos, **checked)


def _read_tng(path: Any, *, chunk_halos: int, snapshot: int, **options: Any) -> Iterator[xr.Dataset]:
    from sims.halos.tng import iter_tng

    hydro = options.pop("hydro", None)
    return iter_tng(path, snapshot, chunk_halos=chunk_halos, hydro_base_path=hydro, **options)


def _read_rockstar(path: Any, *, chunk_halos: int, particles: list[str] | None = None) -> Iterator[xr.Dataset]:
    from sims.halos.rockstar import iter_rockstar

    return iter_rockstar(path, particles, chunk_halos=chunk_halos)


def _read_ctrees(path: Any, *, chunk_halos: int, snapshot: int | None = None) -> Iterator[xr.Dataset]:
    from sims.halos.rockstar import iter_ctrees

    return iter_ctrees(path, chunk_halos=chunk_halos, snapshot=snapshot)


def _read_hdf5(path: Any, *, chunk_halos: int) -> Iterator[xr.Dataset]:
    from sims.halos.readers import iter_hdf5

    return iter_hdf5(path, chunk_halos=chunk_halos)


register_reader(
    HaloReader(
        "tng",
        "an IllustrisTNG-style run: its output folder with groups_NNN/ (and snapdir_NNN/)",
        _read_tng,
        (
            ReaderOption("snapshot", "--snapshot", "the snapshot number", required=True, check=_snapshot),
            ReaderOption("min_log_mass", "--min-log-mass", "keep log10 M200m >= this, Msun/h", check=_log_mass),
            ReaderOption("matching", "--matching", "the dark-to-hydro matching file", check=_path),
            ReaderOption("hydro", "--hydro", "the hydro twin's output folder", check=_path),
        ),
    )
)
register_reader(
    HaloReader(
        "rockstar",
        "a Rockstar halo list (out_*.list, halos_*.ascii, halos_*.bin)",
        _read_rockstar,
        (ReaderOption("particles", "--particles", "its .particles files", check=_files),),
    )
)
register_reader(
    HaloReader(
        "ctrees",
        "a consistent-trees halo list (hlist_*.list; tree_*.dat with --snapshot)",
        _read_ctrees,
        # no --particles: Rockstar's particle files name their halos by the Rockstar ID (Orig_halo_ID),
        # not by the consistent-trees id; particles come from --particles-snapshot
        (ReaderOption("snapshot", "--snapshot", "the snapshot of a tree file's rows", check=_snapshot),),
    )
)
register_reader(HaloReader("hdf5", "the canonical halo HDF5 file", _read_hdf5))
