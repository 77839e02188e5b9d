"""What the catalog asks of the file system before it opens or writes a file.

- Only regular files are opened, and never through a symbolic link: a FIFO blocks ``open`` forever,
  ``/dev/zero`` never ends a hash, and a link can lead out of the catalog (where its target may
  change without the catalog knowing). The check is made on the path (``lstat``) before opening,
  and again on the open descriptor where the catalog reads the bytes itself.
- A write that would not fit (free space, the process's file-size limit ``ulimit -f``) is refused
  before it starts, with the path and the numbers. HDF5 cannot recover from a failed write: the
  library keeps the half-closed datasets and crashes when it tidies them up at process exit, so a
  failure is better found before the first byte. Where one still happens (another process filled
  the disk meanwhile), :func:`note_hdf5_write_failure` records it, and the process then ends with
  exit status 1 once Python's own exit handlers have run, without HDF5's (which would crash it).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import resource
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import CatalogLayoutError, StorageFullError, UnreadableDatasetError

#: Bytes kept free beyond the estimate: HDF5 metadata, the checksum file, rounding to blocks.
HEADROOM_BYTES = 4 * 2**20
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# h5py reports a failed write as OSError or RuntimeError whose text carries the C errno
_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")
_hdf5_write_failed = False


def _describe(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def require_regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """The ``lstat`` of ``path``, or :class:`UnreadableDatasetError` if it is not a regular file
    (a symbolic link, a directory, a FIFO, a device). ``FileNotFoundError`` passes through."""
    path = Path(path)
    info = os.lstat(path)
    if stat.S_ISREG(info.st_mode):
        return info
    what = _describe(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        what += f" to {os.readlink(path)}"
    raise UnreadableDatasetError(
        f"{path}: is {what}; a catalog file must be a regular file inside the catalog, and is never opened otherwise"
    )


def open_regular_file(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of ``path``, refused (no wait) unless it is a regular file reached
    without a symbolic link; ``O_NONBLOCK`` keeps a FIFO swapped in after the check from blocking."""
    require_regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            require_regular_file(path)  # replaced by a link since the check: say so
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        require_regular_file(path)
        raise UnreadableDatasetError(f"{path}: changed into a special file while it was opened")
    return fd


def _require_layout(path: Path, role: str, test: Callable[[int], bool], expected: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not test(info.st_mode):
        raise CatalogLayoutError(
            f"{path}: the catalog's {role} must be {expected}, but it is {_describe(info.st_mode)}; "
            "move it away (no dataset is stored in it) and run the command again"
        )


def require_directory(path: Path, role: str) -> None:
    """Refuse an existing ``path`` that is not a real directory (a file, or a symbolic link)."""
    _require_layout(path, role, stat.S_ISDIR, "a directory")


def require_layout_file(path: Path, role: str) -> None:
    """Refuse an existing ``path`` that is not a regular file (a directory, a link, a FIFO)."""
    _require_layout(path, role, stat.S_ISREG, "a regular file")


def file_size_limit() -> int | None:
    """The process's soft limit on the size of a file it writes (``ulimit -f``), or None."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def ensure_room(target: str | os.PathLike[str], nbytes: int, *, written: int = 0) -> None:
    """Refuse (:class:`StorageFullError`) to write ``nbytes`` more to the file ``target``, which
    holds ``written`` bytes already, when its file system or the file-size limit cannot take them."""
    target = Path(target)
    needed = int(nbytes) + HEADROOM_BYTES
    limit = file_size_limit()
    if limit is not None and written + needed > limit:
        raise StorageFullError(
            errno.EFBIG,
            f"{target}: writing about {_size(written + needed)} would pass this process's file-size "
            f"limit of {_size(limit)} (EFBIG; see 'ulimit -f'); nothing was stored",
            str(target),
        )
    folder = target.parent
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    if needed > free:
        raise StorageFullError(
            errno.ENOSPC,
            f"{folder}: about {_size(needed)} are needed and {_size(free)} are free on its file system "
            "(ENOSPC); free some space or use a catalog on a larger disk; nothing was stored",
            str(folder),
        )


def storage_failure(exc: BaseException, target: str | os.PathLike[str]) -> StorageFullError | None:
    """The disk-full or file-too-large error behind ``exc`` (raised while writing ``target``,
    possibly by HDF5 as text), or None when it is not one."""
    code = exc.errno if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS else None
    if code is None:
        found = [int(m) for m in _ERRNO_IN_TEXT.findall(str(exc))]
        code = next((c for c in found if c in _SPACE_ERRNOS), None)
    if code is None:
        return None
    return StorageFullError(
        code,
        f"{target}: the write failed: {errno.errorcode.get(code, code)}: {os.strerror(code)}; "
        "nothing was stored (free some space, or raise the file-size limit)",
        str(target),
    )


def note_hdf5_write_failure() -> None:
    """Record that an HDF5 file failed while being written (see the module docstring)."""
    global _hdf5_write_failed
    _hdf5_write_failed = True


def hdf5_write_failed() -> bool:
    """Whether an HDF5 write failed in this process, leaving HDF5 unable to shut down cleanly."""
    return _hdf5_write_failed


@contextlib.contextmanager
def hdf5_write_errors(target: str | os.PathLike[str]) -> Iterator[None]:
    """Around an HDF5 write to ``target``: a full disk or a file-size limit becomes
    :class:`StorageFullError` naming the path, and is noted (:func:`note_hdf5_write_failure`)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, StorageFullError):
            raise
        full = storage_failure(exc, target)
        if full is not None:
            # the failure HDF5 cannot close cleanly (data blocks left unwritten); other errors, such
            # as a folder that may not be written, fail before any data is
            note_hdf5_write_failure()
            raise full from None
        raise


def _end_without_hdf5_shutdown() -> None:
    """Registered when this module is imported, before the libraries that register exit handlers
    of their own (Prefect, dask), so that it runs after theirs: Python calls them last-in first-out."""
    if not _hdf5_write_failed:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)  # a write failed, so the process failed; HDF5's C exit handler is skipped


atexit.register(_end_without_hdf5_shutdown)
