"""Invariant and equivariant building blocks for O(d), SO(d), E(d), Lorentz O(1,d) and permutations.

Every function takes numpy, dask or torch arrays (vectors along the last axis, sets of vectors
along the axis before it) and returns the same kind of array; on torch tensors everything is
differentiable, and norms keep finite gradients at zero. They are the "scalars" of Villar et al.:
by the first fundamental theorem of invariant theory, every O(d)-invariant function of vectors
v_1..v_n is a function of their inner products, every SO(d)-invariant one also of the
determinants of d-tuples, and every O(d)-equivariant vector function is sum_i f_i(scalars) v_i.
"""

from __future__ import annotations

import itertools
import types
from typing import Any, Callable, Sequence

import numpy as np


def is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def is_dask(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "dask"


def namespace(x: Any) -> types.ModuleType:
    """The array module for ``x``: torch, dask.array or numpy."""
    if is_torch(x):
        import torch

        return torch
    if is_dask(x):
        import dask.array

        return dask.array
    return np


def _stack(arrays: Sequence[Any], axis: int) -> Any:
    xp = namespace(arrays[0])
    return xp.stack(list(arrays), axis) if xp is not np else np.stack(arrays, axis)


def _metric_vector(d: int, metric: Any) -> np.ndarray | None:
    if metric is None:
        return None
    metric = np.asarray(metric, dtype=float)
    if metric.shape != (d,):
        raise ValueError(f"metric: expected the {d} diagonal entries of the metric, got shape {metric.shape}")
    return metric


def minkowski_metric(d_space: int, signature: str = "+-") -> np.ndarray:
    """Diagonal of the Minkowski metric on R^(1+d): (+1, -1, ..., -1) or, for ``'-+'``, its negative."""
    if signature not in ("+-", "-+"):
        raise ValueError(f"signature must be '+-' (time positive) or '-+', got {signature!r}")
    diag = np.array([1.0] + [-1.0] * d_space)
    return diag if signature == "+-" else -diag


def _as_metric(x: Any, metric: np.ndarray | None) -> Any:
    if metric is None:
        return x
    if is_torch(x):
        import torch

        return x * torch.as_tensor(metric, dtype=x.dtype, device=x.device)
    return x * metric


def inner(a: Any, b: Any, metric: Any = None) -> Any:
    """<a, b> along the last axis (Euclidean, or with a diagonal metric such as Minkowski's)."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"inner: vectors of dimension {a.shape[-1]} and {b.shape[-1]}")
    return (_as_metric(a, _metric_vector(a.shape[-1], metric)) * b).sum(-1)


def squared_norm(v: Any, metric: Any = None) -> Any:
    return inner(v, v, metric)


def norm(v: Any) -> Any:
    """Euclidean norm along the last axis; on torch its gradient at v = 0 is 0, not NaN."""
    sq = (v * v).sum(-1)
    if not is_torch(v):
        return namespace(v).sqrt(sq)
    import torch

    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(sq))


def gram(vectors: Any, metric: Any = None) -> Any:
    """All inner products <v_i, v_j> of vectors shaped (..., n, d): an (..., n, n) array."""
    left = _as_metric(vectors, _metric_vector(vectors.shape[-1], metric))
    xp = namespace(vectors)
    if xp is np:
        return np.einsum("...id,...jd->...ij", left, vectors)
    return xp.einsum("...id,...jd->...ij", left, vectors)


def upper_pairs(n: int) -> list[tuple[int, int]]:
    """The index pairs i <= j, row by row: the order of ``gram_upper``."""
    return [(i, j) for i in range(n) for j in range(i, n)]


def gram_upper(vectors: Any, metric: Any = None, pairs: Sequence[tuple[int, int]] | None = None) -> Any:
    """The independent inner products (i <= j, or only ``pairs``) as an (..., n_pairs) array."""
    n = vectors.shape[-2]
    pairs = upper_pairs(n) if pairs is None else list(pairs)
    for i, j in pairs:
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"gram_upper: pair {(i, j)} out of range for {n} vectors")
    metric = _metric_vector(vectors.shape[-1], metric)
    return _stack([inner(vectors[..., i, :], vectors[..., j, :], metric) for i, j in pairs], -1)


def minkowski_gram(vectors: Any, signature: str = "+-") -> Any:
    """Lorentz O(1,d) invariants: all Minkowski products of four-vectors shaped (..., n, 1 + d)."""
    return gram(vectors, minkowski_metric(vectors.shape[-1] - 1, signature))


def _det(matrices: Any) -> Any:
    """Determinant over the last two axes; explicit polynomials up to d = 5 (exact on dask, smooth
    on torch), the library routine beyond."""
    d = matrices.shape[-1]
    m = matrices
    if d == 1:
        return m[..., 0, 0]
    if d == 2:
        return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
    if d == 3:
        return (
            m[..., 0, 0] * (m[..., 1, 1] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 1])
            - m[..., 0, 1] * (m[..., 1, 0] * m[..., 2, 2] - m[..., 1, 2] * m[..., 2, 0])
            + m[..., 0, 2] * (m[..., 1, 0] * m[..., 2, 1] - m[..., 1, 1] * m[..., 2, 0])
        )
    if d <= 5:
        # cofactor expansion along the first row: a polynomial, so every derivative stays finite
        # (torch.linalg.det has no finite second derivative at singular matrices)
        total = None
        for col in range(d):
            minor = _stack([_stack([m[..., r, c] for c in range(d) if c != col], -1) for r in range(1, d)], -2)
            term = m[..., 0, col] * _det(minor)
            total = term if total is None else (total + term if col % 2 == 0 else total - term)
        return total
    if is_torch(m):
        import torch

        return torch.linalg.det(m)
    if is_dask(m):
        return m.map_blocks(np.linalg.det, drop_axis=[m.ndim - 2, m.ndim - 1], dtype=m.dtype)
    return np.linalg.det(m)


def determinant(*vectors: Any) -> Any:
    """det[v_1, ..., v_d] of d vectors in R^d (SO(d)-invariant, flips sign under reflections)."""
    d = vectors[0].shape[-1]
    if len(vectors) != d:
        raise ValueError(f"determinant: needs {d} vectors of dimension {d}, got {len(vectors)}")
    return _det(_stack(list(vectors), -2))


def determinants(vectors: Any, tuples: Sequence[tuple[int, ...]] | None = None) -> Any:
    """Determinants of every d-tuple i_1 < ... < i_d of vectors shaped (..., n, d): (..., C(n, d))."""
    n, d = vectors.shape[-2], vectors.shape[-1]
    tuples = list(itertools.combinations(range(n), d)) if tuples is None else list(tuples)
    if not tuples:
        raise ValueError(f"determinants: {n} vectors in R^{d} have no {d}-tuples")
    return _stack([determinant(*(vectors[..., i, :] for i in t)) for t in tuples], -1)


def generalized_cross(*vectors: Any) -> Any:
    """The vector c with <c, w> = det[v_1, ..., v_{d-1}, w] for all w: the cross product for d = 3.

    SO(d)-equivariant; under a reflection it picks up the determinant's sign (a pseudovector).
    """
    d = vectors[0].shape[-1]
    if len(vectors) != d - 1:
        raise ValueError(f"generalized_cross: needs {d - 1} vectors of dimension {d}, got {len(vectors)}")
    if d == 3:
        a, b = vectors
        return _stack(
            [
                a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
            ],
            -1,
        )
    rows = _stack(list(vectors), -2)  # (..., d-1, d)
    components = []
    for k in range(d):
        minor = _stack([rows[..., :, c] for c in range(d) if c != k], -1)  # (..., d-1, d-1)
        sign = (-1) ** (d - 1 + k)
        components.append(sign * _det(minor))
    return _stack(components, -1)


def center(points: Any, weights: Any = None, axis: int = -2) -> Any:
    """Points minus their (weighted) mean over the set ``axis``: removes translations (E(d))."""
    if weights is None:
        mean = points.mean(axis, keepdims=True) if not is_torch(points) else points.mean(axis, keepdim=True)
        return points - mean
    w = weights[..., None]
    total = w.sum(axis, keepdims=True) if not is_torch(w) else w.sum(axis, keepdim=True)
    weighted = (w * points).sum(axis, keepdims=True) if not is_torch(w) else (w * points).sum(axis, keepdim=True)
    return points - weighted / total


_AGGREGATIONS = ("sum", "mean", "max", "min")


def symmetric_aggregate(values: Any, axis: int, ops: Sequence[str] = ("sum", "mean", "max", "min")) -> Any:
    """Permutation-invariant summaries over ``axis``, stacked on a new last axis in ``ops`` order."""
    out = []
    for op in ops:
        if op not in _AGGREGATIONS:
            raise ValueError(f"symmetric_aggregate: unknown op {op!r}; choose from {_AGGREGATIONS}")
        if is_torch(values):
            reduced = getattr(values, op)(axis)
            out.append(reduced.values if op in ("max", "min") else reduced)
        else:
            out.append(getattr(values, op)(axis))
    return _stack(out, -1)


def leave_one_out_sum(values: Any, axis: int) -> Any:
    """sum_{j != i} v_j for every i along ``axis`` (same shape as ``values``)."""
    total = values.sum(axis, keepdim=True) if is_torch(values) else values.sum(axis, keepdims=True)
    return total - values


def pairwise_sum(fn: Callable[[Any, Any], Any], items: Any, axis: int = -2) -> Any:
    """sum_{j != i} fn(x_i, x_j) for every i: the f(v_i, {v_j, j != i}) form of per-item outputs.

    ``items`` is shaped (..., n, *feature); ``fn`` gets broadcast pairs shaped (..., n, n - 1,
    *feature) (x_i along the first of the two axes, the other items along the second) and returns
    (..., n, n - 1, *out). The pairs i = i are never formed, so a pair function singular at
    coincident items (1 / |x_i - x_j|) stays finite, and so do its gradients.
    """
    axis = axis % items.ndim
    n = items.shape[axis]
    if n < 2:
        raise ValueError(f"pairwise_sum: needs at least 2 items along axis {axis}, got {n}")
    others = np.array([[j for j in range(n) if j != i] for i in range(n)])  # (n, n - 1)
    if is_torch(items):
        import torch

        index = torch.as_tensor(others.reshape(-1), device=items.device)
        gathered = items.index_select(axis, index)
    else:
        gathered = namespace(items).take(items, others.reshape(-1), axis=axis)
    shape = gathered.shape[:axis] + (n, n - 1) + gathered.shape[axis + 1 :]
    right = gathered.reshape(shape)
    left = items[(slice(None),) * (axis + 1) + (None,)]
    return fn(left, right).sum(axis + 1)


def vector_output(coefficients: Any, vectors: Any) -> Any:
    """h = sum_i c_i v_i for invariant coefficients (..., n) and vectors (..., n, d): O(d)-equivariant."""
    if coefficients.shape[-1] != vectors.shape[-2]:
        raise ValueError(f"vector_output: {coefficients.shape[-1]} coefficients for {vectors.shape[-2]} vectors")
    return (coefficients[..., None] * vectors).sum(-2)


def so3_vector_output(coefficients: Any, cross_coefficients: Any, vectors: Any) -> Any:
    """h = sum_i c_i v_i + sum_{i<j} e_ij (v_i x v_j): SO(3)-equivariant for invariant c and e.

    ``cross_coefficients`` is (..., n (n - 1) / 2) in the order of ``itertools.combinations``.
    """
    n = vectors.shape[-2]
    pairs = list(itertools.combinations(range(n), 2))
    if vectors.shape[-1] != 3 or cross_coefficients.shape[-1] != len(pairs):
        raise ValueError(f"so3_vector_output: needs vectors in R^3 and {len(pairs)} cross coefficients")
    crosses = _stack([generalized_cross(vectors[..., i, :], vectors[..., j, :]) for i, j in pairs], -2)
    return vector_output(coefficients, vectors) + vector_output(cross_coefficients, crosses)


def tensor_traces(tensor: Any, powers: int | None = None) -> Any:
    """tr T, tr T^2, ..., tr T^k (k = d by default) of symmetric (..., d, d) tensors: O(d)-invariants
    that determine the eigenvalues."""
    d = tensor.shape[-1]
    k = d if powers is None else powers
    out = []
    power = tensor
    for _ in range(k):
        out.append(_trace(power))
        power = power @ tensor
    return _stack(out, -1)


def _trace(m: Any) -> Any:
    return sum(m[..., i, i] for i in range(m.shape[-1]))


def contract(u: Any, tensor: Any, v: Any) -> Any:
    """u^T T v for vectors (..., d) and tensors (..., d, d)."""
    return (u[..., :, None] * tensor * v[..., None, :]).sum((-2, -1))


def tensor_apply(tensor: Any, v: Any, power: int = 1) -> Any:
    """T^k v for tensors (..., d, d) and vectors (..., d), by k products with v (never forming T^k)."""
    for _ in range(power):
        v = (tensor @ v[..., None])[..., 0]
    return v


def contract_power(u: Any, tensor: Any, v: Any, power: int) -> Any:
    """u^T T^k v: :func:`contract` for k = 1, else (T^i u) . (T^(k-i) v) with i = k // 2 (for u = v and k
    even, a squared length)."""
    if power == 1:
        return contract(u, tensor, v)
    return inner(tensor_apply(tensor, u, power // 2), tensor_apply(tensor, v, power - power // 2))


def traces_of_products(a: Any, b: Any, i: int, j: int) -> Any:
    """tr(A^i B^j) for symmetric tensors (..., d, d)."""
    left, right = a, b
    for _ in range(i - 1):
        left = left @ a
    for _ in range(j - 1):
        right = right @ b
    return tensor_inner(left, right)  # tr(L R) = sum L_ij R_ji, and R is symmetric


def tensor_inner(a: Any, b: Any) -> Any:
    """tr(A B^T) = sum_ij A_ij B_ij, the invariant contraction of two rank-2 tensors."""
    return (a * b).sum((-2, -1))
