"""A fourth system that exists only in the tests, added through :mod:`flows.registry` alone: its
flow, its runner for the main job and its ``eqs reproduce toy`` command live here."""

from __future__ import annotations

import click
import numpy as np
from prefect import flow
from support import DEMO_KIND, demo_dataset

from data_catalog import Catalog
from flows.registry import MAIN_PRESETS, System, SystemPreset
from pipeline.results import SummaryRow, SystemResult
from pipeline.summaries import sample_std

SPLITS = {"test": 0.0, "shifted": 1.0}  # the OOD split's error is larger by this much


@flow(name="toy")
def toy_flow(catalog: str, preset: str = "smoke", seeds: int = 1) -> SystemResult:
    """ "Evaluations" are demo datasets; a model's error on a split is read back from them."""
    cat = Catalog(catalog)
    evaluations: dict[str, dict[str, list[str]]] = {"guess": {}}
    rows = []
    for split, offset in SPLITS.items():
        refs = [
            cat.write(demo_dataset(seed), f"toy-{preset}-{split}", kind=DEMO_KIND, seed=seed) for seed in range(seeds)
        ]
        evaluations["guess"][split] = refs
        errors = [float(np.abs(cat.open(r)["x"].values).mean()) + offset for r in refs]
        rows.append(
            SummaryRow(
                model="guess",
                split=split,
                metric="error",
                mean=float(np.mean(errors)),
                std=sample_std(errors),
                seeds=seeds,
                refs=tuple(refs),
                in_distribution=split == "test",
            )
        )
    return SystemResult(system="toy", evaluations=evaluations, rows=tuple(rows))


def run_toy(catalog: str, preset: SystemPreset, dask_address: str | None = None) -> SystemResult:
    return toy_flow(catalog=catalog, preset=preset.preset, seeds=preset.seeds)


@click.command("toy")
@click.pass_context
def reproduce_toy(ctx: click.Context) -> None:
    """The toy system's table."""
    result = toy_flow(catalog=str(ctx.obj["catalog"].root))
    for row in result.rows:
        click.echo(f"{row.model} {row.split} {row.mean:.4f}")


TOY = System(
    name="toy",
    title="Toy system",
    run="toy_system:run_toy",
    presets={name: SystemPreset("smoke", 1) for name in MAIN_PRESETS},
    flows={"toy": "toy_system:toy_flow"},
    commands={"reproduce toy": "toy_system:reproduce_toy"},
    expensive=("toy_system:toy_flow",),
)
