"""Files the eqs commands write for the user (--out, --figure): checked before any work, written
atomically, readable by others; never inside the catalog, never over a file without --force."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import types

import click
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from support import demo_dataset

from flows.cli import main as cli
from pipeline.outputs import atomic_path, write_atomic

FILE_OPTIONS = ("--out", "--figure")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    # list_commands/get_command: the registered systems' commands are loaded when asked for
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def _file_options(command: click.Command) -> list[str]:
    return [opt for p in command.params for opt in p.opts if opt in FILE_OPTIONS]


# every command that writes a file for the user, with the arguments it needs to get that far
WRITERS = {
    ("reproduce", "pendulum"): (),
    ("reproduce", "rietkerk"): (),
    ("reproduce", "halos"): (),
    ("predict-galaxies",): ("halos.h5",),
    ("fit",): ("data.nc", "--declaration", "declaration.json"),
    ("predict",): ("fit-model@v1", "data.nc"),
    ("discover",): ("data.nc", "--declaration", "declaration.json"),
}
SUFFIX = {"--out": ".csv", "--figure": ".png"}
CASES = [(path, option) for path, command in _commands(cli) for option in _file_options(command)]


def test_every_file_writer_is_covered_and_has_the_same_force_option():
    assert {path for path, _ in CASES} == set(WRITERS), "a new command writes files: add it to WRITERS"
    assert len(CASES) == 8
    for path, command in _commands(cli):
        if _file_options(command):
            (force,) = [p for p in command.params if "--force" in p.opts]
            assert force.is_flag and force.help == "Replace FILE if it exists.", path


@pytest.fixture
def no_work(monkeypatch):
    """Every step after the output checks raises WorkStarted: a refusal must come before it."""

    class WorkStarted(Exception):
        pass

    def work(*args, **kwargs):
        raise WorkStarted("the command went past its output checks")

    def stub(name, **attrs):
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(__name__=name, **attrs))

    stub("flows.pendulum.flow", pendulum_flow=work)
    stub("flows.rietkerk.flow", rietkerk_flow=work)
    stub("flows.halos.flow", halos_flow=work)
    stub(
        "flows.declared.flow",
        checked_input=work,
        fit_flow=work,
        result_name=work,
        preset_settings=work,
        training_config=work,
    )
    stub("flows.declared.predict", predict_file=work)
    stub("surrogates.pendulum.runs", MODELS_BY_PROTOCOL={"emlp": [], "units": []}, protocol_models=lambda p: ())
    stub("surrogates.halos.predict", FORMATS=(".h5", ".hdf5", ".csv"), NoHaloModelError=LookupError,
         require_models=work, best_predictions=work, write_predictions=work, load_halo_models=work,
         predict_galaxies=work)  # fmt: skip
    return "WorkStarted"


def _run(root, *args):
    return CliRunner().invoke(cli, ["--catalog", str(root), *map(str, args)])


def _bad_paths(tmp_path, catalog_root, suffix):
    """Paths each command must refuse, with the words of the refusal."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(catalog_root)
    (tmp_path / "folder").mkdir()
    existing = tmp_path / f"old{suffix}"
    existing.write_text("old")
    os.mkfifo(tmp_path / f"pipe{suffix}")  # replaced by a rename, a pipe or a device would be lost
    name = f"out{suffix}"
    return {
        "in the catalog": (catalog_root / name, "inside the catalog"),
        "in a dataset folder": (catalog_root / "raw" / name, "inside the catalog"),
        "through a symbolic link": (tmp_path / "link" / name, "inside the catalog"),
        "through ..": (tmp_path / "elsewhere" / ".." / "catalog" / name, "inside the catalog"),
        "a folder": (tmp_path / "folder", "directory"),
        "no folder": (tmp_path / "nowhere" / name, "does not exist"),
        "existing file": (existing, "add --force"),
        "a pipe": (tmp_path / f"pipe{suffix}", "not a regular file"),
    }


