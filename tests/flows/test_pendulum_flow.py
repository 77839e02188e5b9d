"""The pendulum flow end to end on the smoke preset, and its command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from data_catalog import Catalog
from flows.cli import main
from flows.pendulum.flow import pendulum_flow
from surrogates.artifacts import load_model
from surrogates.pendulum import runs as pendulum_runs


def test_the_flow_generates_trains_evaluates_and_reuses_its_cache(tmp_path, monkeypatch):
    root = str(tmp_path / "catalog")
    result = pendulum_flow(protocol="units", preset="smoke", seeds=1, catalog=root)
    cat = Catalog(root)
    data = result.data["units"]
    assert set(data["splits"]) == {"train", "val", "exp1", "exp2", "exp3"}
    assert set(result.models) == {"dimensional-hnn", "dimensionless-hnn"}
    rows = {(r["model"], r["split"]): r for r in result.details["units"]["rows"]}
    assert len(rows) == 6 and all(r["seeds"] == 1 for r in rows.values())
    assert rows["dimensionless-hnn", "exp2"]["published_mean"] == 0.0089
    typed = {(r.model, r.split): r for r in result.rows}
    assert typed["dimensionless-hnn", "exp2"].published == 0.0089 and typed["dimensionless-hnn", "exp1"].in_distribution
    assert typed["dimensionless-hnn", "exp2"].refs == tuple(rows["dimensionless-hnn", "exp2"]["evaluations"])
    model_ref = result.models["dimensionless-hnn"][0]
    lineage = cat.lineage(model_ref)
    assert data["features"]["train"] in lineage and data["splits"]["train"] in lineage
    assert cat.info(model_ref).seed == 0
    assert not any((tmp_path / "catalog" / ".cache" / "checkpoints").iterdir())  # removed once stored

    def must_not_train(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(pendulum_runs, "train_model", must_not_train)
    again = pendulum_flow(protocol="units", preset="smoke", seeds=1, catalog=root)
    assert again == result


def test_reproduce_pendulum_command_writes_the_table(tmp_path):
    out = tmp_path / "table.md"
    root = tmp_path / "c"
    common = ["--catalog", str(root), "reproduce", "pendulum", "--preset", "smoke", "--protocol", "emlp"]
    args = [*common, "--seeds", "1", "--model", "mlp-node", "--activation", "tanh", "--dtype", "float32"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| mlp-node | test |" in text and "0.0480 +- 0.0000" in text and "activation tanh" in text
    model = load_model(Catalog(root), "pendulum-emlp-smoke-mlp-node-tanh-float32", device="cpu")
    assert model.config["activation"] == "tanh"
    assert Catalog(root).info(model.ref).params["training"]["dtype"] == "float32"
    bad = CliRunner().invoke(main, [*common, "--model", "nonsense"])
    assert bad.exit_code == 2 and "--model: unknown model(s) ['nonsense'] for --protocol emlp" in bad.output
    summary = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)["summaries"][0]
    assert summary["rows"][0]["model"] == "mlp-node" and summary["activation"] == "tanh"
