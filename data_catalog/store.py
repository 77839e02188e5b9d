"""The versioned, content-addressed HDF5 catalog.

Layout under the root (one directory per dataset name, one immutable file per version)::

    <root>/<name>/v<N>.h5          the dataset (netCDF4/HDF5 written by h5netcdf)
    <root>/<name>/v<N>.h5.sha256   checksum of the file's bytes (``sha256sum -c`` format)
    <root>/.tmp/                   files being written; never visible as versions
    <root>/.lock                   the writers' lock (fcntl)

A version exists exactly when its ``.h5`` file exists. A write goes to a temporary file, is read
back and hashed, fsynced, and renamed into place under the lock, so a crash at any moment leaves
either the complete version or no version. Versions are never modified or overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from .errors import CatalogError, NotFoundError, SchemaError, UnreadableDatasetError
from .hashing import canonical_json, content_sha256, file_sha256, identity, normalize_value
from .names import Ref, format_ref, parse_ref, validate_name
from .schema import RESERVED_ATTRS, validate_dataset
from .version import code_version

#: Version of the on-disk format written by this code; files with a larger one are refused.
SCHEMA_VERSION = 1
ENV_VAR = "EQS_CATALOG"
_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.h5")
_TMP_SUFFIX = ".tmp"
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
    ref: str
    path: str
    problems: list[str]

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
            "results": [{"ref": r.ref, "path": r.path, "ok": r.ok, "problems": r.problems} for r in self.results],
            "warnings": self.warnings,
        }


# -- reading single files -------------------------------------------------------------------------


def _attr_text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def read_file_attrs(path: str | Path) -> dict[str, Any]:
    """The global attributes of a stored dataset file, checked to be a readable catalog dataset."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: normalize_value(_attr_text(v)) for k, v in f.attrs.items()}
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableDatasetError(
            f"{path}: cannot be read as HDF5 ({exc}); the file is truncated, corrupted or not HDF5. "
            "Run 'eqs catalog verify' to check the catalog."
        ) from exc
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
    return attrs


