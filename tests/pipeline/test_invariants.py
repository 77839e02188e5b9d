"""Invariant and equivariant building blocks, checked with the shared symmetry helpers.

Hypothesis draws the seeds, sizes and magnitudes; every check is to 1e-12 relative in float64.
"""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import invariants as inv
from pipeline.symmetry import (
    assert_equivariant,
    assert_invariant,
    assert_permutation_equivariant,
    random_lorentz,
    random_orthogonal,
)

RTOL = 1e-12
seeds = st.integers(0, 2**32 - 1)
dims = st.integers(2, 5)
counts = st.integers(1, 5)
magnitudes = st.sampled_from([1e-3, 1.0, 1e3])
SETTINGS = settings(max_examples=25, deadline=None)


def vectors(seed: int, batch: int, n: int, d: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).normal(size=(batch, n, d))


@SETTINGS
@given(seeds, dims, counts, magnitudes)
def test_gram_and_norms_are_o_d_invariant(seed, d, n, scale):
    v = vectors(seed, 4, n, d, scale)
    assert_invariant(
        lambda x: (inv.gram_upper(x), inv.gram(x), inv.norm(x)), [v], ["vector"], group=f"O({d})", seed=seed, rtol=RTOL
    )


@SETTINGS
@given(seeds, dims, st.integers(0, 3), magnitudes)
def test_determinants_are_so_d_invariant_and_pseudoscalars_under_o_d(seed, d, extra, scale):
    v = vectors(seed, 3, d + extra, d, scale)
    assert_invariant(inv.determinants, [v], ["vector"], group=f"SO({d})", seed=seed, rtol=RTOL)
    assert_equivariant(inv.determinants, [v], ["vector"], "pseudoscalar", group=f"O({d})", seed=seed, rtol=RTOL)


def test_determinants_fail_the_o_d_invariance_check():
    """The helper must catch a broken symmetry (a test that can fail)."""
    v = vectors(1, 3, 3, 3)
    with pytest.raises(AssertionError, match="det -1"):
        assert_invariant(inv.determinants, [v], ["vector"], group="O(3)", rtol=RTOL)
    with pytest.raises(AssertionError, match="O\\(3\\) equivariance"):
        assert_invariant(lambda x: x[..., 0], [v], ["vector"], group="O(3)")


@SETTINGS
@given(seeds, dims, magnitudes)
def test_generalized_cross_is_a_pseudovector(seed, d, scale):
    v = vectors(seed, 3, d - 1, d, scale)
    parts = [v[:, i] for i in range(d - 1)]
    assert_equivariant(
        inv.generalized_cross, parts, ["vector"] * (d - 1), "pseudovector", group=f"O({d})", seed=seed, rtol=RTOL
    )
    c = inv.generalized_cross(*parts)
    for part in parts:  # orthogonal to its arguments, with <c, w> = det[v.., w]
        assert (np.abs(inv.inner(c, part)) <= 1e-13 * inv.norm(c) * inv.norm(part)).all()
    w = np.random.default_rng(seed + 1).normal(size=(3, d))
    np.testing.assert_allclose(inv.inner(c, w), inv.determinant(*parts, w), rtol=1e-10, atol=1e-12 * scale ** (d - 1))


@SETTINGS
@given(seeds, st.integers(1, 4), counts)
def test_minkowski_products_are_lorentz_invariant(seed, d_space, n):
    v = vectors(seed, 4, n, d_space + 1)
    assert_invariant(inv.minkowski_gram, [v], ["vector"], group=f"O(1,{d_space})", seed=seed, rtol=RTOL)
    # Euclidean products are not Lorentz invariant: the helper notices
    with pytest.raises(AssertionError):
        assert_invariant(inv.gram, [v], ["vector"], group=f"O(1,{d_space})", seed=seed, rtol=RTOL)