@pytest.mark.parametrize("bad", ["in the catalog", "in a dataset folder", "through a symbolic link", "through ..",
                                 "a folder", "no folder", "existing file", "a pipe"])  # fmt: skip
@pytest.mark.parametrize("command, option", CASES, ids=[f"{' '.join(c)} {o}" for c, o in CASES])
def test_unusable_output_paths_are_refused_before_any_work(catalog, tmp_path, no_work, command, option, bad):
    catalog.write(demo_dataset(), "raw")
    before = sorted(p.relative_to(catalog.root) for p in catalog.root.rglob("*"))
    path, words = _bad_paths(tmp_path, catalog.root, SUFFIX[option])[bad]
    for as_json in (False, True):
        result = _run(catalog.root, *command, *WRITERS[command], option, path, *(["--json"] if as_json else []))
        assert result.exit_code == 2, result.output
        message = json.loads(result.stdout)["error"] if as_json else result.stderr
        assert option in message and str(path) in message and words in message, message
        assert no_work not in result.output and "Traceback" not in result.output
    assert sorted(p.relative_to(catalog.root) for p in catalog.root.rglob("*")) == before
    assert (tmp_path / f"old{SUFFIX[option]}").read_text() == "old"


@pytest.mark.parametrize("command, option", CASES, ids=[f"{' '.join(c)} {o}" for c, o in CASES])
def test_a_folder_that_is_not_writable_is_refused(catalog, tmp_path, monkeypatch, no_work, command, option):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # tests may run as root, whom permission bits do not stop: the check asks os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != str(locked) and real_access(p, mode, **kw))
    result = _run(catalog.root, *command, *WRITERS[command], option, locked / f"x{SUFFIX[option]}")
    assert result.exit_code == 2 and f"folder {locked} is not writable" in result.stderr, result.output


@pytest.mark.parametrize("command, option", CASES, ids=[f"{' '.join(c)} {o}" for c, o in CASES])
def test_force_lets_an_existing_file_through_to_the_work(catalog, tmp_path, no_work, command, option):
    existing = tmp_path / f"old{SUFFIX[option]}"
    existing.write_text("old")
    result = _run(catalog.root, *command, *WRITERS[command], option, existing, "--force")
    assert no_work in result.output, result.output  # past the checks; the (stubbed) work then fails
    assert existing.read_text() == "old", "nothing is written before the work is done"


def test_the_figure_and_the_summary_must_be_two_files(catalog, tmp_path, no_work):
    same = tmp_path / "same.md"
    result = _run(catalog.root, "reproduce", "rietkerk", "--out", same, "--figure", tmp_path / "." / "same.md")
    assert result.exit_code == 2 and "--figure and --out name the same file" in result.stderr


def test_predictions_never_replace_their_source(catalog, tmp_path, no_work):
    source = tmp_path / "halos.h5"
    source.write_bytes(b"halos")
    (tmp_path / "alias.h5").symlink_to(source)
    for out in (source, tmp_path / "alias.h5"):
        result = _run(catalog.root, "predict-galaxies", source, "--out", out, "--force")
        assert result.exit_code == 2 and "is SOURCE" in result.stderr and no_work not in result.output
    assert source.read_bytes() == b"halos"


def test_the_report_folder_of_eqs_run_is_not_inside_the_catalog(catalog, tmp_path, monkeypatch):
    result = _run(catalog.root, "run", "--report-dir", catalog.root / "reports")
    assert result.exit_code == 2 and "--report-dir" in result.stderr and "inside the catalog" in result.stderr
    catalog.root.mkdir(parents=True)
    monkeypatch.chdir(catalog.root)  # the default, reports/<preset>, would land in the catalog
    result = _run(catalog.root, "run", "--preset", "smoke", "--json")
    assert result.exit_code == 2
    assert "reports/smoke (the default): inside the catalog" in json.loads(result.stdout)["error"]


# -- writing --------------------------------------------------------------------------------------


