"""Dataset names and references.

A name is 1 to 128 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter or digit and
without ``..``; names are used as directory names, so this keeps them portable and safe.
A reference is ``name`` (the latest version), ``name@latest`` or ``name@vN`` (N >= 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidNameError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VERSION_PATTERN = re.compile(r"v([1-9][0-9]*)")


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is a valid dataset name (see :func:`validate_name` for the reasons)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None and ".." not in name


def validate_name(name: object) -> str:
    """Return ``name`` unchanged if it is a valid dataset name, else raise InvalidNameError."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"dataset name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name:
        raise InvalidNameError(f"dataset name {name!r} contains a path separator")
    if ".." in name:
        raise InvalidNameError(f"dataset name {name!r} contains '..'")
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidNameError(
            f"dataset name {name!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Ref:
    """A parsed reference; ``version`` is None for 'the latest version'."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@v{self.version}"


def parse_ref(ref: str | Ref) -> Ref:
    """Parse ``name``, ``name@latest`` or ``name@vN``."""
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, str):
        raise InvalidNameError(f"dataset reference must be a string like 'name@v3', got {ref!r}")
    name, sep, version = ref.partition("@")
    validate_name(name)
    if not sep or version == "latest":
        return Ref(name)
    match = _VERSION_PATTERN.fullmatch(version)
    if not match:
        raise InvalidNameError(
            f"dataset reference {ref!r} has a bad version {version!r}: expected 'v1', 'v2', ... or 'latest'"
        )
    return Ref(name, int(match.group(1)))


def format_ref(name: str, version: int) -> str:
    return f"{name}@v{version}"
