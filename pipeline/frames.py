"""Frames and random elements of a declared system's group, batched over samples (torch).

These are the tools of the other ways of building symmetry into a model (docs/fit.md#other-methods):

- **PCA frames** (Puny et al., "Frame averaging for invariant and equivariant network design", ICLR
  2022): the eigenvectors of the inputs' second moment ``C = sum_k w_k^2 u_k u_k^T`` over the direction
  ``u_k`` of every vector input (positions centred on their centroid, each member of a set), with fixed
  distinct weights ``w_k``; a symmetric tensor input enters through ``T T^T`` (:func:`directions`). The frame of a sample is that basis with every choice of
  signs: 2^d elements under O(d) and E(d), the 2^(d-1) with determinant +1 under SO(d) and SE(d). Since
  ``C`` moves to ``g C g^T`` when the inputs move by ``g``, the frame moves to ``g F``, and averaging any
  function over it is exactly invariant (or equivariant).
- the **canonical frame**: one element of that frame, the signs chosen so that the third moment of
  the inputs along each axis, ``sum_k w_k^3 (e . u_k)^3``, is positive (under SO(d) the last axis
  follows from the orientation).

Degenerate spectra, the case the construction leaves open, are handled as follows:

- a zero eigenvalue (inputs that span fewer than d directions): the inputs have no component along
  its eigenvectors, so which basis of that null space is chosen moves no input. Their coordinates
  there are set to exactly zero (:func:`to_frame`'s ``null``): what the arithmetic leaves is
  round-off that moves with the inputs, and a model that standardises its inputs would scale it up to
  order one (the data's spread along a null axis is that round-off). Averaging over the
  signs cancels every output component in it (under SO(d) with a one-dimensional null space, its
  axis's sign follows from the orientation of the others, as an SO(d)-equivariant output needs:
  ``v x B``). The canonical frame sets those output components to zero, except an SO(d) null space of
  dimension one (:func:`canonical_keep`).
- repeated non-zero eigenvalues: the frame is then not unique and no choice is continuous (Dym,
  Lawrence and Siegel, "Equivariant frames and the impossibility of continuous canonicalization", ICML
  2024). Such inputs are a set of measure zero. Near them the eigenvectors are ill-conditioned and the
  measured symmetry error of a frame model grows; it is measured and reported like every model's,
  never assumed.

The Lorentz group O(1,d) is not compact, so it has no such frames (its orbits are unbounded and no
positive-definite second moment is invariant); frame methods refuse it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

FRAME_GROUPS = ("O", "SO", "E", "SE")
NULL_EIGENVALUE = 1e-12  # an eigenvalue below this fraction of the trace is round-off of a zero one


def determinant(m: torch.Tensor) -> torch.Tensor:
    """det of a batch (n, d, d): written out for d <= 3 (torch's batched LU of small matrices is slow)."""
    d = m.shape[-1]
    if d == 1:
        return m[:, 0, 0]
    if d == 2:
        return m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    if d == 3:
        return (torch.linalg.cross(m[..., 0], m[..., 1]) * m[..., 2]).sum(-1)
    return torch.linalg.det(m)


def sign_patterns(d: int, proper: bool, *, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """Every diagonal of +-1 (2^d rows of d), or under a proper group those with product +1."""
    rows = torch.tensor(list(itertools.product((1.0, -1.0), repeat=d)), dtype=dtype, device=device)
    return rows[rows.prod(-1) > 0] if proper else rows


def directions(vectors: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor] = ()) -> tuple[list, list]:
    """Every vector (n, ..., d) as its direction and every tensor (n, ..., d, d) over its Frobenius norm,
    per sample, the j-th of them (each member of a set counted) weighted by 1 / (1 + j); a zero one stays 0.

    The second moment of these is the same in any units (a change of units rescales each quantity, not
    its direction), so the frame does not follow the units; and the weights differ, so two orthogonal
    inputs (a position and a velocity on a circular orbit) do not give a repeated eigenvalue, as equal
    weights would."""
    count = 0
    out: tuple[list, list] = ([], [])
    for part, items in enumerate((vectors, tensors)):
        for x in items:
            n, d = x.shape[0], x.shape[-1]
            flat = x.reshape(n, -1, d * d if part else d)
            length = flat.norm(dim=-1, keepdim=True)
            unit = flat / length.clamp_min(torch.finfo(x.dtype).tiny)
            weights = 1.0 / (1.0 + count + torch.arange(flat.shape[1], dtype=x.dtype, device=x.device))
            count += flat.shape[1]
            out[part].append((unit * weights[:, None]).reshape(x.shape))
    return out


def second_moment(vectors: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """``sum v v^T`` over every vector (each given as (n, ..., d)) plus ``sum T T^T`` over every tensor
    ((n, ..., d, d)): (n, d, d)."""
    total = None
    for v in vectors:
        flat = v.reshape(v.shape[0], -1, v.shape[-1])
        term = flat.transpose(1, 2) @ flat
        total = term if total is None else total + term
    for t in tensors:
        flat = t.reshape(t.shape[0], -1, t.shape[-2], t.shape[-1])
        term = (flat @ flat.transpose(-1, -2)).sum(1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("a frame needs at least one vector or tensor input")
    return total


def principal_axes(moment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (n, d), largest first, and the eigenvectors as the columns of (n, d, d).

    On the CPU they come from numpy's batched eigh, several times faster than torch's on many small
    matrices; the frame then carries no derivative with respect to the inputs (a model's training
    differentiates its weights only)."""
    if moment.device.type == "cpu":
        values, vectors = np.linalg.eigh(moment.detach().numpy())
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(moment)
    return values.flip(-1), vectors.flip(-1)


def pca_frames(
    moment: torch.Tensor, proper: bool, spectrum: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """Every element of each sample's PCA frame: (n, F, d, d), the columns of each the frame's axes.
    ``spectrum``: the moment's ``principal_axes`` when already computed."""
    _, axes = principal_axes(moment) if spectrum is None else spectrum
    if proper:  # eigh's basis may have det -1: the same axes, the last one turned to make it +1
        axes = torch.cat([axes[..., :-1], axes[..., -1:] * determinant(axes).sign()[:, None, None]], -1)
    signs = sign_patterns(axes.shape[-1], proper, dtype=axes.dtype, device=axes.device)
    return axes[:, None] * signs[None, :, None, :]


def null_axes(values: torch.Tensor) -> torch.Tensor:
    """Which axes (n, d) belong to a zero eigenvalue of the second moment."""
    return values <= NULL_EIGENVALUE * values.sum(-1, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)


def canonical_frame(
    moment: torch.Tensor,
    vectors: Sequence[torch.Tensor],
    proper: bool,
    spectrum: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame element per sample, (n, d, d), its signs fixed by the third moment of ``vectors``
    (weighted as in the second moment) along each axis; and which output axes it determines, (n, d)
    (:func:`canonical_keep`). ``spectrum``: the moment's ``principal_axes`` when already computed."""
    values, axes = principal_axes(moment) if spectrum is None else spectrum
    third = torch.zeros_like(values)
    for v in vectors:
        flat = v.reshape(v.shape[0], -1, v.shape[-1])
        third = third + ((flat @ axes) ** 3).sum(1)
    signs = torch.where(third < 0, -torch.ones_like(third), torch.ones_like(third))
    frame = axes * signs[:, None, :]
    if proper:  # the last axis follows from the orientation of the others
        frame = torch.cat([frame[..., :-1], frame[..., -1:] * determinant(frame).sign()[:, None, None]], -1)
    return frame, canonical_keep(values, proper)


def canonical_keep(values: torch.Tensor, proper: bool) -> torch.Tensor:
    """The output axes a canonical frame determines, as 1.0 and 0.0 (n, d): every axis of a non-zero
    eigenvalue; the null axes only under a proper group with exactly one of them (its direction then
    follows from the orientation). A null axis's sign is otherwise arbitrary, so the output has no
    component there."""
    null = null_axes(values)
    keep = ~null
    if proper:
        keep = keep | (null & (null.sum(-1, keepdim=True) == 1))
    return keep.to(values.dtype)


def to_frame(x: torch.Tensor, frames: torch.Tensor, kind: str, null: torch.Tensor | None = None) -> torch.Tensor:
    """The coordinates of ``x`` (n, ..., d) or a tensor (n, ..., d, d) in each frame element, (n, F, ...):
    ``x . e_k`` per axis k, ``E^T T E`` for a tensor; a scalar (n, ...) repeated per element. ``null``
    (n, d), the axes of a zero eigenvalue (:func:`null_axes`): the coordinates along them are exactly 0."""
    n, count = frames.shape[:2]
    if kind == "scalar":
        return x[:, None].expand(n, count, *x.shape[1:])
    if kind == "tensor":
        out = torch.einsum("nfik,n...ij,nfjl->nf...kl", frames, x, frames)
        if null is not None:
            dead = null.reshape(n, 1, *([1] * (out.ndim - 4)), -1)
            out = out.masked_fill(dead[..., :, None] | dead[..., None, :], 0.0)
        return out
    out = torch.einsum("nfik,n...i->nf...k", frames, x)
    if null is not None:
        out = out.masked_fill(null.reshape(n, 1, *([1] * (out.ndim - 3)), -1), 0.0)
    return out


def from_frame(x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Vectors given by their coordinates in each frame element, (n, F, ..., d), back in the original
    axes: ``sum_k x_k e_k``."""
    return torch.einsum("nfik,nf...k->nf...i", frames, x)


# -- random group elements, per sample ---------------------------------------------------------------


def random_orthogonal(n: int, d: int, proper: bool, *, dtype: torch.dtype, device: torch.device | None = None):
    """n Haar-random orthogonal d x d matrices (QR of a Gaussian matrix with the signs of R's diagonal
    taken out; Mezzadri 2007), of determinant +1 when ``proper``; drawn from torch's global generator, so
    a checkpoint that stores its state resumes the same draws."""
    columns: list[torch.Tensor] = []
    # Gram-Schmidt on Gaussian columns is that QR (R's diagonal positive) in a few vector operations;
    # torch's batched QR of many small matrices costs more than the training step that uses them
    for column in torch.randn(d, n, d, dtype=dtype, device=device):
        for previous in columns:
            column = column - (column * previous).sum(-1, keepdim=True) * previous
        columns.append(column / column.norm(dim=-1, keepdim=True))
    q = torch.stack(columns, -1)
    if proper:
        q = torch.cat([q[..., :1] * determinant(q).sign()[:, None, None], q[..., 1:]], -1)
    return q


def random_lorentz(n: int, d_space: int, *, max_rapidity: float = 1.0, dtype: torch.dtype, device=None):
    """n random elements of O(1, d_space) (time first), as ``pipeline.symmetry.random_lorentz`` draws one:
    a rotation or reflection, a boost of rapidity up to ``max_rapidity`` along a random direction, a
    rotation, and time reversal with probability 1/2."""
    direction = torch.randn(n, d_space, dtype=dtype, device=device)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    rapidity = (2 * torch.rand(n, dtype=dtype, device=device) - 1) * max_rapidity
    ch, sh = torch.cosh(rapidity), torch.sinh(rapidity)
    boost = torch.eye(d_space + 1, dtype=dtype, device=device).repeat(n, 1, 1)
    boost[:, 0, 0] = ch
    boost[:, 0, 1:] = sh[:, None] * direction
    boost[:, 1:, 0] = sh[:, None] * direction
    boost[:, 1:, 1:] += (ch - 1)[:, None, None] * direction[:, :, None] * direction[:, None, :]

    def rotation(proper: bool) -> torch.Tensor:
        r = torch.eye(d_space + 1, dtype=dtype, device=device).repeat(n, 1, 1)
        r[:, 1:, 1:] = random_orthogonal(n, d_space, proper, dtype=dtype, device=device)
        return r

    flip = torch.ones(n, d_space + 1, dtype=dtype, device=device)
    flip[:, 0] = torch.where(torch.rand(n, dtype=dtype, device=device) < 0.5, -1.0, 1.0)
    return flip[:, :, None] * (rotation(True) @ boost @ rotation(False))


def random_elements(
    group: str, d: int, n: int, *, translation_scale: float = 0.0, dtype: torch.dtype, device=None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n random elements of the declared group (``O``, ``SO``, ``E``, ``SE`` in d dimensions, or
    ``Lorentz`` on 1 + (d - 1)): matrices (n, d, d) and, under E(d) and SE(d), translations (n, d) with
    standard deviation ``translation_scale``."""
    if group == "Lorentz":
        return random_lorentz(n, d - 1, dtype=dtype, device=device), None
    if group not in FRAME_GROUPS:
        raise ValueError(f"no random elements of the group {group!r}")
    matrices = random_orthogonal(n, d, group in ("SO", "SE"), dtype=dtype, device=device)
    if group in ("E", "SE"):
        return matrices, translation_scale * torch.randn(n, d, dtype=dtype, device=device)
    return matrices, None


def act(
    values: Mapping[str, torch.Tensor],
    kinds: Mapping[str, str],
    matrices: torch.Tensor,
    translations: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Each sample's arrays moved by its own element: a vector (n, ..., d) to ``g v``, a position to
    ``g x + t``, a tensor (n, ..., d, d) to ``g T g^T``, a scalar unchanged."""
    out = {}
    for name, x in values.items():
        kind = kinds[name]
        if kind == "scalar":
            out[name] = x
        elif kind == "tensor":
            out[name] = torch.einsum("nij,n...jk,nlk->n...il", matrices, x, matrices)
        else:
            moved = torch.einsum("nij,n...j->n...i", matrices, x)
            if kind == "position" and translations is not None:
                moved = moved + translations.reshape(len(x), *([1] * (x.ndim - 2)), -1)
            out[name] = moved
    return out