@pytest.fixture
def umask_022():
    mask = os.umask(0o022)
    yield
    os.umask(mask)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_atomic_writes_replace_whole_files_readable_by_others(tmp_path, umask_022):
    target = tmp_path / "summary.md"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second" and stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(OSError, match="No space left"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".md"  # writers that go by the suffix
            tmp.write_bytes(b"half of a fil")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert target.read_bytes() == b"second" and _leftovers(tmp_path) == []


def test_a_writer_that_makes_its_own_file_still_gets_0644(tmp_path, umask_022):
    target = tmp_path / "p.h5"
    with atomic_path(target) as tmp:
        tmp.unlink()  # as a writer that makes its own file does
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 and _leftovers(tmp_path) == []


@pytest.fixture
def predicting(catalog, monkeypatch):
    """predict-galaxies on a catalog dataset, its models and predictions stubbed (torch-free data)."""
    import surrogates.halos.predict as hp
    from surrogates.halos.choice import TargetChoice

    ref = catalog.write(demo_dataset(n=4), "raw")
    model = types.SimpleNamespace(ref="m@v1", attrs={"target": "log_mstar"})
    predictions = xr.Dataset(
        {"log_mstar": ("halo", np.array([9.5, 10.25, 11.0, 8.125])), "log_mstar_sigma": ("halo", np.full(4, 0.1))},
        coords={"halo_id": ("halo", np.arange(4))},
    )
    choice = TargetChoice("log_mstar", [model.ref], np.zeros(4, dtype=np.int64), [f"{model.ref}: stubbed"])
    predictions.attrs["models"] = [model.ref]
    monkeypatch.setattr(hp, "require_models", lambda cat, models=(): {})
    monkeypatch.setattr(hp, "best_predictions", lambda cat, ds, **kwargs: (predictions, [choice], []))
    return catalog, ref


def test_predict_galaxies_writes_atomically_and_replaces_only_with_force(predicting, tmp_path, monkeypatch, umask_022):
    catalog, ref = predicting
    out = tmp_path / "galaxies.csv"
    args = ("predict-galaxies", ref, "--format", "catalog", "--out", out)
    assert _run(catalog.root, *args).exit_code == 0
    first = out.read_text()
    assert first.splitlines()[0] == "halo_id,log_mstar,log_mstar_sigma" and len(first.splitlines()) == 5
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and _leftovers(tmp_path) == []
    again = _run(catalog.root, *args)
    assert again.exit_code == 2 and "add --force" in again.stderr
    assert _run(catalog.root, *args, "--force", "--json").exit_code == 0 and out.read_text() == first

    import surrogates.halos.predict as hp

    real = hp.write_predictions

    def disk_full(predictions, path):
        real(predictions, path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(hp, "write_predictions", disk_full)
    full = _run(catalog.root, *args, "--force")
    assert full.exit_code == 1 and "ENOSPC: No space left on device" in full.stderr and "Traceback" not in full.output
    assert out.read_text() == first and _leftovers(tmp_path) == [], "the old file stays whole; no temporary file"


def test_symbolic_links_are_written_through(predicting, tmp_path):
    catalog, ref = predicting
    target = tmp_path / "real.csv"
    target.write_text("old")
    (tmp_path / "link.csv").symlink_to(target)
    args = ("predict-galaxies", ref, "--format", "catalog", "--out", tmp_path / "link.csv", "--force")
    result = _run(catalog.root, *args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "link.csv").is_symlink() and target.read_text().startswith("halo_id,")


@pytest.mark.parametrize("name", ["summary.json", "summary.md"])
def test_summaries_are_json_or_markdown_by_name(tmp_path, umask_022, name):
    from flows.cli import write_summary

    out = tmp_path / name
    write_summary(out, str(out), {"rows": [1]}, "| a |")
    text = out.read_text()
    assert (json.loads(text) == {"rows": [1]}) if name.endswith(".json") else text == "| a |\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and _leftovers(tmp_path) == []
