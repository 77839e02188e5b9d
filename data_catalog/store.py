"""The versioned, content-addressed HDF5 catalog.

Layout under the root (one directory per dataset name, one immutable file per version)::

    <root>/<name>/v<N>.h5          the dataset (netCDF4/HDF5 written by h5netcdf)
    <root>/<name>/v<N>.h5.sha256   checksum of the file's bytes (``sha256sum -c`` format)
    <root>/.tmp/                   files being written; never visible as versions
    <root>/.lock                   the writers' lock (fcntl)

A version exists exactly when its ``.h5`` file exists. A write goes to a temporary file, is read
back and hashed, fsynced, and linked into place under the lock, so a crash at any moment leaves
either the complete version or no version. Versions are never modified or overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from .errors import CatalogError, CatalogLayoutError, NotFoundError, SchemaError, UnreadableDatasetError
from .filesystem import (
    ensure_room,
    hdf5_write_errors,
    open_regular_file,
    require_directory,
    require_layout_file,
    require_regular_file,
    storage_failure,
)
from .h5read import AS_STORED, open_netcdf
from .hashing import (
    canonical_json,
    content_sha256,
    file_sha256,
    identity,
    metadata_differences,
    normalize_value,
    user_attrs,
)
from .names import Ref, format_ref, is_valid_name, parse_ref, validate_name
from .schema import RESERVED_ATTRS, storable_attrs, validate_dataset
from .version import code_version

#: Version of the on-disk format written by this code; files with a larger one are refused.
SCHEMA_VERSION = 1
ENV_VAR = "EQS_CATALOG"
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.h5")
_CHUNK_BYTES = 16 * 2**20


def default_root() -> Path:
    """``$EQS_CATALOG``, else ``$XDG_DATA_HOME/eqs/catalog``, else ``~/.local/share/eqs/catalog``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "eqs" / "catalog"