def test_random_group_elements_are_in_their_groups():
    rng = np.random.default_rng(0)
    for d in range(1, 6):
        q = random_orthogonal(d, rng, reflection=True)
        np.testing.assert_allclose(q @ q.T, np.eye(d), atol=1e-14)
        assert np.linalg.det(q) == pytest.approx(-1)
        assert np.linalg.det(random_orthogonal(d, rng, reflection=False)) == pytest.approx(1)
    eta = np.diag([1.0, -1, -1, -1])
    lam = random_lorentz(3, rng, max_rapidity=2.0)
    np.testing.assert_allclose(lam.T @ eta @ lam, eta, atol=1e-12)


@SETTINGS
@given(seeds, dims, st.integers(2, 6), st.sampled_from([1.0, 1e3]))
def test_centring_removes_translations(seed, d, n, scale):
    # translations of size ~3 cancel in x + t - mean(x + t): round-off grows like |t| / |x|, so the
    # 1e-12 check uses points at least of the translations' size
    x = vectors(seed, 3, n, d, scale)
    w = np.random.default_rng(seed).uniform(0.1, 2.0, size=(3, n))
    assert_invariant(lambda p: inv.gram_upper(inv.center(p)), [x], ["position"], group=f"E({d})", seed=seed, rtol=RTOL)
    assert_equivariant(
        lambda p, m: inv.center(p, m), [x, w], ["position", "scalar"], "vector", group=f"E({d})", seed=seed, rtol=RTOL
    )


@SETTINGS
@given(seeds, st.integers(2, 4), magnitudes)
def test_tensor_invariants(seed, d, scale):
    rng = np.random.default_rng(seed)
    a = scale * rng.normal(size=(3, d, d))
    t = a + a.swapaxes(-1, -2)
    s = rng.normal(size=(3, d, d))
    s = s @ s.swapaxes(-1, -2)
    v = vectors(seed, 3, 2, d)

    def scalars(t, s, v):
        return inv.tensor_traces(t), inv.contract(v[:, 0], t, v[:, 1]), inv.tensor_inner(t, s)

    assert_invariant(scalars, [t, s, v], ["tensor", "tensor", "vector"], group=f"O({d})", seed=seed, rtol=RTOL)
    eig = np.linalg.eigvalsh(t)
    np.testing.assert_allclose(inv.tensor_traces(t)[..., 1], (eig**2).sum(-1), rtol=1e-10)


@SETTINGS
@given(seeds, dims, counts)
def test_vector_outputs_from_invariant_coefficients_are_equivariant(seed, d, n):
    v = vectors(seed, 4, n, d)

    def field(x):
        g = inv.gram_upper(x)
        coefficients = np.stack([np.tanh(g.sum(-1)) * (i + 1) + g[..., i % g.shape[-1]] for i in range(n)], -1)
        return inv.vector_output(coefficients, x)

    assert_equivariant(field, [v], ["vector"], "vector", group=f"O({d})", seed=seed, rtol=RTOL)


