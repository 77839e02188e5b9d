"""The pendulum's flow (:mod:`flows.pendulum.flow`: ``pendulum_flow`` and ``run_system``, the main job's
step) and its command ``eqs reproduce pendulum`` (:mod:`flows.pendulum.cli`).

Names are imported when first used, not with the package: the command line lists its command without
importing Prefect or torch."""

from __future__ import annotations

from flows import lazy_attributes

_MODULES = {
    "pendulum_flow": "flow",
    "run_system": "flow",
    "reproduce_pendulum": "cli",
    "bench_pendulum": "cli",
}
__all__ = sorted(_MODULES)


__getattr__ = lazy_attributes(__name__, _MODULES)
