"""The catalog under hostile conditions: special files and links in place of its files, damaged
layout, full disks and file-size limits, killed writers' scratch folders, unreadable versions.

Each test covers a class of input, not one case: every path the catalog opens must be a regular
file inside it, checked before it is opened; every write that cannot fit fails with the path and
the errno and leaves nothing behind.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from support import demo_dataset

from data_catalog import Catalog, UnreadableDatasetError
from data_catalog.errors import CatalogLayoutError, StorageFullError
from data_catalog.filesystem import ensure_room, storage_failure

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _run(code: str, *, timeout: float = 60, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    """Python code in a fresh process (tests/ and the project importable), killed if it hangs."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        preexec_fn=limit,
    )


def _verify_json(root: Path) -> tuple[int, dict]:
    done = _run(
        f"""
        import sys
        from flows.cli import main
        sys.argv = ["eqs", "--catalog", {str(root)!r}, "catalog", "verify", "--json"]
        main()
        """
    )
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def stored(catalog):
    ref = catalog.write(demo_dataset(1), "demo", seed=1)
    return catalog, ref, catalog.path_of(ref)


# -- special files and links: refused before they are opened, never a hang -----------------------


def _replace_with(path: Path, what: str, tmp_path: Path) -> None:
    original = path.read_bytes()
    path.unlink()
    if what == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "link to an identical copy outside":
        outside = tmp_path / "outside.h5"
        outside.write_bytes(original)
        path.symlink_to(outside)
    elif what == "directory":
        path.mkdir()
    else:
        raise AssertionError(what)


SPECIAL = ["link to /dev/zero", "fifo", "link to an identical copy outside", "directory"]


@pytest.mark.parametrize("what", SPECIAL)
@pytest.mark.parametrize("target", ["version", "checksum file"])
def test_verify_names_a_special_file_and_never_hangs(stored, tmp_path, what, target):
    catalog, ref, path = stored
    victim = path if target == "version" else path.with_name(path.name + ".sha256")
    _replace_with(victim, what, tmp_path)
    status, report = _verify_json(catalog.root)
    assert status == 1 and not report["ok"]
    (result,) = report["results"]
    problem = " ".join(result["problems"])
    assert str(victim) in problem and "regular file" in problem


@pytest.mark.parametrize("what", SPECIAL)
def test_reading_a_special_version_is_refused_at_once(stored, tmp_path, what):
    catalog, ref, path = stored
    _replace_with(path, what, tmp_path)
    for read in (catalog.info, catalog.open, catalog.stored_hash):
        with pytest.raises(UnreadableDatasetError, match="regular file"):
            read(ref)


def test_listing_a_catalog_with_a_fifo_version_does_not_block(stored, tmp_path):
    catalog, ref, path = stored
    catalog.write(demo_dataset(2), "other", seed=2)
    _replace_with(path, "fifo", tmp_path)
    done = _run(
        f"""
        import sys
        from flows.cli import main
        sys.argv = ["eqs", "--catalog", {str(catalog.root)!r}, "catalog", "list", "--json"]
        main()
        """
    )
    assert done.returncode == 1
    rows = json.loads(done.stdout)
    assert [r["ref"] for r in rows if "kind" in r] == ["other@v1"], "the readable version is still listed"
    assert "FIFO" in next(r["unreadable"] for r in rows if r["ref"] == ref)


def test_a_dataset_folder_linked_out_of_the_catalog_is_not_read(stored, tmp_path):
    catalog, ref, path = stored
    outside = tmp_path / "elsewhere"
    path.parent.rename(outside)
    path.parent.symlink_to(outside)
    with pytest.raises(UnreadableDatasetError, match="symbolic link"):
        catalog.open(ref)
    assert not catalog.verify().ok


