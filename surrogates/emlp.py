"""EMLP-style equivariant multilayer perceptrons (Finzi, Welling and Wilson, ICML 2021, arXiv:2104.09459).

Features are sums of tensors of the group's d-dimensional representation (``TensorSum``: so many
scalars, vectors, rank-2 tensors, ...), laid out rank by rank, copy by copy, each copy's d^r
components in C order. A block (``EMLPBlock``) is, as in the paper's code:

- an equivariant linear map (``EquivariantLinear``) into the hidden features plus one gate scalar per
  non-scalar copy. Its weights are combinations of the invariant tensors of rank a + b for every
  pair of input rank a and output rank b (``pipeline.matrix_groups.invariant_tensors``), its bias a
  combination of the invariant tensors of the output ranks;
- plus a bilinear layer (``BiLinear``): a weight matrix whose rank-(a+b) blocks are linear in the
  features' own rank-(a+b) copies, applied to the features, scaled by 0.1;
- then gated nonlinearities (``GatedNonlinearity``): swish on the scalars, every other copy times
  the sigmoid of its gate.

Every piece is exactly equivariant for any weights, whatever the group (orthogonal groups only:
see ``pipeline.matrix_groups``). Three choices differ from the reference code, none affecting the
symmetry:
- the linear weights are the coefficients of the invariant basis (the reference projects a dense
  matrix onto it), initialised with the variance that projection gives;
- the bilinear weights start from N(0, s^2) with a small spread s (``bilinear_init``; ``BILINEAR_INIT`` unless
  a model sets its own), where the reference draws N(0, 1). Each bilinear layer doubles
  the polynomial degree of the output in the input, and with the reference's spread the untrained
  pendulum Hamiltonian's flow left the data within one 5-point training chunk (states of 1e13, then
  NaN), so training could not start. From nearly zero the network starts close to a gated MLP and
  grows its bilinear terms as training asks. Not from exactly zero: under O(3) vectors reach the
  scalars only through the bilinear layers, so the output would not depend on them at all;
- the bilinear layer uses the first copies of each rank where the reference draws them at random,
  so that a model is rebuilt identically from its configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.matrix_groups import MatrixGroup, invariant_tensors

BILINEAR_SCALE = 0.1  # as the reference code: the bilinear term starts small beside the linear one
BILINEAR_INIT = 0.01  # the bilinear weights' initial spread (the reference: 1; see the module docstring)


@dataclass(frozen=True)
class TensorSum:
    """counts[r] copies of the rank-r tensors of R^d, laid out rank by rank."""

    counts: tuple[int, ...]
    d: int

    @property
    def size(self) -> int:
        return sum(m * self.d**r for r, m in enumerate(self.counts))

    @property
    def gates(self) -> int:
        """Copies that are not scalars (each needs a gate)."""
        return sum(self.counts[1:])

    def gated(self) -> TensorSum:
        """The same tensors plus one gate scalar per non-scalar copy, placed after the scalars."""
        return TensorSum((self.counts[0] + self.gates, *self.counts[1:]), self.d)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features per rank, (..., counts[r], d^r) each."""
        sizes = [m * self.d**r for r, m in enumerate(self.counts)]
        return [
            part.reshape(*x.shape[:-1], m, self.d**r)
            for r, (m, part) in enumerate(zip(self.counts, torch.split(x, sizes, dim=-1), strict=True))
        ]


def uniform_rep(channels: int, d: int) -> TensorSum:
    """The reference code's hidden features of about ``channels`` dimensions: repeatedly the highest rank R
    with (R + 1) d^R <= the channels left, taking d^(R - r) copies of every rank r <= R."""
    counts: list[int] = []
    left = channels
    while left > 0:
        top = 0
        while (top + 2) * d ** (top + 1) <= left:
            top += 1
        counts += [0] * (top + 1 - len(counts))
        for r in range(top + 1):
            counts[r] += d ** (top - r)
        left -= (top + 1) * d**top
    return TensorSum(tuple(counts), d)


class _Bases(nn.Module):
    """Invariant bases kept in float64 and cast at use: built as buffers they would be cast to the model's
    dtype on construction (float32 by default) and lose the exactness a float64 model needs."""

    def __init__(self):
        super().__init__()
        self._float64: dict[str, torch.Tensor] = {}
        self._cast: dict[tuple, torch.Tensor] = {}

    def add(self, key: str, basis: np.ndarray) -> None:
        self._float64[key] = torch.tensor(np.array(basis), dtype=torch.float64)

    def get(self, key: str, like: torch.Tensor) -> torch.Tensor:
        cached = (key, like.dtype, like.device)
        if cached not in self._cast:
            self._cast[cached] = self._float64[key].to(dtype=like.dtype, device=like.device)
        return self._cast[cached]