def read_dataset_file(path: str | Path, *, lazy: bool = True) -> xr.Dataset:
    """Open a stored dataset file (lazily, dask-backed when ``lazy``), after checking its header.

    Values are returned as stored: no CF time decoding and no fill-value masking.
    """
    read_file_attrs(path)
    try:
        return xr.open_dataset(
            path,
            engine="h5netcdf",
            chunks={} if lazy else None,
            decode_times=False,
            decode_timedelta=False,
            mask_and_scale=False,
            cache=False,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise UnreadableDatasetError(f"{path}: cannot be read as a netCDF/HDF5 dataset ({exc})") from exc


def _identity_from_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return identity(
        kind=attrs["kind"],
        params=json.loads(attrs["params"]),
        seed=_decode_seed(attrs["seed"]),
        parents=json.loads(attrs["parents"]),
        attrs=attrs,
    )


def stored_content_sha256(path: str | Path) -> str:
    """Recompute the content hash of a stored file from its data and attributes."""
    with read_dataset_file(path, lazy=False) as ds:
        return content_sha256(ds, _identity_from_attrs({k: _attr_text(v) for k, v in ds.attrs.items()}))


def _decode_seed(value: Any) -> int | None:
    return None if value == "none" else int(value)


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Stored values are exactly the caller's (no fill values); large variables are split into
    ~16 MiB HDF5 chunks along their first axis, which become the dask chunks of ``open``.

    No compression: simulation floats shrink by ~15 % under zlib while writing gets ~50x slower
    (measured with ``python -m data_catalog.benchmark``).
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
        """The file of a reference (resolved to a concrete version)."""
        parsed = parse_ref(self.resolve(ref))
        return self._name_dir(parsed.name) / f"v{parsed.version}.h5"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.name.startswith(".") and self.versions(entry.name):
                out.append(entry.name)
        return out

    def versions(self, name: str) -> list[int]:
        """The versions of ``name`` in increasing order (empty if the name does not exist)."""
        directory = self._name_dir(name)
        if not directory.is_dir():
            return []
        found = (_VERSION_FILE.fullmatch(p.name) for p in directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def refs(self) -> list[str]:
        """Every stored version as ``name@vN``, by name, oldest first."""
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

    def info(self, ref: str | Ref) -> DatasetInfo:
        """Metadata and variable summary of one version."""
        resolved = self.resolve(ref)
        path = self.path_of(resolved)
        attrs = read_file_attrs(path)
        with read_dataset_file(path) as ds:
            variables = [
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
        return DatasetInfo(
            ref=resolved,
            name=str(attrs["name"]),
            version=int(attrs["version"]),
            kind=str(attrs["kind"]),
            content_sha256=str(attrs["content_sha256"]),
            created_utc=str(attrs["created_utc"]),
            code_version=str(attrs["code_version"]),
            schema_version=int(attrs["schema_version"]),
            params=json.loads(attrs["params"]),
            seed=_decode_seed(attrs["seed"]),
            parents=list(json.loads(attrs["parents"])),
            path=str(path),
            size_bytes=path.stat().st_size,
            attrs={k: v for k, v in attrs.items() if k not in RESERVED_ATTRS and not k.startswith("_")},
            variables=variables,
        )

    def list(self, *, all_versions: bool = False) -> list[DatasetInfo]:
        """The latest version of every name (or every version), sorted by name and version."""
        refs = self.refs() if all_versions else [self.resolve(n) for n in self.names()]
        return [self.info(r) for r in refs]

    def lineage(self, ref: str | Ref) -> dict[str, dict[str, Any]]:
        """The ancestry graph of ``ref``: ``{ref: {"kind", "created_utc", "parents", "missing"}}``,
        starting with ``ref`` itself, every ancestor once."""
        graph: dict[str, dict[str, Any]] = {}
        stack = [self.resolve(ref)]
        while stack:
            current = stack.pop()
            if current in graph:
                continue
            try:
                attrs = read_file_attrs(self.path_of(current))
            except (NotFoundError, FileNotFoundError):
                graph[current] = {"kind": None, "created_utc": None, "parents": [], "missing": True}
                continue
            parents = list(json.loads(attrs["parents"]))
            graph[current] = {
                "kind": attrs["kind"],
                "created_utc": attrs["created_utc"],
                "parents": parents,
                "missing": False,
            }
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
        return VerifyReport(results=results, warnings=self._layout_warnings() if ref is None else [])

    def _verify_one(self, ref: str) -> VerifyResult:
        path = self.path_of(ref)
        problems: list[str] = []
        sidecar = path.with_name(path.name + ".sha256")
        if not sidecar.is_file():
            problems.append(f"checksum file {sidecar.name} is missing")
        else:
            expected = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
            actual = file_sha256(path)
            if actual != expected:
                problems.append(f"file bytes changed since they were written (sha256 {actual}, recorded {expected})")
        try:
            attrs = read_file_attrs(path)
            parsed = parse_ref(ref)
            if attrs["name"] != parsed.name or attrs["version"] != parsed.version:
                problems.append(
                    f"attributes say {attrs['name']}@v{attrs['version']} but the file is stored as {ref}"
                )
            recomputed = stored_content_sha256(path)
            if recomputed != attrs["content_sha256"]:
                problems.append(
                    f"content hash mismatch (recomputed {recomputed}, recorded {attrs['content_sha256']})"
                )
        except Exception as exc:  # any failure to read is a finding, not a crash of verify
            problems.append(f"cannot be read: {exc}")
        return VerifyResult(ref=ref, path=str(path), problems=problems)

    def _layout_warnings(self) -> list[str]:
        warnings = []
        tmp = self.root / ".tmp"
        if tmp.is_dir():
            leftovers = sorted(p.name for p in tmp.iterdir() if not _owner_alive(p.name))
            if leftovers:
                warnings.append(
                    f"{len(leftovers)} unfinished write(s) in {tmp} from processes that died; "
                    "they are invisible and are removed by the next write"
                )
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
        concrete versions). Writing content identical to an existing version of ``name`` (same
        data, attributes, kind, params, seed and parents) returns that version.
        """
        validate_name(name)
        kind = kind or ds.attrs.get("kind")
        if not kind or not isinstance(kind, str):
            raise SchemaError(f"dataset {name!r}", ["no kind given: pass kind=... or set ds.attrs['kind']"])
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise SchemaError(f"dataset {name!r}", [f"seed must be an integer or None, got {seed!r}"])
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
        prepared.attrs = {k: v for k, v in ds.attrs.items() if k not in RESERVED_ATTRS}
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

        (self.root / ".tmp").mkdir(parents=True, exist_ok=True)
        self._remove_dead_temporaries()
        tmp = self.root / ".tmp" / f"{_owner_tag()}-{uuid.uuid4().hex}.h5{_TMP_SUFFIX}"
        try:
            prepared.to_netcdf(tmp, engine="h5netcdf", encoding=_encoding(prepared))
            digest = stored_content_sha256(tmp)
            return self._publish(tmp, name, digest)
        finally:
            tmp.unlink(missing_ok=True)

    def _publish(self, tmp: Path, name: str, digest: str) -> str:
        """Give the temporary file the next version number and move it into place atomically."""
        directory = self._name_dir(name)
        while True:
            existing = self._find_hash(name, digest)
            if existing:
                return existing
            version = (self.versions(name) or [0])[-1] + 1
            with h5py.File(tmp, "r+") as f:
                f.attrs["version"] = np.int64(version)
                f.attrs["content_sha256"] = digest
            _fsync_path(tmp)
            checksum = file_sha256(tmp)
            with self._lock():
                existing = self._find_hash(name, digest)
                if existing:
                    return existing
                if (self.versions(name) or [0])[-1] + 1 != version:
                    continue  # another writer took this number; renumber outside the lock
                directory.mkdir(parents=True, exist_ok=True)
                final = directory / f"v{version}.h5"
                sidecar_tmp = tmp.with_name(tmp.name + ".sha256")
                sidecar_tmp.write_text(f"{checksum}  {final.name}\n")
                _fsync_path(sidecar_tmp)
                os.replace(sidecar_tmp, final.with_name(final.name + ".sha256"))
                _move_no_clobber(tmp, final)
                _fsync_path(directory, directory=True)
                return format_ref(name, version)

    def _find_hash(self, name: str, digest: str) -> str | None:
        for version in self.versions(name):
            ref = format_ref(name, version)
            try:
                if self.stored_hash(ref) == digest:
                    return ref
            except (CatalogError, OSError):
                continue  # a damaged version is reported by verify, never reused
        return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock of the catalog's writers; released by the kernel if the process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _remove_dead_temporaries(self) -> None:
        for path in (self.root / ".tmp").iterdir():
            if not _owner_alive(path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _move_no_clobber(src: Path, dst: Path) -> None:
    """Atomically give ``src`` the name ``dst``, refusing to replace an existing ``dst``.

    A hard link fails when the target exists; file systems without hard links fall back to a
    rename after an existence check (safe under the writers' lock).
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        raise CatalogError(f"{dst} already exists and is never overwritten; run 'eqs catalog verify'") from None
    except OSError:
        if dst.exists():
            raise CatalogError(f"{dst} already exists and is never overwritten") from None
        os.replace(src, dst)
        return
    src.unlink()


def _owner_tag() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _owner_alive(filename: str) -> bool:
    """Whether the process that created a temporary file may still be writing it.

    Files from other hosts are assumed alive (their processes cannot be checked from here).
    """
    parts = filename.split("-")
    if len(parts) < 3 or not parts[-2].isdigit():
        return True
    host, pid = "-".join(parts[:-2]), int(parts[-2])
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True
