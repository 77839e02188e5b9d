"""Damaged and foreign files: clear errors on read, and verify names every damaged file."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from support import demo_dataset

from data_catalog import SCHEMA_VERSION, UnreadableDatasetError, file_sha256, read_dataset_file, read_file_attrs


@pytest.fixture
def stored(catalog):
    ref = catalog.write(demo_dataset(n=4000), "demo", seed=1)
    return catalog, ref, catalog.path_of(ref)


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_newer_schema_version_is_refused_clearly(stored, tmp_path):
    catalog, ref, path = stored
    newer = tmp_path / "newer.h5"
    shutil.copy(path, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION + 1)
    with pytest.raises(UnreadableDatasetError, match=rf"newer.h5: written with schema_version {SCHEMA_VERSION + 1}.*upgrade eqs"):
        read_dataset_file(newer)


def test_a_random_hdf5_file_is_refused_clearly(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(10)
    with pytest.raises(UnreadableDatasetError, match="foreign.h5: not an eqs catalog dataset.*schema_version"):
        read_dataset_file(foreign)


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_a_truncated_or_non_hdf5_file_is_refused_clearly(stored, tmp_path, keep):
    _, _, path = stored
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(UnreadableDatasetError, match="cut.h5: cannot be read as HDF5.*truncated"):
        read_dataset_file(cut)


def test_foreign_files_inside_the_catalog_are_reported_by_open_and_verify(stored, tmp_path):
    catalog, ref, path = stored
    with h5py.File(path.with_name("v2.h5"), "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(UnreadableDatasetError, match="v2.h5: not an eqs catalog dataset"):
        catalog.open("demo@v2")
    report = catalog.verify()
    assert [r.ref for r in report.corrupt] == ["demo@v2"]
    assert any("not an eqs catalog dataset" in p for p in report.corrupt[0].problems)


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75, 0.99])
def test_a_flipped_byte_anywhere_is_found_by_verify(stored, where):
    catalog, ref, path = stored
    assert catalog.verify().ok
    _flip_byte(path, int(path.stat().st_size * where))
    report = catalog.verify()
    assert not report.ok
    assert [r.path for r in report.corrupt] == [str(path)]
    assert any("file bytes changed" in p for p in report.corrupt[0].problems)
    assert not catalog.verify(ref).ok


def test_changed_data_is_found_even_when_the_file_checksum_is_rewritten(stored):
    """The content hash is an independent check: data edited in place, checksum file 'repaired'."""
    catalog, ref, path = stored
    with h5py.File(path, "r") as f:
        offset = f["count"].id.get_offset()
    assert offset is not None, "the test needs an uncompressed, contiguous variable"
    _flip_byte(path, offset)
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.write_text(f"{file_sha256(path)}  {path.name}\n")
    report = catalog.verify(ref)
    assert not report.ok
    assert any("content hash mismatch" in p for p in report.corrupt[0].problems)


def test_a_missing_checksum_file_is_damage_and_the_content_is_still_checked(stored):
    catalog, ref, path = stored
    path.with_name(path.name + ".sha256").unlink()
    report = catalog.verify()
    assert not report.ok, "without its checksum file, created_utc and code_version cannot be checked"
    (problem,) = report.corrupt[0].problems
    assert "checksum file v1.h5.sha256 is missing" in problem and "created_utc" in problem
    with h5py.File(path, "r") as f:
        offset = f["count"].id.get_offset()
    _flip_byte(path, offset)
    assert any("content hash mismatch" in p for p in catalog.verify(ref).corrupt[0].problems)


def test_a_damaged_version_is_never_handed_out_as_the_identical_one(stored):
    catalog, ref, path = stored
    with h5py.File(path, "r") as f:
        offset = f["count"].id.get_offset()
    _flip_byte(path, offset)  # bit rot in the data; the recorded content hash is intact
    again = catalog.write(demo_dataset(n=4000), "demo", seed=1)
    assert again == "demo@v2"
    np.testing.assert_array_equal(catalog.open(again)["count"].values, demo_dataset(n=4000)["count"].values)


def test_operating_system_errors_pass_through_and_mark_verify_results_transient(stored, monkeypatch):
    import errno

    import data_catalog.store as store

    catalog, ref, path = stored

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(store.h5py, "File", denied)
    with pytest.raises(PermissionError):
        read_file_attrs(path)
    result = catalog.verify(ref).results[0]
    assert result.transient and not result.ok
    assert "I/O error, possibly transient" in result.problems[0]


def test_damaged_catalog_attributes_are_reported_clearly(stored):
    catalog, ref, path = stored
    with h5py.File(path, "r+") as f:
        f.attrs["params"] = "{not json"
    with pytest.raises(UnreadableDatasetError, match="v1.h5: damaged catalog attributes"):
        catalog.info(ref)
    assert not catalog.verify(ref).ok


def test_foreign_directories_are_ignored_with_a_warning(stored):
    catalog, ref, path = stored
    (catalog.root / "lost+found").mkdir()
    (catalog.root / "notes.txt").write_text("hello")
    assert catalog.names() == ["demo"]
    report = catalog.verify()
    assert report.ok
    assert any("lost+found is not a dataset" in w for w in report.warnings)


def test_lineage_marks_unreadable_ancestors(stored):
    catalog, ref, path = stored
    child = catalog.write(demo_dataset(1), "child", parents=[ref])
    path.write_bytes(b"garbage")
    graph = catalog.lineage(child)
    assert graph[ref]["error"] and "cannot be read as HDF5" in graph[ref]["error"]
    assert graph[child]["parents"] == [ref] and graph[child]["error"] is None


@pytest.mark.parametrize("error", [KeyError("address of object past end of allocation"), RuntimeError("wrong heap signature")])
def test_damaged_structures_are_findings_and_do_not_block_writes(stored, monkeypatch, error):
    """h5py reports some damage as KeyError or RuntimeError rather than OSError."""
    import data_catalog.store as store

    catalog, ref, path = stored
    real_file = store.h5py.File

    def damaged(name, *args, **kwargs):
        if str(name) == str(path):
            raise error
        return real_file(name, *args, **kwargs)

    monkeypatch.setattr(store.h5py, "File", damaged)
    result = catalog.verify(ref).results[0]
    assert not result.ok and not result.transient and "cannot be read as HDF5" in result.problems[0]
    with pytest.raises(UnreadableDatasetError):
        catalog.open(ref)
    assert catalog.write(demo_dataset(9), "demo") == "demo@v2"


def test_a_writer_that_has_not_locked_yet_loses_its_lock_file_and_starts_over(catalog):
    """The cleanup race: a lock file created but not yet locked looks abandoned. The cleaner deletes
    it while holding the lock; the writer then finds its lock file gone and must pick a new name."""
    import fcntl
    import os

    from data_catalog.store import _abandoned_writes

    tmp = catalog.root / ".tmp"
    tmp.mkdir(parents=True)
    lock = tmp / "deadbeef.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)  # the writer, between creating and locking
    try:
        assert _abandoned_writes(tmp, remove=True) == [tmp / "deadbeef"]
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert not lock.exists(), "the writer's identity check (fstat against stat) must now fail"
    finally:
        os.close(fd)
    catalog.write(demo_dataset(0), "after")
    assert list(tmp.iterdir()) == []
