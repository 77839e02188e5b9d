"""The registry of systems is the one place that names them; what it lists is complete and loads."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from flows import registry
from flows.registry import MAIN_PRESETS, RegistryError, System, SystemPreset

ROOT = Path(__file__).resolve().parent.parent
# the shared modules: the main job, the command line's core, the schedules, the report and summary engines
SHARED = [
    ROOT / "flows" / "main.py",
    ROOT / "flows" / "schedules.py",
    *sorted((ROOT / "flows" / "cli").glob("*.py")),
    *sorted((ROOT / "pipeline" / "report").glob("*.py")),
    ROOT / "pipeline" / "summaries.py",
    ROOT / "pipeline" / "results.py",
]


@pytest.mark.parametrize("path", SHARED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_modules_name_no_system(path):
    names = {s.name for s in registry.systems()} | {"halo"}  # "halo" for halos, its readers, halo-watch
    text = path.read_text().lower()
    found = sorted(n for n in names if re.search(rf"\b{re.escape(n)}", text))
    assert not found, f"{path.relative_to(ROOT)} names {found}: that belongs in the system's own modules"


@pytest.mark.parametrize("system", registry.systems(), ids=lambda s: s.name)
def test_every_entry_loads(system):
    assert set(MAIN_PRESETS) <= set(system.presets)
    assert callable(system.runner())
    section = system.section()
    assert section is None or section.name == system.name
    for name, target in system.flows.items():
        assert registry.load(target).name == name, "a flow's deployment name is the flow's own name"
    for path, target in system.commands.items():
        command = registry.load(target)
        assert isinstance(command, click.Command) and command.name == path.split()[-1]
    for target in system.expensive:
        assert callable(registry.load(target))


def test_commands_are_found_by_their_path():
    assert set(registry.commands("reproduce")) >= {"pendulum", "rietkerk", "halos"}
    assert registry.commands("sim") == {"halos": "flows.halos.cli:sim_halos"}
    assert "predict-galaxies" in registry.commands("")


def test_bad_entries_and_names_are_refused():
    presets = {name: SystemPreset("smoke", 1) for name in MAIN_PRESETS}
    with pytest.raises(RegistryError, match="no preset"):
        System(name="x", title="X", run="m:f", presets={"smoke": presets["smoke"]})
    with pytest.raises(RegistryError, match="module:attribute"):
        System(name="x", title="X", run="m.f", presets=presets)
    with pytest.raises(RegistryError, match="seeds"):
        SystemPreset("smoke", 0)
    with pytest.raises(RegistryError, match="registered: pendulum"):
        registry.get("weather")
    with pytest.raises(RegistryError, match="already"):
        registry.register(registry.get("halos"))


def test_benchmarks_run_as_eqs_bench_commands(tmp_path):
    from click.testing import CliRunner

    from flows.cli import main

    listed = CliRunner().invoke(main, ["bench", "--help"]).output
    assert all(name in listed for name in ("catalog", "features", *registry.commands("bench")))
    out = tmp_path / "bench.json"
    done = CliRunner().invoke(main, ["bench", "catalog", "--sizes-mb", "1", "--repeat", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text().strip().startswith("{")
    with pytest.raises(SystemExit) as usage:  # the benchmark's own parser reads the arguments
        main(["bench", "pendulum", "--no-such-option"], standalone_mode=False)
    assert usage.value.code == 2
