"""The halos' flows: the pipeline (:mod:`flows.halos.flow`: ``halos_flow`` and ``run_system``, the main
job's step) and the watched directory (:mod:`flows.halos.watch`: ``halo_watch``), and their commands
``eqs sim halos``, ``eqs ingest halos``, ``eqs predict-galaxies`` and ``eqs reproduce halos``
(:mod:`flows.halos.cli`).

Names are imported when first used, not with the package: the command line lists the commands without
importing Prefect or torch."""

from __future__ import annotations

from flows import lazy_attributes

_MODULES = {
    "halos_flow": "flow",
    "run_system": "flow",
    "halo_watch": "watch",
    "sim_halos": "cli",
    "ingest_halos_command": "cli",
    "predict_galaxies_command": "cli",
    "reproduce_halos": "cli",
    "bench_halos": "cli",
}
__all__ = sorted(_MODULES)


__getattr__ = lazy_attributes(__name__, _MODULES)
