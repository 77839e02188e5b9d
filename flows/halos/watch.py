"""Ingest a watched directory of halo-catalog files, for a schedule (``eqs serve``).

Every run lists the files matching ``pattern`` in ``directory``; a file is ingested once per content
stamp (size and modification time, the stamp make and rsync use), so an hourly schedule re-reads
only new or changed files. With ``preset`` set, each catalog is then run through the halo pipeline
(features, models, evaluations; cached like every step).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge
from prefect import flow, get_run_logger

from data_catalog import Catalog

from ..conventions import catalog_task, in_catalog
from ..schedules import Choices


def dataset_name(path: Path) -> str:
    """A catalog name for a file: ``halos-<stem>`` with characters the catalog refuses replaced."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "catalog"
    stem = re.sub(r"\.{2,}", ".", stem)
    return f"halos-{stem}"[:128]


def content_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


@catalog_task
def ingest(catalog: str, path: str, format: str, name: str, stamp: str) -> str:
    """Ingest one file (``stamp`` is only part of the cache key: a changed file is read again)."""
    from sims.halos.ingest import ingest_halos

    return ingest_halos(Catalog(catalog), path, format, name)


@flow(name="halo-watch")
def halo_watch(
    directory: str,
    format: Annotated[str, Choices(ref="sims.halos.ingest:FORMATS")] = "hdf5",
    catalog: str | None = None,
    pattern: str = "*.hdf5",
    preset: Annotated[str, Choices(ref="flows.halos.flow:PRESETS")] | None = None,
    seeds: Annotated[int, Ge(1)] = 1,
) -> dict[str, Any]:
    """Ingest every new or changed file of ``directory``; with ``preset``, also run the halo pipeline
    on each. Returns {file: catalog ref} and, with a preset, {file: summary rows}."""
    from sims.halos.ingest import FORMATS

    from .flow import halos_flow, preset_settings

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if preset is not None:
        preset_settings(preset)  # a clear error for an unknown preset before anything is read
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"watched directory {folder} does not exist or is not a directory")
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    ingested: dict[str, str] = {}
    for path in files:
        ref = in_catalog(ingest, root)(root, str(path.absolute()), format, dataset_name(path), content_stamp(path))
        ingested[path.name] = ref
        log.info("%s -> %s", path, ref)
    summaries: dict[str, Any] = {}
    if preset is not None:
        for name, ref in ingested.items():
            summaries[name] = halos_flow(preset=preset, seeds=seeds, catalog=root, raw_ref=ref).details["rows"]
    log.info("%d file(s) matching %s in %s", len(files), pattern, folder)
    return {"ingested": ingested, "summaries": summaries}
