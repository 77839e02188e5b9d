"""The main job behind ``eqs run`` and the README's first command.

catalog check -> the pendulum (both protocols), Rietkerk and halo pipelines as subflows -> the OOD
report (HTML + Markdown, stored in the catalog as kind ``report``, written to a directory and
published as Prefect artifacts). Every step is a cached catalog task, so a second run takes seconds
and an interrupted run, started again, completes only the steps that had not finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from prefect import flow, get_run_logger

from data_catalog import Catalog

from .catalog_check import catalog_check
from .conventions import catalog_task, in_catalog
from .schedules import Choices

SYSTEMS = ("pendulum", "rietkerk", "halos")

# What each main-job preset runs. `smoke` is tiny (a check that every step runs, for the tests);
# `demo` uses the systems' quick presets with few seeds so that the
# whole job fits in 15 minutes on 2 CPU cores; `paper` uses the published sizes and 3 seeds (hours on
# a GPU; days on a small CPU).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "pendulum": {"protocols": {"emlp": "smoke", "units": "smoke"}, "seeds": 1, "dtype": "float64"},
        "rietkerk": {"preset": "smoke", "seeds": 1},
        "halos": {"preset": "smoke", "seeds": 1},
    },
    "demo": {
        "pendulum": {"protocols": {"emlp": "quick", "units": "quick"}, "seeds": 1, "dtype": "float32"},
        "rietkerk": {"preset": "quick", "seeds": 2},
        "halos": {"preset": "quick", "seeds": 2},
    },
    "paper": {
        "pendulum": {"protocols": {"emlp": "paper", "units": "paper"}, "seeds": 3, "dtype": "float64"},
        "rietkerk": {"preset": "paper", "seeds": 3},
        "halos": {"preset": "paper", "seeds": 3},
    },
}


def choose_systems(systems: list[str] | str | None) -> list[str]:
    """The systems to run, in the pipeline's order; a clear error for an unknown name."""
    if systems is None:
        return list(SYSTEMS)
    names = [s.strip() for s in (systems.split(",") if isinstance(systems, str) else systems) if s.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown or not names:
        raise ValueError(f"systems must be a non-empty subset of {list(SYSTEMS)}, got {names or systems!r}")
    return [s for s in SYSTEMS if s in names]


def dask_address_for(dask_address: str | None) -> str:
    """The halo features' dask scheduler: the argument, else $EQS_DASK_ADDRESS, else in-process threads
    (the demo's data is small; give 'local' for a local cluster of worker processes)."""
    from pipeline.cluster import ENV_ADDRESS

    return dask_address or os.environ.get(ENV_ADDRESS) or "threads"


@catalog_task
def build_report(catalog: str, results: dict[str, Any], preset: str) -> str:
    """The OOD report of ``results`` (the systems' flow results), stored as kind ``report``; its ref."""
    from pipeline.report import REPORT_KIND, report_dataset
    from pipeline.report import build_report as build

    cat = Catalog(catalog)
    report = build(cat, results, title=f"eqs OOD evaluation report ({preset})", preset=preset)
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
    systems: list[Annotated[str, Choices(SYSTEMS)]] | None = None,
    report_dir: str | None = None,
    dask_address: str | None = None,
) -> dict[str, str]:
    """Run every pipeline against ``catalog`` and write the OOD report; returns step -> ref (or path).

    ``report_dir`` defaults to ``reports/<preset>`` in the working directory. ``dask_address`` names
    an existing dask.distributed scheduler for the feature extraction of particle data (see
    :func:`dask_address_for`).
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    from .halos import halos_flow
    from .pendulum import pendulum_flow
    from .rietkerk import rietkerk_flow

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    chosen = choose_systems(systems)
    settings = PRESETS[preset]
    root = str(Catalog(catalog).root)
    log = get_run_logger()
    steps = ["catalog-check"]
    if "pendulum" in chosen:
        steps += [f"pendulum-{p}" for p in settings["pendulum"]["protocols"]]
    steps += [s for s in chosen if s != "pendulum"] + ["report"]
    progress = create_progress_artifact(progress=0.0, description=f"eqs run --preset {preset}: {', '.join(steps)}")

    def done(step: str) -> None:
        update_progress_artifact(progress, progress=100.0 * (steps.index(step) + 1) / len(steps))
        log.info("main job: %s done (%d/%d)", step, steps.index(step) + 1, len(steps))

    refs: dict[str, str] = {"catalog-check": catalog_check(root)}
    done("catalog-check")
    results: dict[str, Any] = {}
    if "pendulum" in chosen:
        p = settings["pendulum"]
        results["pendulum"] = {}
        for protocol, system_preset in p["protocols"].items():
            out = pendulum_flow(
                protocol=protocol, preset=system_preset, seeds=p["seeds"], catalog=root, dtype=p["dtype"]
            )
            results["pendulum"][protocol] = out
            done(f"pendulum-{protocol}")
    if "rietkerk" in chosen:
        r = settings["rietkerk"]
        results["rietkerk"] = rietkerk_flow(preset=r["preset"], seeds=r["seeds"], catalog=root)
        done("rietkerk")
    if "halos" in chosen:
        h = settings["halos"]
        results["halos"] = halos_flow(
            preset=h["preset"], seeds=h["seeds"], catalog=root, dask_address=dask_address_for(dask_address)
        )
        done("halos")
    report = in_catalog(build_report, root)(root, results, preset)
    paths = publish_report(Catalog(root), report, report_dir or Path("reports") / preset)
    done("report")
    refs["report"] = report
    refs.update({f"report-{kind}": str(path) for kind, path in paths.items() if kind in ("html", "markdown")})
    return refs
