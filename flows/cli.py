"""The ``eqs`` command line.

Prefect is imported only by the commands that run flows, so catalog commands start quickly.

Exit status: 0 on success; 1 when a check finds a problem (corruption, a failed flow) or an I/O
operation fails (disk full, permission denied: the message names the file and the errno, e.g.
``ENOSPC: No space left on device``); 2 on a usage or input error (bad option value, bad name,
missing dataset, an unusable output path, a bad input file or declaration); 130 when interrupted
(Ctrl-C). Every exception that escapes a command ends in :class:`EqsGroup`, which prints one clean
message instead of a traceback: ``eqs: internal error: <Type>: <message>`` for a bug (exit status
1). ``eqs --debug`` or ``EQS_DEBUG=1`` lets such exceptions through, traceback and all.

With ``--json``, errors are JSON too: ``{"error": "...", "exit_status": N}`` on stdout, with the
same exit status; otherwise messages go to stderr.

Output files (``--out``, ``--figure``) are checked before any work (not inside the catalog, not a
folder, in a writable folder, not an existing file unless ``--force``) and written atomically.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table
from rich.tree import Tree

from data_catalog import Catalog, CatalogError, DatasetInfo, UnreadableDatasetError, package_version
from data_catalog.errors import CatalogLayoutError, CorruptionError
from pipeline.outputs import write_atomic
from sims.declaration import DeclarationError


class UsageFailure(click.ClickException):
    exit_code = 2


class CheckFailure(click.ClickException):
    exit_code = 1


DEBUG_ENV = "EQS_DEBUG"
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)
_RERUN = f"rerun with --debug, or {DEBUG_ENV}=1, for the traceback"

# Modules that parse what the user hands in (JSON declarations, TOML schedules, halo files): a
# RecursionError or MemoryError raised while one of them runs comes from the input (a deeply
# nested file, a header that declares absurd sizes), a usage error rather than a bug of eqs.
_INPUT_READERS = (
    "json",
    "tomllib",
    "csv",
    "ast",
    "xml",
    "sims.declaration",
    "sims.halo_readers",
    "sims.halo_tng",
    "flows.schedules",
)


def _raised_by_input_reader(exc: BaseException) -> bool:
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if any(module == m or module.startswith(m + ".") for m in _INPUT_READERS):
            return True
    return False


def os_error_message(exc: OSError) -> str:
    """One line: the file (``exc.filename``, and ``filename2`` of a rename), the errno name and the
    system's words, e.g. ``/data/out.csv: ENOSPC: No space left on device``."""
    if exc.errno is None or not exc.strerror:
        return str(exc)  # a message of its own (an unreachable dask scheduler, an HDF5 library error)
    if exc.strerror != os.strerror(exc.errno):
        return exc.strerror  # the project's own words, which name the file (a full catalog disk)
    name = errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    names = (os.fsdecode(f) if isinstance(f, bytes) else str(f) for f in (exc.filename, exc.filename2) if f is not None)
    files = " -> ".join(names)
    return f"{files}: {name}: {exc.strerror}" if files else f"{name}: {exc.strerror}"


# the catalog's files are damaged: a failed check (status 1), not a mistake of the user's
_DAMAGE = (UnreadableDatasetError, CorruptionError, CatalogLayoutError)


def project_failure(exc: BaseException) -> click.ClickException | None:
    """The clean exit for an error the project raises on purpose: a :class:`CheckFailure` for
    damaged catalog files, a :class:`UsageFailure` for other catalog and declaration errors; None
    for I/O failures (left to :class:`EqsGroup`) and for errors of other kinds."""
    if isinstance(exc, _DAMAGE):
        return CheckFailure(str(exc))
    if isinstance(exc, OSError):  # a full disk (StorageFullError) is an I/O failure, not a usage error
        return None
    if isinstance(exc, (CatalogError, DeclarationError)):
        return UsageFailure(str(exc))
    return None


def _debug_requested(options: list[str]) -> bool:
    return "--debug" in options or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _report(message: str, status: int, as_json: bool) -> int:
    if as_json:
        _emit_json({"error": message, "exit_status": status})
    else:
        click.echo(f"eqs: {message}", err=True)
    return status


