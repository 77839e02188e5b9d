"""Errors raised by the catalog. Each message names the file or dataset, the field and what was expected."""

from __future__ import annotations


class CatalogError(Exception):
    """Base class of every error the catalog raises on purpose."""


class InvalidNameError(CatalogError, ValueError):
    """A dataset name or reference does not follow the documented syntax."""


class NotFoundError(CatalogError, KeyError):
    """A name or version does not exist in the catalog."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SchemaError(CatalogError, ValueError):
    """A dataset does not satisfy the generic rules or the schema of its kind."""

    def __init__(self, subject: str, problems: list[str]):
        self.subject = subject
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{subject} is not valid:\n{lines}")


class UnreadableDatasetError(CatalogError, OSError):
    """A stored file cannot be read as a catalog dataset (truncated, not HDF5, foreign, too new)."""


class CorruptionError(CatalogError):
    """Verification found stored datasets whose bytes or content no longer match their checksums."""


class CatalogLayoutError(CatalogError):
    """The catalog's own files (its lock, its temporary folder, a dataset folder) are not what they
    must be: a directory where a file belongs, a symbolic link, a special file."""


class StorageFullError(CatalogError, OSError):
    """A write cannot be completed: no space left on the file system, or a file-size limit (ulimit -f).

    ``errno`` is ENOSPC, EDQUOT or EFBIG and ``filename`` the file or folder being written."""

    def __str__(self) -> str:  # the message already names the path and the errno
        return str(self.strerror)
