"""``eqs features``: declarations found from the dataset's kind, from a file, and clear refusals."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from support import demo_dataset, pendulum_dataset

from flows.cli import main as cli


def _run(catalog, *args):
    return CliRunner().invoke(cli, ["--catalog", str(catalog.root), *args])


def test_features_of_a_registered_system(catalog):
    ref = catalog.write(pendulum_dataset(n=12), "pend", kind="spring_pendulum.raw")
    result = _run(catalog, "features", "pend", "--dask-address", "threads", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out == {"source": ref, "features": "pend-features@v1", "system": "spring_pendulum"}
    assert catalog.info("pend-features").parents == [ref]


def test_features_with_a_declaration_file(catalog, tmp_path):
    catalog.write(demo_dataset(n=9), "demo")
    declaration = {
        "name": "demo",
        "symmetry": "O(3)",
        "quantities": [
            {"name": "weight", "units": "g"},
            {"name": "count", "units": "1"},
            {"name": "x", "units": "m", "kind": "vector", "role": "state"},
        ],
    }
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(declaration))
    result = _run(
        catalog,
        "features",
        "demo@v1",
        "--declaration",
        str(path),
        "--dask-address",
        "synchronous",
        "--name",
        "demo-inv",
    )
    assert result.exit_code == 0, result.output
    assert "demo@v1 -> demo-inv@v1" in result.output
    features = catalog.open("demo-inv")
    x = demo_dataset(n=9).x.values
    np.testing.assert_allclose(features["x.x"].values, (x * x).sum(-1), rtol=1e-14)
    assert list(features.pi_group.values) == ["count"]  # kg and m^2 admit no dimensionless combination


def test_refusals_are_usage_errors_that_say_what_to_do(catalog, tmp_path):
    catalog.write(demo_dataset(), "demo")
    result = _run(catalog, "features", "demo", "--dask-address", "threads")
    assert result.exit_code == 2
    assert "no registered system" in result.output and "--declaration" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "d", "quantities": [{"name": "x", "units": "parsnips"}]}))
    result = _run(catalog, "features", "demo", "--declaration", str(bad), "--dask-address", "threads")
    assert result.exit_code == 2 and "parsnips" in result.output
    result = _run(catalog, "features", "nothing-here", "--system", "rietkerk", "--dask-address", "threads")
    assert result.exit_code == 2 and "nothing-here" in result.output
    result = _run(catalog, "features", "demo", "--system", "nope")
    assert result.exit_code == 2 and "no system named 'nope'" in result.output
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    result = _run(catalog, "features", "demo", "--declaration", str(latin))
    assert result.exit_code == 2 and "not a UTF-8 JSON file" in result.output
    result = _run(catalog, "features", "demo", "--system", "spring_pendulum", "--dask-address", "Threads")
    assert result.exit_code == 2 and "is not 'local'" in result.output
