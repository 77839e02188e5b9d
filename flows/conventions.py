"""Conventions every Prefect task and flow of the project follows.

- Tasks take and return catalog refs (``name@vN``), never arrays: the data lives in the catalog.
  The catalog root is the parameter ``catalog`` (a path); parameters named ``ref`` or ending in
  ``_ref`` hold one ref, those ending in ``_refs`` a list of refs.
- Cache keys are the input refs' names and content hashes, the other parameters, and a
  fingerprint of the project's code, so a re-run recomputes only what changed (new data, new
  parameters) and everything after any code change (conservative: a helper may have changed).
  Pass concrete refs (``name@vN``, as tasks return them) so that key and run see the same input.
- Cached results (refs, as JSON, never pickle) live in the catalog, under ``<root>/.cache``: a
  catalog and its cache come and go together.
- Transient I/O errors (OSError that is not a catalog error) are retried; catalog errors (bad
  data, bad names) are permanent and fail at once with their message.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from data_catalog import Catalog, CatalogError, package_version, parse_ref
from data_catalog.hashing import canonical_json

F = TypeVar("F", bound=Callable[..., Any])

RETRIES = 2
RETRY_DELAYS_S = [2, 10]


def is_ref_parameter(name: str) -> bool:
    return name == "ref" or name.endswith("_ref")


def is_refs_parameter(name: str) -> bool:
    return name == "refs" or name.endswith("_refs")


def catalog_of(value: str | Path | Catalog | None) -> Catalog:
    return value if isinstance(value, Catalog) else Catalog(value)


def cache_dir(catalog: str | Path | Catalog | None) -> Path:
    return catalog_of(catalog).root / ".cache" / "prefect"


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the source files of the project's packages (computed once per process)."""
    import data_catalog
    import pipeline
    import sims
    import surrogates

    h = hashlib.sha256(package_version().encode())
    for package in (data_catalog, sims, pipeline, surrogates, sys.modules[__package__]):
        base = Path(package.__file__).parent
        for path in sorted(base.rglob("*.py")):
            h.update(str(path.relative_to(base.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def input_key(fn: Callable[..., Any], parameters: Mapping[str, Any]) -> str | None:
    """The cache key of a call: the task, the code, input refs' names and content hashes, parameters.

    None (no caching for this call) when an input ref cannot be read: that must surface as the
    task's own error, not hide behind a stale cached result.
    """
    catalog = catalog_of(parameters.get("catalog"))
    parts: dict[str, Any] = {"task": f"{fn.__module__}.{fn.__qualname__}", "code": code_fingerprint()}
    try:
        for name, value in sorted(parameters.items()):
            if name == "catalog":
                parts[name] = str(catalog.root.resolve())
            elif is_ref_parameter(name) and value is not None:
                parts[name] = _ref_identity(catalog, value)
            elif is_refs_parameter(name) and value is not None:
                parts[name] = [_ref_identity(catalog, v) for v in value]
            else:
                parts[name] = value
        encoded = canonical_json(parts)
    except (CatalogError, OSError, TypeError, ValueError):
        return None
    return hashlib.sha256(encoded.encode()).hexdigest()


def _ref_identity(catalog: Catalog, ref: str) -> list[str]:
    """What a ref contributes to a key: its name (outputs are often named after inputs) and content."""
    return [parse_ref(ref).name, catalog.stored_hash(ref)]


def _cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    return input_key(context.task.fn, parameters)


def is_transient(task: Task[..., Any], task_run: Any, state: Any) -> bool:
    """Retry only I/O errors that may pass (network file systems, locks), never catalog errors."""
    try:
        state.result()
    except CatalogError:
        return False
    except OSError:
        return True
    except BaseException:
        return False
    return False


def catalog_task(fn: F | None = None, *, cache: bool = True, **options: Any) -> Any:
    """``@catalog_task``: a Prefect task with the project's conventions (see the module docstring).

    ``cache=False`` for tasks whose value is to look again (verification, listing the catalog).
    Call such tasks through :func:`in_catalog` so their cache lives in the catalog they use.
    """

    def decorate(f: F) -> Task[..., Any]:
        settings: dict[str, Any] = {
            "retries": RETRIES,
            "retry_delay_seconds": RETRY_DELAYS_S,
            "retry_condition_fn": is_transient,
            "result_serializer": "json",
        }
        if cache:
            settings.update(cache_key_fn=_cache_key, persist_result=True)
        else:
            settings.update(cache_policy=NO_CACHE, persist_result=False)
        settings.update(options)
        return task(f, **settings)

    return decorate(fn) if fn is not None else decorate


def in_catalog(task_: Task[..., Any], catalog: str | Path | Catalog | None) -> Task[..., Any]:
    """The task with its cached results stored inside ``catalog``."""
    return task_.with_options(result_storage=cache_dir(catalog))


# -- steps every system's flow shares ------------------------------------------------------------


def checked_choice(given: Sequence[str] | None, known: Sequence[str], what: str) -> list[str]:
    """``given`` (all of ``known`` when None or empty), refused with a ValueError naming ``what``
    and the choices when it holds anything else."""
    chosen = list(given or known)
    unknown = [g for g in chosen if g not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(known)}")
    return chosen


def dask_address_for(dask_address: str | None) -> str:
    """The feature extraction's dask scheduler: the argument, else $EQS_DASK_ADDRESS, else in-process
    threads (the data of one run are small; give 'local' for a local cluster of worker processes)."""
    from pipeline.cluster import ENV_ADDRESS

    return dask_address or os.environ.get(ENV_ADDRESS) or "threads"


def checked_seeds(seeds: int) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    return seeds


@contextlib.contextmanager
def training_checkpoint(catalog: Catalog, system: str, identity: Sequence[Any]) -> Iterator[Path]:
    """The checkpoint file of one training run, under the catalog's cache, so that an interrupted
    run resumes. Keyed by ``identity`` (its data's content hashes, its configuration) and by the
    project's code: a checkpoint must never resume a model that the current code would build
    differently. Removed when the block completes (the model is in the catalog then, and the task
    cache points to it); kept when it raises, for the rerun."""
    key = canonical_json([*identity, code_fingerprint()])
    folder = catalog.root / ".cache" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{system}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"
    yield path
    path.unlink(missing_ok=True)