class EqsGroup(click.Group):
    """The ``eqs`` group: every exception that escapes a command ends here, as one message and an
    exit status (see the module docstring), on stdout as JSON when the command line has ``--json``."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        if not standalone_mode:  # a caller that handles exceptions itself gets them as raised
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        args = [str(a) for a in (sys.argv[1:] if args is None else args)]
        # read from the raw words: a usage error happens before any option is parsed, and must
        # still come out as JSON when the user asked for JSON
        options = args[: args.index("--")] if "--" in args else args
        as_json, debug = "--json" in options, _debug_requested(options)
        try:
            try:
                # not standalone: click then raises its exceptions and returns ctx.exit()'s status
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
                status = result if isinstance(result, int) and not isinstance(result, bool) else 0
            except (CatalogError, DeclarationError) as exc:  # from a command without _guard
                failure = project_failure(exc)
                if failure is None:
                    raise
                raise failure from exc
        except click.exceptions.Abort as exc:  # click turns Ctrl-C into Abort
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            status = _report("interrupted" if interrupted else "aborted", INTERRUPTED if interrupted else 1, as_json)
        except KeyboardInterrupt:
            status = _report("interrupted", INTERRUPTED, as_json)
        except click.ClickException as exc:
            cause = exc.__cause__ or exc.__context__
            if debug and cause is not None and not isinstance(cause, click.ClickException):
                traceback.print_exception(cause)  # the exception a project error was made from
            if as_json:
                status = _report(exc.format_message(), exc.exit_code, as_json)
            else:
                exc.show()
                status = exc.exit_code
        except OSError as exc:
            if debug:
                raise
            status = _report(os_error_message(exc), 1, as_json)
        except (MemoryError, RecursionError) as exc:
            if debug:
                raise
            status = _report(*_resource_message(exc), as_json)
        except Exception as exc:  # noqa: BLE001  (the last resort: a bug, said in one line)
            if debug:
                raise
            status = _report(f"internal error: {type(exc).__name__}: {exc} ({_RERUN})", 1, as_json)
        sys.exit(status)


def _resource_message(exc: MemoryError | RecursionError) -> tuple[str, int]:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    recursion = isinstance(exc, RecursionError)
    if _raised_by_input_reader(exc):
        return f"{'input nested too deeply to read' if recursion else 'out of memory reading the input'} ({what})", 2
    return f"{'recursion too deep' if recursion else 'out of memory'} ({what}; {_RERUN})", 1


def _console() -> Console:
    # Piped output keeps full refs and hashes on one line instead of folding them at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _catalog(ctx: click.Context) -> Catalog:
    return ctx.obj["catalog"]


# -- output files ---------------------------------------------------------------------------------

force_option = click.option("--force", is_flag=True, help="Replace FILE if it exists.")


def _refuse_inside_catalog(ctx: click.Context, option: str, given: str, real: str) -> None:
    # real paths on both sides: neither a symbolic link nor '..' leads a file into the catalog
    root = os.path.realpath(_catalog(ctx).root)
    if os.path.commonpath([real, root]) == root:
        raise UsageFailure(f"{option} {given}: inside the catalog {root}; write it outside the catalog")


def checked_output(ctx: click.Context, option: str, given: str | None, force: bool) -> Path | None:
    """Where to write the file given with ``option`` (None when not given), checked before any work
    so that a long run does not end on an unusable path.

    Refused (exit status 2, naming the option and the path): a path inside the catalog, a folder,
    something other than a regular file, a folder that does not exist or is not writable, an
    existing file without ``--force``. The real path is returned: a symbolic link is written
    through, its target replaced.
    """
    if given is None:
        return None
    real = os.path.realpath(given)
    _refuse_inside_catalog(ctx, option, given, real)
    if os.path.isdir(real):
        raise UsageFailure(f"{option} {given}: is a directory; give a file name")
    if os.path.exists(real) and not os.path.isfile(real):
        raise UsageFailure(f"{option} {given}: not a regular file (a device, a pipe); give a file name")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise UsageFailure(f"{option} {given}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):  # the file is replaced by a rename in its folder
        raise UsageFailure(f"{option} {given}: folder {folder} is not writable")
    if os.path.exists(real) and not force:
        raise UsageFailure(f"{option} {given}: file exists; add --force to replace it")
    return Path(real)


def _distinct_outputs(*outputs: tuple[str, Path | None]) -> None:
    seen: dict[Path, str] = {}
    for option, path in outputs:
        if path is not None and path in seen:
            raise UsageFailure(f"{seen[path]} and {option} name the same file {path}; give two names")
        if path is not None:
            seen[path] = option


def write_summary(path: Path | None, given: str | None, data: Any, text: str) -> None:
    """``--out`` of the reproduce commands, written atomically: JSON for a .json name, else the text."""
    if path is None or given is None:
        return
    body = json.dumps(data, indent=2) if given.endswith(".json") else text + "\n"
    write_atomic(path, body.encode("utf-8"))


@click.group(cls=EqsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), "--version", prog_name="eqs")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,  # read by EqsGroup.main from the command line, where a usage error still finds it
    help=f"Let an unexpected error through with its Python traceback [also: ${DEBUG_ENV}=1].",
)
@click.option(
    "--catalog",
    "catalog_root",
    type=click.Path(file_okay=False),
    default=None,
    help="Catalog directory [default: $EQS_CATALOG, else $XDG_DATA_HOME/eqs/catalog, else ~/.local/share/eqs/catalog].",
)
@click.pass_context
def main(ctx: click.Context, catalog_root: str | None) -> None:
    """Equivariant scientific surrogates: versioned datasets, invariant features, flows.

    \b
    Exit status: 0 success; 1 a failed check (corruption, a failed flow) or an
    I/O failure (disk full: the file and errno are named); 2 a usage or input
    error (bad option, name or input file, an unusable --out); 130 Ctrl-C.
    An unexpected error prints one line, "eqs: internal error: ..."; rerun
    with --debug, or EQS_DEBUG=1, for its traceback. With --json, errors are
    JSON on stdout too: {"error": "...", "exit_status": N}.
    """
    ctx.ensure_object(dict)
    ctx.obj["catalog"] = Catalog(catalog_root)


@main.group()
def catalog() -> None:
    """Inspect and verify the versioned dataset catalog."""


def _guard(fn: Any) -> Any:
    """Turn catalog errors into clean exits: 1 for unreadable or damaged files, 2 for usage errors
    (bad names, missing datasets); I/O failures go on to :class:`EqsGroup` (file, errno, status 1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CatalogError as exc:
            failure = project_failure(exc)
            if failure is None:
                raise
            raise failure from None

    return wrapper


@catalog.command("list")
@click.option("--all", "all_versions", is_flag=True, help="Every version, not only the latest of each name.")
@json_option
@click.pass_context
@_guard
def catalog_list(ctx: click.Context, all_versions: bool, as_json: bool) -> None:
    """List datasets (latest version of each name); unreadable versions are named, exit status 1."""
    cat = _catalog(ctx)
    refs = cat.refs(all_versions=all_versions)
    infos, unreadable = [], []
    for ref in refs:
        try:
            infos.append(cat.info(ref))
        except (CatalogError, OSError) as exc:  # one damaged or unreadable file must not hide the rest
            unreadable.append({"ref": ref, "error": str(exc)})
    if as_json:
        rows = [
            {
                "ref": i.ref,
                "kind": i.kind,
                "versions": len(cat.versions(i.name)),
                "created_utc": i.created_utc,
                "size_bytes": i.size_bytes,
                "content_sha256": i.content_sha256,
            }
            for i in infos
        ]
        _emit_json(rows + [{"ref": u["ref"], "unreadable": u["error"]} for u in unreadable])
    elif not refs:
        click.echo(f"catalog {cat.root} is empty")
    else:
        table = Table(title=f"catalog {cat.root}", title_justify="left")
        for column in ("ref", "kind", "versions", "created (UTC)", "size", "sha256"):
            table.add_column(column, justify="right" if column in ("versions", "size") else "left")
        for i in infos:
            created = i.created_utc.replace("T", " ").removesuffix("+00:00")
            cells = (i.ref, i.kind, str(len(cat.versions(i.name))), created, _size(i.size_bytes), i.content_sha256[:12])
            table.add_row(*map(escape, cells))
        _console().print(table)
        for u in unreadable:
            click.echo(f"UNREADABLE {u['ref']}: {u['error']}", err=True)
    if unreadable:
        ctx.exit(1)


def _show_table(info: DatasetInfo) -> None:
    console = _console()
    meta = Table(show_header=False, title=info.ref, title_justify="left")
    meta.add_column(style="bold")
    meta.add_column()
    for key in ("kind", "created_utc", "code_version", "content_sha256", "path"):
        meta.add_row(key, escape(str(getattr(info, key))))
    meta.add_row("size", _size(info.size_bytes))
    meta.add_row("seed", str(info.seed))
    meta.add_row("params", escape(json.dumps(info.params, sort_keys=True)))
    meta.add_row("parents", escape(", ".join(info.parents) or "-"))
    for key, value in info.attrs.items():
        meta.add_row(escape(f"attr {key}"), escape(str(value)))
    console.print(meta)
    variables = Table(title="variables", title_justify="left")
    for column in ("name", "dims", "shape", "dtype", "units", "coordinate"):
        variables.add_column(column)
    for v in info.variables:
        cells = (v.name, ", ".join(v.dims), "x".join(map(str, v.shape)) or "scalar", v.dtype, v.units or "-")
        variables.add_row(*map(escape, cells), "yes" if v.is_coord else "")
    console.print(variables)


@catalog.command("show")
@click.argument("ref")
@json_option
@click.pass_context
@_guard
def catalog_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show metadata and variables of NAME[@vN] (the latest version when no version is given)."""
    info = _catalog(ctx).info(ref)
    if as_json:
        _emit_json(info.to_dict())
    else:
        _show_table(info)


@catalog.command("verify")
@click.argument("ref", required=False)
@json_option
@click.pass_context
@_guard
def catalog_verify(ctx: click.Context, ref: str | None, as_json: bool) -> None:
    """Recompute checksums of NAME[@vN], or of every version; exit status 1 on any corruption."""
    cat = _catalog(ctx)
    if sys.stderr.isatty() and not as_json:
        with Progress(transient=True, console=Console(stderr=True)) as bar:
            job = bar.add_task("verifying", total=1 if ref else len(cat.refs()))
            report = cat.verify(ref, progress=lambda result: bar.update(job, advance=1, description=result.ref))
    else:
        report = cat.verify(ref)
    if as_json:
        _emit_json({"catalog": str(cat.root), **report.to_dict()})
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        for result in report.corrupt:
            click.echo(f"CORRUPT {result.ref}: {result.path}", err=True)
            for problem in result.problems:
                click.echo(f"  - {problem}", err=True)
        status = "ok" if report.ok else f"{len(report.corrupt)} corrupt"
        click.echo(f"verified {len(report.results)} version(s) in {cat.root}: {status}")
    if not report.ok:
        ctx.exit(1)


@catalog.command("lineage")
@click.argument("ref")
@json_option
@click.pass_context
@_guard
def catalog_lineage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show the parents graph of NAME@vN, back to the raw datasets."""
    graph = _catalog(ctx).lineage(ref)
    root = next(iter(graph))
    if as_json:
        _emit_json({"ref": root, "nodes": graph})
        return

    def label(node: str) -> str:
        entry = graph[node]
        if entry["missing"]:
            return escape(f"{node}  (missing)")
        if entry["error"]:
            return escape(f"{node}  (unreadable: {entry['error']})")
        return escape(f"{node}  [{entry['kind']}, {entry['created_utc']}]")

    def grow(branch: Tree, node: str, path: tuple[str, ...]) -> None:
        for parent in graph[node]["parents"]:
            child = branch.add(label(parent))
            if parent not in path:
                grow(child, parent, path + (parent,))

    tree = Tree(label(root))
    grow(tree, root, (root,))
    _console().print(tree)


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

    from .feature_steps import declaration_for, run_features  # imported here: dask and pint take a moment

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
    from .schedules import ScheduleConfigError, load_schedule_config, require_server
    from .schedules import serve as serve_deployments

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


def _flow_result(state: Any, label: str) -> Any:
    """The result of a flow run (``return_state=True``), or a CheckFailure naming ``label`` and the flow's error."""
    if not state.is_completed():
        try:
            state.result()
        except Exception as exc:  # noqa: BLE001  (the flow's own error names the step and the data)
            raise CheckFailure(f"{label} failed: {exc}") from None
        raise CheckFailure(f"{label} ended in state {state.type.value}: {state.message}")
    return state.result()


@main.group()
def reproduce() -> None:
    """Reproduce the published tables (ANCHORS.md) with the project's pipelines."""


@reproduce.command("pendulum")
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
    help="emlp: ANCHORS section 1; units: the units-equivariance OOD protocol of section 2.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds per model.")
