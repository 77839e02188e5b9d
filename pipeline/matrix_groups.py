"""Matrix groups given by their generators, and the tensors they leave invariant.

The bases of EMLP-style equivariant layers (Finzi, Welling and Wilson, ICML 2021, arXiv:2104.09459):
a linear map between tensor representations commutes with a group exactly when, read as one tensor,
it is invariant, and a tensor is invariant under a group exactly when it is annihilated by the Lie
algebra's generators (the connected part) and fixed by the discrete generators (the other
components). Stacking those conditions on the d^r components of a rank-r tensor gives a linear
system whose null space is the basis (:func:`invariant_tensors`).

Only orthogonal groups are built here: for them the dual representation equals the representation,
so a map from rank-a to rank-b tensors is a rank-(a+b) tensor with the same action on every index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm

NULL_TOLERANCE = 1e-10  # a squared singular value of the conditions, relative to the largest: invariant below it


@dataclass(frozen=True)
class MatrixGroup:
    """A subgroup of O(d): the closure of exp(span(lie)) and the discrete generators.

    ``lie`` holds antisymmetric d x d generators (k, d, d) and ``discrete`` orthogonal matrices (m, d, d),
    both as nested tuples so that the group is hashable (the invariant bases are cached per group).
    """

    name: str
    d: int
    lie: tuple = ()
    discrete: tuple = ()

    def __post_init__(self):
        for a in self.lie_algebra:
            if a.shape != (self.d, self.d) or not np.allclose(a, -a.T, atol=1e-14):
                raise ValueError(
                    f"group {self.name}: Lie generators must be antisymmetric {self.d} x {self.d} matrices"
                )
        for h in self.discrete_generators:
            if h.shape != (self.d, self.d) or not np.allclose(h @ h.T, np.eye(self.d), atol=1e-12):
                raise ValueError(
                    f"group {self.name}: discrete generators must be orthogonal {self.d} x {self.d} matrices"
                )

    @property
    def lie_algebra(self) -> np.ndarray:
        return np.array(self.lie, dtype=float).reshape(-1, self.d, self.d)

    @property
    def discrete_generators(self) -> np.ndarray:
        return np.array(self.discrete, dtype=float).reshape(-1, self.d, self.d)

    def random_element(self, rng: np.random.Generator, word: int = 8) -> np.ndarray:
        """A random element: exp of a random algebra element times a random word in the discrete generators
        (every element of a connected compact group is an exponential; the word reaches the other components)."""
        g = np.eye(self.d)
        if self.lie:
            g = expm(np.tensordot(rng.normal(scale=np.pi, size=len(self.lie)), self.lie_algebra, 1))
        for _ in range(word if self.discrete else 0):
            choice = rng.integers(len(self.discrete) + 1)
            if choice:
                g = g @ self.discrete_generators[choice - 1]
        return g


def _tuple(matrices) -> tuple:
    return tuple(tuple(tuple(float(v) for v in row) for row in m) for m in matrices)


def rotation_generator(i: int, j: int, d: int) -> np.ndarray:
    """E_ji - E_ij: the rotation from axis i towards axis j, as an element of so(d)."""
    a = np.zeros((d, d))
    a[j, i], a[i, j] = 1.0, -1.0
    return a


def orthogonal(d: int, proper: bool = False) -> MatrixGroup:
    """O(d), or SO(d) with ``proper``: all of so(d), and the reflection of the first axis for O(d)."""
    lie = [rotation_generator(i, j, d) for i in range(d) for j in range(i + 1, d)]
    reflection = np.diag([-1.0] + [1.0] * (d - 1))
    return MatrixGroup(f"{'SO' if proper else 'O'}({d})", d, _tuple(lie), () if proper else _tuple([reflection]))


MIRROR_XZ = np.diag([1.0, -1.0, 1.0])  # the reflection y -> -y: a vertical mirror plane containing z


def about_z(name: str) -> MatrixGroup:
    """A subgroup of O(3) that fixes the z axis: O(2), SO(2) (all rotations about z, with or without
    the mirror ``MIRROR_XZ``), or the dihedral group Dk (the rotation by 2 pi / k and the mirror)."""
    if name in ("O(2)", "SO(2)"):
        mirror = _tuple([MIRROR_XZ]) if name == "O(2)" else ()
        return MatrixGroup(f"{name} about z", 3, _tuple([rotation_generator(0, 1, 3)]), mirror)
    if name.startswith("D") and name[1:].isdigit() and int(name[1:]) >= 1:
        angle = 2 * np.pi / int(name[1:])
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return MatrixGroup(f"{name} about z", 3, (), _tuple([rotation, MIRROR_XZ]))
    raise ValueError(f"unknown group about z {name!r}: use O(2), SO(2) or Dk (k a positive integer)")


def _on_tensors(m: np.ndarray, rank: int, derivation: bool) -> np.ndarray:
    """The action of a group element (m^{(x) rank}) or of an algebra element (sum of m on one index) on rank-r tensors."""
    d = m.shape[0]
    if derivation:
        eye = np.eye(d)
        total = np.zeros((d**rank, d**rank))
        for i in range(rank):
            factors = [eye] * rank
            factors[i] = m
            total += functools.reduce(np.kron, factors)
        return total
    return functools.reduce(np.kron, [m] * rank, np.eye(1))


@functools.cache
def invariant_tensors(group: MatrixGroup, rank: int) -> np.ndarray:
    """An orthonormal basis (d^rank, K) of the rank-``rank`` tensors the group leaves invariant, with
    components in C order (the first index slowest). Rank 0 is the scalar, always invariant."""
    if rank == 0:
        return np.ones((1, 1))
    size = group.d**rank
    constraints = [_on_tensors(a, rank, derivation=True) for a in group.lie_algebra]
    constraints += [_on_tensors(h, rank, derivation=False) - np.eye(size) for h in group.discrete_generators]
    # the null space of the stacked conditions, from their Gram matrix (d^r square: fast at rank 6), then
    # polished by one SVD of the conditions restricted to it so that round-off stays at machine precision
    stacked = np.concatenate(constraints)
    values, vectors = np.linalg.eigh(stacked.T @ stacked)
    basis = vectors[:, values < NULL_TOLERANCE * max(1.0, values[-1])]
    if basis.shape[1]:
        basis = np.linalg.qr(basis)[0]
    basis.setflags(write=False)
    return basis
