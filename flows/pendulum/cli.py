"""``eqs reproduce pendulum`` (registered in :mod:`flows.registry`)."""

from __future__ import annotations

import os

import click

from ..cli.core import (
    UsageFailure,
    _catalog,
    _emit_json,
    _flow_result,
    benchmark_command,
    checked_output,
    force_option,
    json_option,
    write_summary,
)


@click.command("pendulum")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "quick", "paper"]),
    default="quick",
    show_default=True,
    help="smoke: seconds, checks the plumbing only; quick: small sizes, minutes on 2 CPU cores; "
    "paper: the published sizes and recipes.",
)
@click.option(
    "--protocol",
    type=click.Choice(["emlp", "units", "both"]),
    default="both",
    show_default=True,
    help="emlp: the EMLP protocol; units: the units-equivariance OOD protocol (both in docs/protocols.md).",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds per model.")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Only these models (repeatable); also the EMLP protocol's method comparison: mlp-hnn-augment, "
    "mlp-hnn-penalty, relaxed-hnn and the EMLP HNNs emlp-hnn-o3, -o2, -so2, -d2, -d6, and the units protocol's: "
    "mlp-hnn, dimensional-hnn-units-augment, relaxed-units-hnn (trained only when named).",
)
@click.option(
    "--variant",
    type=click.Choice(["reference", "physical"]),
    default="reference",
    show_default=True,
    help="reference: the published code's Hamiltonian (no 1/2 on k2); physical: H as written.",
)
@click.option(
    "--activation",
    type=click.Choice(["silu", "relu", "tanh", "softplus"]),
    default=None,
    help="Hidden-layer activation of every model (default: silu, the swish of the published MLP "
    "baselines; relu to compare).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="Training precision; float32 is about 1.6x faster on a CPU (models are evaluated in float64).",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the summary here (.json or .md).")
@force_option
@json_option
@click.pass_context
def reproduce_pendulum(
    ctx: click.Context,
    preset: str,
    protocol: str,
    seeds: int,
    models: tuple[str, ...],
    variant: str,
    activation: str | None,
    dtype: str,
    out: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Springy double pendulum: simulate, extract features, train, evaluate, tabulate."""
    out_path = checked_output(ctx, "--out", out, force)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipeline.pendulum.summary import pendulum_table as markdown_table
    from surrogates.pendulum.runs import protocol_models

    from .flow import pendulum_flow

    cat = _catalog(ctx)
    protocols = ["emlp", "units"] if protocol == "both" else [protocol]
    known = {m for p in protocols for m in protocol_models(p)}
    unknown = [m for m in models if m not in known]
    if unknown:
        raise UsageFailure(
            f"--model: unknown model(s) {unknown} for --protocol {protocol}; choose from {sorted(known)}"
        )
    summaries = []
    for name in protocols:
        chosen = [m for m in models if m in protocol_models(name)] if models else None
        if models and not chosen:
            continue
        state = pendulum_flow(
            protocol=name,
            preset=preset,
            seeds=seeds,
            catalog=str(cat.root),
            models=chosen,
            variant=variant,
            activation=activation,
            dtype=dtype,
            return_state=True,
        )
        summaries.append(_flow_result(state, f"pendulum {name}").details[name])
    if not summaries:
        raise UsageFailure(f"--model: none of the models {list(models)} belongs to --protocol {protocol}")
    label = (f", activation {activation}" if activation else "") + ("" if dtype == "float64" else f", {dtype}")
    text = "\n\n".join(
        f"### {s['protocol']} protocol, preset {preset}{label}\n\n{markdown_table(s)}" for s in summaries
    )
    write_summary(out_path, out, {"preset": preset, "variant": variant, "summaries": summaries}, text)
    if as_json:
        _emit_json({"preset": preset, "variant": variant, "summaries": summaries})
    else:
        click.echo(text)


bench_pendulum = benchmark_command(
    "pendulum",
    "surrogates.pendulum.benchmark:main",
    "Pendulum simulator against a scipy DOP853 loop at equal accuracy, and training speed.",
)
