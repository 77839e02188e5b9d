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
