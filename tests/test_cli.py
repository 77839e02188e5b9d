"""The eqs CLI's catalog commands: tables, --json, exit statuses, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from support import demo_dataset

from flows.cli import main as cli


@pytest.fixture
def filled(catalog):
    raw = catalog.write(demo_dataset(0), "raw", seed=0, params={"n": 6})
    catalog.write(demo_dataset(1), "raw", seed=1, params={"n": 6})
    catalog.write(demo_dataset(2), "features", parents=[raw])
    return catalog


def _run(catalog, *args):
    return CliRunner().invoke(cli, ["--catalog", str(catalog.root), *args])


def test_version_and_help():
    assert CliRunner().invoke(cli, ["--version"]).output.startswith("eqs, version ")
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "catalog" in result.output and "run" in result.output


def test_list_as_table_and_json(filled):
    table = _run(filled, "catalog", "list")
    assert table.exit_code == 0
    assert "features@v1" in table.output and "raw@v2" in table.output and "raw@v1" not in table.output
    rows = json.loads(_run(filled, "catalog", "list", "--all", "--json").output)
    assert [r["ref"] for r in rows] == ["features@v1", "raw@v1", "raw@v2"]
    assert rows[1]["versions"] == 2 and len(rows[1]["content_sha256"]) == 64


def test_show(filled):
    info = json.loads(_run(filled, "catalog", "show", "raw@v1", "--json").output)
    assert info["ref"] == "raw@v1" and info["seed"] == 0 and info["params"] == {"n": 6}
    assert {v["name"]: v["units"] for v in info["variables"]}["weight"] == "kg"
    table = _run(filled, "catalog", "show", "raw")
    assert table.exit_code == 0 and "raw@v2" in table.output and "kg" in table.output


def test_lineage(filled):
    graph = json.loads(_run(filled, "catalog", "lineage", "features@v1", "--json").output)
    assert graph["ref"] == "features@v1"
    assert graph["nodes"]["features@v1"]["parents"] == ["raw@v1"]
    tree = _run(filled, "catalog", "lineage", "features@v1")
    assert "features@v1" in tree.output and "raw@v1" in tree.output and "test.demo" in tree.output


def test_verify_reports_a_flipped_byte_with_exit_status_1(filled):
    ok = _run(filled, "catalog", "verify")
    assert ok.exit_code == 0 and "verified 3 version(s)" in ok.output and ": ok" in ok.output
    path = filled.path_of("raw@v1")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    bad = _run(filled, "catalog", "verify")
    assert bad.exit_code == 1
    assert f"CORRUPT raw@v1: {path}" in bad.output and "file bytes changed" in bad.output
    as_json = json.loads(_run(filled, "catalog", "verify", "--json").output)
    assert as_json["ok"] is False and [r["path"] for r in as_json["results"] if not r["ok"]] == [str(path)]
    assert _run(filled, "catalog", "verify", "raw@v2").exit_code == 0, "one healthy version checks clean"
    assert _run(filled, "catalog", "verify", "raw@v1").exit_code == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (("catalog", "show", "missing"), "no dataset named 'missing'"),
        (("catalog", "show", "raw@v9"), "raw@v9 does not exist"),
        (("catalog", "lineage", "../etc"), "path separator"),
        (("catalog", "verify", "raw@x"), "bad version"),
    ],
)
def test_usage_errors_are_clear_and_exit_2(filled, args, message):
    result = _run(filled, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_console_script_uses_the_environment_catalog(filled):
    env_result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "catalog", "list", "--json"],
        capture_output=True,
        text=True,
        env={"EQS_CATALOG": str(filled.root), "PATH": "/usr/bin:/bin"},
    )
    assert env_result.returncode == 0, env_result.stderr
    assert [r["ref"] for r in json.loads(env_result.stdout)] == ["features@v1", "raw@v2"]


def test_list_names_an_unreadable_version_and_still_lists_the_rest(filled):
    filled.path_of("raw@v2").write_bytes(b"not hdf5 at all")
    result = _run(filled, "catalog", "list")
    assert result.exit_code == 1
    assert "features@v1" in result.output
    assert "UNREADABLE raw@v2" in result.output and "cannot be read as HDF5" in result.output
    rows = json.loads(_run(filled, "catalog", "list", "--json").stdout)
    assert {r["ref"]: "unreadable" in r for r in rows} == {"features@v1": False, "raw@v2": True}


def test_the_catalog_option_wins_over_the_environment(filled, monkeypatch, tmp_path):
    monkeypatch.setenv("EQS_CATALOG", str(tmp_path / "elsewhere"))
    rows = json.loads(_run(filled, "catalog", "list", "--json").output)
    assert [r["ref"] for r in rows] == ["features@v1", "raw@v2"]
    assert "is empty" in CliRunner().invoke(cli, ["catalog", "list"]).output


def test_unreadable_files_exit_1_and_lineage_still_draws(filled):
    filled.path_of("raw@v1").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    shown = _run(filled, "catalog", "show", "raw@v1")
    assert shown.exit_code == 1 and "cannot be read as HDF5" in shown.output
    tree = _run(filled, "catalog", "lineage", "features@v1")
    assert tree.exit_code == 0 and "raw@v1  (unreadable:" in tree.output
