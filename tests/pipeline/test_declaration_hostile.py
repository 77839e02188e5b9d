"""Hostile declarations and Rietkerk inputs: refused at once, with the limit or the expectation in
the message, never a traceback, a RecursionError or minutes of work."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from click.testing import CliRunner
from support import demo_dataset

from flows.cli import main as cli
from pipeline.features import MAX_INVARIANT_SCALARS, FeatureError, FeaturePlan, declaration_of, extract
from sims.declaration import (
    MAX_DECLARATION_BYTES,
    MAX_NESTING,
    MAX_QUANTITIES,
    DeclarationError,
    Kind,
    Quantity,
    SystemDeclaration,
    nesting_depth,
)
from sims.rietkerk import system as rk
from sims.rietkerk.solver import MAX_STEPS, explicit_reference, simulate


def _quantities(n: int) -> list[dict[str, str]]:
    return [{"name": f"q{i}", "units": "m"} for i in range(n)]


def _run(catalog, *args):
    return CliRunner().invoke(cli, ["--catalog", str(catalog.root), *args])


# -- size: every check is linear, and the limits are stated ----------------------------------------


def test_sixty_thousand_quantities_are_refused_at_once_with_the_limit():
    data = {"name": "big", "quantities": _quantities(60_000)}
    start = time.perf_counter()
    with pytest.raises(DeclarationError, match=f"60000 quantities; at most {MAX_QUANTITIES}"):
        SystemDeclaration.from_dict(data, source="big.json")
    with pytest.raises(DeclarationError, match=f"over the limit of {MAX_DECLARATION_BYTES}"):
        SystemDeclaration.from_json(json.dumps(data), source="big.json")
    many = [Quantity(f"q{i}", "m") for i in range(60_000)]
    with pytest.raises(DeclarationError, match=f"at most {MAX_QUANTITIES}"):
        SystemDeclaration("big", many)
    assert time.perf_counter() - start < 10  # a guard against quadratic checks, not a benchmark


def test_a_declaration_at_the_limit_parses_and_duplicates_are_still_found():
    data = {"name": "full", "quantities": _quantities(MAX_QUANTITIES)}
    assert len(SystemDeclaration.from_json(json.dumps(data), source="full.json").quantities) == MAX_QUANTITIES
    data["quantities"][-1]["name"] = "q0"
    with pytest.raises(DeclarationError, match="declared twice: q0"):
        SystemDeclaration.from_dict(data)


def test_too_many_invariant_scalars_are_refused_before_they_are_built():
    vectors = tuple(Quantity(f"v{i}", "m", Kind.VECTOR) for i in range(30))  # 465 inner products
    with pytest.raises(FeatureError, match=f"465 invariant scalars .* at most {MAX_INVARIANT_SCALARS}"):
        FeaturePlan(SystemDeclaration("wide", vectors, symmetry="O(3)"))


def test_cli_refuses_a_declaration_file_over_the_size_limit(catalog, tmp_path):
    catalog.write(demo_dataset(), "demo")
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"name": "big", "quantities": _quantities(60_000)}))
    result = _run(catalog, "features", "demo", "--declaration", str(path))
    assert result.exit_code == 2, result.output
    assert "--declaration" in result.output and str(MAX_DECLARATION_BYTES) in result.output


# -- nesting ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"name": "x", "quantities": [{"name": "a", "units": ' + "[" * 40 + "]" * 40 + "}]}",
    ],
)
def test_deep_json_is_refused_naming_the_source_and_the_limit(text):
    with pytest.raises(DeclarationError, match=f"deep.json: JSON nested more than {MAX_NESTING} levels"):
        SystemDeclaration.from_json(text, source="deep.json")


def test_nesting_depth_needs_no_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep) == MAX_NESTING + 1
    assert nesting_depth({"a": [1, {"b": 2}]}) == 3 and nesting_depth(5) == 0


def test_cli_and_dataset_attribute_refuse_deep_declarations(catalog, tmp_path):
    catalog.write(demo_dataset(), "demo")
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = _run(catalog, "features", "demo", "--declaration", str(path))
    assert result.exit_code == 2, result.output
    assert str(path.name) in result.output and f"more than {MAX_NESTING} levels" in result.output
    assert "Traceback" not in result.output
    recorded = demo_dataset().assign_attrs(declaration="[" * 50_000)
    with pytest.raises(DeclarationError, match="dataset d attribute 'declaration': JSON nested more than"):
        declaration_of(recorded, source="dataset d")


def test_unreadable_values_are_quoted_briefly():
    with pytest.raises(DeclarationError) as info:
        SystemDeclaration.from_dict({"name": "x", "quantities": [{"name": "a", "units": ["m"] * 100_000}]})
    assert len(str(info.value)) < 500


# -- a declared quantity the dataset lacks ---------------------------------------------------------


DEMO_DECLARATION = {
    "name": "demo",
    "symmetry": "O(3)",
    "quantities": [
        {"name": "weight", "units": "g"},
        {"name": "x", "units": "m", "kind": "vector", "role": "state"},
        {"name": "inertia", "units": "kg m^2", "role": "target"},
    ],
}


def test_a_missing_target_names_the_declaration_the_variable_and_the_dataset():
    declaration = SystemDeclaration.from_dict(DEMO_DECLARATION, source="demo.json")
    with pytest.raises(FeatureError) as info:
        extract(demo_dataset(), declaration, source="dataset demo@v1")
    text = str(info.value)
    assert "demo.json" in text and "'inertia'" in text and "target" in text
    assert "has variables count, flag, label, nan_ok, weight, x" in text
    lenient = extract(demo_dataset(), declaration, allow_missing_targets=True)
    assert "scale(inertia)" in lenient and "inertia_pi" not in lenient


def test_cli_missing_target_is_a_usage_error_and_writes_nothing(catalog, tmp_path):
    catalog.write(demo_dataset(), "demo")
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(DEMO_DECLARATION))
    result = _run(catalog, "features", "demo", "--declaration", str(path), "--dask-address", "synchronous")
    assert result.exit_code == 2, result.output
    for expected in ("demo.json", "'inertia'", "weight, x"):
        assert expected in result.output, expected
    assert [info.name for info in catalog.list()] == ["demo"]


def test_cli_parses_a_declaration_file_once(catalog, tmp_path, monkeypatch):
    catalog.write(demo_dataset(), "demo")
    path = tmp_path / "demo.json"
    path.write_text(json.dumps({**DEMO_DECLARATION, "quantities": DEMO_DECLARATION["quantities"][:2]}))
    calls = []
    real = SystemDeclaration.from_dict.__func__
    monkeypatch.setattr(SystemDeclaration, "from_dict", classmethod(lambda *a, **k: calls.append(1) or real(*a, **k)))
    result = _run(catalog, "features", "demo", "--declaration", str(path), "--dask-address", "synchronous")
    assert result.exit_code == 0, result.output
    assert calls == [1]


# -- Rietkerk inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "L, dl, message",
    [
        (1e308, 1e-308, f"at most {rk.MAX_CELLS}"),
        (10**400, 1.0, "L must be a positive, finite number"),
        (float("inf"), 1.0, "L must be a positive, finite number"),
        (200.0, True, "dl must be a positive, finite number"),
        (200.0, "2", "dl must be a positive, finite number"),
    ],
)
def test_grids_that_overflow_or_are_not_numbers(L, dl, message):
    with pytest.raises(rk.RietkerkInputError, match=message):
        rk.Grid(L, dl)


def test_runs_that_overflow_or_are_not_numbers():
    params = rk.Parameters.from_mapping(rk.TALK)
    grid = rk.Grid(32.0, 2.0)
    z0 = rk.initial_state(params, grid)
    for T, dt, message in [
        (1e308, 1e-308, f"at most {MAX_STEPS}"),
        (1.0, float("nan"), "dt must be a positive, finite number"),
        (float("inf"), 1.0, "T must be a non-negative number"),
        ("10", 1.0, "T must be a non-negative number"),
    ]:
        with pytest.raises(rk.RietkerkInputError, match=message):
            simulate(params, grid, z0, T=T, dt=dt)
    with pytest.raises(rk.RietkerkInputError, match="dl must be a positive"):
        explicit_reference(rk.TALK, z0[0].numpy(), 0.0, 1.0)
    with pytest.raises(rk.RietkerkInputError, match="unstable at dt"):
        explicit_reference(rk.TALK, z0[0].numpy(), 1e-200, 1.0, dt=0.5)  # dl**2 underflows, no ZeroDivision


@pytest.mark.parametrize("value", ["fast", 10**400, {"a": 1}])
def test_parameters_that_are_not_numbers(value):
    with pytest.raises(rk.RietkerkInputError, match="R must be a number"):
        rk.Parameters.from_mapping({**rk.TALK, "R": value})


def test_sampling_and_seeds_that_are_not_usable():
    rng = np.random.default_rng(0)
    with pytest.raises(rk.RietkerkInputError, match="range of R must be finite"):
        rk.sample_parameters(3, rng, {"R": (0.0, float("inf"))})
    with pytest.raises(rk.RietkerkInputError, match="range of R must be two numbers"):
        rk.sample_parameters(3, rng, {"R": (0.0,)})
    with pytest.raises(rk.RietkerkInputError, match="integer >= 0"):
        rk.sample_parameters(-1, rng, {})
    params = rk.Parameters.from_mapping(rk.TALK)
    with pytest.raises(rk.RietkerkInputError, match="seeds must be non-negative integers"):
        rk.initial_state(params, rk.Grid(32.0, 2.0), seeds=-1)
