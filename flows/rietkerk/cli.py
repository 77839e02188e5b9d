"""``eqs reproduce rietkerk`` (registered in :mod:`flows.registry`)."""

from __future__ import annotations

import json
import os

import click

from pipeline.outputs import write_atomic

from ..cli.core import (
    _catalog,
    _distinct_outputs,
    _emit_json,
    _flow_result,
    benchmark_command,
    checked_output,
    force_option,
    json_option,
    write_summary,
)


@click.command("rietkerk")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "quick", "paper"]),
    default="quick",
    show_default=True,
    help="smoke: seconds, plumbing only; quick: ~1,000 runs on a 50x50 grid, minutes on 2 CPU cores; "
    "paper: 5,500 runs (3,000 for training) on the 100x100 grid of docs/protocols.md#rietkerk.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds per emulator.")
@click.option(
    "--emulator",
    "emulators",
    multiple=True,
    type=click.Choice(["pi", "dimensional"]),
    help="Only these emulators (repeatable) [default: both].",
)
@click.option(
    "--regime-maps/--no-regime-maps",
    default=True,
    show_default=True,
    help="Also simulate the regime maps over rainfall (docs/protocols.md#rietkerk).",
)
@click.option(
    "--discovery/--no-discovery",
    default=True,
    show_default=True,
    help="Also run equation discovery (sparse regression and the reaction MLP).",
)
@click.option("--figure", type=click.Path(dir_okay=False), help="Write the regime-map figure here (.png).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the summary here (.json or .md).")
@force_option
@json_option
@click.pass_context
def reproduce_rietkerk(
    ctx: click.Context,
    preset: str,
    seeds: int,
    emulators: tuple[str, ...],
    regime_maps: bool,
    discovery: bool,
    figure: str | None,
    out: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Rietkerk vegetation model: sweep, pattern statistics, emulators with OOD tests, regime maps."""
    figure_path = checked_output(ctx, "--figure", figure, force)
    out_path = checked_output(ctx, "--out", out, force)
    _distinct_outputs(("--figure", figure_path), ("--out", out_path))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipeline.rietkerk.summary import discovery_lines
    from pipeline.rietkerk.summary import rietkerk_table as markdown_table

    from .flow import rietkerk_flow

    cat = _catalog(ctx)
    state = rietkerk_flow(
        preset=preset,
        seeds=seeds,
        catalog=str(cat.root),
        emulators=list(emulators) or None,
        regime_maps=regime_maps or figure is not None,
        discovery=discovery,
        return_state=True,
    )
    result = _flow_result(state, "rietkerk")
    summary = dict(result.details)
    lines = [f"### Rietkerk emulators, preset {preset}", "", markdown_table(summary)]
    if result.artifacts["regime_maps"]:
        from pipeline.rietkerk.regimes import regime_labels, regime_map_figure

        maps = [cat.open(ref).load() for ref in result.artifacts["regime_maps"].values()]
        summary["regime_maps"] = {
            ds.attrs["map"]: dict(zip([f"{r:.4g}" for r in ds["R"].values], regime_labels(ds))) for ds in maps
        }
        for ds in maps:
            pairs = ", ".join(f"{r:.4g}: {lab}" for r, lab in zip(ds["R"].values, regime_labels(ds)))
            lines += [
                "",
                f"Regimes at T = {ds.attrs['T']:g} d, {ds.attrs['map']} ({ds.attrs['initial_condition']} start): {pairs}",
            ]
        if figure_path:
            write_atomic(figure_path, regime_map_figure(maps))
    if result.artifacts["discovery"]:
        found = cat.open(result.artifacts["discovery"]).load()
        summary["discovery"] = json.loads(found.attrs["study"])
        lines += ["", f"Equation discovery ({result.artifacts['discovery']}):", "", *discovery_lines(found)]
    text = "\n".join(lines)
    write_summary(out_path, out, summary, text)
    if as_json:
        _emit_json(summary)
    else:
        click.echo(text)


bench_rietkerk = benchmark_command("rietkerk", "sims.rietkerk.benchmark:main", "Rietkerk solver against py-pde's explicit stepping at equal accuracy, and batched throughput.")
