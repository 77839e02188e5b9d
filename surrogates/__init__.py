"""Torch models built on invariant scalars, their training, prediction and model artefacts.

May import ``data_catalog``, ``sims`` and ``pipeline`` (plus torch).
"""
