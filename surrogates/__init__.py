"""Torch models built on invariant scalars, their training, prediction and model artefacts.

The trainer, the MLP, the dynamics and the artefacts are shared; each built-in system's models and runs
are a package of their own: ``surrogates.pendulum``, ``surrogates.rietkerk``, ``surrogates.halos``.

May import ``data_catalog``, ``sims`` and ``pipeline`` (plus torch).
"""
