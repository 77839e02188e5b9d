"""Every error of the eqs CLI ends as one message and an exit status, never a traceback (unless
--debug or EQS_DEBUG=1); with --json, errors are JSON objects on stdout."""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from support import demo_dataset

from data_catalog import Catalog, CatalogError, CorruptionError, UnreadableDatasetError
from flows.cli import main as cli
from sims.declaration import DeclarationError

RERUN = "(rerun with --debug, or EQS_DEBUG=1, for the traceback)"

# catalog commands, and the Catalog method through which each one meets the failure
COMMANDS = [
    (("catalog", "list"), "refs"),
    (("catalog", "show", "raw"), "info"),
    (("catalog", "verify"), "verify"),
    (("catalog", "lineage", "raw"), "lineage"),
]


def _input_reader(exc: BaseException):
    """A function that raises ``exc`` from within a module that reads the user's files."""
    namespace = {"__name__": "sims.halos.readers", "exc": exc}
    exec("def read(*args, **kwargs):\n    raise exc\n", namespace)
    return namespace["read"]


def _raise(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


def _recurse(*args, **kwargs):
    return _recurse(*args, **kwargs)


def _deep_json(*args, **kwargs):
    return json.loads("[" * 200_000)


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out.h5")

# failure -> (exit status, the one line the user reads)
FAILURES = {
    "disk full": (_raise(ENOSPC), 1, "/data/out.h5: ENOSPC: No space left on device"),
    "permission": (
        _raise(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/x")),
        1,
        "/data/x: EACCES: Permission denied",
    ),
    "rename": (
        _raise(OSError(errno.EXDEV, os.strerror(errno.EXDEV), "/a/tmp", None, "/b/out")),  # as os.rename raises
        1,
        "/a/tmp -> /b/out: EXDEV: Invalid cross-device link",
    ),
    "no errno": (_raise(OSError("cannot reach the server")), 1, "cannot reach the server"),
    "bug": (_raise(RuntimeError("boom")), 1, f"internal error: RuntimeError: boom {RERUN}"),
    "key": (_raise(KeyError("k")), 1, f"internal error: KeyError: 'k' {RERUN}"),
    "zero": (_raise(ZeroDivisionError("division by zero")), 1, "internal error: ZeroDivisionError: division by zero"),
    "memory": (_raise(MemoryError()), 1, f"out of memory (MemoryError; {RERUN[1:-1]})"),
    "recursion": (_recurse, 1, "recursion too deep (RecursionError: maximum recursion depth exceeded"),
    "nested input": (_deep_json, 2, "input nested too deeply to read (RecursionError"),
    "huge input": (_input_reader(MemoryError("header says 10^15 particles")), 2, "out of memory reading the input"),
    "interrupt": (_raise(KeyboardInterrupt()), 130, "interrupted"),
    "catalog": (_raise(CatalogError("no such thing")), 2, "no such thing"),
    "declaration": (_raise(DeclarationError("quantity 'x': unknown unit 'parsnips'")), 2, "parsnips"),
    "unreadable": (_raise(UnreadableDatasetError("raw/v1.h5: cannot be read as HDF5")), 1, "cannot be read as HDF5"),
    "corrupt": (_raise(CorruptionError("raw/v1.h5: file bytes changed")), 1, "file bytes changed"),
}


def _run(root, *args, **kwargs):
    return CliRunner().invoke(cli, ["--catalog", str(root), *map(str, args)], **kwargs)


@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("args, method", COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_any_exception_becomes_one_message_and_an_exit_status(catalog, monkeypatch, args, method, failure, as_json):
    fail, status, message = FAILURES[failure]
    monkeypatch.delenv("EQS_DEBUG", raising=False)
    monkeypatch.setattr(Catalog, method, fail)
    result = _run(catalog.root, *args, *(["--json"] if as_json else []))
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit), "nothing but the exit status leaves the CLI"
    assert "Traceback" not in result.output
    if as_json:
        error = json.loads(result.stdout)
        assert error["exit_status"] == status and message in error["error"], error
        assert set(error) == {"error", "exit_status"} and not result.stderr.strip()
    else:
        assert result.stdout == "" and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("failure", ["disk full", "bug", "memory", "recursion"])
@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_lets_the_exception_through(catalog, monkeypatch, failure, how):
    fail, _, _ = FAILURES[failure]
    monkeypatch.setattr(Catalog, "refs", fail)
    if how == "environment":
        monkeypatch.setenv("EQS_DEBUG", "1")
        result = _run(catalog.root, "catalog", "list")
    else:
        monkeypatch.delenv("EQS_DEBUG", raising=False)
        result = CliRunner().invoke(cli, ["--debug", "--catalog", str(catalog.root), "catalog", "list"])
    assert not isinstance(result.exception, SystemExit) and result.exception is not None
    assert result.exit_code == 1
    monkeypatch.setenv("EQS_DEBUG", "0")
    assert isinstance(_run(catalog.root, "catalog", "list").exception, SystemExit)


def test_debug_shows_what_a_project_error_was_made_from(catalog, monkeypatch):
    monkeypatch.setattr(Catalog, "info", FAILURES["unreadable"][0])
    monkeypatch.delenv("EQS_DEBUG", raising=False)
    plain = _run(catalog.root, "catalog", "show", "raw")
    assert plain.exit_code == 1 and "Traceback" not in plain.output
    debug = CliRunner().invoke(cli, ["--debug", "--catalog", str(catalog.root), "catalog", "show", "raw"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr and "UnreadableDatasetError" in debug.stderr
    assert "cannot be read as HDF5" in debug.stderr


SCRIPT = textwrap.dedent(
    """
    import sys
    from data_catalog import Catalog
    from flows.cli import main

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    Catalog.refs = fail
    main()
    """
)


def test_the_console_script_prints_a_traceback_only_when_asked(tmp_path):
    env = {**os.environ, "EQS_CATALOG": str(tmp_path / "c")}
    env.pop("EQS_DEBUG", None)
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, cwd=os.getcwd())
    plain = run([sys.executable, "-c", SCRIPT, "catalog", "list"])
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr == f"eqs: internal error: RuntimeError: boom {RERUN}\n"
    as_json = run([sys.executable, "-c", SCRIPT, "catalog", "list", "--json"])
    assert as_json.returncode == 1 and as_json.stderr == ""
    assert json.loads(as_json.stdout)["exit_status"] == 1
    debug = run([sys.executable, "-c", SCRIPT, "--debug", "catalog", "list"])
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "RuntimeError: boom" in debug.stderr
    debug_env = run([sys.executable, "-c", SCRIPT, "catalog", "list"], env={**env, "EQS_DEBUG": "1"})
    assert debug_env.returncode == 1 and "Traceback" in debug_env.stderr


def test_help_documents_debug_and_the_exit_statuses():
    text = CliRunner().invoke(cli, ["--help"]).output
    assert "--debug" in text and "EQS_DEBUG=1" in text
    assert "Exit status" in text and "130" in text and '"exit_status"' in text


# -- errors with --json: the same exit status, a JSON object on stdout ----------------------------


@pytest.fixture
def filled(catalog, tmp_path):
    catalog.write(demo_dataset(0), "raw", seed=0)
    catalog.write(demo_dataset(1), "raw", seed=1)
    return catalog


USAGE_ERRORS = [
    (("catalog", "show", "missing"), "no dataset named 'missing'"),
    (("catalog", "show"), "Missing argument 'REF'"),
    (("catalog", "list", "--bogus"), "No such option '--bogus'"),
    (("catalog", "verify", "raw@x"), "bad version"),
    (("reproduce", "pendulum", "--preset", "huge"), "Invalid value for '--preset'"),
    (("reproduce", "rietkerk", "--seeds", "0"), "Invalid value for '--seeds'"),
    (("reproduce", "halos", "--model", "nope"), "Invalid value for '--model'"),
    (("predict-galaxies", "src.h5"), "Missing option '--out'"),
    (("predict-galaxies", "src.h5", "--out", "p.txt"), "--out p.txt: unknown output format"),
    (("predict-galaxies", "src.h5", "--snapshot", "3", "--out", "p.csv"), "only read with --format tng"),
    (("predict-galaxies", "src.h5", "--format", "fits", "--out", "p.csv"), "Invalid value for '--format'"),
    (("sim", "halos", "--halos", "0"), "Invalid value for '--halos'"),
]


@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_json_with_json_and_messages_without(filled, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    human = _run(filled.root, *args)
    assert human.exit_code == 2 and human.stdout == "" and message in human.stderr, human.output
    machine = _run(filled.root, *args, "--json")
    assert machine.exit_code == 2 and machine.stderr == "", machine.output
    error = json.loads(machine.stdout)
    assert error["exit_status"] == 2 and message in error["error"]
    assert "Traceback" not in human.output + machine.output


def test_a_bad_global_option_is_json_too(filled, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = CliRunner().invoke(cli, ["--catalog", str(not_a_folder), "catalog", "list", "--json"])
    assert result.exit_code == 2
    assert "--catalog" in json.loads(result.stdout)["error"]


def test_a_damaged_catalog_with_json(filled, monkeypatch):
    filled.path_of("raw@v2").write_bytes(b"not hdf5 at all")
    listed = _run(filled.root, "catalog", "list", "--json")  # the rest is still listed, as JSON
    assert listed.exit_code == 1 and [r["ref"] for r in json.loads(listed.stdout)] == ["raw@v2"]
    shown = _run(filled.root, "catalog", "show", "raw@v2", "--json")
    assert shown.exit_code == 1 and "cannot be read as HDF5" in json.loads(shown.stdout)["error"]
    folder = str(filled.root / "raw")
    monkeypatch.setattr(Catalog, "names", _raise(PermissionError(errno.EACCES, os.strerror(errno.EACCES), folder)))
    unlisted = _run(filled.root, "catalog", "list", "--json")
    assert unlisted.exit_code == 1
    assert json.loads(unlisted.stdout) == {"error": f"{folder}: EACCES: Permission denied", "exit_status": 1}


def test_success_exit_statuses_are_unchanged(filled):
    assert _run(filled.root, "catalog", "list", "--json").exit_code == 0
    assert _run(filled.root, "catalog", "verify").exit_code == 0
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0
    assert CliRunner().invoke(cli, ["catalog", "--help"]).exit_code == 0


# -- predict-galaxies --dask-address --------------------------------------------------------------


def test_an_unreachable_dask_scheduler_is_a_usage_error(tmp_path, monkeypatch):
    import pipeline.cluster as cluster
    import pipeline.halos.scalars as halo_scalars
    import surrogates.halos.predict as halo_predict
    from sims.halos.population import PopulationConfig, generate_population
    from sims.halos.readers import write_canonical
    from surrogates.halos.choice import Candidate

    source = write_canonical([generate_population(PopulationConfig(n_halos=3, max_particles=50, seed=1))],
                             tmp_path / "halos.h5")  # fmt: skip
    scalars = Candidate("m@v1", "scalars", "log_mstar", ["log_m200m", "scalars:elementary"])
    monkeypatch.setattr(halo_predict, "require_models", lambda catalog, models=(): {"log_mstar": {"scalars": scalars}})
    # the real connection attempt, given up after 1 s instead of 10
    monkeypatch.setattr(halo_scalars, "dask_scheduler", functools.partial(cluster.dask_scheduler, connect_timeout="1s"))
    args = ("predict-galaxies", source, "--out", tmp_path / "p.csv", "--dask-address", "tcp://127.0.0.1:1")
    for as_json in (False, True):
        result = _run(tmp_path / "c", *args, *(["--json"] if as_json else []))
        assert result.exit_code == 2, result.output
        message = json.loads(result.stdout)["error"] if as_json else result.stderr.strip()
        assert "--dask-address" in message and "tcp://127.0.0.1:1" in message and "\n" not in message
        assert "Traceback" not in result.output
    assert not (tmp_path / "p.csv").exists()
