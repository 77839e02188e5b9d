"""The springy double pendulum in ``sims``: its declared quantities, Hamiltonian and simulator
(:mod:`sims.pendulum.system`) and the published protocols as dataset generators
(:mod:`sims.pendulum.protocols`)."""

from sims.pendulum.protocols import PRESETS, PROTOCOLS, SPLITS, TEST_SPLITS, ProtocolConfig, generate, preset
from sims.pendulum.system import (
    DECLARATION,
    RAW_KIND,
    VARIANTS,
    Parameters,
    PendulumInputError,
    from_dataset,
    hamiltonian,
    simulate,
    to_dataset,
    vector_field,
)

__all__ = [
    "DECLARATION",
    "PRESETS",
    "PROTOCOLS",
    "RAW_KIND",
    "SPLITS",
    "TEST_SPLITS",
    "VARIANTS",
    "Parameters",
    "PendulumInputError",
    "ProtocolConfig",
    "from_dataset",
    "generate",
    "hamiltonian",
    "preset",
    "simulate",
    "to_dataset",
    "vector_field",
]
