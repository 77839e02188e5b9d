"""The Rietkerk flow (:mod:`flows.rietkerk.flow`: ``rietkerk_flow`` and ``run_system``, the main job's
step) and its command ``eqs reproduce rietkerk`` (:mod:`flows.rietkerk.cli`).

Names are imported when first used, not with the package: the command line lists its command without
importing Prefect or torch."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "rietkerk_flow": "flow",
    "run_system": "flow",
    "reproduce_rietkerk": "cli",
    "bench_rietkerk": "cli",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
