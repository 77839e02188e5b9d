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

from data_catalog import Catalog, CatalogError, UnreadableDatasetError, package_version
from data_catalog.errors import CatalogLayoutError, CorruptionError
from pipeline.outputs import output_file_problem, write_atomic
from sims.declaration import DeclarationError


class UsageFailure(click.ClickException):
    exit_code = 2


class CheckFailure(click.ClickException):
    exit_code = 1


DEBUG_ENV = "EQS_DEBUG"
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT (128 + 2)
_RERUN = f"rerun with --debug, or {DEBUG_ENV}=1, for the traceback"

# Modules that parse what the user hands in (JSON declarations, TOML schedules, the systems' file
# readers in `sims`): a RecursionError or MemoryError raised while one of them runs comes from the
# input (a deeply nested file, a header that declares absurd sizes), a usage error, not a bug of eqs.
_INPUT_READERS = ("json", "tomllib", "csv", "ast", "xml", "sims", "flows.schedules")


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


# -- the systems' commands, from the registry, loaded when used ---------------------------------------

GROUP_HELP = {
    "reproduce": "Reproduce the published tables (docs/protocols.md) with the project's pipelines.",
    "sim": "Simulate systems into the catalog.",
    "ingest": "Bring simulation outputs into the catalog as versioned datasets.",
    "bench": "Benchmarks: ours beside the peer or limit, measured in one run, written as JSON.",
}


def benchmark_command(name: str, target: str, summary: str) -> click.Command:
    """``eqs bench NAME [ARGS]...``: the benchmark ``target`` (``"module:main"``, an argparse main
    taking ``argv``), with every argument and ``--help`` handed to it unchanged."""

    @click.command(
        name,
        help=f"{summary} Arguments go to the benchmark: see 'eqs bench {name} --help'.",
        short_help=summary,
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
        add_help_option=False,
    )
    @click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
    def command(arguments: tuple[str, ...]) -> None:
        from .. import registry

        registry.load(target)(list(arguments))

    return command


class RegistryCommands:
    """Mixed into a group: the commands that registered systems declare under the group's path
    (:attr:`flows.registry.System.commands`) are listed with its own and imported only when used."""

    path = ""

    def _registered(self) -> tuple[dict[str, str], set[str]]:
        from .. import registry

        direct = registry.commands(self.path)
        depth = len(self.path.split())
        groups = {
            words[depth]
            for system in registry.systems()
            for words in (p.split() for p in system.commands)
            if words[:depth] == self.path.split() and len(words) > depth + 1
        }
        return direct, groups

    def list_commands(self, ctx: click.Context) -> list[str]:
        direct, groups = self._registered()
        return sorted(set(super().list_commands(ctx)) | set(direct) | groups)  # type: ignore[misc]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)  # type: ignore[misc]
        if command is not None:
            return command
        direct, groups = self._registered()
        if name in direct:
            from .. import registry

            return registry.load(direct[name])
        if name in groups:
            return RegistryGroup(name, path=f"{self.path} {name}".strip(), help=GROUP_HELP.get(name))
        return None


class RegistryGroup(RegistryCommands, click.Group):
    """A group (``eqs reproduce``, ``eqs sim`` ...) made of the registered systems' commands."""

    def __init__(self, name: str, *, path: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.path = path


class EqsGroup(RegistryCommands, click.Group):
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
    why = output_file_problem(real)
    if why:
        raise UsageFailure(f"{option} {given}: {why}")
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


def _flow_result(state: Any, label: str) -> Any:
    """The result of a flow run (``return_state=True``), or a CheckFailure naming ``label`` and the flow's error."""
    if not state.is_completed():
        try:
            state.result()
        except Exception as exc:  # noqa: BLE001  (the flow's own error names the step and the data)
            raise CheckFailure(f"{label} failed: {exc}") from None
        raise CheckFailure(f"{label} ended in state {state.type.value}: {state.message}")
    return state.result()