# -- the catalog's own layout ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, make",
    [
        (".lock", lambda p: p.mkdir()),
        (".lock", lambda p: os.mkfifo(p)),
        (".lock", lambda p: p.symlink_to("/dev/null")),
        (".tmp", lambda p: p.write_text("not a folder")),
        (".tmp", lambda p: p.symlink_to("/tmp")),
    ],
)
def test_a_damaged_lock_or_temporary_folder_is_named(catalog, entry, make):
    catalog.root.mkdir(parents=True)
    make(catalog.root / entry)
    with pytest.raises(CatalogLayoutError, match=rf"{entry}: the catalog's .* must be"):
        catalog.write(demo_dataset(0), "demo", seed=0)
    assert catalog.versions("demo") == []


@pytest.mark.parametrize("value", [np.void(b"\xff\xfe\x00binary"), np.frombuffer(b"\xff\xfe\x00", "V1")])
def test_a_binary_attribute_is_named(stored, value):
    catalog, ref, path = stored
    with h5py.File(path, "r+") as f:
        f.attrs["label"] = value
    with pytest.raises(UnreadableDatasetError, match="'label' holds binary data"):
        catalog.info(ref)


@pytest.mark.parametrize("attribute", ["params", "parents"])
def test_deeply_nested_json_attributes_are_refused(stored, attribute):
    catalog, ref, path = stored
    with h5py.File(path, "r+") as f:
        f.attrs[attribute] = "[" * 100_000 + "]" * 100_000
    with pytest.raises(UnreadableDatasetError, match="nested too deeply|damaged catalog attributes"):
        catalog.info(ref)
    assert not catalog.verify(ref).ok


# -- one bad version does not hide the rest -------------------------------------------------------


