"""The ``eqs`` command line.

``core`` holds the group, the error handling every command shares and the output-file checks;
``catalog`` and ``commands`` the generic commands. Each system's commands live with the system and
are listed in :mod:`flows.registry`, which the group reads to show and load them when used: this
package names no system, and imports no system's code until one of its commands runs.
"""

from __future__ import annotations

from . import catalog, commands  # noqa: F401  (register their commands on main)
from .core import (
    CheckFailure,
    EqsGroup,
    UsageFailure,
    checked_output,
    main,
    os_error_message,
    project_failure,
    write_summary,
)

__all__ = [
    "CheckFailure",
    "EqsGroup",
    "UsageFailure",
    "checked_output",
    "main",
    "os_error_message",
    "project_failure",
    "write_summary",
]
