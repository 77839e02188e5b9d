"""Prefect flows and tasks, schedules and the ``eqs`` CLI: the only layer that knows all the others.

Importing this package does not import Prefect; ``flows.conventions``, ``flows.catalog_check``
and ``flows.main`` do. Each built-in system's flows and commands are a package of their own
(``flows.pendulum``, ``flows.rietkerk``, ``flows.halos``), named in :mod:`flows.registry`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` that imports each public name (``modules``: name -> submodule)
    when first used, so that importing the package imports neither Prefect nor torch."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{modules[name]}"), name)

    return __getattr__