def test_catalog_list_names_a_version_it_may_not_read_and_lists_the_rest(catalog, monkeypatch):
    from click.testing import CliRunner

    from flows.cli import main

    catalog.write(demo_dataset(0), "locked", seed=0)
    catalog.write(demo_dataset(1), "open", seed=1)
    real_info = Catalog.info

    def info(self, ref):
        if str(ref).startswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self.path_of(ref)))
        return real_info(self, ref)

    monkeypatch.setattr(Catalog, "info", info)
    result = CliRunner().invoke(main, ["--catalog", str(catalog.root), "catalog", "list", "--json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [r["ref"] for r in rows if "kind" in r] == ["open@v1"]
    assert "Permission denied" in next(r["unreadable"] for r in rows if r["ref"] == "locked@v1")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_catalog_list_with_an_unreadable_file_as_an_ordinary_user(catalog):
    catalog.write(demo_dataset(0), "locked", seed=0)
    catalog.write(demo_dataset(1), "open", seed=1)
    catalog.path_of("locked@v1").chmod(0)
    done = _run(
        f"""
        import sys
        from flows.cli import main
        sys.argv = ["eqs", "--catalog", {str(catalog.root)!r}, "catalog", "list", "--json"]
        main()
        """
    )
    assert done.returncode == 1
    assert [r["ref"] for r in json.loads(done.stdout) if "kind" in r] == ["open@v1"]


# -- full disks and file-size limits --------------------------------------------------------------


def test_ensure_room_refuses_beyond_the_file_size_limit_and_the_free_space(tmp_path, monkeypatch):
    import data_catalog.filesystem as fs

    monkeypatch.setattr(fs, "file_size_limit", lambda: 10 * 2**20)
    with pytest.raises(StorageFullError, match="EFBIG") as caught:
        ensure_room(tmp_path / "x.h5", 8 * 2**20)
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(tmp_path / "x.h5")
    monkeypatch.setattr(fs, "file_size_limit", lambda: None)
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(StorageFullError, match="ENOSPC"):
        ensure_room(tmp_path / "x.h5", free + 1)
    ensure_room(tmp_path / "x.h5", 1024)


def test_hdf5_write_errors_are_recognised_by_their_errno():
    text = RuntimeError("Can't decrement id ref count (file write failed: errno = 28, error message = 'x')")
    assert storage_failure(text, "f.h5").errno == errno.ENOSPC
    assert storage_failure(OSError(errno.EFBIG, "File too large"), "f.h5").errno == errno.EFBIG
    assert storage_failure(OSError(errno.EIO, "I/O error"), "f.h5") is None


WRITE_BIG = """
    import sys
    from support import demo_dataset
    import data_catalog.store as store
    from data_catalog import Catalog
    from data_catalog.errors import StorageFullError
    if {bypass}:
        store.ensure_room = lambda *a, **k: None  # a disk that fills while the write runs
    try:
        Catalog({root!r}).write(demo_dataset(0, n=400_000), "big", seed=0)
    except StorageFullError as exc:
        print("REFUSED", exc.errno, exc)
        sys.exit(0 if not {bypass} else 3)
"""


def test_a_write_past_the_file_size_limit_is_refused_before_it_starts(tmp_path):
    root = tmp_path / "catalog"
    done = _run(WRITE_BIG.format(root=str(root), bypass=False), fsize=2 * 2**20)
    assert done.returncode == 0, done.stderr
    assert "REFUSED 27" in done.stdout and "file-size limit" in done.stdout
    assert not Catalog(root).versions("big")
    assert [p for p in (root / ".tmp").iterdir()] == [], "the temporary file was removed"


def test_a_write_that_fails_inside_hdf5_names_the_errno_and_stores_nothing(tmp_path):
    """Where the disk fills during the write, HDF5's own error is turned into the catalog's."""
    root = tmp_path / "catalog"
    done = _run(WRITE_BIG.format(root=str(root), bypass=True), fsize=2 * 2**20)
    assert "REFUSED 27" in done.stdout, done.stderr
    # HDF5 cannot close a file whose write failed, and crashes at exit if left to: the process
    # ends with status 1 instead of a signal
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert not Catalog(root).versions("big")
    assert [p for p in (root / ".tmp").iterdir()] == []


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0


def test_the_cli_on_a_full_disk_exits_1_with_the_path_and_no_signal(tmp_path):
    """A 1 MiB file system as the catalog (needs root to mount a tmpfs; skipped otherwise)."""
    root = tmp_path / "small"
    if not _tmpfs(root, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        done = _run(
            f"""
            import sys
            from flows.cli import main
            sys.argv = ["eqs", "--catalog", {str(root / 'catalog')!r}, "sim", "halos", "--halos", "200",
                        "--max-particles", "500", "--seed", "1"]
            main()
            """,
            timeout=300,
        )
        assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
        assert "ENOSPC" in done.stderr and str(root) in done.stderr
        assert "Traceback" not in done.stderr
        assert not Catalog(root / "catalog").names()
        assert list((root / "catalog" / ".tmp").iterdir()) == []
    finally:
        subprocess.run(["umount", str(root)], check=False)


def test_the_cli_past_the_file_size_limit_exits_1_with_no_signal(tmp_path):
    root = tmp_path / "catalog"
    done = _run(
        f"""
        import sys
        from flows.cli import main
        sys.argv = ["eqs", "--catalog", {str(root)!r}, "sim", "halos", "--halos", "200",
                    "--max-particles", "500", "--seed", "1"]
        main()
        """,
        fsize=256 * 2**10,
        timeout=300,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "EFBIG" in done.stderr and "Traceback" not in done.stderr
    assert list((root / ".tmp").iterdir()) == []


# -- scratch folders of killed processes ----------------------------------------------------------


def test_a_killed_process_scratch_folder_is_removed_by_the_next_write(catalog, tmp_path):
    signal_file = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from data_catalog import Catalog
                with Catalog({str(catalog.root)!r}).scratch() as folder:
                    (folder / "part.h5").write_bytes(b"x" * 4096)
                    Path({str(signal_file)!r}).write_text(str(folder))
                    time.sleep(600)
                """
            ),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        for _ in range(600):
            if signal_file.exists() and signal_file.read_text():
                break
            assert proc.poll() is None
            import time

            time.sleep(0.05)
        folder = Path(signal_file.read_text())
        assert folder.parent == catalog.root / ".tmp" and folder.is_dir()
        # a live owner's folder is left alone
        catalog.write(demo_dataset(0), "demo", seed=0)
        assert folder.is_dir()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    catalog.write(demo_dataset(1), "demo", seed=1)
    assert list((catalog.root / ".tmp").iterdir()) == []
