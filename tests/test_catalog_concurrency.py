"""Several processes writing at once, and writers killed in the middle of a write."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import demo_dataset

WORKER = Path(__file__).with_name("catalog_worker.py")


def _start(root, name, seed, count, *extra):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(root), name, str(seed), str(count), *map(str, extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(tmp_path, jobs):
    start = tmp_path / "go"
    procs = [_start(tmp_path / "catalog", name, seed, count, "--start-file", start) for name, seed, count in jobs]
    time.sleep(0.5)  # let every worker import and wait at the start line
    start.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.split())
    return outputs


def test_four_processes_writing_the_same_name(tmp_path, catalog):
    outputs = _run_together(tmp_path, [("shared", 10 * i, 3) for i in range(4)])
    refs = [r for out in outputs for r in out]
    assert sorted(refs) == sorted(f"shared@v{v}" for v in range(1, 13)), "every write got its own version"
    assert catalog.versions("shared") == list(range(1, 13))
    hashes = {catalog.stored_hash(r) for r in refs}
    assert len(hashes) == 12
    report = catalog.verify()
    assert report.ok and len(report.results) == 12
    for out, (_, seed, _) in zip(outputs, [("shared", 10 * i, 3) for i in range(4)], strict=True):
        for k, ref in enumerate(out):
            np.testing.assert_array_equal(catalog.open(ref)["x"].values, demo_dataset(seed + k)["x"].values)


def test_four_processes_writing_different_names(tmp_path, catalog):
    outputs = _run_together(tmp_path, [(f"name{i}", i, 3) for i in range(4)])
    assert outputs == [[f"name{i}@v{v}" for v in (1, 2, 3)] for i in range(4)]
    assert catalog.verify().ok and len(catalog.verify().results) == 12


def test_four_processes_writing_identical_content_share_one_version(tmp_path, catalog):
    outputs = _run_together(tmp_path, [("same", 5, 1) for _ in range(4)])
    assert outputs == [["same@v1"]] * 4
    assert catalog.versions("same") == [1]


@pytest.mark.parametrize("stall_at", ["data", "rename"])
def test_a_writer_killed_mid_write_leaves_no_version_and_no_damage(tmp_path, catalog, stall_at):
    kept = catalog.write(demo_dataset(100), "victim", seed=100)
    signal_file = tmp_path / "stalled"
    proc = _start(catalog.root, "victim", 0, 1, "--stall-at", stall_at, "--signal-file", signal_file)
    deadline = time.monotonic() + 60
    while not signal_file.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the worker never reached the stall point"
        time.sleep(0.01)
    leftovers = list((catalog.root / ".tmp").iterdir())
    assert leftovers, "the killed writer should have a temporary file in progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert catalog.versions("victim") == [1], "no new version may be visible"
    # killed before its version was linked: at most its checksum file is there, which names no version
    stored = sorted(p.name for p in (catalog.root / "victim").iterdir())
    assert stored == ["v1.h5", "v1.h5.sha256"] + (["v2.h5.sha256"] if stall_at == "rename" else [])
    report = catalog.verify()
    assert report.ok
    assert report.warnings and "unfinished write" in report.warnings[0]
    np.testing.assert_array_equal(catalog.open(kept)["x"].values, demo_dataset(100)["x"].values)

    # the lock died with the writer: the next write succeeds at once and cleans up
    assert catalog.write(demo_dataset(0), "victim", seed=0) == "victim@v2"
    assert sorted(p.name for p in (catalog.root / "victim").iterdir()) == [
        "v1.h5", "v1.h5.sha256", "v2.h5", "v2.h5.sha256"
    ]
    assert list((catalog.root / ".tmp").iterdir()) == [], "the abandoned write was removed"
    assert catalog.verify().ok and not catalog.verify().warnings


def test_writers_wait_for_the_lock(tmp_path, catalog):
    """While one holder has the catalog lock, another process's write cannot publish."""
    catalog.write(demo_dataset(0), "locked", seed=0)
    with catalog._lock():
        proc = _start(catalog.root, "locked", 1, 1)
        deadline = time.monotonic() + 60
        while not any(p.suffix == ".h5" for p in (catalog.root / ".tmp").iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(2.0)  # ample time to publish, were the lock not respected
        assert proc.poll() is None and catalog.versions("locked") == [1]
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["locked@v2"] and catalog.versions("locked") == [1, 2]


def test_a_live_writer_keeps_its_temporary_files(tmp_path, catalog):
    """Cleanup by one writer never removes the files of another writer that is still alive."""
    signal_file = tmp_path / "stalled"
    proc = _start(catalog.root, "slow", 0, 1, "--stall-at", "data", "--signal-file", signal_file)
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        before = sorted(p.name for p in (catalog.root / ".tmp").iterdir())
        catalog.write(demo_dataset(1), "other")
        assert sorted(p.name for p in (catalog.root / ".tmp").iterdir()) == before
        assert not catalog.verify().warnings
    finally:
        proc.kill()
        proc.wait(timeout=30)
