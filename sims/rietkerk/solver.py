"""Batched solvers of the Rietkerk model on a periodic grid.

``simulate``, ``method="sbdf2"`` (the default): IMEX pseudo-spectral SBDF2 (second order). The reaction
terms are extrapolated explicitly, diffusion is implicit and solved exactly in Fourier space, so the time
step is limited by the (slow) reactions, not by the explicit diffusion limit dt <= dl^2 / (4 Du) = 0.01 d.
One forward and one inverse real FFT per step serve all three fields of every system in the batch.

``method="etdrk4"`` / ``"etdrk2"``: exponential time differencing Runge-Kutta (Cox & Matthews 2002), fourth /
second order. The linear part is the diffusion alone, diagonal in Fourier space with the same symbol as
SBDF2 (so the same semi-discrete system and the same limit), and is integrated exactly; the reactions
enter through the phi functions of dt D lap, evaluated in float64 (closed form, Taylor series near zero,
where Kassam & Trefethen's contour integral is not needed: the symbol is real and <= 0). One real FFT pair
per stage: 4 per step for ETDRK4, 2 for ETDRK2.

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
METHODS = ("sbdf2", "sbdf1", "etdrk4", "etdrk2")
"""Time steppers of ``simulate``; their orders are 2, 1, 4 and 2 (``tests/sims/test_rietkerk.py``)."""
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


def phi_functions(z: torch.Tensor, count: int) -> list[torch.Tensor]:
    """phi_1 .. phi_count of a real tensor z <= 0 (float64): phi_k(z) = sum_j z^j / (j + k)!.

    Closed forms (phi_1 = expm1(z)/z, phi_2 = (expm1(z) - z)/z^2, ...) where |z| >= 1, the Taylor series
    (20 terms, error below 1e-18) where |z| < 1, so that neither cancels.
    """
    z = z.to(torch.float64)
    small = z.abs() < 1.0
    safe, tiny = torch.where(small, torch.ones_like(z), z), torch.where(small, z, torch.zeros_like(z))
    closed, taylor_part = torch.expm1(safe), safe  # expm1(z) - sum_{j<k} z^j / j!, built up term by term
    out = []
    for k in range(1, count + 1):
        closed_k = closed / safe**k
        series = torch.zeros_like(z)
        for j in reversed(range(20)):  # Horner, on z inside |z| < 1 only
            series = series * tiny + 1.0 / math.factorial(j + k)
        out.append(torch.where(small, series, closed_k))
        closed = closed - taylor_part
        taylor_part = taylor_part * safe / (k + 1)
    return out


class _ExponentialRK:
    """ETDRK4 / ETDRK2 for dz/dt = L z + N(z), L diagonal in Fourier space (real, <= 0): state kept in Fourier."""

    def __init__(self, method: str, linear: torch.Tensor, dt: float, local: Callable, n: int, dtype: torch.dtype):
        h, self.method, self.local, self.n = dt, method, local, n
        cast = lambda t: t.to(dtype)  # noqa: E731
        if method == "etdrk4":
            self.E, self.E2 = cast(torch.exp(h * linear)), cast(torch.exp(0.5 * h * linear))
            self.Q = cast(0.5 * h * phi_functions(0.5 * h * linear, 1)[0])
            p1, p2, p3 = phi_functions(h * linear, 3)
            self.f1, self.f2, self.f3 = (
                cast(h * (p1 - 3 * p2 + 4 * p3)),
                cast(2 * h * (p2 - 2 * p3)),
                cast(h * (4 * p3 - p2)),
            )
        else:
            p1, p2 = phi_functions(h * linear, 2)
            self.E, self.p1, self.p2 = cast(torch.exp(h * linear)), cast(h * p1), cast(h * p2)
        self.zh = None

    def _N(self, z: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(self.local(z))

    def _real(self, zh: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(zh, s=(self.n, self.n))

    def reset(self, z: torch.Tensor) -> None:
        self.zh = torch.fft.rfft2(z)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """One step from z (whose transform is ``self.zh``): the next state in real space, not yet clipped."""
        zh, Nz = self.zh, self._N(z)
        if self.method == "etdrk4":
            ah = self.E2 * zh + self.Q * Nz
            Na = self._N(self._real(ah))
            bh = self.E2 * zh + self.Q * Na
            Nb = self._N(self._real(bh))
            ch = self.E2 * ah + self.Q * (2.0 * Nb - Nz)
            Nc = self._N(self._real(ch))
            self.zh = self.E * zh + self.f1 * Nz + self.f2 * (Na + Nb) + self.f3 * Nc
        else:
            ah = self.E * zh + self.p1 * Nz
            self.zh = ah + self.p2 * (self._N(self._real(ah)) - Nz)
        return self._real(self.zh)


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
    symbol = laplacian_symbol(grid, laplacian, dtype=dtype, device=device)  # checks ``laplacian``
    n = grid.n

    def local(z: torch.Tensor) -> torch.Tensor:
        return torch.stack(rhs(z[:, 0], z[:, 1], z[:, 2], p), dim=1)

    exponential = None
    if method.startswith("etd"):  # coefficients from the float64 symbol, then cast to the run's dtype
        symbol64 = laplacian_symbol(grid, laplacian, dtype=torch.float64, device=device)
        linear = params.diffusivities().to(device=device, dtype=torch.float64)[:, :, None, None] * symbol64
        exponential = _ExponentialRK(method, linear, dt, local, n, dtype)
    else:
        diffusion = params.diffusivities().to(device=device, dtype=dtype)[:, :, None, None] * symbol  # (B, 3, n, m)
        denominators = {1: 1.0 - dt * diffusion, 2: 3.0 - 2.0 * dt * diffusion}

    snapshots, times = [state0.clone()], [0.0]
    clipped = 0
    z, z_prev, f_prev = state0.clone(), None, None
    with torch.no_grad():
        if exponential is not None:
            exponential.reset(z)
        for step in range(1, steps + 1):
            if exponential is not None:
                z_next = exponential.step(z)
            else:
                f = local(z)
                if method == "sbdf1" or z_prev is None:
                    combo, denominator = z + dt * f, denominators[1]
                else:
                    combo, denominator = 4.0 * z - z_prev + (2.0 * dt) * (2.0 * f - f_prev), denominators[2]
                z_next = torch.fft.irfft2(torch.fft.rfft2(combo) / denominator, s=(n, n))
                z_prev, f_prev = z, f
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
                if exponential is not None:
                    exponential.reset(z_next)
            z = z_next
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
