"""Batched solvers of the Rietkerk model on a periodic grid.

``simulate``: IMEX pseudo-spectral SBDF2 (second order). The reaction terms are extrapolated
explicitly, diffusion is implicit and solved exactly in Fourier space, so the time step is limited by
the (slow) reactions, not by the explicit diffusion limit dt <= dl^2 / (4 Du) = 0.01 d. One forward and
one inverse real FFT per step serve all three fields of every system in the batch.

``explicit_reference``: plain numpy forward Euler with the 5-point Laplacian, written independently
of the torch code, as the reference the issue's acceptance compares with.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from sims.rietkerk.system import PHYSICAL, Grid, Parameters, RietkerkInputError, positive_number, reactions

LAPLACIANS = ("fd5", "spectral")
"""``fd5``: the symbol of the 5-point finite-difference Laplacian, -(4/dl^2)(sin^2(kx dl/2) + sin^2(ky dl/2)):
the same semi-discrete system as the explicit reference and py-pde. ``spectral``: -(kx^2 + ky^2), exact for
every resolved mode."""
METHODS = ("sbdf2", "sbdf1")
MAX_STEPS = 10**7
"""Time steps per run at most (the presets take a few thousand); T / dt is checked before stepping."""
UNSTABLE_NEGATIVE = 0.2
"""A step that leaves a value below -0.2 times its field's maximum has left the explicit part's
stability region (reactions too fast for dt): an error, not a silent clip."""

Reaction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, torch.Tensor]], tuple]


@dataclass(frozen=True)
class Solution:
    """Snapshots: ``fields`` (batch, times, 3 [u, w, v], n, n) at ``times`` (d), and solver statistics."""

    times: np.ndarray
    fields: torch.Tensor
    steps: int
    clipped: int  # cells set back to zero after a step produced a negative value (all fields, all steps)


def laplacian_symbol(grid: Grid, kind: str = "fd5", *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Eigenvalues (n, n // 2 + 1) of the periodic Laplacian on the rfft2 grid, in m^-2 (all <= 0)."""
    if kind not in LAPLACIANS:
        raise RietkerkInputError(f"laplacian must be one of {LAPLACIANS}, got {kind!r}")
    n = grid.n
    ky = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None]  # integer wave numbers
    kx = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)[None, :]
    if kind == "spectral":
        symbol = -((2 * math.pi / grid.L) ** 2) * (kx**2 + ky**2)
    else:
        symbol = -(4.0 / grid.dl**2) * (torch.sin(math.pi * kx / n) ** 2 + torch.sin(math.pi * ky / n) ** 2)
    return symbol.to(dtype=dtype, device=device)


def _steps(T: float, dt: float, name: str = "T") -> int:
    dt = positive_number(dt, "dt", "days")
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not (math.isfinite(float(T)) and T >= 0):
        raise RietkerkInputError(f"{name} must be a non-negative number of days, got {T!r}")
    T = float(T)
    ratio = T / dt  # inf for T = 1e308, dt = 1e-308: checked before round()
    if not ratio <= MAX_STEPS + 0.5:
        raise RietkerkInputError(
            f"{name} / dt = {T} / {dt} = {ratio:.6g} steps; at most {MAX_STEPS} are allowed, increase dt"
        )
    steps = round(ratio)
    if abs(steps * dt - T) > 1e-9 * max(T, dt):
        raise RietkerkInputError(f"{name} = {T} d is not a whole number of steps of dt = {dt} d")
    return steps


def check_state(state: torch.Tensor, params: Parameters, grid: Grid, source: str = "initial state") -> None:
    expected = (params.batch, 3, grid.n, grid.n)
    if tuple(state.shape) != expected:
        raise RietkerkInputError(
            f"{source}: fields must be shaped {expected} (batch, [u, w, v], n, n), got {tuple(state.shape)}"
        )
    finite = torch.isfinite(state).flatten(1).all(dim=1)
    if not finite.all():
        raise RietkerkInputError(
            f"{source}: non-finite values in system(s) {(~finite).nonzero().flatten().tolist()[:10]}"
        )
    if (state < 0).any():
        raise RietkerkInputError(f"{source}: fields must be non-negative, found {float(state.min()):.6g}")


