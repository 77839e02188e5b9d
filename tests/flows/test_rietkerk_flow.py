"""The Rietkerk flow end to end on the smoke preset, its cache and its command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from data_catalog import Catalog
from flows.cli import main
from flows.rietkerk.flow import rietkerk_flow
from surrogates.rietkerk import runs as sr


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run of the flow, shared: the command's test reuses its data and emulators."""
    root = str(tmp_path_factory.mktemp("rietkerk") / "catalog")
    return root, rietkerk_flow(preset="smoke", seeds=1, catalog=root, regime_maps=False)


def test_the_flow_runs_every_step_and_reuses_its_cache(smoke_run, monkeypatch):
    root, result = smoke_run
    cat = Catalog(root)
    raw = result.data["raw"]
    assert set(raw) == {"train", "val", "test", "rainfall", "shifted", "rescaled", "units"}
    rows = {(r["emulator"], r["split"]): r for r in result.details["rows"]}
    typed = {(r.model, r.split): r for r in result.rows}
    assert typed.keys() == rows.keys() and typed["pi", "test"].in_distribution
    assert typed["pi", "units"].mean == rows["pi", "units"]["mean"]
    assert len(rows) == 10
    # the same systems in other units: identical scores for the Pi-group emulator, not for the baseline
    assert abs(rows["pi", "units"]["mean"] - rows["pi", "test"]["mean"]) < 1e-12
    assert rows["dimensional", "units"]["mean"] > 2 * rows["dimensional", "test"]["mean"]
    lineage = cat.lineage(result.models["pi"][0])
    assert raw["train"] in lineage and result.data["statistics"]["train"] in lineage
    assert list(cat.info(raw["units"]).parents) == [raw["test"]]
    found = cat.open(result.artifacts["discovery"]).load()
    assert float(abs(found["fitted"] / found["true"] - 1).max()) < 0.02  # every term within 2 %

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached emulator was trained again")

    monkeypatch.setattr(sr, "train_emulator", must_not_train)
    again = rietkerk_flow(preset="smoke", seeds=1, catalog=root, regime_maps=False)
    assert again == result


def test_reproduce_rietkerk_command(smoke_run, tmp_path):
    """On the flow test's catalog: the command takes its data and emulators from the cache and adds the
    regime maps."""
    root, out, figure = smoke_run[0], tmp_path / "summary.md", tmp_path / "map.png"
    args = ["--catalog", str(root), "reproduce", "rietkerk", "--preset", "smoke", "--seeds", "1", "--emulator", "pi"]
    result = CliRunner().invoke(main, [*args, "--out", str(out), "--figure", str(figure)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| pi | units |" in text and "dimensional" not in text and "Regimes at T = 20 d" in text
    assert figure.read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert summary["regime_maps"]["rietkerk2002"] and summary["rows"][0]["emulator"] == "pi"
    bad = CliRunner().invoke(main, ["--catalog", str(root), "reproduce", "rietkerk", "--preset", "huge"])
    assert bad.exit_code == 2 and "huge" in bad.output
