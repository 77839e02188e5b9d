"""The Rietkerk vegetation model in ``sims``: its declaration, parameters and reaction terms
(:mod:`sims.rietkerk.system`), the batched solvers (:mod:`sims.rietkerk.solver`), simulations as catalog
datasets (:mod:`sims.rietkerk.data`) and the parameter sweeps of the emulator and its OOD splits
(:mod:`sims.rietkerk.protocols`).

``python -m sims.rietkerk.benchmark`` (:mod:`sims.rietkerk.benchmark`, not imported here) times the
solver against py-pde."""

from sims.rietkerk.data import RAW_KIND, from_dataset, to_dataset
from sims.rietkerk.protocols import (
    OOD_SPLITS,
    PRESETS,
    SIMULATED_SPLITS,
    UNITS_SPLIT,
    SweepConfig,
    generate_split,
    preset,
)
from sims.rietkerk.solver import Solution, explicit_reference, simulate
from sims.rietkerk.system import (
    DECLARATION,
    FIELDS,
    PARAMETERS,
    RIETKERK_2002,
    TALK,
    UNITS,
    Grid,
    Parameters,
    RietkerkInputError,
    initial_state,
    linear_stability,
    reactions,
    sample_parameters,
)

__all__ = [
    "DECLARATION",
    "FIELDS",
    "OOD_SPLITS",
    "PARAMETERS",
    "PRESETS",
    "RAW_KIND",
    "RIETKERK_2002",
    "SIMULATED_SPLITS",
    "TALK",
    "UNITS",
    "UNITS_SPLIT",
    "Grid",
    "Parameters",
    "RietkerkInputError",
    "Solution",
    "SweepConfig",
    "explicit_reference",
    "from_dataset",
    "generate_split",
    "initial_state",
    "linear_stability",
    "preset",
    "reactions",
    "sample_parameters",
    "simulate",
    "to_dataset",
]
