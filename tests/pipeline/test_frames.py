"""PCA frames, canonical frames and batched random group elements (pipeline.frames), against the
project's own group actions (pipeline.symmetry) and the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import frames as fr
from pipeline.symmetry import GroupElement

TOL = 1e-12


def _vectors(n: int, d: int, counts=(1, 3), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, d, generator=g, dtype=torch.float64) for c in counts]


def _rotate(g: torch.Tensor, vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.einsum("nij,n...j->n...i", g, v) for v in vectors]


def _frame_average(vectors: list[torch.Tensor], proper: bool, net) -> torch.Tensor:
    """An arbitrary function of the canonical coordinates, its vector output averaged over the frame."""
    frames = fr.pca_frames(fr.second_moment(vectors), proper)
    coords = torch.cat([fr.to_frame(v, frames, "vector").flatten(2) for v in vectors], -1)
    return fr.from_frame(net(coords), frames).mean(1)


def _net(n_in: int, d: int) -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, d)).double()


@pytest.mark.parametrize("d, proper", [(2, False), (2, True), (3, False), (3, True), (4, False)])
def test_frame_averaging_is_exactly_equivariant_for_any_function(d, proper):
    vectors = _vectors(16, d)
    net = _net(4 * d, d)
    g, _ = fr.random_elements("SO" if proper else "O", d, 16, dtype=torch.float64)
    moved = _frame_average(_rotate(g, vectors), proper, net)
    expected = torch.einsum("nij,nj->ni", g, _frame_average(vectors, proper, net))
    assert (moved - expected).abs().max() < TOL * expected.abs().max()
    assert fr.pca_frames(fr.second_moment(vectors), proper).shape[1] == 2 ** (d - 1 if proper else d)


@pytest.mark.parametrize("proper", [False, True])
def test_a_null_space_of_the_inputs_moves_nothing(proper):
    """One vector in 3-D: its second moment has a two-dimensional null space, whose basis eigh picks
    arbitrarily. The frame average stays exact, and its output lies along the vector (the only
    equivariant direction under O(3) and SO(3) with one vector input)."""
    (v,) = _vectors(12, 3, counts=(1,))
    net = _net(3, 3)
    g, _ = fr.random_elements("SO" if proper else "O", 3, 12, dtype=torch.float64)
    out = _frame_average([v], proper, net)
    moved = _frame_average(_rotate(g, [v]), proper, net)
    assert (moved - torch.einsum("nij,nj->ni", g, out)).abs().max() < TOL * out.abs().max()
    across = torch.linalg.cross(out, v[:, 0]).norm(dim=-1) / (out.norm(dim=-1) * v[:, 0].norm(dim=-1))
    assert across.max() < TOL


def test_two_vectors_under_so3_keep_the_orientation_axis():
    """Two vectors in 3-D under SO(3): the null axis is v1 x v2 up to sign, fixed by the orientation.
    The frame average may point along it (as v1 x v2 does), and stays exact."""
    vectors = _vectors(12, 3, counts=(1, 1))
    net = _net(6, 3)
    out = _frame_average(vectors, True, net)
    normal = torch.linalg.cross(vectors[0][:, 0], vectors[1][:, 0])
    assert (torch.einsum("ni,ni->n", out, normal).abs() / (out.norm(dim=-1) * normal.norm(dim=-1))).min() > 1e-6
    g, _ = fr.random_elements("SO", 3, 12, dtype=torch.float64)
    moved = _frame_average(_rotate(g, vectors), True, net)
    assert (moved - torch.einsum("nij,nj->ni", g, out)).abs().max() < TOL * out.abs().max()
    assert torch.allclose(
        _frame_average(vectors, False, net).mul(normal).sum(-1), torch.zeros(12, dtype=torch.float64), atol=1e-12
    )


@pytest.mark.parametrize("d, proper", [(3, False), (3, True), (2, True)])
def test_the_canonical_frame_moves_with_the_inputs(d, proper):
    vectors = _vectors(20, d)
    g, _ = fr.random_elements("SO" if proper else "O", d, 20, dtype=torch.float64)
    frame, keep = fr.canonical_frame(fr.second_moment(vectors), vectors, proper)
    moved = _rotate(g, vectors)
    frame_g, keep_g = fr.canonical_frame(fr.second_moment(moved), moved, proper)
    assert (frame_g - g @ frame).abs().max() < 1e-10
    assert torch.equal(keep, keep_g) and bool((keep == 1).all())
    assert torch.allclose(torch.linalg.det(frame).abs(), torch.ones(20, dtype=torch.float64))
    if proper:
        assert bool((torch.linalg.det(frame) > 0).all())


def test_the_canonical_frame_keeps_only_the_axes_it_determines():
    values = torch.tensor([[3.0, 1.0, 0.0], [3.0, 1e-17, 1e-18], [2.0, 1.0, 0.5]], dtype=torch.float64)
    assert fr.canonical_keep(values, proper=False).tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert fr.canonical_keep(values, proper=True).tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 1]]


def test_tensors_enter_the_frame_through_t_t_transpose():
    torch.manual_seed(0)
    a = torch.randn(5, 3, 3, dtype=torch.float64)
    t = a + a.transpose(-1, -2)
    moment = fr.second_moment([], [t])
    assert torch.allclose(moment, t @ t.transpose(-1, -2))
    frames = fr.pca_frames(moment, proper=False)
    diagonal = fr.to_frame(t, frames, "tensor")  # T is diagonal in the eigenbasis of T T^T
    off = diagonal - torch.diag_embed(torch.diagonal(diagonal, dim1=-2, dim2=-1))
    assert off.abs().max() < 1e-12 * t.abs().max()
    with pytest.raises(ValueError, match="at least one vector or tensor"):
        fr.second_moment([], [])


@pytest.mark.parametrize("group, d", [("O", 3), ("SO", 2), ("E", 3), ("SE", 3), ("Lorentz", 4)])
def test_random_elements_belong_to_the_group_and_act_as_the_checks_do(group, d):
    torch.manual_seed(1)
    matrices, translations = fr.random_elements(group, d, 64, translation_scale=2.0, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    metric = torch.diag(torch.tensor([1.0] + [-1.0] * (d - 1), dtype=torch.float64)) if group == "Lorentz" else eye
    assert (matrices.transpose(1, 2) @ metric @ matrices - metric).abs().max() < 1e-10
    dets = torch.linalg.det(matrices)
    if group in ("SO", "SE"):
        assert bool((dets > 0).all())
    else:  # both components are drawn
        assert bool((dets > 0).any()) and bool((dets < 0).any())
    assert (translations is not None) is (group in ("E", "SE"))
    rng = np.random.default_rng(0)
    values = {
        "s": torch.as_tensor(rng.normal(size=(64,))),
        "v": torch.as_tensor(rng.normal(size=(64, 5, d))),
        "x": torch.as_tensor(rng.normal(size=(64, d))),
        "T": torch.as_tensor(rng.normal(size=(64, d, d))),
    }
    kinds = {"s": "scalar", "v": "vector", "x": "position" if translations is not None else "vector", "T": "tensor"}
    moved = fr.act(values, kinds, matrices, translations)
    for i in range(0, 64, 9):
        element = GroupElement(
            matrices[i].numpy(), None if translations is None else translations[i].numpy(), "reference"
        )
        for name, x in values.items():
            np.testing.assert_allclose(moved[name][i].numpy(), element.act(x[i].numpy(), kinds[name]), atol=1e-12)


def test_random_rotations_are_haar_distributed():
    """The first column of a Haar-random rotation is uniform on the sphere: its mean is 0 and its
    second moment I/d, within the sampling error of 20000 draws."""
    torch.manual_seed(2)
    q = fr.random_orthogonal(20000, 3, proper=True, dtype=torch.float64)
    column = q[..., 0]
    assert column.mean(0).abs().max() < 0.03
    assert (column.T @ column / 20000 - torch.eye(3, dtype=torch.float64) / 3).abs().max() < 0.02


def test_the_frame_follows_directions_not_units_and_separates_orthogonal_inputs():
    """Rescaling one input (a change of its units) leaves the frame as it is; a position and a velocity
    at right angles with equal lengths (a circular orbit) still give distinct eigenvalues."""
    x, v = _vectors(10, 3, counts=(1, 1))
    frames = fr.pca_frames(fr.second_moment(*fr.directions([x, v])), proper=False)
    rescaled = fr.pca_frames(fr.second_moment(*fr.directions([1e-6 * x, 3e4 * v])), proper=False)
    assert (frames - rescaled).abs().max() < 1e-12
    r = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=torch.float64)
    u = torch.tensor([[[0.0, 1.0, 0.0]]], dtype=torch.float64)
    values, _ = fr.principal_axes(fr.second_moment(*fr.directions([r, u])))
    assert values[0, 0] - values[0, 1] > 0.5
    zero = fr.directions([torch.zeros(2, 3, dtype=torch.float64)])[0][0]
    assert torch.equal(zero, torch.zeros(2, 3, dtype=torch.float64))


def test_coordinates_along_a_null_axis_are_exactly_zero():
    """Two vectors in 3-D of size 1e7 span a plane: along its normal eigh leaves round-off far above
    zero, and ``null`` sets it to exactly 0 for vectors, sets of vectors and tensors; the other
    coordinates are left as they are."""
    a, b = (1e7 * v for v in _vectors(8, 3, counts=(1, 2)))
    b = torch.cat([b[:, :1], 0.5 * a + 2 * b[:, :1]], 1)  # both in the plane of a and b's first member
    moment = fr.second_moment(fr.directions([a, b])[0])
    values, _ = fr.principal_axes(moment)
    null = fr.null_axes(values)
    assert null.tolist() == [[False, False, True]] * 8
    frames = fr.pca_frames(moment, proper=False)
    t = a.transpose(1, 2) @ a  # rank one, in the plane
    plain = fr.to_frame(b, frames, "vector")
    assert plain[..., 2].abs().max() > 0  # round-off, which a standardised input would blow up
    for x, kind in ((a, "vector"), (b, "vector"), (t, "tensor")):
        exact = fr.to_frame(x, frames, kind, null)
        left = fr.to_frame(x, frames, kind)
        if kind == "tensor":
            assert bool((exact[..., 2, :] == 0).all() and (exact[..., :, 2] == 0).all())
            assert torch.equal(exact[..., :2, :2], left[..., :2, :2])
        else:
            assert bool((exact[..., 2] == 0).all())
            assert torch.equal(exact[..., :2], left[..., :2])
