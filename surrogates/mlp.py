"""The scalar MLP every surrogate is built from, with its input normalisation stored as buffers."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
# A column whose spread is at most this fraction of its mean is constant up to round-off. An invariant
# computed with cancellation (an on-shell four-momentum's square, m^2 = E^2 - |p|^2, the same for every
# sample) carries round-off of up to about 1e-7 of its size (below 1e-9 of E^2 it counts as zero,
# pipeline.declared.design.ROUND_OFF_ZERO); dividing by that spread would make it order one, and the
# model's symmetry would then hold only to order one.
CONSTANT_SPREAD = 1e-6


class MLP(nn.Module):
    """y = W_L act(... act(W_1 ((x - shift) / scale))): a plain multilayer perceptron.

    ``shift`` and ``scale`` are buffers (saved with the weights, not trained), set once from the
    training inputs by :meth:`fit_input`. With ``multiplicative=True`` the shift stays 0, which is what
    a units-equivariant model needs when its inputs are dimensionless groups (``pipeline.normalize``).
    """

    def __init__(
        self, n_in: int, n_out: int, hidden: tuple[int, ...] = (100, 100, 100, 100), activation: str = "relu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if n_in < 1 or n_out < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"MLP sizes must be positive: n_in={n_in}, n_out={n_out}, hidden={hidden}")
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)
        self.register_buffer("shift", torch.zeros(n_in))
        self.register_buffer("scale", torch.ones(n_in))

    def fit_input(self, x: torch.Tensor, *, multiplicative: bool = False) -> None:
        """Set shift/scale from training inputs (rows = samples). A constant column (to round-off:
        ``CONSTANT_SPREAD``) is scaled by the size of its mean where that is above 1, else by 1: its
        round-off stays as small as it is, and another value of a small constant (Newton's G in SI units)
        is not blown up either."""
        x = x.detach().reshape(-1, x.shape[-1]).to(self.scale)
        if not torch.isfinite(x).all():
            raise ValueError("MLP.fit_input: training inputs contain NaN or infinity")
        if multiplicative:
            shift = torch.zeros_like(self.shift)
            spread = x.pow(2).mean(0).sqrt()
        else:
            shift = x.mean(0)
            spread = x.std(0) if x.shape[0] > 1 else torch.zeros_like(shift)
        self.shift.copy_(shift)
        size = shift.abs()
        constant = (spread <= 1e-12 * (1 + size)) | (spread <= CONSTANT_SPREAD * size)
        self.scale.copy_(torch.where(constant, size.clamp_min(1.0), spread))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.shift) / self.scale)
