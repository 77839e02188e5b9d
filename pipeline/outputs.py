"""Files written for people (reports, summaries, figures, predictions): atomic and readable by others.

Each file is written under a temporary name in its own folder, flushed to disk and renamed over the
target, so a crash, a full disk or Ctrl-C leaves the previous file or the complete new one, never
half of one. The result gets the permissions of a file created normally (0644 under the usual umask
022), not the 0600 of a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    # read, not set and reset where the system says it: another thread (Prefect runs several) could
    # otherwise create a file in the moment the mask is 0
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by it still work);
    once the block has written it, it is synced and renamed over ``path``. On any error, ``path`` is
    untouched and the temporary file removed."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # the writer may have replaced the file mkstemp made (0600), so set the mode on what is there
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the data is synced
        _fsync(path.parent, directory=True)


def output_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at ``path`` (None when it can): checked before a long run, so that
    the run does not end on an unusable path."""
    real = os.path.realpath(path)
    if os.path.isdir(real):
        return "is a directory; give a file name"
    if os.path.exists(real) and not os.path.isfile(real):
        return "not a regular file (a device, a pipe); give a file name"
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):  # the file is replaced by a rename in its folder
        return f"folder {folder} is not writable"
    return None


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
