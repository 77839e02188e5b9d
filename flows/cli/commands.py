"""The generic commands: ``eqs features``, ``eqs serve``, ``eqs run``."""

from __future__ import annotations

import json
import os

import click
from rich.markup import escape
from rich.table import Table

from .. import registry
from ..declared import cli as declared_cli
from ..declared import discover as declared_discover
from .core import (
    GROUP_HELP,
    RegistryGroup,
    UsageFailure,
    _catalog,
    _console,
    _emit_json,
    _flow_result,
    _guard,
    _refuse_inside_catalog,
    benchmark_command,
    json_option,
    main,
)


@main.command("features")
@click.argument("ref")
@click.option(
    "--system", "system_name", default=None, help="Declared system to use [default: the one of the dataset's kind]."
)
@click.option(
    "--declaration",
    "declaration_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON file declaring the system (quantities, units, symmetry), for a system of your own.",
)
@click.option(
    "--dask-address",
    default=None,
    help="Dask scheduler: an address (tcp://host:8786), 'threads', 'synchronous' or 'local' "
    "[default: $EQS_DASK_ADDRESS, else a local cluster].",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Entries per chunk along 'sample' (else the first batch dimension) [default: blocks of about 64 MiB].",
)
@click.option("--name", "out_name", default=None, help="Catalog name of the features [default: NAME-features].")
@json_option
@click.pass_context
@_guard
def features(
    ctx: click.Context,
    ref: str,
    system_name: str | None,
    declaration_file: str | None,
    dask_address: str | None,
    chunk_size: int | None,
    out_name: str | None,
    as_json: bool,
) -> None:
    """Extract invariant, dimensionless features of dataset NAME[@vN] into the catalog."""
    from pipeline.cluster import SchedulerAddressError
    from sims.declaration import DeclarationError, SystemDeclaration, find_system

    from ..feature_steps import (  # imported here: dask and pint take a moment
        declaration_for,
        run_features,
    )

    cat = _catalog(ctx)
    try:
        if system_name and declaration_file:
            raise UsageFailure("give --system or --declaration, not both")
        if declaration_file:
            try:  # size, encoding, nesting and structure are checked once, here
                declaration = SystemDeclaration.from_file(declaration_file)
            except DeclarationError as exc:
                raise UsageFailure(f"--declaration {exc}") from None
        elif system_name:
            declaration = find_system(system_name)
        else:
            declaration = declaration_for(cat, ref)
        concrete = cat.resolve(ref)
        with _console().status(f"extracting features of {concrete} as system {declaration.name!r}"):
            out = run_features(str(cat.root), concrete, declaration, chunk_size, dask_address, out_name)
    except (DeclarationError, SchedulerAddressError) as exc:
        raise UsageFailure(str(exc)) from None
    if as_json:
        _emit_json({"source": concrete, "features": out, "system": declaration.name})
    else:
        click.echo(f"{concrete} -> {out}")