def simulate(
    params: Parameters,
    grid: Grid,
    state0: torch.Tensor,
    *,
    T: float,
    dt: float,
    save_every: float | None = None,
    laplacian: str = "fd5",
    method: str = "sbdf2",
    reaction: Reaction | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Solution:
    """Integrate (batch, 3, n, n) fields from t = 0 to ``T`` days with step ``dt``, saving every ``save_every``.

    Runs on the device and in the dtype of ``state0`` (float32 or float64); ``params`` are moved there.
    ``reaction`` replaces the Rietkerk reaction terms (e.g. a learned right-hand side) and must accept
    (u, w, v, params as (batch, 1, 1) tensors). Negative values produced by a step are set to zero
    (the continuous model keeps every field non-negative); ``Solution.clipped`` counts them.
    """
    if method not in METHODS:
        raise RietkerkInputError(f"method must be one of {METHODS}, got {method!r}")
    if not state0.is_floating_point() or state0.dtype not in (torch.float32, torch.float64):
        raise RietkerkInputError(f"initial state must be float32 or float64, got {state0.dtype}")
    check_state(state0, params, grid)
    steps = _steps(T, dt)
    save = _steps(save_every if save_every is not None else T, dt, "save_every") or max(steps, 1)
    if steps % save:
        raise RietkerkInputError(f"T = {T} d is not a whole number of save intervals of {save_every} d")
    dtype, device = state0.dtype, state0.device
    p = {k: t.to(device=device, dtype=dtype)[:, None, None] for k, t in params.to_mapping().items()}
    rhs = reaction or reactions
    symbol = laplacian_symbol(grid, laplacian, dtype=dtype, device=device)
    diffusion = params.diffusivities().to(device=device, dtype=dtype)[:, :, None, None] * symbol  # (B, 3, n, m)
    denominators = {1: 1.0 - dt * diffusion, 2: 3.0 - 2.0 * dt * diffusion}
    n = grid.n

    def local(z: torch.Tensor) -> torch.Tensor:
        return torch.stack(rhs(z[:, 0], z[:, 1], z[:, 2], p), dim=1)

    snapshots, times = [state0.clone()], [0.0]
    clipped = 0
    z, z_prev, f_prev = state0.clone(), None, None
    with torch.no_grad():
        for step in range(1, steps + 1):
            f = local(z)
            if method == "sbdf1" or z_prev is None:
                combo, denominator = z + dt * f, denominators[1]
            else:
                combo, denominator = 4.0 * z - z_prev + (2.0 * dt) * (2.0 * f - f_prev), denominators[2]
            z_next = torch.fft.irfft2(torch.fft.rfft2(combo) / denominator, s=(n, n))
            negative = z_next < 0
            if negative.any():
                # Round-off and the spectral Laplacian's ringing next to bare soil leave small negatives;
                # an unstable step leaves values of the order of the field itself.
                scale = z_next.abs().flatten(2).amax(dim=2)[:, :, None, None]
                count = (z_next < -UNSTABLE_NEGATIVE * scale).flatten(1).sum(dim=1)
                unstable = count > 0
                if unstable.any():
                    raise RietkerkInputError(
                        f"the step dt = {dt:g} d is unstable for system(s) {unstable.nonzero().flatten().tolist()[:10]}: "
                        f"it made {int(count.max())} cell values negative by more than {UNSTABLE_NEGATIVE:g} of the "
                        f"field's maximum at t = {step * dt:g} d; reduce dt"
                    )
                clipped += int(negative.sum())
                z_next = z_next.clamp_min_(0.0)
            z_prev, f_prev, z = z, f, z_next
            if step % save == 0:
                if not torch.isfinite(z).all():
                    bad = (~torch.isfinite(z).flatten(1).all(dim=1)).nonzero().flatten().tolist()
                    raise RietkerkInputError(f"the solution blew up at t = {step * dt:g} d in system(s) {bad[:10]}")
                snapshots.append(z.clone())
                times.append(step * dt)
            if progress is not None:
                progress(step, steps)
    return Solution(np.asarray(times), torch.stack(snapshots, dim=1), steps, clipped)


def explicit_reference(
    values: Mapping[str, float], state0: np.ndarray, dl: float, T: float, dt: float = 0.005
) -> np.ndarray:
    """Forward Euler with the 5-point Laplacian for one system: (3, n, n) fields at time ``T`` (numpy, float64).

    Stable only for dt <= dl^2 / (4 max D); written without the torch code so that it checks it.
    """
    Parameters.from_mapping(values, source="explicit reference")  # finite and in range
    p = {k: float(values[k]) for k in PHYSICAL}
    dl = positive_number(dl, "dl", "metres")
    steps = _steps(T, dt)
    fastest = max(p["Du"], p["Dw"], p["Dv"])
    if fastest > 0 and dt > dl * dl / (4 * fastest):  # dl * dl: inf where dl**2 would raise OverflowError
        raise RietkerkInputError(f"explicit Euler is unstable at dt = {dt} d for dl = {dl} m and Du = {p['Du']}")
    state0 = np.asarray(state0, dtype=np.float64)
    if state0.ndim != 3 or state0.shape[0] != 3 or state0.shape[1] != state0.shape[2]:
        raise RietkerkInputError(f"state0 must be shaped (3, n, n) ([u, w, v], n, n), got {state0.shape}")
    if not np.isfinite(state0).all():
        raise RietkerkInputError("state0 has non-finite values")
    u, w, v = (np.array(a, dtype=np.float64) for a in state0)

    def lap(a: np.ndarray) -> np.ndarray:
        return (np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1) - 4 * a) / dl**2

    for _ in range(steps):
        infil = p["alpha"] * u * (v + p["k2"] * p["W0"]) / (v + p["k2"])
        uptake = p["gm"] * v * w / (p["k1"] + w)
        u, w, v = (
            u + dt * (p["R"] - infil + p["Du"] * lap(u)),
            w + dt * (infil - uptake - p["dw"] * w + p["Dw"] * lap(w)),
            v + dt * (p["c"] * uptake - p["dv"] * v + p["Dv"] * lap(v)),
        )
    return np.stack([u, w, v])
