"""Batched explicit Runge-Kutta integrators in torch, shared by the simulators and the learned models.

Two members of one family (explicit Runge-Kutta):

- :func:`integrate_adaptive`: Dormand-Prince 5(4) with an embedded error estimate and step-size
  control. The step size is shared by the whole batch (the largest error in the batch decides), and
  steps are cut so that every requested output time is hit exactly: no interpolation error enters
  the stored trajectories. This is what the simulators use for ground truth.
- :func:`integrate_fixed`: classical RK4 (or the same Dormand-Prince stages without control) with a
  fixed number of substeps per output interval; differentiable end to end, which is what training
  a model through its own rollout needs.

States are tensors shaped ``(batch, dim)``; ``f(t, z)`` returns dz/dt of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

VectorField = Callable[[float, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit method; ``b_error`` (b - b_hat) gives the embedded error estimate."""

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None


RK4 = Tableau(
    name="rk4",
    order=4,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
)

_DOPRI_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DOPRI_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)

DOPRI5 = Tableau(
    name="dopri5",
    order=5,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI_B[:6],
    ),
    b=_DOPRI_B,
    b_error=tuple(b - bh for b, bh in zip(_DOPRI_B, _DOPRI_B_HAT)),
)

METHODS = {t.name: t for t in (RK4, DOPRI5)}


class IntegrationError(RuntimeError):
    """The integration could not reach the requested accuracy (stiffness, blow-up or NaN)."""


def _stages(f: VectorField, tableau: Tableau, t: float, z: torch.Tensor, h: float, k0: torch.Tensor | None = None):
    ks = [f(t, z) if k0 is None else k0]
    for i in range(1, len(tableau.c)):
        increment = sum(a * k for a, k in zip(tableau.a[i], ks) if a != 0.0)
        ks.append(f(t + tableau.c[i] * h, z + h * increment))
    return ks


def rk_step(f: VectorField, tableau: Tableau, t: float, z: torch.Tensor, h: float) -> torch.Tensor:
    """One step of size ``h`` of the method ``tableau`` (no error control)."""
    ks = _stages(f, tableau, t, z, h)
    return z + h * sum(b * k for b, k in zip(tableau.b, ks) if b != 0.0)


def check_times(times: torch.Tensor) -> list[float]:
    values = [float(t) for t in torch.as_tensor(times).reshape(-1)]
    if len(values) < 1 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"output times must be strictly increasing, got {values[:5]}...")
    return values


