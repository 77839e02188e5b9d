"""Symmetries discovered from data: the linear algebra (docs/discovery.md).

The method is LieGG's (Moskalev, Sepliarskaia, Sosnovik and Smeulders, "LieGG: Studying learned Lie
group generators", NeurIPS 2022): a model fitted without any symmetry is differentiated at the data,
and the generators of its symmetries are the solutions of a linear system, found by one SVD.

- **Linear symmetries of the vector space.** A generator ``A`` (d x d) acts on every vector input
  together, ``v_k -> v_k + eps A v_k``. A scalar output f is invariant when, at every sample,
  ``sum_k grad_k f . (A v_k) = 0``: one row ``vec(sum_k grad_k f v_k^T)`` per sample, linear in
  ``vec(A)``. A vector output is equivariant when ``sum_k J_k A v_k - A f = 0``: d rows per sample.
  The discovered algebra is the span of the right singular vectors whose singular value is small
  against the typical one (each sample's rows scaled to unit norm first, so that every sample weighs
  the same whatever its size) and separated from the next by a gap: the numerical rank deficiency of
  the constraints (:func:`solve`).
- **Scalings.** Exponents ``a_q`` per quantity and ``a_y`` for the target, ``x_q -> lambda^a_q x_q``,
  leave the target invariant up to its own scaling when ``sum_q a_q x_q . grad_q f = a_y f``: one row
  per sample (d for a vector output), linear in ``(a, a_y)``. Dimensional analysis predicts the span
  of the base dimensions' exponent vectors; the two spans are compared by their principal angles.

Inputs that are constant over the data carry no information on how the model depends on them; a
caller leaves them out of the scalings (the prediction is then the scalings that keep them fixed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import null_space, subspace_angles

from pipeline.matrix_groups import rotation_generator

THRESHOLD = 0.2  # a symmetry's residual is below this fraction of the typical direction's
GAP = 2.5  # and the first direction that is not a symmetry has at least this many times the residual


@dataclass(frozen=True)
class NullSpace:
    """The discovered solutions (rows of ``basis``, unit norm, orthonormal) and every direction's
    residual relative to the typical one (``relative``, ascending, one per unknown)."""

    basis: np.ndarray
    relative: np.ndarray
    threshold: float
    gap: float
    ordered: np.ndarray  # every direction (rows), smallest residual first: the diagnostics read the best k

    @property
    def dimension(self) -> int:
        return int(self.basis.shape[0])


def _unit_blocks(rows: np.ndarray) -> np.ndarray:
    """(n, r, p) -> (n * r, p), each sample's block of r rows scaled to unit Frobenius norm (a sample
    whose rows are all zero says nothing and is dropped)."""
    norms = np.sqrt((rows**2).sum(axis=(1, 2)))
    keep = norms > 0
    return (rows[keep] / norms[keep, None, None]).reshape(-1, rows.shape[-1])


def solve(rows: np.ndarray, threshold: float = THRESHOLD, gap: float = GAP) -> NullSpace:
    """The approximate null space of the constraints ``rows`` (n samples, r rows each, p unknowns): the k
    directions of smallest residual, for the largest k whose k-th residual (relative to the typical
    one) is below ``threshold`` and at most 1 / ``gap`` of the next (all p below the threshold: all)."""
    if rows.ndim == 2:
        rows = rows[:, None, :]
    matrix = _unit_blocks(rows)
    if matrix.shape[0] < matrix.shape[1]:
        raise ValueError(f"{matrix.shape[0]} constraints cannot determine {matrix.shape[1]} unknowns: use more samples")
    _, singular, vt = np.linalg.svd(matrix, full_matrices=False)
    typical = np.sqrt(np.mean(singular**2))
    order = np.argsort(singular)
    relative = singular[order] / typical
    dimension = 0
    for k in range(1, len(relative) + 1):
        if relative[k - 1] >= threshold:
            break
        if k == len(relative) or relative[k] >= gap * max(relative[k - 1], np.finfo(float).tiny):
            dimension = k
    return NullSpace(vt[order[:dimension]], relative, threshold, gap, vt[order])


def _tensor_terms(gradient: np.ndarray, tensor: np.ndarray) -> np.ndarray:
    """``G T^T + G^T T`` (..., d, d): the coefficient of each A_ab in the change ``<G, A T + T A^T>`` of
    a function whose gradient with respect to the tensor T is G, as T moves like ``g T g^T``."""
    return gradient @ np.swapaxes(tensor, -1, -2) + np.swapaxes(gradient, -1, -2) @ tensor


def invariance_rows(
    gradients: Sequence[np.ndarray],
    vectors: Sequence[np.ndarray],
    tensor_gradients: Sequence[np.ndarray] = (),
    tensors: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Rows (n, d^2) of the invariance of a scalar output: ``vec(sum_k grad_k v_k^T)`` over the vectors,
    plus ``vec(G T^T + G^T T)`` over the rank-2 tensors; each gradient and vector (n, ..., d), the
    members of a set summed over like separate vectors; each tensor and its gradient (n, d, d)."""
    n, d = (vectors or tensors)[0].shape[0], (vectors or tensors)[0].shape[-1]
    total = np.zeros((n, d, d))
    for g, v in zip(gradients, vectors, strict=True):
        total += np.einsum("nma,nmb->nab", g.reshape(n, -1, d), v.reshape(n, -1, d))
    for g, t in zip(tensor_gradients, tensors, strict=True):
        total += _tensor_terms(g.reshape(n, d, d), t.reshape(n, d, d))
    return total.reshape(n, d * d)