@dataclass(frozen=True)
class VariableInfo:
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    units: str | None
    is_coord: bool


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of one stored version, as recorded in its attributes."""

    ref: str
    name: str
    version: int
    kind: str
    content_sha256: str
    created_utc: str
    code_version: str
    schema_version: int
    params: dict[str, Any]
    seed: int | None
    parents: list[str]
    path: str
    size_bytes: int
    attrs: dict[str, Any] = field(default_factory=dict)
    variables: list[VariableInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    """The findings for one version: ``problems`` mean damage; ``warnings`` do not; ``transient``
    says that an operating-system error (I/O, permissions) stopped the check, so it may pass later."""

    ref: str
    path: str
    problems: list[str]
    warnings: list[str] = field(default_factory=list)
    transient: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class VerifyReport:
    results: list[VerifyResult]
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def corrupt(self) -> list[VerifyResult]:
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": len(self.results),
            "results": [
                {"ref": r.ref, "path": r.path, "ok": r.ok, "problems": r.problems, "warnings": r.warnings}
                for r in self.results
            ],
            "warnings": self.warnings,
        }


# -- reading single files -------------------------------------------------------------------------


def _attr_text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _decoded_attrs(attrs: Mapping[str, Any], path: str | Path) -> dict[str, Any]:
    """Global attributes as plain Python; an attribute that is not text or numbers is named."""
    decoded = {}
    for key, value in attrs.items():
        try:
            decoded[key] = normalize_value(_attr_text(value))
        except UnicodeDecodeError:
            raise UnreadableDatasetError(
                f"{path}: global attribute {key!r} holds binary data; catalog attributes are UTF-8 text or numbers"
            ) from None
    return decoded


def _reraise_os_error(exc: OSError) -> None:
    """Errors of the operating system (permissions, I/O, stale handles) pass through unchanged:
    they say nothing about the file's content and may be transient. Errors of the HDF5 format
    (truncated file, bad signature, bad checksum) come without errno."""
    if exc.errno is not None:
        raise exc


def read_file_attrs(path: str | Path) -> dict[str, Any]:
    """The global attributes of a stored dataset file, checked to be a readable catalog dataset.

    ``params`` and ``parents`` stay JSON text and ``seed`` stays as stored; :func:`decode_header`
    gives them as Python values.
    """
    path = Path(path)
    require_regular_file(path)
    try:
        with h5py.File(path, "r") as f:
            raw = dict(f.attrs.items())
    except Exception as exc:  # h5py also raises KeyError, RuntimeError ... on damaged structures
        if isinstance(exc, OSError):
            _reraise_os_error(exc)
        raise UnreadableDatasetError(
            f"{path}: cannot be read as HDF5 ({exc}); the file is truncated, corrupted or not HDF5. "
            "Run 'eqs catalog verify' to check the catalog."
        ) from exc
    attrs = _decoded_attrs(raw, path)
    if "schema_version" not in attrs:
        raise UnreadableDatasetError(
            f"{path}: not an eqs catalog dataset (global attribute 'schema_version' is missing)"
        )
    found = attrs["schema_version"]
    if not isinstance(found, int):
        raise UnreadableDatasetError(f"{path}: attribute 'schema_version' is {found!r}, expected an integer")
    if found > SCHEMA_VERSION:
        raise UnreadableDatasetError(
            f"{path}: written with schema_version {found}, but this eqs reads up to {SCHEMA_VERSION}; "
            "upgrade eqs to read it"
        )
    missing = [k for k in RESERVED_ATTRS if k not in attrs]
    if missing:
        raise UnreadableDatasetError(f"{path}: not a complete catalog dataset (attributes {missing} are missing)")
    decode_header(attrs, path)
    return attrs


def decode_header(attrs: Mapping[str, Any], path: str | Path = "") -> dict[str, Any]:
    """``params``, ``seed`` and ``parents`` of stored attributes as Python values, checked."""
    try:
        params = json.loads(attrs["params"])
        parents = json.loads(attrs["parents"])
        seed = None if attrs["seed"] == "none" else attrs["seed"]
        if not isinstance(params, dict):
            raise ValueError("params is not a JSON object")
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise ValueError("parents is not a JSON list of refs")
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed is {seed!r}, expected an integer or 'none'")
        if not isinstance(attrs["version"], int) or not isinstance(attrs["name"], str):
            raise ValueError("name or version has the wrong type")
    except (TypeError, ValueError) as exc:
        raise UnreadableDatasetError(f"{path}: damaged catalog attributes ({exc})") from None
    except RecursionError:
        raise UnreadableDatasetError(
            f"{path}: attribute 'params' or 'parents' is JSON nested too deeply to be read"
        ) from None
    return {"params": params, "parents": parents, "seed": seed}


def read_dataset_file(path: str | Path, *, lazy: bool = True) -> xr.Dataset:
    """Open a stored dataset file (lazily, dask-backed when ``lazy``), after checking its header.

    Values are returned as stored: no CF time decoding and no fill-value masking.
    """
    read_file_attrs(path)
    try:
        return open_netcdf(path, chunks={} if lazy else None, **AS_STORED)
    except Exception as exc:
        if isinstance(exc, OSError):
            _reraise_os_error(exc)
        raise UnreadableDatasetError(f"{path}: cannot be read as a netCDF/HDF5 dataset ({exc})") from exc


@contextlib.contextmanager
def _open_stored(path: str | Path) -> Iterator[tuple[xr.Dataset, dict[str, Any]]]:
    """A stored file's values as stored (lazily indexed, no dask) and its identifying metadata."""
    with read_dataset_file(path, lazy=False) as ds:
        attrs = _decoded_attrs(ds.attrs, path)
        yield ds, identity(kind=attrs["kind"], attrs=attrs, **decode_header(attrs, path))


