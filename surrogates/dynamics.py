"""Learned dynamics: Hamiltonian vector fields by autograd, and rollouts with the simulators' integrators.

A dynamics model maps states ``z`` (batch, 2n) = (q, p) and per-system context ``theta`` (batch, c)
to dz/dt. A Hamiltonian model defines only the energy ``H(z, theta)``; its vector field is
(dH/dp, -dH/dq), so energy conservation and symplecticity come from the structure, and any symmetry
or units equivariance of H carries over to the flow exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from sims.integrate import integrate_fixed


class DynamicsModel(nn.Module):
    """Base class: ``forward(z, theta)`` returns dz/dt."""

    def forward(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class HamiltonianModel(DynamicsModel):
    """dz/dt = J grad H with J = [[0, I], [-I, 0]]; subclasses implement ``energy(z, theta)`` -> (batch,)."""

    def energy(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        # a graph through dH/dz is needed only when a loss will be differentiated (training); in eval
        # mode the field is detached from z and the weights (rollouts are then not differentiable)
        create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            z_in = z if z.requires_grad else z.detach().requires_grad_(True)
            energy = self.energy(z_in, theta)
            (grad,) = torch.autograd.grad(energy.sum(), z_in, create_graph=create_graph)
        half = z.shape[-1] // 2
        return torch.cat([grad[..., half:], -grad[..., :half]], dim=-1)


def rollout(
    model: DynamicsModel,
    z0: torch.Tensor,
    theta: torch.Tensor,
    times: torch.Tensor,
    *,
    method: str = "rk4",
    substeps: int = 1,
) -> torch.Tensor:
    """Integrate the model from ``z0`` over ``times``: (batch, len(times), dim), differentiable."""
    return integrate_fixed(lambda t, z: model(z, theta), z0, times, method=method, substeps=substeps)
