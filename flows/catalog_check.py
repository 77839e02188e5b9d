"""The catalog check flow: verify every stored version and record the outcome as a dataset.

The verification report is itself a catalog dataset (kind ``catalog.verification``) whose parents
are the versions it checked; an unchanged, healthy catalog gives the same report version again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from prefect import flow, get_run_logger, unmapped

from data_catalog import (
    Catalog,
    CorruptionError,
    DatasetSchema,
    VariableSpec,
    register_schema,
)
from data_catalog.names import parse_ref

from .conventions import catalog_of, catalog_task, in_catalog

REPORT_NAME = "catalog-verification"
REPORT_KIND = "catalog.verification"

register_schema(
    DatasetSchema(
        kind=REPORT_KIND,
        description="outcome of verifying every stored version of a catalog",
        variables={
            "ok": VariableSpec(dims=("dataset",), units="1", dtype="bool"),
            "n_problems": VariableSpec(dims=("dataset",), units="1", dtype="integer"),
            "problems": VariableSpec(dims=("dataset",), dtype="str"),
        },
        coords={"dataset": VariableSpec(dims=("dataset",), dtype="str")},
    )
)


@catalog_task(cache=False)
def list_versions(catalog: str) -> list[str]:
    """Every stored version, oldest first within each name."""
    return catalog_of(catalog).refs()


# Versions verified per task: a Prefect task run costs tens of milliseconds of bookkeeping, more
# than verifying a small version, so one task per version made the check's overhead its main cost.
VERSIONS_PER_TASK = 32


@catalog_task(cache=False)
def verify_versions(catalog: str, refs: list[str]) -> list[dict[str, Any]]:
    """Recompute the checksums of some versions (never cached: the point is to read the bytes again).

    An operating-system error is raised rather than recorded, so that the task (these versions) is
    retried.
    """
    store = catalog_of(catalog)
    out = []
    for ref in refs:
        result = store.verify(ref).results[0]
        if result.transient:
            raise OSError(f"{result.path}: {'; '.join(result.problems)}")
        out.append({"ref": result.ref, "path": result.path, "problems": result.problems})
    return out


@catalog_task
def write_verification_report(catalog: str, checked_refs: list[str], problems: list[list[str]]) -> str:
    """Store the outcome; cached on the content hashes of the checked versions and the findings."""
    n = len(checked_refs)
    ds = xr.Dataset(
        {
            "ok": ("dataset", np.array([not p for p in problems], dtype=bool), {"units": "1"}),
            "n_problems": ("dataset", np.array([len(p) for p in problems], dtype=np.int64), {"units": "1"}),
            "problems": ("dataset", np.array(["; ".join(p) for p in problems], dtype=str)),
        },
        coords={"dataset": ("dataset", np.array(checked_refs, dtype=str))},
        attrs={"n_checked": n},
    )
    readable = [r for r, p in zip(checked_refs, problems, strict=True) if not p]
    return catalog_of(catalog).write(ds, REPORT_NAME, kind=REPORT_KIND, parents=readable)


@flow(name="catalog-check", retries=0)
def catalog_check(catalog: str | None = None) -> str:
    """Verify every version in the catalog and write the report; fail if anything is corrupt.

    Returns the report's ref. Earlier reports are verified too but not listed in the new one, so
    that an unchanged catalog keeps its report version.
    """
    logger = get_run_logger()
    root = str(Catalog(catalog).root)
    refs = in_catalog(list_versions, root)(root)
    batches = [refs[i : i + VERSIONS_PER_TASK] for i in range(0, len(refs), VERSIONS_PER_TASK)]
    futures = in_catalog(verify_versions, root).map(unmapped(root), batches) if batches else []
    results = [result for future in futures for result in future.result()]
    corrupt = [r for r in results if r["problems"]]
    recorded = [r for r in results if parse_ref(r["ref"]).name != REPORT_NAME]
    report = in_catalog(write_verification_report, root)(
        root, [r["ref"] for r in recorded], [r["problems"] for r in recorded]
    )
    logger.info("checked %d version(s) in %s: %d corrupt; report %s", len(results), root, len(corrupt), report)
    if corrupt:
        lines = "\n".join(f"  {r['path']}: {'; '.join(r['problems'])}" for r in corrupt)
        raise CorruptionError(f"{len(corrupt)} corrupt version(s) in catalog {root} (report {report}):\n{lines}")
    return report
