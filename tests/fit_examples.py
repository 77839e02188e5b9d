"""The shipped example systems of ``eqs fit`` (docs/examples), loaded for tests: their generators'
``make_dataset`` and their declarations; and a two-body decay whose invariants are constant up to
round-off."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

from sims.declaration import SystemDeclaration

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
NAMES = ("charged-particle", "ee-to-mumu", "n-body", "rigid-body")


@cache
def generator(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name.replace('-', '_')}", EXAMPLES / name / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declaration_path(name: str) -> Path:
    return EXAMPLES / name / "declaration.json"


def declaration(name: str) -> SystemDeclaration:
    return SystemDeclaration.from_file(declaration_path(name))


def dataset(name: str, n: int = 300, seed: int = 0, **options):
    return generator(name).make_dataset(n, seed, **options)


DECAY = {
    "name": "decay",
    "symmetry": "O(1,3)",
    "quantities": [
        {"name": "p1", "units": "GeV", "kind": "vector", "role": "state"},
        {"name": "p2", "units": "GeV", "kind": "vector", "role": "state"},
        {"name": "M", "units": "GeV", "kind": "scalar", "role": "target"},
    ],
}
"""Declaration of :func:`decays`: the parent's mass from the two four-momenta."""


def decays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A parent of 50-150 GeV decaying to two muons, boosted: the muons' four-momenta (GeV, time
    first) and the parent's mass. Each muon's square is m^2 = 0.011 GeV^2 in every sample, computed
    as E^2 - |p|^2 of about 3000 GeV^2: the same up to round-off."""
    import torch

    from pipeline.frames import random_lorentz

    mass, muon = rng.uniform(50, 150, n), 0.105
    momentum = np.sqrt(mass**2 / 4 - muon**2)
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    energy = np.sqrt(momentum**2 + muon**2)[:, None]
    rest = [np.concatenate([energy, sign * momentum[:, None] * direction], 1) for sign in (1, -1)]
    torch.manual_seed(0)
    boosts = random_lorentz(n, 3, max_rapidity=0.5, dtype=torch.float64).numpy()
    p1, p2 = (np.einsum("nij,nj->ni", boosts, p) for p in rest)
    forward = np.sign(p1[:, :1])  # undo the time reversals: positive energies
    return forward * p1, forward * p2, mass