def integrate_fixed(
    f: VectorField, z0: torch.Tensor, times: torch.Tensor, *, method: str = "rk4", substeps: int = 1
) -> torch.Tensor:
    """Integrate from ``z0`` (at ``times[0]``) and return the states at ``times``: (batch, len(times), dim).

    Each output interval is split into ``substeps`` equal steps of ``method`` ("rk4" or "dopri5").
    Differentiable with respect to ``z0`` and anything ``f`` closes over.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    tableau = METHODS[method]
    ts = check_times(times)
    out = [z0]
    z = z0
    for t_start, t_end in zip(ts, ts[1:]):
        h = (t_end - t_start) / substeps
        for i in range(substeps):
            z = rk_step(f, tableau, t_start + i * h, z, h)
        out.append(z)
    return torch.stack(out, dim=1)


@dataclass
class AdaptiveStats:
    """What the adaptive integrator did: accepted and rejected steps, vector-field evaluations."""

    accepted: int = 0
    rejected: int = 0
    evaluations: int = 0


def integrate_adaptive(
    f: VectorField,
    z0: torch.Tensor,
    times: torch.Tensor,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    first_step: float | None = None,
    max_steps: int = 1_000_000,
    stats: AdaptiveStats | None = None,
) -> torch.Tensor:
    """Dormand-Prince 5(4) with step-size control; returns the states at ``times`` (batch, T, dim).

    The error norm is the root mean square over components of err / (atol + rtol max(|z|, |z_new|)),
    maximised over the batch; a step is accepted when it is <= 1. Runs without building a graph.
    """
    ts = check_times(times)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    tableau = DOPRI5
    stats = stats if stats is not None else AdaptiveStats()
    safety, min_factor, max_factor = 0.9, 0.2, 5.0
    exponent = -1.0 / tableau.order
    out = [z0]
    with torch.no_grad():
        z = z0.clone()
        t = ts[0]
        k0 = f(t, z)
        stats.evaluations += 1
        _check_finite(z, k0, t)
        if first_step is not None and not (0 < first_step < float("inf")):
            raise ValueError(f"first_step must be positive and finite, got {first_step}")
        h = first_step or _initial_step(z, k0, ts, rtol, atol)
        for t_end in ts[1:]:
            while t < t_end:
                if stats.accepted + stats.rejected >= max_steps:
                    raise IntegrationError(f"more than {max_steps} steps before t = {t_end}")
                last = t + h >= t_end - 1e-12 * max(1.0, abs(t_end))
                step = t_end - t if last else h
                ks = _stages(f, tableau, t, z, step, k0)
                stats.evaluations += len(ks) - 1
                z_new = z + step * sum(b * k for b, k in zip(tableau.b, ks) if b != 0.0)
                err = step * sum(e * k for e, k in zip(tableau.b_error, ks) if e != 0.0)
                scale = atol + rtol * torch.maximum(z.abs(), z_new.abs())
                ratio = err / scale
                error = float(torch.sqrt((ratio * ratio).mean(dim=-1)).max()) if ratio.numel() else 0.0
                if not (error <= float("inf")) or not torch.isfinite(z_new).all():  # NaN compares false
                    error = float("inf")
                if error <= 1.0:
                    stats.accepted += 1
                    t = t_end if last else t + step
                    z, k0 = z_new, ks[-1]  # first-same-as-last: the 7th stage is f at the new point
                    factor = max_factor if error == 0 else min(max_factor, safety * error**exponent)
                    # a step cut short to land on an output time says nothing against the current h
                    h = max(h, step * factor) if last and step < h and factor >= 1 else step * factor
                else:
                    stats.rejected += 1
                    factor = min_factor if error == float("inf") else max(min_factor, safety * error**exponent)
                    h = step * factor
                if not (h >= 1e-14 * max(1.0, abs(t))):
                    _check_finite(z, f(t, z), t)
                    raise IntegrationError(f"step size underflow at t = {t:.6g} (stiff or diverging trajectory)")
            out.append(z.clone())
    return torch.stack(out, dim=1)


def _check_finite(z: torch.Tensor, dz: torch.Tensor, t: float) -> None:
    """Name the systems (rows) whose state or derivative is NaN or infinite."""
    bad = ~(torch.isfinite(z) & torch.isfinite(dz)).reshape(z.shape[0], -1).all(dim=-1)
    if bad.any():
        raise non_finite_error(bad.nonzero().flatten().tolist(), t)


def non_finite_error(rows: list[int], t: float) -> IntegrationError:
    """The error for systems (rows) whose state or vector field stopped being finite at time ``t``."""
    return IntegrationError(
        f"non-finite state or vector field at t = {t:.6g} for {len(rows)} system(s), first rows {rows[:10]} "
        "(a singular configuration such as coinciding points, or a diverging trajectory)"
    )


def _initial_step(z: torch.Tensor, dz: torch.Tensor, ts: list[float], rtol: float, atol: float) -> float:
    """A first step of 1 % of the time scale |z| / |dz| (capped by the first interval)."""
    scale = atol + rtol * z.abs()
    d0 = float(torch.sqrt(((z / scale) ** 2).mean()))
    d1 = float(torch.sqrt(((dz / scale) ** 2).mean()))
    h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    return min(h, ts[1] - ts[0]) if len(ts) > 1 else h