@click.option("--model", "models", multiple=True, help="Only these models (repeatable).")
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
    from pipeline.summaries import pendulum_table as markdown_table
    from surrogates.pendulum_runs import MODELS_BY_PROTOCOL

    from .pendulum import pendulum_flow

    cat = _catalog(ctx)
    protocols = ["emlp", "units"] if protocol == "both" else [protocol]
    known = {m for p in protocols for m in MODELS_BY_PROTOCOL[p]}
    unknown = [m for m in models if m not in known]
    if unknown:
        raise UsageFailure(f"unknown model(s) {unknown} for protocol(s) {protocols}; choose from {sorted(known)}")
    summaries = []
    for name in protocols:
        chosen = [m for m in models if m in MODELS_BY_PROTOCOL[name]] if models else None
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
        summaries.append(_flow_result(state, f"pendulum {name}")["summary"])
    if not summaries:
        raise UsageFailure(f"none of the models {list(models)} belongs to protocol(s) {protocols}")
    label = (f", activation {activation}" if activation else "") + ("" if dtype == "float64" else f", {dtype}")
    text = "\n\n".join(
        f"### {s['protocol']} protocol, preset {preset}{label}\n\n{markdown_table(s)}" for s in summaries
    )
    write_summary(out_path, out, {"preset": preset, "variant": variant, "summaries": summaries}, text)
    if as_json:
        _emit_json({"preset": preset, "variant": variant, "summaries": summaries})
    else:
        click.echo(text)


