"""The main job behind ``eqs run`` and the README's first command.

catalog check -> every registered system's flows (:mod:`flows.registry`), as subflows -> the OOD
report (HTML + Markdown, stored in the catalog as kind ``report``, written to a directory and
published as Prefect artifacts). Every step is a cached catalog task, so a second run takes seconds
and an interrupted run, started again, completes only the steps that had not finished.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger

from data_catalog import Catalog

from . import registry
from .catalog_check import catalog_check
from .conventions import catalog_task, dask_address_for, in_catalog
from .schedules import Choices

PRESETS = registry.MAIN_PRESETS
"""``smoke`` is tiny (a check that every step runs, for the tests); ``demo`` runs the systems' quick
sizes with few seeds, so that the whole job fits in 15 minutes on 2 CPU cores; ``paper`` runs the
published sizes with 3 seeds (hours on a GPU; days on a small CPU). What each means for a system is
its :class:`flows.registry.SystemPreset`."""


def choose_systems(systems: list[str] | str | None) -> list[str]:
    """The names of the systems to run, in the registry's order; a clear error for an unknown name."""
    return [s.name for s in registry.choose(systems)]


@catalog_task
def build_report(catalog: str, results: dict[str, Any], preset: str) -> str:
    """The OOD report of ``results`` (system -> its :class:`SystemResult` as a dict), stored as kind
    ``report``; its ref. The sections come from the registry, in its order."""
    from pipeline.report import REPORT_KIND, ReportSection, report_dataset
    from pipeline.report import build_report as build
    from pipeline.results import SystemResult

    cat = Catalog(catalog)
    # a system without a section of its own gets the report's generic parts, under its title
    sections = [s.section() or ReportSection(name=s.name, title=s.title) for s in registry.systems()]
    typed = {name: SystemResult.from_dict(result) for name, result in results.items()}
    report = build(cat, typed, sections, title=f"eqs OOD evaluation report ({preset})", preset=preset)
    return cat.write(report_dataset(report), f"report-{preset}", kind=REPORT_KIND, parents=report.refs)


def publish_report(catalog: Catalog, ref: str, report_dir: str | Path) -> dict[str, Path]:
    """Write the stored report ``ref`` as files into ``report_dir`` and publish it as a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact

    from pipeline.report import report_from_dataset, write_report

    with catalog.open(ref) as ds:
        report = report_from_dataset(ds.load())
    paths = write_report(report, report_dir)
    # the UI shows Markdown artifacts; the figures are files next to report.md, linked by path
    create_markdown_artifact(
        key="eqs-ood-report",
        markdown=f"HTML report: `{paths['html']}` (catalog version {ref})\n\n{report.markdown}",
        description=f"OOD evaluation report {ref}",
    )
    return paths


@flow(name="eqs-main")
def main_job(
    catalog: str | None = None,
    preset: Annotated[str, Choices(PRESETS)] = "demo",
    systems: list[Annotated[str, Choices(ref="flows.registry:names")]] | None = None,
    report_dir: str | None = None,
    dask_address: str | None = None,
    methods: bool = False,
) -> dict[str, str]:
    """Run every registered system (or ``systems``) against ``catalog`` and write the OOD report;
    returns step -> ref (or path). ``methods`` also runs each system's comparison of ways of building
    the symmetry in (its registry entry's ``methods``), every model cached and in the report.

    ``report_dir`` defaults to ``reports/<preset>`` in the working directory. ``dask_address`` names
    an existing dask.distributed scheduler for the feature extraction of particle data (see
    :func:`dask_address_for`).
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    chosen = registry.choose(systems)
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    steps = ["catalog-check", *(s.name for s in chosen), "report"]
    progress = create_progress_artifact(progress=0.0, description=f"eqs run --preset {preset}: {', '.join(steps)}")

    def done(step: str) -> None:
        update_progress_artifact(progress, progress=100.0 * (steps.index(step) + 1) / len(steps))
        log.info("main job: %s done (%d/%d)", step, steps.index(step) + 1, len(steps))

    refs: dict[str, str] = {"catalog-check": catalog_check(root)}
    done("catalog-check")
    results: dict[str, Any] = {}
    for system in chosen:
        if methods:
            what = "method comparison" if system.methods else "no method comparison"
            log.info("main job: %s: %s: %s", system.name, what, system.methods_note or "-")
        chosen_preset = system.preset(preset, methods=methods)
        result = system.runner()(catalog=root, preset=chosen_preset, dask_address=dask_address_for(dask_address))
        results[system.name] = result.to_dict()  # JSON: the report task's cache key reads it
        done(system.name)
    report = in_catalog(build_report, root)(root, results, preset)
    paths = publish_report(Catalog(root), report, report_dir or Path("reports") / preset)
    done("report")
    refs["report"] = report
    refs.update({f"report-{kind}": str(path) for kind, path in paths.items() if kind in ("html", "markdown")})
    return refs