def stored_content_sha256(path: str | Path) -> str:
    """Recompute the content hash of a stored file from its data and attributes."""
    try:
        with _open_stored(path) as (ds, ident):
            return content_sha256(ds, ident)
    except CatalogError:
        raise
    except Exception as exc:  # damaged data blocks surface as many exception types
        if isinstance(exc, OSError):
            _reraise_os_error(exc)
        raise UnreadableDatasetError(f"{path}: data cannot be read ({type(exc).__name__}: {exc})") from exc


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Stored values are exactly the caller's (no fill values); large variables are split into
    ~16 MiB HDF5 chunks along their first axis, which become the dask chunks of ``open``.

    No compression: on 256 MB of random float64, zlib level 1 with shuffle saved 15 % of the
    bytes and made writing ~70x slower (4.3 s against 0.06 s). Smooth fields may compress better;
    revisit if disk space, not time, becomes the limit.
    """
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        enc: dict[str, Any] = {}
        if var.dtype.kind in "fiub":
            enc["_FillValue"] = None
            if var.ndim and var.nbytes > _CHUNK_BYTES:
                row_bytes = max(1, var.nbytes // var.shape[0])
                enc["chunksizes"] = (max(1, _CHUNK_BYTES // row_bytes), *var.shape[1:])
        encoding[str(name)] = enc
    return encoding


# -- the catalog ----------------------------------------------------------------------------------


class Catalog:
    """A directory of versioned, immutable, content-addressed datasets.

    Several processes may read and write one catalog at once (on one machine, or on a shared file
    system whose locks work across machines, such as NFSv4).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = (Path(root).expanduser() if root is not None else default_root()).absolute()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # -- lookup --

    def _name_dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def path_of(self, ref: str | Ref) -> Path:
        """The file of a reference (resolved to a concrete version).

        Raises :class:`UnreadableDatasetError` when the dataset's folder is a symbolic link: every
        file the catalog opens lies inside it."""
        parsed = parse_ref(self.resolve(ref))
        folder = self._name_dir(parsed.name)
        if folder.is_symlink():
            raise UnreadableDatasetError(
                f"{folder}: is a symbolic link to {os.readlink(folder)}; a dataset folder must be a "
                "directory inside the catalog"
            )
        return folder / f"v{parsed.version}.h5"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [
            entry.name
            for entry in sorted(self.root.iterdir())
            if entry.is_dir() and is_valid_name(entry.name) and self.versions(entry.name)
        ]

    def versions(self, name: str) -> list[int]:
        """The versions of ``name`` in increasing order (empty if the name does not exist)."""
        directory = self._name_dir(name)
        if not directory.is_dir():
            return []
        found = (_VERSION_FILE.fullmatch(p.name) for p in directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def refs(self, *, all_versions: bool = True) -> list[str]:
        """Every stored version as ``name@vN`` (or only the latest of each name), by name, oldest first."""
        if not all_versions:
            return [self.resolve(n) for n in self.names()]
        return [format_ref(n, v) for n in self.names() for v in self.versions(n)]

    def resolve(self, ref: str | Ref) -> str:
        """``name``, ``name@latest`` or ``name@vN`` -> the concrete ``name@vN`` that exists."""
        parsed = parse_ref(ref)
        versions = self.versions(parsed.name)
        if not versions:
            known = self.names()
            hint = f" (datasets: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''})" if known else ""
            raise NotFoundError(f"no dataset named {parsed.name!r} in catalog {self.root}{hint}")
        if parsed.version is None:
            return format_ref(parsed.name, versions[-1])
        if parsed.version not in versions:
            raise NotFoundError(
                f"{parsed} does not exist in catalog {self.root}; versions of {parsed.name!r}: "
                + ", ".join(f"v{v}" for v in versions)
            )
        return str(parsed)

    def stored_hash(self, ref: str | Ref) -> str:
        """The content hash recorded for a version (cheap: reads one attribute)."""
        return str(read_file_attrs(self.path_of(ref))["content_sha256"])

    # -- reading --

    def open(self, ref: str | Ref) -> xr.Dataset:
        """Open a version lazily (dask-backed); ``name`` alone opens the latest version."""
        return read_dataset_file(self.path_of(ref))

    def info(self, ref: str | Ref, *, variables: bool = True) -> DatasetInfo:
        """Metadata and variable summary of one version; ``variables=False`` leaves the summary out
        (empty) and reads the file's attributes alone, several times faster than opening the dataset."""
        resolved = self.resolve(ref)
        path = self.path_of(resolved)
        attrs = read_file_attrs(path)
        header = decode_header(attrs, path)
        return DatasetInfo(
            ref=resolved,
            name=str(attrs["name"]),
            version=int(attrs["version"]),
            kind=str(attrs["kind"]),
            content_sha256=str(attrs["content_sha256"]),
            created_utc=str(attrs["created_utc"]),
            code_version=str(attrs["code_version"]),
            schema_version=int(attrs["schema_version"]),
            params=header["params"],
            seed=header["seed"],
            parents=header["parents"],
            path=str(path),
            size_bytes=path.stat().st_size,
            attrs=user_attrs(attrs),
            variables=self._variables(path) if variables else [],
        )

    @staticmethod
    def _variables(path: Path) -> list[VariableInfo]:
        with read_dataset_file(path) as ds:
            return [
                VariableInfo(
                    name=str(n),
                    dims=tuple(str(d) for d in v.dims),
                    shape=tuple(int(s) for s in v.shape),
                    dtype=str(v.dtype),
                    units=v.attrs.get("units"),
                    is_coord=n in ds.coords,
                )
                for n, v in ds.variables.items()
            ]

    def list(self, *, all_versions: bool = False) -> list[DatasetInfo]:
        """The latest version of every name (or every version), sorted by name and version."""
        return [self.info(r) for r in self.refs(all_versions=all_versions)]

    def lineage(self, ref: str | Ref) -> dict[str, dict[str, Any]]:
        """The ancestry graph of ``ref``: ``{ref: {"kind", "created_utc", "parents", "missing", "error"}}``,
        starting with ``ref`` itself, every ancestor once. Ancestors that no longer exist are
        marked ``missing``; unreadable ones carry the reason in ``error``."""
        graph: dict[str, dict[str, Any]] = {}
        stack = [self.resolve(ref)]
        while stack:
            current = stack.pop()
            if current in graph:
                continue
            node: dict[str, Any] = {"kind": None, "created_utc": None, "parents": [], "missing": False, "error": None}
            graph[current] = node
            try:
                attrs = read_file_attrs(self.path_of(current))
            except (NotFoundError, FileNotFoundError):
                node["missing"] = True
                continue
            except UnreadableDatasetError as exc:
                node["error"] = str(exc)
                continue
            parents = decode_header(attrs)["parents"]
            node.update(kind=attrs["kind"], created_utc=attrs["created_utc"], parents=parents)
            stack.extend(reversed(parents))
        return graph

    # -- verification --

    def verify(
        self, ref: str | Ref | None = None, *, progress: Callable[[VerifyResult], None] | None = None
    ) -> VerifyReport:
        """Recompute every checksum (file bytes and content) of one version, or of the whole catalog.

        ``progress`` is called with each result as it is found (for progress displays).
        """
        refs = [self.resolve(ref)] if ref is not None else self.refs()
        results = []
        for r in refs:
            results.append(self._verify_one(r))
            if progress is not None:
                progress(results[-1])
        warnings = [w for r in results for w in r.warnings]
        if ref is None:
            warnings += self._layout_warnings()
        return VerifyReport(results=results, warnings=warnings)

    def _verify_one(self, ref: str) -> VerifyResult:
        path = self._name_dir(parse_ref(ref).name) / f"v{parse_ref(ref).version}.h5"
        problems: list[str] = []
        warnings: list[str] = []
        try:
            path = self.path_of(ref)
            require_regular_file(path)
            recorded = _read_checksum(path)
            if recorded is None:
                # The checksum file is in place before its version becomes visible, so only damage
                # removes it; without it the bytes outside the content hash (created_utc,
                # code_version, the HDF5 layout) cannot be checked.
                problems.append(
                    f"checksum file {path.name}.sha256 is missing: the file's bytes, and with them the "
                    "attributes created_utc and code_version, cannot be checked (the content hash, over "
                    "data, kind, params, seed, parents and user attributes, was checked below)"
                )
            elif (actual := file_sha256(path)) != recorded:
                # damaged bytes are the finding; parsing them could only add noise (or hang in HDF5)
                problems.append(f"file bytes changed since they were written (sha256 {actual}, recorded {recorded})")
                return VerifyResult(ref=ref, path=str(path), problems=problems, warnings=warnings)
            attrs = read_file_attrs(path)
            parsed = parse_ref(ref)
            if attrs["name"] != parsed.name or attrs["version"] != parsed.version:
                problems.append(f"attributes say {attrs['name']}@v{attrs['version']} but the file is stored as {ref}")
            recomputed = stored_content_sha256(path)
            if recomputed != attrs["content_sha256"]:
                problems.append(f"content hash mismatch (recomputed {recomputed}, recorded {attrs['content_sha256']})")
        except CatalogError as exc:
            problems.append(f"cannot be read: {exc}")
        except OSError as exc:
            problems.append(f"I/O error, possibly transient: {exc}")
            return VerifyResult(ref=ref, path=str(path), problems=problems, warnings=warnings, transient=True)
        except Exception as exc:  # a finding, never a crash of verify
            problems.append(f"cannot be read: {type(exc).__name__}: {exc}")
        return VerifyResult(ref=ref, path=str(path), problems=problems, warnings=warnings)

    def _layout_warnings(self) -> list[str]:
        warnings = []
        if not self.root.is_dir():
            return warnings
        tmp = self.root / ".tmp"
        abandoned = _abandoned_writes(tmp) if tmp.is_dir() else []
        if abandoned:
            warnings.append(
                f"{len(abandoned)} unfinished write(s) in {tmp} from processes that died; "
                "they are invisible and are removed by the next write"
            )
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir() or not is_valid_name(entry.name):
                warnings.append(f"{entry} is not a dataset (not a valid dataset name); it is ignored")
        return warnings

    # -- writing --

    def write(
        self,
        ds: xr.Dataset,
        name: str,
        *,
        kind: str | None = None,
        parents: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> str:
        """Store ``ds`` as the next version of ``name`` and return its ref ``name@vN``.

        ``kind`` defaults to ``ds.attrs['kind']`` and must be a registered kind; the dataset is
        checked against its schema first. ``parents`` are refs in this catalog (resolved to
        concrete versions). Writing content identical to an existing, undamaged version of
        ``name`` (same data, attributes, kind, params, seed and parents) returns that version,
        even when it is not the latest: ``latest`` always means the highest version number.
        """
        validate_name(name)
        kind = kind or ds.attrs.get("kind")
        if not kind or not isinstance(kind, str):
            raise SchemaError(f"dataset {name!r}", ["no kind given: pass kind=... or set ds.attrs['kind']"])
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not -(2**63) <= int(seed) < 2**63
        ):
            raise SchemaError(f"dataset {name!r}", [f"seed must be a 64-bit integer or None, got {seed!r}"])
        try:
            params_json = canonical_json(dict(params or {}))
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"dataset {name!r}", [f"params are not JSON-serialisable: {exc}"]) from None
        resolved_parents = [self.resolve(p) for p in parents]
        validate_dataset(ds, kind, subject=f"dataset {name!r}", params=params)

        prepared = ds.copy(deep=False)
        prepared.encoding = {}
        for var in prepared.variables.values():
            var.encoding = {}
            var.attrs = storable_attrs(var.attrs)
        prepared.attrs = storable_attrs({k: v for k, v in ds.attrs.items() if k not in RESERVED_ATTRS})
        prepared.attrs.update(
            schema_version=np.int64(SCHEMA_VERSION),
            kind=kind,
            name=name,
            version=np.int64(0),  # set under the lock, once the number is known
            content_sha256="",
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            code_version=code_version(),
            params=params_json,
            seed="none" if seed is None else np.int64(seed),
            parents=json.dumps(resolved_parents),
        )

        expected = identity(
            kind=kind, params=json.loads(params_json), seed=seed, parents=resolved_parents, attrs=prepared.attrs
        )
        with self._temporary() as tmp:
            ensure_room(tmp, prepared.nbytes)
            with hdf5_write_errors(tmp):
                prepared.to_netcdf(tmp, engine="h5netcdf", encoding=_encoding(prepared))
            with _open_stored(tmp) as (stored, stored_identity):
                # netCDF conventions reinterpret some structures (CF bounds lose their units ...)
                changed = metadata_differences(prepared, stored, expected, stored_identity)
                if changed:
                    raise SchemaError(f"dataset {name!r}", changed)
                digest = content_sha256(stored, stored_identity)
            return self._publish(tmp, name, digest)

    def _publish(self, tmp: Path, name: str, digest: str) -> str:
        """Give the temporary file the next version number and move it into place atomically.

        The checksum file is put in place first, then the version file is linked beside it (a
        hard link never replaces an existing file, so even a broken lock cannot overwrite a version).
        """
        directory = self._name_dir(name)
        while True:
            existing = self._find_identical(name, digest)
            if existing:
                return existing
            version = self._next_version(name)
            with hdf5_write_errors(tmp), h5py.File(tmp, "r+") as f:
                f.attrs["version"] = np.int64(version)
                f.attrs["content_sha256"] = digest
            _fsync_path(tmp)
            checksum = file_sha256(tmp)
            with self._lock():
                existing = self._find_identical(name, digest)
                if existing:
                    return existing
                if self._next_version(name) != version:
                    continue  # another writer took this number; renumber outside the lock
                directory.mkdir(parents=True, exist_ok=True)
                final = directory / f"v{version}.h5"
                if final.exists() or final.is_symlink():
                    continue
                # The checksum file goes in first, so that a version is never visible without it
                # (verify counts a missing one as damage). A checksum file without its version is
                # left only by a crash here; it names no version and the next writer replaces it.
                sidecar_tmp = tmp.with_suffix(".sha256")
                sidecar_tmp.write_text(f"{checksum}  {final.name}\n")
                _fsync_path(sidecar_tmp)
                os.replace(sidecar_tmp, final.with_name(final.name + ".sha256"))
                if not _link_no_clobber(tmp, final):
                    continue
                _fsync_path(directory, directory=True)
                return format_ref(name, version)

    def _next_version(self, name: str) -> int:
        return (self.versions(name) or [0])[-1] + 1

    def _find_identical(self, name: str, digest: str) -> str | None:
        """An existing, undamaged version of ``name`` with this content hash."""
        for version in self.versions(name):
            ref = format_ref(name, version)
            path = self.path_of(ref)
            try:
                if self.stored_hash(ref) == digest and _read_checksum(path) == file_sha256(path):
                    return ref
            except Exception:
                continue  # a damaged version is reported by verify, never handed out again
        return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock of the catalog's writers; released by the kernel if the process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / ".lock"
        require_layout_file(lock, "lock file .lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        with open(fd, "a+b") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the check and the open
                require_layout_file(lock, "lock file .lock")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """An empty folder of this process's own under the catalog's ``.tmp``, removed on exit.

        For a command's intermediate files (a halo catalog converted before it is stored): they
        live on the catalog's file system, and a killed process's folder is removed by the next
        write, as its unfinished versions are."""
        with self._temporary() as tmp:
            folder = tmp.with_suffix("")
            folder.mkdir()
            yield folder

    @contextlib.contextmanager
    def _temporary(self) -> Iterator[Path]:
        """A path in ``.tmp`` for one write, owned through a lock on ``<stem>.lock``.

        The kernel releases the lock when the writer dies, whatever its host or PID namespace, so
        a free lock marks an abandoned write; those are removed here before starting.
        """
        tmp_dir = self.root / ".tmp"
        require_directory(tmp_dir, "temporary folder .tmp")
        tmp_dir.mkdir(parents=True, exist_ok=True)
        _abandoned_writes(tmp_dir, remove=True)
        while True:
            stem = tmp_dir / uuid.uuid4().hex
            fd = os.open(stem.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(stem.with_suffix(".lock")).st_ino:
                    break  # still ours: a cleaner did not take it between creation and lock
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield stem.with_suffix(".h5")
        finally:
            _remove_write(stem)
            os.close(fd)


def _read_checksum(path: Path) -> str | None:
    """The sha256 recorded beside a version file, or None when the checksum file is missing."""
    try:
        fd = open_regular_file(path.with_name(path.name + ".sha256"))
    except FileNotFoundError:
        return None
    with open(fd, "rb") as handle:
        text = handle.read(4096).decode("ascii", errors="replace").split()
    return text[0] if text else ""


def _link_no_clobber(src: Path, dst: Path) -> bool:
    """Atomically give ``src`` the name ``dst`` too; False (nothing done) if ``dst`` exists.

    File systems without hard links fall back to a rename after an existence check (safe under
    a working writers' lock).
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError:
        if dst.exists():
            return False
        os.replace(src, dst)
    return True


def _abandoned_writes(tmp_dir: Path, *, remove: bool = False) -> list[Path]:
    """Stems of writes in ``tmp_dir`` whose owner is gone (lock free, or lock file missing).

    With ``remove``, their files are deleted while the probe still holds the lock, so a writer
    that was just creating that lock file sees it vanish and starts over with a new name.
    """
    stems = {p.with_suffix("") for p in tmp_dir.iterdir()}
    abandoned = []
    for stem in sorted(stems):
        try:
            fd = os.open(stem.with_suffix(".lock"), os.O_RDWR)
        except FileNotFoundError:
            abandoned.append(stem)  # the lock is created first and removed last
            if remove:
                _remove_write(stem)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            abandoned.append(stem)
            if remove:
                _remove_write(stem)
        finally:
            os.close(fd)  # releases the probe's lock
    return abandoned


def _remove_write(stem: Path) -> None:
    """Remove the files of one write (or scratch folder), its lock file last."""
    if stem.is_dir() and not stem.is_symlink():
        shutil.rmtree(stem, ignore_errors=True)
    for suffix in (".h5", ".sha256", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            stem.with_suffix(suffix).unlink()