@SETTINGS
@given(seeds, st.integers(2, 4))
def test_so3_outputs_with_cross_products(seed, n):
    v = torch.tensor(vectors(seed, 4, n, 3))

    def field(x):
        g = inv.gram_upper(x)
        dets = inv.determinants(x) if n >= 3 else g[..., :1]
        c = torch.tanh(g[..., :n] + dets.sum(-1, keepdim=True))
        e = torch.cos(g[..., : n * (n - 1) // 2])
        return inv.so3_vector_output(c, e, x)

    assert_equivariant(field, [v], ["vector"], "vector", group="SO(3)", seed=seed, rtol=RTOL)
    with pytest.raises(AssertionError):  # the cross terms are pseudovectors: not O(3)-equivariant
        assert_equivariant(field, [v], ["vector"], "vector", group="O(3)", seed=seed, rtol=1e-11)


@SETTINGS
@given(seeds, st.integers(2, 7), st.integers(1, 4))
def test_permutation_blocks(seed, n, d):
    x = vectors(seed, 3, n, d)
    per_item = inv.squared_norm(x)  # (batch, n)
    assert_permutation_equivariant(lambda y: inv.symmetric_aggregate(y, axis=-1), [per_item], [-1], None, seed=seed)
    assert_permutation_equivariant(lambda y: inv.leave_one_out_sum(y, axis=-1), [per_item], [-1], -1, seed=seed)
    pair = lambda a, b: np.exp(-inv.squared_norm(a - b))[..., None] * (b - a)  # noqa: E731
    assert_permutation_equivariant(lambda y: inv.pairwise_sum(pair, y), [x], [-2], -2, seed=seed)
    assert_equivariant(lambda y: inv.pairwise_sum(pair, y), [x], ["vector"], "vector", group=f"O({d})", seed=seed)
    # against a plain loop
    expected = np.stack([sum(pair(x[:, i], x[:, j]) for j in range(n) if j != i) for i in range(n)], 1)
    np.testing.assert_allclose(inv.pairwise_sum(pair, x), expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(AssertionError):
        assert_permutation_equivariant(lambda y: y[..., 0], [per_item], [-1], None, seed=seed)


def test_torch_gradients_are_finite_at_zero():
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    inv.norm(z).sum().backward()
    assert torch.isfinite(z.grad).all() and (z.grad == 0).all()
    x = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = inv.norm(x).sum() + inv.gram_upper(x).sum() + inv.determinants(x).sum() + inv.norm(inv.center(x)).sum()
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    assert torch.isfinite(grad).all()
    (second,) = torch.autograd.grad(grad.sum(), x)
    assert torch.isfinite(second).all()
    for d in (4, 5):  # determinants beyond 3D keep finite second derivatives at zero too
        z4 = torch.zeros(2, d, d, dtype=torch.float64, requires_grad=True)
        (g4,) = torch.autograd.grad(inv.determinants(z4).sum(), z4, create_graph=True)
        (h4,) = torch.autograd.grad(g4.sum(), z4)
        assert torch.isfinite(h4).all()
    v = torch.tensor([[3.0, 4.0, 0.0]], dtype=torch.float64, requires_grad=True)
    inv.norm(v).sum().backward()
    np.testing.assert_allclose(v.grad.numpy(), [[0.6, 0.8, 0.0]], rtol=1e-15)


def test_numpy_torch_and_dask_agree():
    v = vectors(3, 6, 4, 3)
    t = torch.tensor(v)
    d = da.from_array(v, chunks=(2, 4, 3))
    for fn in (inv.gram_upper, inv.determinants, inv.norm, lambda x: inv.minkowski_gram(x[..., :3, :])):
        expected = fn(v)
        np.testing.assert_allclose(fn(t).numpy(), expected, rtol=1e-14)
        result = fn(d)
        assert isinstance(result, da.Array)
        np.testing.assert_allclose(result.compute(), expected, rtol=1e-14)
    big = vectors(4, 3, 5, 5)
    np.testing.assert_allclose(
        inv.determinants(da.from_array(big, chunks=(1, 5, 5))).compute(), inv.determinants(big), rtol=1e-12
    )


def test_bad_shapes_are_refused():
    v = vectors(0, 2, 3, 3)
    with pytest.raises(ValueError, match="needs 3 vectors"):
        inv.determinant(v[:, 0], v[:, 1])
    with pytest.raises(ValueError, match="vectors of dimension 3 and 2"):
        inv.inner(v[:, 0], v[:, 0, :2])
    with pytest.raises(ValueError, match="out of range"):
        inv.gram_upper(v, pairs=[(0, 5)])
    with pytest.raises(ValueError, match="2 coefficients for 3 vectors"):
        inv.vector_output(np.ones((2, 2)), v)
    with pytest.raises(ValueError, match="unknown op"):
        inv.symmetric_aggregate(v, axis=1, ops=("median",))
    assert list(itertools.islice(inv.upper_pairs(3), 3)) == [(0, 0), (0, 1), (0, 2)]