def equivariance_rows(
    jacobians: Sequence[np.ndarray],
    vectors: Sequence[np.ndarray],
    output: np.ndarray,
    tensor_jacobians: Sequence[np.ndarray] = (),
    tensors: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Rows (n, d, d^2) of the equivariance of a vector output f (n, d): for output component i,
    ``vec(sum_k J_k[i, :] v_k^T + sum_T (J_T[i] T^T + J_T[i]^T T) - e_i f^T)``; each Jacobian
    (n, d_out, ..., d), each tensor's (n, d_out, d, d)."""
    n, d = output.shape
    total = np.zeros((n, d, d, d))  # (sample, i, a, b)
    for jac, v in zip(jacobians, vectors, strict=True):
        total += np.einsum("nima,nmb->niab", jac.reshape(n, d, -1, d), v.reshape(n, -1, d))
    for jac, t in zip(tensor_jacobians, tensors, strict=True):
        total += _tensor_terms(jac.reshape(n, d, d, d), t.reshape(n, 1, d, d))
    total -= np.einsum("ia,nb->niab", np.eye(d), output)
    return total.reshape(n, d, d * d)


def scaling_rows(directional: Sequence[np.ndarray], output: np.ndarray) -> np.ndarray:
    """Rows of the scalings: per sample (and output component), ``[x_q . grad_q f for each q, -f]``;
    ``directional[q]`` is (n,) for a scalar output, (n, d) for a vector one."""
    columns = [np.asarray(c) for c in directional] + [-np.asarray(output)]
    rows = np.stack(columns, -1)
    return rows if rows.ndim == 3 else rows[:, None, :]


# -- the algebras the discovered ones are compared with ------------------------------------------------


def rotation_algebra(d: int) -> np.ndarray:
    """so(d): the d(d-1)/2 generators E_ji - E_ij (i < j), flattened and orthonormal (rows of d^2)."""
    rows = [rotation_generator(i, j, d).ravel() / np.sqrt(2) for i in range(d) for j in range(i + 1, d)]
    return np.array(rows).reshape(-1, d * d)


def lorentz_algebra(d: int) -> np.ndarray:
    """so(1, d-1) with time first: rotations of the d-1 spatial axes and boosts E_0i + E_i0 (rows of d^2)."""
    out = []
    for i in range(1, d):
        boost = np.zeros((d, d))
        boost[0, i] = boost[i, 0] = 1.0
        out.append(boost.ravel() / np.sqrt(2))
    spatial = rotation_algebra(d - 1).reshape(-1, d - 1, d - 1)
    for r in spatial:
        a = np.zeros((d, d))
        a[1:, 1:] = r
        out.append(a.ravel())
    return np.array(out)


def rotation_axis(generator: np.ndarray) -> np.ndarray:
    """The axis (unit, 3) of the rotation a 3 x 3 generator's antisymmetric part describes."""
    a = 0.5 * (generator - generator.T)
    axis = np.array([a[2, 1], a[0, 2], a[1, 0]])
    return axis / np.linalg.norm(axis)


def rotations_about(axis: np.ndarray) -> np.ndarray:
    """so(2) about ``axis`` in 3-D: its one generator, the cross product with the axis (1, 9)."""
    x, y, z = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    a = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return (a / np.linalg.norm(a)).reshape(1, 9)


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The principal angles in degrees between the spans of the rows of ``a`` and of ``b``, ascending
    (min of their dimensions of them; the largest says whether the smaller span lies in the larger)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros(0)
    return np.sort(np.degrees(subspace_angles(a.T, b.T)))


def dimensional_scalings(exponents: np.ndarray, fixed: Sequence[int] = ()) -> np.ndarray:
    """The scalings dimensional analysis predicts (rows, orthonormal): ``exponents`` is (unknowns, base
    dimensions), the dimension vector of every input quantity and then of the target; the scalings of
    the base units, restricted to those that leave the rows ``fixed`` (constant inputs) unscaled."""
    exponents = np.asarray(exponents, dtype=float)
    if fixed:
        allowed = null_space(exponents[list(fixed)])  # base-unit changes that keep them fixed
        if allowed.size == 0:
            return np.zeros((0, exponents.shape[0]))
        span = exponents @ allowed
    else:
        span = exponents
    if not np.any(span):
        return np.zeros((0, exponents.shape[0]))
    u, s, _ = np.linalg.svd(span, full_matrices=False)
    return u[:, s > 1e-10 * s.max()].T


# -- the group a discovery describes, as a declaration states it ----------------------------------------

ANGLE_TOLERANCE = 5.0  # degrees: a discovered algebra lies in a known one when every principal angle is below


@dataclass(frozen=True)
class DiscoveredGroup:
    """The continuous group a discovery's linear symmetries generate, in a declaration's terms: ``linear``
    is ``"none"``, ``"rotations"`` (so(d)), ``"axis"`` (so(2) about ``axis`` in 3-D) or ``"lorentz"``."""

    linear: str
    space_dim: int
    axis: tuple[float, float, float] | None = None

    def symmetry(self, translations: bool) -> str:
        """The declaration's ``symmetry``: the rotations are proper (reflections are not discovered); rotations
        about an axis are SO(3) of the inputs and the axis; ``translations`` are carried from the declaration
        (they are not sought). The Lorentz group can only be declared as O(1,d)."""
        d = self.space_dim
        if self.linear == "none":
            return "none"
        if self.linear == "lorentz":
            return f"O(1,{d - 1})"
        return f"{'SE' if translations else 'SO'}({d})"


def discovered_group(linear: dict, tolerance: float = ANGLE_TOLERANCE) -> DiscoveredGroup:
    """The group of a discovery's ``linear`` result (``surrogates.declared.discovery.discover``); a
    ValueError saying what was found when it is none of the groups a declaration can state."""
    d, k = int(linear["space_dim"]), int(linear["dimension"])
    if k == 0:
        return DiscoveredGroup("none", d)
    full = d * (d - 1) // 2

    def within(key: str) -> bool:
        angles = linear.get(key) or []
        return bool(angles) and max(angles) < tolerance

    if k == full and within("angles_to_rotations"):
        return DiscoveredGroup("rotations", d)
    if k == full and within("angles_to_lorentz"):
        return DiscoveredGroup("lorentz", d)
    if d == 3 and k == 1 and within("angles_to_rotations_about_axis") and within("angles_to_rotations"):
        return DiscoveredGroup("axis", d, tuple(float(c) for c in linear["axis"]))
    shown = ", ".join(f"{a:.2g}" for a in linear.get("angles_to_rotations", []))
    raise ValueError(
        f"the {k} discovered generator(s) are not so({d}), the Lorentz algebra or the rotations about one axis "
        f"within {tolerance:g} degrees (principal angles to so({d}): {shown or 'none'})"
    )