@main.command("serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="TOML file of [[deployment]] schedules (see docs/schedules.example.toml).",
)
@click.option("--check", is_flag=True, help="Validate the config and list the deployments; do not serve.")
def serve(config_path: str, check: bool) -> None:
    """Serve scheduled deployments against the Prefect server at $PREFECT_API_URL (blocks)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from ..schedules import ScheduleConfigError, load_schedule_config, require_server
    from ..schedules import serve as serve_deployments

    try:
        specs = load_schedule_config(config_path)
        table = Table(title=f"deployments in {config_path}", title_justify="left")
        for column in ("deployment", "schedule", "parameters"):
            table.add_column(column)
        for spec in specs:
            parameters = json.dumps(spec.parameters, sort_keys=True, default=str)  # TOML dates are not JSON
            cells = (f"{spec.flow}/{spec.name}", spec.schedule, parameters)
            table.add_row(*map(escape, cells))
        _console().print(table)
        if check:
            return
        url = require_server()
    except ScheduleConfigError as exc:
        raise UsageFailure(str(exc)) from None
    click.echo(f"serving {len(specs)} deployment(s) against {url}; stop with Ctrl-C")
    serve_deployments(specs)


@main.command("run")
@click.option(
    "--preset",
    type=click.Choice(registry.MAIN_PRESETS),
    default="demo",
    show_default=True,
    help="demo: quick sizes, few seeds (8 min on 2 CPU cores); paper: the published sizes, 3 seeds; "
    "smoke: tiny sizes, a check that every step runs.",
)
@click.option(
    "--systems",
    default=None,
    help=f"Comma-separated subset of the registered systems [default: all of them: {', '.join(registry.names())}].",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where report.html and report.md go (default: reports/<preset> in the working directory).",
)
@click.option(
    "--dask-address",
    default=None,
    help="dask scheduler for the feature extraction of particle data: an address (tcp://host:8786), 'local' or 'threads' "
    "(default: $EQS_DASK_ADDRESS, else threads).",
)
@click.option(
    "--methods",
    is_flag=True,
    help="Also train and report each system's comparison of ways of building the symmetry in, every model "
    "cached ("
    + "; ".join(f"{s.name}: {s.methods_note}" for s in registry.systems() if s.methods)
    + "). Hours at the demo preset on 2 CPU cores.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the produced refs as JSON.")
@click.pass_context
def run(
    ctx: click.Context,
    preset: str,
    systems: str | None,
    report_dir: str | None,
    dask_address: str | None,
    methods: bool,
    as_json: bool,
) -> None:
    """Run the main job end to end: every system, every OOD split, and the report."""
    where = report_dir or os.path.join("reports", preset)  # main_job's default
    _refuse_inside_catalog(ctx, "--report-dir", report_dir or f"{where} (the default)", os.path.realpath(where))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        chosen = [s.name for s in registry.choose(systems)]
    except registry.RegistryError as exc:
        raise UsageFailure(f"--systems: {exc}") from None
    if methods:  # say before the run which chosen systems add nothing, and where their comparison is
        for system in registry.choose(chosen):
            if not system.methods:
                why = f": {system.methods_note}" if system.methods_note else ""
                click.echo(f"--methods: {system.name} has no method comparison in the main job{why}", err=True)
    from ..main import main_job  # imported here: Prefect takes seconds to import

    cat = _catalog(ctx)
    state = main_job(
        catalog=str(cat.root),
        preset=preset,
        systems=chosen,
        report_dir=report_dir,
        dask_address=dask_address,
        methods=methods,
        return_state=True,
    )
    refs = _flow_result(state, "eqs run")
    if as_json:
        _emit_json({"catalog": str(cat.root), "refs": refs})
    else:
        for step, ref in refs.items():
            click.echo(f"{step}: {ref}")
        click.echo(f"catalog: {cat.root}")


# a system of the user's own: from a data file and a declaration (docs/fit.md)
main.add_command(declared_cli.fit)
main.add_command(declared_cli.predict)
main.add_command(declared_discover.discover)

# the generic benchmarks; each system's come from the registry ("bench <system>")
bench = RegistryGroup("bench", path="bench", help=GROUP_HELP["bench"])
bench.add_command(
    benchmark_command(
        "catalog", "data_catalog.benchmark:main", "Catalog write, deduplicated write, read and verify throughput."
    )
)
bench.add_command(
    benchmark_command("features", "pipeline.benchmark:main", "Feature-extraction throughput on three dask schedulers.")
)
bench.add_command(
    benchmark_command(
        "methods",
        "flows.declared.methods_benchmark:main",
        "Every way of building the symmetry in, side by side on a declared system (eqs fit --method).",
    )
)
bench.add_command(
    benchmark_command(
        "relaxed",
        "flows.declared.relaxed_study:main",
        "Exact, relaxed and unconstrained models on data whose symmetry is broken by a controlled amount.",
    )
)
main.add_command(bench)