class EquivariantLinear(nn.Module):
    """x -> W x + b with W and b in the span of the group's invariant tensors (exactly equivariant)."""

    def __init__(self, rep_in: TensorSum, rep_out: TensorSum, group: MatrixGroup):
        super().__init__()
        if rep_in.d != group.d or rep_out.d != group.d:
            raise ValueError(
                f"features of R^{rep_in.d} -> R^{rep_out.d} do not match the group {group.name} of R^{group.d}"
            )
        self.rep_in, self.rep_out = rep_in, rep_out
        self.bases = _Bases()
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        d = group.d
        # the variance of a dense nn.Linear initialisation projected onto an orthonormal basis
        bound = 1.0 / math.sqrt(max(1, rep_in.size))
        for b, m_out in enumerate(rep_out.counts):
            for a, m_in in enumerate(rep_in.counts):
                basis = invariant_tensors(group, a + b)
                if m_in and m_out and basis.shape[1]:
                    key = f"{a}_{b}"
                    self.bases.add(key, basis.reshape(d**b, d**a, -1))
                    self.weights[key] = nn.Parameter(torch.empty(m_out, m_in, basis.shape[1]).uniform_(-bound, bound))
            basis = invariant_tensors(group, b)
            if m_out and basis.shape[1]:
                self.bases.add(f"bias_{b}", basis)
                self.biases[str(b)] = nn.Parameter(torch.empty(m_out, basis.shape[1]).uniform_(-bound, bound))

    def weight(self, like: torch.Tensor) -> torch.Tensor:
        """The dense weight matrix (rep_out.size, rep_in.size)."""
        d = self.rep_in.d
        rows = []
        for b, m_out in enumerate(self.rep_out.counts):
            if not m_out:
                continue
            blocks = []
            for a, m_in in enumerate(self.rep_in.counts):
                if not m_in:
                    continue
                key = f"{a}_{b}"
                if key in self.weights:
                    block = torch.einsum("jik,uvk->juiv", self.weights[key], self.bases.get(key, like))
                    blocks.append(block.reshape(m_out * d**b, m_in * d**a))
                else:
                    blocks.append(like.new_zeros(m_out * d**b, m_in * d**a))
            rows.append(torch.cat(blocks, dim=1))
        return torch.cat(rows, dim=0)

    def bias(self, like: torch.Tensor) -> torch.Tensor:
        parts = []
        for b, m_out in enumerate(self.rep_out.counts):
            if not m_out:
                continue
            if str(b) in self.biases:
                parts.append((self.biases[str(b)] @ self.bases.get(f"bias_{b}", like).T).reshape(-1))
            else:
                parts.append(like.new_zeros(m_out * self.rep_out.d**b))
        return torch.cat(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight(x), self.bias(x))


class BiLinear(nn.Module):
    """x -> 0.1 W(x) x, W(x) a linear map whose block from rank-a to rank-b copies is a combination of
    the features' first min(copies, d^r) rank-(a+b) copies read as d^b x d^a matrices: equivariant
    because those copies move as such matrices do (g on every index; g^T = g^-1). The weights start
    small (``init``, their standard deviation; see the module's docstring)."""

    def __init__(self, rep: TensorSum, init: float = BILINEAR_INIT):
        super().__init__()
        if not (math.isfinite(init) and init > 0):
            raise ValueError(f"the bilinear weights' initial spread must be positive and finite, got {init}")
        self.rep = rep
        self.weights = nn.ParameterDict()
        for b, m_out in enumerate(rep.counts):
            for a, m_in in enumerate(rep.counts):
                r = a + b
                if r == 0 or r >= len(rep.counts) or not (m_in and m_out and rep.counts[r]):
                    continue
                used = min(rep.counts[r], rep.d**r)
                self.weights[f"{a}_{b}"] = nn.Parameter(init * torch.randn(m_out, m_in, used))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.rep.split(x)
        d = self.rep.d
        out = [torch.zeros_like(p) for p in parts]
        for key, weight in self.weights.items():  # opt_einsum orders each contraction
            a, b = (int(v) for v in key.split("_"))
            matrices = parts[a + b][..., : weight.shape[2], :].unflatten(-1, (d**b, d**a))
            out[b] = out[b] + torch.einsum("jik,...kuv,...iv->...ju", weight, matrices, parts[a])
        return BILINEAR_SCALE * torch.cat([o.flatten(-2) for o in out], dim=-1)


class GatedNonlinearity(nn.Module):
    """From ``rep.gated()`` features to ``rep``: swish on the scalars, each other copy times sigmoid(its gate)."""

    def __init__(self, rep: TensorSum):
        super().__init__()
        self.rep = rep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.rep.gated().split(x)
        m0 = self.rep.counts[0]
        scalars, gates = parts[0][..., :m0, 0], torch.sigmoid(parts[0][..., m0:, 0])
        out = [nn.functional.silu(scalars)]
        start = 0
        for r in range(1, len(self.rep.counts)):
            m = self.rep.counts[r]
            out.append((gates[..., start : start + m, None] * parts[r]).flatten(-2))
            start += m
        return torch.cat(out, dim=-1)


class EMLPBlock(nn.Module):
    def __init__(self, rep_in: TensorSum, rep_out: TensorSum, group: MatrixGroup, bilinear_init: float = BILINEAR_INIT):
        super().__init__()
        self.linear = EquivariantLinear(rep_in, rep_out.gated(), group)
        self.bilinear = BiLinear(rep_out.gated(), bilinear_init)
        self.nonlinearity = GatedNonlinearity(rep_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.linear(x)
        return self.nonlinearity(self.bilinear(linear) + linear)


class EMLP(nn.Module):
    """Blocks into ``uniform_rep(width)`` features for each hidden width, then an equivariant linear readout;
    ``bilinear_init``: the bilinear weights' initial spread."""

    def __init__(
        self,
        rep_in: TensorSum,
        rep_out: TensorSum,
        group: MatrixGroup,
        hidden: tuple[int, ...],
        bilinear_init: float = BILINEAR_INIT,
    ):
        super().__init__()
        reps = [rep_in] + [uniform_rep(width, group.d) for width in hidden]
        self.blocks = nn.Sequential(*[EMLPBlock(a, b, group, bilinear_init) for a, b in zip(reps, reps[1:])])
        self.readout = EquivariantLinear(reps[-1], rep_out, group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.blocks(x))
