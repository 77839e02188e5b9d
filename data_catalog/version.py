"""The code version recorded in every artefact: the package version, plus the git commit when
the package runs from a git checkout (with '.dirty' when it has uncommitted changes)."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "eqs"


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def code_version() -> str:
    version = package_version()
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return version
    try:
        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()

        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"