@reproduce.command("rietkerk")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "quick", "paper"]),
    default="quick",
    show_default=True,
    help="smoke: seconds, plumbing only; quick: ~1,000 runs on a 50x50 grid, minutes on 2 CPU cores; "
    "paper: ~5,000 runs on the 100x100 grid of ANCHORS section 3.",
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
    help="Also simulate the regime maps over rainfall (ANCHORS section 3).",
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
    from pipeline.summaries import discovery_lines
    from pipeline.summaries import rietkerk_table as markdown_table

    from .rietkerk import rietkerk_flow

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
    summary = result["summary"]
    lines = [f"### Rietkerk emulators, preset {preset}", "", markdown_table(summary)]
    if result["regime_maps"]:
        from pipeline.rietkerk_regimes import regime_labels, regime_map_figure

        maps = [cat.open(ref).load() for ref in result["regime_maps"].values()]
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
    if result["discovery"]:
        found = cat.open(result["discovery"]).load()
        summary["discovery"] = json.loads(found.attrs["study"])
        lines += ["", f"Equation discovery ({result['discovery']}):", "", *discovery_lines(found)]
    text = "\n".join(lines)
    write_summary(out_path, out, summary, text)
    if as_json:
        _emit_json(summary)
    else:
        click.echo(text)


@main.command("run")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "demo", "paper"]),
    default="demo",
    show_default=True,
    help="demo: quick sizes, few seeds (8 min on 2 CPU cores); paper: the published sizes, 3 seeds; "
    "smoke: tiny sizes, a check that every step runs.",
)
@click.option(
    "--systems",
    default="pendulum,rietkerk,halos",
    show_default=True,
    help="Comma-separated subset of pendulum, rietkerk, halos.",
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
    help="dask scheduler for the halo features: an address (tcp://host:8786), 'local' or 'threads' "
    "(default: $EQS_DASK_ADDRESS, else threads).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the produced refs as JSON.")
@click.pass_context
def run(
    ctx: click.Context, preset: str, systems: str, report_dir: str | None, dask_address: str | None, as_json: bool
) -> None:
    """Run the main job end to end: every system, every OOD split, and the report."""
    where = report_dir or os.path.join("reports", preset)  # main_job's default
    _refuse_inside_catalog(ctx, "--report-dir", report_dir or f"{where} (the default)", os.path.realpath(where))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from .main import choose_systems, main_job  # imported here: Prefect takes seconds to import

    cat = _catalog(ctx)
    try:
        chosen = choose_systems(systems)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    state = main_job(
        catalog=str(cat.root),
        preset=preset,
        systems=chosen,
        report_dir=report_dir,
        dask_address=dask_address,
        return_state=True,
    )
    refs = _flow_result(state, "eqs run")
    if as_json:
        _emit_json({"catalog": str(cat.root), "refs": refs})
    else:
        for step, ref in refs.items():
            click.echo(f"{step}: {ref}")
        click.echo(f"catalog: {cat.root}")


from . import cli_halos  # noqa: F401  (registers the halo commands on main and reproduce)

if __name__ == "__main__":
    # run as `python -m flows.cli`, this module is __main__; the commands live on flows.cli.main
    from flows.cli import main as registered

    registered()
