"""The main job (``eqs run``) at the smoke preset: every system and the report, and a second run entirely
from cache (an interrupted run: test_main_interrupted.py, so that the two run side by side)."""

from __future__ import annotations

import importlib
import json

import pytest
from click.testing import CliRunner
from support import forbid
from toy_system import TOY

import pipeline.report
from data_catalog import Catalog
from flows import registry
from flows.cli import main as cli
from flows.main import PRESETS, choose_systems, main_job


def expensive() -> list[tuple[object, str]]:
    """Every registered system's simulation, training and evaluation entry points, and the report."""
    found = []
    for _, target in registry.iter_expensive():
        module, _, name = target.partition(":")
        found.append((importlib.import_module(module), name))
    return found + [(pipeline.report, "build_report")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("main-job")
    catalog, reports = root / "catalog", root / "reports"
    args = ["--catalog", str(catalog), "run", "--preset", "smoke", "--report-dir", str(reports), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    return Catalog(catalog), reports, out["refs"]


def test_the_smoke_run_covers_every_system_and_writes_the_report(first_run):
    catalog, reports, refs = first_run
    assert set(refs) >= {"catalog-check", "report", "report-html", "report-markdown"}
    info = catalog.info(refs["report"])
    assert info.kind == "report"
    parent_kinds = {catalog.info(p).kind for p in info.parents}
    assert "evaluation" in parent_kinds  # the report cites the evaluations it was built from
    html = (reports / "report.html").read_text()
    assert str(reports / "report.html") == refs["report-html"]
    for system in ("pendulum", "Rietkerk", "halo"):
        assert system.lower() in html.lower()
    assert (reports / "report.md").read_text().strip()


def test_a_second_run_reuses_every_step(first_run, monkeypatch):
    catalog, reports, refs = first_run
    before = catalog.refs()
    forbid(monkeypatch, expensive())
    again = main_job(catalog=str(catalog.root), preset="smoke", report_dir=str(reports))
    # the catalog check verifies the first run's datasets too, so its record gets a new version once
    assert {k: v for k, v in again.items() if k != "catalog-check"} == {
        k: v for k, v in refs.items() if k != "catalog-check"
    }
    new = set(catalog.refs()) - set(before)
    assert {r.split("@")[0] for r in new} <= {"catalog-verification"}


def test_systems_and_presets_are_checked():
    assert choose_systems(None) == list(registry.names()) == ["pendulum", "rietkerk", "halos"]
    assert choose_systems("halos, pendulum") == ["pendulum", "halos"]
    with pytest.raises(ValueError, match="subset of"):
        choose_systems("pendulum,galaxies")
    with pytest.raises(ValueError, match="subset of"):
        choose_systems([])
    assert {"smoke", "demo", "paper"} <= set(PRESETS)
    assert all(set(PRESETS) <= set(system.presets) for system in registry.systems())
    result = CliRunner().invoke(cli, ["run", "--systems", "weather"])
    assert result.exit_code == 2 and "subset of" in result.output


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister(TOY.name)


def test_a_system_added_through_the_registry_alone_runs_in_the_main_job_and_the_report(tmp_path, toy):
    catalog, reports = tmp_path / "catalog", tmp_path / "reports"
    args = ["--catalog", str(catalog), "run", "--preset", "smoke", "--systems", "toy", "--report-dir", str(reports)]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    refs = json.loads(result.stdout[result.stdout.index("{") :])["refs"]
    cited = Catalog(catalog).info(refs["report"]).parents
    assert {r.split("@")[0] for r in cited} == {"toy-smoke-test", "toy-smoke-shifted"}
    html, markdown = (reports / "report.html").read_text(), (reports / "report.md").read_text()
    assert "Toy system" in html and "Toy system" in markdown
    for split in ("test", "shifted"):
        assert split in markdown
    # its command and its flow are found through the registry too
    assert "toy" in CliRunner().invoke(cli, ["reproduce", "--help"]).output
    from flows.schedules import flows_by_name

    assert flows_by_name()["toy"].name == "toy"


def test_methods_add_each_systems_comparison_to_the_report_and_reuse_the_cached_steps(first_run, tmp_path):
    catalog, _, refs = first_run
    before = {r for r in catalog.refs() if r.startswith("pendulum") and "-on-" in r}
    reports = tmp_path / "reports"
    args = ["--catalog", str(catalog.root), "run", "--preset", "smoke", "--systems", "pendulum", "--methods"]
    result = CliRunner().invoke(cli, [*args, "--report-dir", str(reports), "--json"])
    assert result.exit_code == 0, result.output
    markdown = (reports / "report.md").read_text()
    for model in ("relaxed-hnn", "emlp-hnn-o3", "emlp-hnn-d6", "dimensional-hnn-units-augment", "relaxed-units-hnn"):
        assert f"| {model} |" in markdown
    assert "| EMLP SO(2) | - | - |" in markdown and "symmetry error, O(2) about z (worst)" in markdown
    after = {r for r in catalog.refs() if r.startswith("pendulum") and "-on-" in r}
    assert before < after  # the first run's evaluations kept, the methods' added beside them
    assert registry.get("pendulum").preset("smoke").options == registry.get("pendulum").presets["smoke"].options
    assert registry.get("rietkerk").preset("smoke", methods=True) == registry.get("rietkerk").presets["smoke"]


def test_methods_say_which_systems_add_nothing(monkeypatch, tmp_path):
    import flows.main

    seen = {}
    monkeypatch.setattr(flows.main, "main_job", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr("flows.cli.commands._flow_result", lambda state, what: {})
    args = ["--catalog", str(tmp_path / "c"), "run", "--systems", "rietkerk,halos", "--methods"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("rietkerk", "halos"):
        assert f"--methods: {name} has no method comparison in the main job: " in result.stderr
    assert seen["methods"] is True and seen["systems"] == ["rietkerk", "halos"]
