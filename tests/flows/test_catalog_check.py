"""The catalog-check flow and the task conventions, under a real (temporary) Prefect server."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from support import demo_dataset

import flows.catalog_check
from data_catalog import Catalog, CatalogError, CorruptionError
from flows.catalog_check import REPORT_NAME, catalog_check
from flows.cli import main as cli
from flows.conventions import catalog_task, in_catalog, input_key, is_transient


@pytest.fixture
def filled(catalog):
    raw = catalog.write(demo_dataset(0), "raw", seed=0)
    derived = catalog.write(demo_dataset(1), "derived", parents=[raw])
    return catalog, [derived, raw]


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("per_task", [1, 32], ids=["a task per version", "one task"])
def test_check_writes_a_report_with_the_checked_versions_as_parents(filled, monkeypatch, per_task):
    catalog, refs = filled
    monkeypatch.setattr(flows.catalog_check, "VERSIONS_PER_TASK", per_task)
    report = catalog_check(str(catalog.root))
    assert report == f"{REPORT_NAME}@v1"
    ds = catalog.open(report)
    assert list(ds["dataset"].values) == refs
    assert ds["ok"].values.all() and (ds["n_problems"].values == 0).all()
    assert catalog.info(report).parents == refs


def test_a_second_run_reuses_the_cached_report(filled, monkeypatch):
    catalog, _ = filled
    first = catalog_check(str(catalog.root))
    writes = []
    original = Catalog.write
    monkeypatch.setattr(Catalog, "write", lambda self, *a, **k: writes.append(a) or original(self, *a, **k))
    assert catalog_check(str(catalog.root)) == first
    assert writes == [], "the report task should have been a cache hit"
    assert (catalog.root / ".cache" / "prefect").is_dir(), "cached results live in the catalog"


def test_corruption_fails_the_flow_naming_the_file(filled):
    catalog, refs = filled
    path = catalog.path_of("raw@v1")
    _flip_byte(path)
    state = catalog_check(str(catalog.root), return_state=True)
    assert state.is_failed()
    with pytest.raises(CorruptionError, match=rf"(?s)1 corrupt version\(s\).*{path}.*file bytes changed"):
        state.result()
    report = catalog.open(f"{REPORT_NAME}@latest")
    ok = dict(zip(report["dataset"].values, report["ok"].values, strict=True))
    assert ok == {"derived@v1": True, "raw@v1": False}


def test_cache_key_follows_input_content_and_parameters(catalog):
    a1 = catalog.write(demo_dataset(0), "a")

    def fn(catalog, source_ref, factor):
        return source_ref

    root = str(catalog.root)
    key = input_key(fn, {"catalog": root, "source_ref": "a", "factor": 2})
    assert key == input_key(fn, {"catalog": root, "source_ref": a1, "factor": 2}), "same content, same key"
    assert key != input_key(fn, {"catalog": root, "source_ref": a1, "factor": 3})
    catalog.write(demo_dataset(1), "a")
    assert key != input_key(fn, {"catalog": root, "source_ref": "a", "factor": 2}), "new latest content"
    assert key == input_key(fn, {"catalog": root, "source_ref": a1, "factor": 2})
    assert input_key(fn, {"catalog": root, "source_ref": "missing", "factor": 2}) is None
    twin = catalog.write(demo_dataset(0), "twin")  # same content as a@v1 under another name
    assert catalog.stored_hash(twin) == catalog.stored_hash(a1)
    assert input_key(fn, {"catalog": root, "source_ref": twin, "factor": 2}) != key


def test_a_code_change_in_any_layer_changes_the_cache_key(monkeypatch):
    from pathlib import Path

    import flows.conventions as conventions

    conventions.code_fingerprint.cache_clear()
    before = conventions.code_fingerprint()
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: original(p) + (b"#" if p.parent.name == "sims" else b""))
    conventions.code_fingerprint.cache_clear()
    try:
        assert conventions.code_fingerprint() != before
    finally:
        monkeypatch.undo()
        conventions.code_fingerprint.cache_clear()
    assert conventions.code_fingerprint() == before


def test_transient_io_errors_are_retried_and_catalog_errors_are_not(catalog):
    calls = {"io": 0, "bad": 0}

    @catalog_task(cache=False, retry_delay_seconds=0)
    def flaky_io(catalog: str) -> str:
        calls["io"] += 1
        if calls["io"] < 3:
            raise OSError("stale NFS file handle")
        return "ok"

    @catalog_task(cache=False, retry_delay_seconds=0)
    def bad_data(catalog: str) -> str:
        calls["bad"] += 1
        raise CatalogError("variable 'x' has no units")

    from prefect import flow

    @flow
    def exercise(root: str) -> tuple:
        io = in_catalog(flaky_io, root)(root)
        bad = in_catalog(bad_data, root)(root, return_state=True)
        return io, bad.is_failed()

    assert exercise(str(catalog.root)) == ("ok", True)
    assert calls == {"io": 3, "bad": 1}
    assert callable(is_transient)


def test_eqs_run_stops_at_a_corrupt_catalog(filled):
    """The main job checks the catalog first and names the corrupt file (its full run: test_main.py)."""
    catalog, _ = filled
    _flip_byte(catalog.path_of("derived@v1"))
    result = CliRunner().invoke(cli, ["--catalog", str(catalog.root), "run", "--preset", "smoke"])
    assert result.exit_code == 1
    assert "derived/v1.h5" in result.output and "file bytes changed" in result.output
    assert np.isfinite(catalog.open("raw")["x"].values).all()
