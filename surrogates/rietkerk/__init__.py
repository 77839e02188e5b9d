"""Surrogates of the Rietkerk model: the emulators of pattern statistics, their training and evaluation
(:mod:`surrogates.rietkerk.runs`, which registers ``rietkerk-pi-emulator`` and
``rietkerk-dimensional-emulator``).

Equation discovery (:mod:`surrogates.rietkerk.discovery`: sparse regression and the reaction MLP
``rietkerk-reaction-mlp``) is imported on its own: it also runs as ``python -m surrogates.rietkerk.discovery``,
and a package that imported it would register its model and dataset kind twice in that process."""

from surrogates.rietkerk.runs import (
    EMULATORS,
    DimensionalEmulator,
    PiEmulator,
    evaluate_emulator,
    predict_dimensionless,
    store_emulator,
    train_emulator,
)

__all__ = [
    "EMULATORS",
    "DimensionalEmulator",
    "PiEmulator",
    "evaluate_emulator",
    "predict_dimensionless",
    "store_emulator",
    "train_emulator",
]
