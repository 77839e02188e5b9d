"""Equation discovery for the Rietkerk model (docs/protocols.md#rietkerk): learn the local reaction terms from
simulated fields, units-equivariantly, as a closed form (sparse regression) and as a scalar MLP.

**Units-equivariance by nondimensionalisation.** Every quantity is measured in scales made of the
system's own parameters: U = u/k1, W = w/k1 (water in units of the uptake half-saturation), V = v/k2
(biomass in units of the infiltration saturation constant), tau = alpha t (time in infiltration
times), lengths in units of the training patch side L (so lap_hat = L^2 lap). The model then reads

    dU/dtau = r - U V/(V+1) - W0 U/(V+1)                         + d_u lap_hat U
    dW/dtau = U V/(V+1) + W0 U/(V+1) - g V W/(W+1) - delta_w W   + d_w lap_hat W
    dV/dtau = gamma V W/(W+1) - nu V                             + d_v lap_hat V

with the Pi groups r = R/(alpha k1), g = gm k2/(alpha k1), delta_w = dw/alpha, gamma = c gm/alpha,
nu = dv/alpha, W0, and d_x = D_x/(alpha L^2). A model of the dimensionless rates (anything: a
regression, an MLP) turned back into dimensional rates with the same scales is exactly
units-equivariant: a change of units multiplies u, k1 (and v, k2, and alpha, R) by common factors
that cancel in U, W, V, r, and the rates come back multiplied by the factors of alpha k1 and alpha k2.

**Data.** Trajectories from seeded starts at several rainfalls (only R varies, so the other Pi groups
are the same in every system and appear as constant coefficients; r varies, which makes the terms
"r" and "1" distinguishable). Time derivatives need snapshots much closer together than the
trajectory's saving interval, so from every saved state a short *burst* is integrated with a small
step and saved at every ``spacing`` steps; the derivative at its centre comes from a Savitzky-Golay
(local quadratic) stencil over 2m+1 burst snapshots, which for m = 1 is the plain central difference.
The first snapshot used lies ``SETTLE_STEPS`` steps into the burst, because the solver restarts with
one first-order step whose parasitic BDF2 mode decays by a factor 3 per step. The Laplacian is the
5-point periodic stencil (``np.roll``), the operator the solver's ``fd5`` symbol diagonalises.

**Library.** The same dimensionless candidate terms for every equation (``TERMS``). Plain U is
left out: U = U V/(V+1) + U/(V+1), so with it the library would be linearly dependent and the
sparsest model not unique. Each equation is fitted by sequentially thresholded least squares
(``surrogates.sparse_regression``) on data pooled over the training rainfalls.

**Noise.** Noise on the snapshots enters the rates through the time stencil and the Laplacians
through the 5-point stencil, amplified by 1/step and (L/dl)^2. The surface-water equation is the
fragile one: u diffuses fast and is nearly slaved to v, so dU/dtau is a small remainder of large,
nearly cancelling terms and lap_hat U is nearly a combination of the local terms. The ``savgol``
stencil (``STENCILS``) is the cheap remedy offered: a wider window in time that averages the noise of
the states, the Laplacians and the rates, at the price of its own truncation error.

**The MLP** (:class:`ReactionMLP`) learns the reaction rates from (U, W, V, r) with the diffusion
terms of the known Pi groups subtracted; rolled out, it uses the true diffusivities. The fitted
equations are rolled out with their fitted diffusivities and nothing of the true model but the scales
k1, k2, alpha and the rainfall (:func:`learned_values`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.model_io import ModelIO, Port
from pipeline.rietkerk.patterns import pattern_statistics
from sims.rietkerk import system as rk
from sims.rietkerk.solver import Reaction, simulate
from surrogates.artifacts import register_model
from surrogates.mlp import MLP
from surrogates.sparse_regression import SparseFit, format_equation, sparse_fit
from surrogates.training import TrainConfig, TrainResult, seed_everything, train

EQUATIONS = ("U", "W", "V")
"""The dimensionless fields, in the solver's order (u, w, v)."""
PI_GROUPS = ("r", "W0", "g", "delta_w", "gamma", "nu", "d_u", "d_w", "d_v")
TRAIN_RAINFALLS = (0.8, 0.9, 1.1, 1.2)
"""l d^-1 m^-2: the training systems (2002 parameters); 1.0 is unseen inside the range, 0.75 and 1.25 outside."""
TEST_RAINFALLS = (0.75, 1.0, 1.25)
"""l d^-1 m^-2: spots, labyrinth and gaps with the 2002 parameters."""
SETTLE_STEPS = 8
"""Burst steps before the first snapshot used: the restart's parasitic BDF2 mode has decayed by 3^-8."""
COVER_THRESHOLD_K2 = 0.1
"""Cover threshold in units of k2 (as ``pipeline.rietkerk.features``)."""


# -- nondimensionalisation ------------------------------------------------------------------------


def pi_groups(values: Mapping[str, Any], L: float) -> dict[str, Any]:
    """The dimensionless groups of the equations above for parameters ``values`` (``rk.UNITS``) and length
    unit ``L`` (m); numbers or arrays, as given."""
    p = {k: values[k] for k in rk.PHYSICAL}
    a = p["alpha"]
    return {
        "r": p["R"] / (a * p["k1"]),
        "W0": p["W0"],
        "g": p["gm"] * p["k2"] / (a * p["k1"]),
        "delta_w": p["dw"] / a,
        "gamma": p["c"] * p["gm"] / a,
        "nu": p["dv"] / a,
        "d_u": p["Du"] / (a * L**2),
        "d_w": p["Dw"] / (a * L**2),
        "d_v": p["Dv"] / (a * L**2),
    }


# -- the library ----------------------------------------------------------------------------------

LibraryFn = Callable[..., Any]
_REACTION_TERMS: dict[str, LibraryFn] = {
    "1": lambda U, W, V, r: U * 0 + 1,
    "r": lambda U, W, V, r: U * 0 + r,
    "W": lambda U, W, V, r: W,
    "V": lambda U, W, V, r: V,
    "U V/(V+1)": lambda U, W, V, r: U * V / (V + 1),
    "U/(V+1)": lambda U, W, V, r: U / (V + 1),
    "V W/(W+1)": lambda U, W, V, r: V * W / (W + 1),
    "W/(W+1)": lambda U, W, V, r: W / (W + 1),
    "U V": lambda U, W, V, r: U * V,
    "U W": lambda U, W, V, r: U * W,
    "V W": lambda U, W, V, r: V * W,
    "U^2": lambda U, W, V, r: U * U,
    "W^2": lambda U, W, V, r: W * W,
    "V^2": lambda U, W, V, r: V * V,
    "r U": lambda U, W, V, r: r * U,
    "r W": lambda U, W, V, r: r * W,
    "r V": lambda U, W, V, r: r * V,
}
DIFFUSION_TERMS = ("lap U", "lap W", "lap V")
TERMS = (*_REACTION_TERMS, *DIFFUSION_TERMS)
"""The candidate terms, the same for every equation: written with + - * / only, so that they evaluate
on numpy arrays and torch tensors alike."""


def reaction_library(U: Any, W: Any, V: Any, r: Any) -> list[Any]:
    """The local candidate terms (all of ``TERMS`` but the Laplacians), arrays shaped like U."""
    return [fn(U, W, V, r) for fn in _REACTION_TERMS.values()]


def library(states: np.ndarray, laplacians: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(n, len(TERMS)) library matrix from (n, 3) states (U, W, V), (n, 3) lap_hat and (n,) r."""
    U, W, V = states.T
    return np.stack([*reaction_library(U, W, V, r), *laplacians.T], axis=1)


def true_coefficients(values: Mapping[str, float], L: float) -> dict[tuple[str, str], float]:
    """The coefficients of the Rietkerk equations in ``TERMS``, keyed (equation, term), for one system
    with parameters ``values`` and length unit ``L`` (m)."""
    p = {k: float(v) for k, v in pi_groups({k: float(values[k]) for k in rk.PHYSICAL}, L).items()}
    return {
        ("U", "r"): 1.0,
        ("U", "U V/(V+1)"): -1.0,
        ("U", "U/(V+1)"): -p["W0"],
        ("U", "lap U"): p["d_u"],
        ("W", "U V/(V+1)"): 1.0,
        ("W", "U/(V+1)"): p["W0"],
        ("W", "V W/(W+1)"): -p["g"],
        ("W", "W"): -p["delta_w"],
        ("W", "lap W"): p["d_w"],
        ("V", "V W/(W+1)"): p["gamma"],
        ("V", "V"): -p["nu"],
        ("V", "lap V"): p["d_v"],
    }


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveryData:
    """Samples of the dimensionless fields and their rates, pooled over systems.

    ``states`` (n, 3): U, W, V; ``laplacians`` (n, 3): lap_hat U, W, V (= L^2 lap); ``rates`` (n, 3):
    dU/dtau, dW/dtau, dV/dtau; ``groups``: each Pi group per sample (n,); ``system`` (n,): index of the
    system in ``values``; ``L`` (m): the length unit.
    """

    states: np.ndarray
    laplacians: np.ndarray
    rates: np.ndarray
    groups: dict[str, np.ndarray]
    system: np.ndarray
    L: float
    values: tuple[dict[str, float], ...]

    def __len__(self) -> int:
        return self.states.shape[0]

    def library(self) -> np.ndarray:
        return library(self.states, self.laplacians, self.groups["r"])

    def reaction_targets(self) -> np.ndarray:
        """(n, 3) the dimensionless reaction rates: d/dtau minus the diffusion terms with the known d_x."""
        d = np.stack([self.groups[k] for k in ("d_u", "d_w", "d_v")], axis=1)
        return self.rates - d * self.laplacians

    def inputs(self) -> np.ndarray:
        """(n, 4) MLP inputs U, W, V, r."""
        return np.concatenate([self.states, self.groups["r"][:, None]], axis=1)


def savgol_weights(half_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights over 2m+1 equally spaced samples of a local quadratic fit: (value at the centre, first
    derivative per sample spacing). For m = 1: the centre sample and the central difference."""
    m = int(half_width)
    if m < 1:
        raise ValueError(f"the stencil half-width must be >= 1, got {half_width!r}")
    j = np.arange(-m, m + 1, dtype=np.float64)
    value = (3 * (3 * m * m + 3 * m - 1) - 15 * j**2) / ((2 * m - 1) * (2 * m + 1) * (2 * m + 3))
    slope = j / (j**2).sum()
    return value, slope


def laplacian_5pt(a: np.ndarray, dl: float) -> np.ndarray:
    """Periodic 5-point Laplacian over the last two axes (units of ``a`` per m^2)."""
    return (np.roll(a, 1, -1) + np.roll(a, -1, -1) + np.roll(a, 1, -2) + np.roll(a, -1, -2) - 4 * a) / dl**2


def _stack_values(values_list: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    return {k: np.array([float(v[k]) for v in values_list]) for k in rk.PHYSICAL}


@dataclass(frozen=True)
class Bursts:
    """Short fine-step runs started from the saved states of seeded trajectories.

    ``fields`` (systems, starts, 2m+1, 3, n, n): u, w, v (``rk.UNITS``) at the stencil's snapshots,
    ``step`` (d) apart; ``starts`` (d): the trajectory times the bursts start from.
    """

    fields: np.ndarray
    step: float
    starts: np.ndarray
    values: tuple[dict[str, float], ...]
    grid: rk.Grid

    @property
    def half_width(self) -> int:
        return (self.fields.shape[2] - 1) // 2


def simulate_bursts(
    values_list: Sequence[Mapping[str, float]],
    grid: rk.Grid,
    *,
    T: float = 100.0,
    dt: float = 0.05,
    snapshot_every: float = 5.0,
    t_min: float = 5.0,
    seeds: Sequence[int] | None = None,
    burst_dt: float = 0.002,
    spacing: int = 1,
    half_width: int = 1,
) -> Bursts:
    """Seeded trajectories of every system to ``T`` days (step ``dt``, d), and from each state saved every
    ``snapshot_every`` days at t >= ``t_min`` a burst with step ``burst_dt`` (d) that keeps 2 ``half_width``
    + 1 snapshots ``spacing`` steps apart, the first at least ``SETTLE_STEPS`` steps after its start.

    ``t_min`` should exceed 0: the seeded start holds exact zeros, and the first days (seeds spreading
    into bare soil) touch the solver's non-negativity floor, where the data no longer follow the PDE."""
    values_list = [{k: float(v[k]) for k in rk.PHYSICAL} for v in values_list]
    if not values_list:
        raise ValueError("equation discovery needs at least one parameter set")
    if int(spacing) != spacing or spacing < 1:
        raise ValueError(f"spacing must be a whole number of burst steps >= 1, got {spacing!r}")
    if int(half_width) != half_width or half_width < 1:
        raise ValueError(f"half_width must be a whole number >= 1, got {half_width!r}")
    n_sys, n, m, spacing = len(values_list), grid.n, int(half_width), int(spacing)
    stacked = _stack_values(values_list)
    params = rk.Parameters.from_mapping(stacked, source="discovery systems")
    z0 = rk.initial_state(params, grid, seeds=np.arange(n_sys) if seeds is None else np.asarray(seeds))
    trajectory = simulate(params, grid, z0, T=T, dt=dt, save_every=snapshot_every)
    keep = np.flatnonzero(trajectory.times >= t_min - 1e-9 * max(T, 1.0))
    if keep.size == 0:
        raise ValueError(f"no saved state at t >= t_min = {t_min} d (T = {T} d, snapshot_every = {snapshot_every} d)")
    n_start = keep.size
    starts = trajectory.fields[:, keep].reshape(n_sys * n_start, 3, n, n)
    burst_params = rk.Parameters.from_mapping({k: np.repeat(a, n_start) for k, a in stacked.items()})
    skip = -(-SETTLE_STEPS // spacing)  # save intervals until the restart's parasitic mode has decayed
    burst = simulate(
        burst_params, grid, starts, T=(skip + 2 * m) * spacing * burst_dt, dt=burst_dt, save_every=spacing * burst_dt
    )
    fields = burst.fields[:, skip:].numpy().reshape(n_sys, n_start, 2 * m + 1, 3, n, n)
    return Bursts(fields, spacing * burst_dt, trajectory.times[keep], tuple(values_list), grid)


def sample_bursts(
    bursts: Bursts, *, points_per_system: int = 4000, rng: np.random.Generator, noise: float = 0.0
) -> DiscoveryData:
    """Dimensionless states, Laplacians and rates at ``points_per_system`` random (start, y, x) points of
    each system, drawn with ``rng``.

    ``noise`` adds Gaussian noise of standard deviation ``noise`` times each field's standard deviation
    (per system, over all its burst snapshots) to every snapshot independently, before the stencil. Points
    where a field sits at the solver's non-negativity floor (exactly 0) during the stencil are left out:
    there the discrete dynamics is not the PDE's. The points are drawn before the noise, so one seed
    gives the same points at every noise level.
    """
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite relative size >= 0, got {noise!r}")
    if int(points_per_system) < 1:
        raise ValueError(f"points_per_system must be >= 1, got {points_per_system!r}")
    fields, grid = bursts.fields, bursts.grid
    n_sys, n_start, _, _, n, _ = fields.shape
    floor = (fields == 0).any(axis=(2, 3))  # (systems, starts, n, n)
    picks = []
    for i in range(n_sys):
        valid = np.flatnonzero(~floor[i].ravel())
        if valid.size == 0:
            raise ValueError(f"system {i}: every point touches the non-negativity floor; raise t_min")
        picks.append(rng.choice(valid, size=min(int(points_per_system), valid.size), replace=False))
    if noise > 0:
        std = fields.std(axis=(1, 2, 4, 5), keepdims=True)
        fields = fields + noise * std * rng.standard_normal(fields.shape)

    value_w, slope_w = savgol_weights(bursts.half_width)
    centre = np.tensordot(value_w, fields, axes=(0, 2))  # (systems, starts, 3, n, n)
    rate = np.tensordot(slope_w, fields, axes=(0, 2)) / bursts.step  # per day
    lap = laplacian_5pt(centre, grid.dl)

    stacked = _stack_values(bursts.values)
    groups_sys = pi_groups(stacked, grid.L)
    states, laps, rates, system = [], [], [], []
    for i, pick in enumerate(picks):
        s, y, x = np.unravel_index(pick, (n_start, n, n))
        scale = np.array([stacked["k1"][i], stacked["k1"][i], stacked["k2"][i]])  # l m^-2, l m^-2, g m^-2
        states.append(centre[i, s, :, y, x] / scale)
        laps.append(lap[i, s, :, y, x] * grid.L**2 / scale)
        rates.append(rate[i, s, :, y, x] / (scale * stacked["alpha"][i]))
        system.append(np.full(pick.size, i))
    system_idx = np.concatenate(system)
    return DiscoveryData(
        np.concatenate(states),
        np.concatenate(laps),
        np.concatenate(rates),
        {name: np.asarray(groups_sys[name], dtype=np.float64)[system_idx] for name in PI_GROUPS},
        system_idx,
        float(grid.L),
        bursts.values,
    )


def discovery_data(
    values_list: Sequence[Mapping[str, float]],
    grid: rk.Grid,
    *,
    rng: np.random.Generator,
    points_per_system: int = 4000,
    noise: float = 0.0,
    **burst_options: Any,
) -> DiscoveryData:
    """:func:`simulate_bursts` then :func:`sample_bursts`: the samples discovery and the MLP learn from."""
    bursts = simulate_bursts(values_list, grid, **burst_options)
    return sample_bursts(bursts, points_per_system=points_per_system, rng=rng, noise=noise)


# -- closed form by sparse regression -------------------------------------------------------------


@dataclass(frozen=True)
class Discovery:
    """Sparse-regression equations next to the true ones.

    ``fit``: the fitted coefficients (``TERMS`` x ``EQUATIONS``); ``true``: the Rietkerk coefficients
    keyed (equation, term); ``L`` (m): the length unit of the Laplacian terms.
    """

    fit: SparseFit
    true: dict[tuple[str, str], float]
    L: float

    def coefficient(self, equation: str, term: str) -> float:
        return float(self.fit.coefficients[TERMS.index(term), EQUATIONS.index(equation)])

    def table(self) -> list[dict[str, Any]]:
        """One row per true or selected term: equation, term, true and fitted coefficients, relative error
        (None for a spurious term)."""
        rows = []
        for eq in EQUATIONS:
            for term in TERMS:
                true, fitted = self.true.get((eq, term), 0.0), self.coefficient(eq, term)
                if true == 0 and fitted == 0:
                    continue
                rel = abs(fitted / true - 1) if true != 0 else None
                rows.append({"equation": eq, "term": term, "true": true, "fitted": fitted, "relative_error": rel})
        return rows

    @property
    def max_relative_error(self) -> float:
        """Largest |fitted/true - 1| over the true terms (1 for a missed term)."""
        return max(row["relative_error"] for row in self.table() if row["relative_error"] is not None)

    @property
    def spurious(self) -> list[tuple[str, str]]:
        return [(r["equation"], r["term"]) for r in self.table() if r["true"] == 0]

    @property
    def missed(self) -> list[tuple[str, str]]:
        return [(r["equation"], r["term"]) for r in self.table() if r["fitted"] == 0]

    def equations(self) -> dict[str, dict[str, str]]:
        """The fitted and the true right-hand sides as text, per equation."""
        out = {}
        for k, eq in enumerate(EQUATIONS):
            true = [self.true.get((eq, t), 0.0) for t in TERMS]
            out[eq] = {"fitted": self.fit.equation(k), "true": format_equation(TERMS, true)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "L": self.L,
            "threshold": list(self.fit.threshold),
            "table": self.table(),
            "max_relative_error": self.max_relative_error,
            "spurious": [list(t) for t in self.spurious],
            "missed": [list(t) for t in self.missed],
            "residual_rms": dict(zip(EQUATIONS, self.fit.residual_rms.tolist(), strict=True)),
            "equations": self.equations(),
        }


def _check_pooled(data: DiscoveryData) -> None:
    """The library's coefficients are constants: every Pi group but r must be the same in every system."""
    for name in PI_GROUPS[1:]:
        g = data.groups[name]
        if np.ptp(g) > 1e-12 * np.abs(g).max():
            raise ValueError(
                f"the training systems differ in the Pi group {name} ({g.min():.6g}..{g.max():.6g}); the library "
                "has constant coefficients, so only R may vary between the systems pooled for one fit"
            )


def discover(data: DiscoveryData, threshold: float | Sequence[float] = 0.05, **options: Any) -> Discovery:
    """Fit each of dU/dtau, dW/dtau, dV/dtau over ``TERMS`` by :func:`~surrogates.sparse_regression.stlsq`.

    ``threshold``: one number or one per equation, the smallest share of the rate's RMS a term may carry.
    """
    _check_pooled(data)
    fit = sparse_fit(data.library(), data.rates, threshold, TERMS, EQUATIONS, **options)
    return Discovery(fit, true_coefficients(data.values[0], data.L), data.L)


def _field_scales(p: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return p["k1"], p["k2"], p["alpha"]


def sparse_reaction(discovery: Discovery) -> Reaction:
    """The fitted reaction terms as a ``reaction`` for :func:`sims.rietkerk.solver.simulate`: dimensional
    (u, w, v, params) in, (du/dt, dw/dt, dv/dt) out in ``rk.UNITS`` per day.

    It reads only the nondimensionalisation scales k1, k2, alpha and the rainfall R from ``params``.
    Raises when a Laplacian of one field was selected in another field's equation (cross-diffusion: the
    solver's diffusion is diagonal).
    """
    coefs = discovery.fit.coefficients
    n_local = len(_REACTION_TERMS)
    for k, eq in enumerate(EQUATIONS):
        for j, term in enumerate(DIFFUSION_TERMS):
            if j != k and coefs[n_local + j, k] != 0:
                raise ValueError(f"the fitted {eq} equation holds {term}: cross-diffusion has no place in the solver")
    local = [[(float(c), j) for j, c in enumerate(coefs[:n_local, k]) if c != 0] for k in range(3)]

    def reaction(u: torch.Tensor, w: torch.Tensor, v: torch.Tensor, p: Mapping[str, torch.Tensor]) -> tuple:
        k1, k2, alpha = _field_scales(p)
        terms = reaction_library(u / k1, w / k1, v / k2, p["R"] / (alpha * k1))
        rates = [sum((c * terms[j] for c, j in local[k]), torch.zeros_like(u)) for k in range(3)]
        return alpha * k1 * rates[0], alpha * k1 * rates[1], alpha * k2 * rates[2]

    return reaction


UNUSED_BY_LEARNED = ("W0", "gm", "c", "dw", "dv")


def learned_values(discovery: Discovery, values: Mapping[str, float]) -> dict[str, float]:
    """Parameters for a rollout of the fitted equations of a system with parameters ``values``.

    The diffusivities are the fitted ones, D_x = d_x alpha L^2 (m^2 d^-1, ``L`` the training length unit);
    the parameters the fitted reaction does not read (``UNUSED_BY_LEARNED``) are set to 1, so that a
    rollout uses nothing of the true model but the scales k1, k2, alpha and the rainfall R.
    """
    out = {k: float(values[k]) for k in rk.PHYSICAL}
    for name, eq, term in zip(rk.DIFFUSION, EQUATIONS, DIFFUSION_TERMS, strict=True):
        out[name] = discovery.coefficient(eq, term) * out["alpha"] * discovery.L**2
    out.update({name: 1.0 for name in UNUSED_BY_LEARNED})
    return out


# -- the units-equivariant MLP --------------------------------------------------------------------

REACTION_PARAMETERS = ("R", "alpha", "k1", "k2")
"""The parameters a learned reaction reads (rainfall and the nondimensionalisation scales)."""
FIELD_PORTS = tuple(Port.of(rk.DECLARATION, f, (f,), packed=False, samples={f: (0.5, 20.0)}) for f in rk.FIELDS)
REACTION_PARAMETER_PORT = Port.of(
    rk.DECLARATION,
    "parameters",
    REACTION_PARAMETERS,
    samples={k: (0.5 * rk.RIETKERK_2002[k], 2.0 * rk.RIETKERK_2002[k]) for k in REACTION_PARAMETERS},
)
RATE_PORTS = tuple(port.derivative("d") for port in FIELD_PORTS)


def _run_reaction(model: ReactionMLP, u: torch.Tensor, w: torch.Tensor, v: torch.Tensor, parameters: torch.Tensor):
    """The reaction of ``model`` on fields (batch, y, x) with parameters (batch, 4) in REACTION_PARAMETERS order."""
    p = {name: parameters[:, i, None, None] for i, name in enumerate(REACTION_PARAMETERS)}
    return model.reaction()(u, w, v, p)


@register_model("rietkerk-reaction-mlp")
class ReactionMLP(torch.nn.Module):
    """Dimensionless reaction rates (dU/dtau, dW/dtau, dV/dtau without diffusion) = MLP(U, W, V, r).

    Inputs and outputs are dimensionless, so the model is exactly units-equivariant once wrapped by
    :meth:`reaction`, which divides the fields by k1, k1, k2 and multiplies the rates by alpha k1,
    alpha k1, alpha k2. ``out_scale`` (a buffer, the RMS of each training target) puts the three
    outputs on one footing.

    With ``biomass_factor`` the biomass rate is V times a network output: in this model class nothing
    grows without biomass (there is no seed rain), and without the factor the network's small error at
    V = 0 would turn the bare soil of a seeded start negative at every solver step.
    """

    def __init__(
        self, hidden: Sequence[int] = (64, 64, 64), activation: str = "silu", biomass_factor: bool = True
    ) -> None:
        super().__init__()
        self._config = {"hidden": [int(h) for h in hidden], "activation": activation, "biomass_factor": biomass_factor}
        self.mlp = MLP(4, 3, tuple(self._config["hidden"]), activation)
        self.register_buffer("out_scale", torch.ones(3))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def fit_scales(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Input standardisation and output scales from training inputs (n, 4) and targets (n, 3)."""
        self.mlp.fit_input(inputs)
        targets = targets.detach().to(self.out_scale)
        if self._config["biomass_factor"]:  # the network's third output is the biomass rate over V
            biomass = inputs.detach().to(targets)[:, 2]
            targets = torch.cat([targets[:, :2], (targets[:, 2] / biomass.clamp_min(1e-12))[:, None]], dim=1)
        rms = targets.pow(2).mean(0).sqrt()
        self.out_scale.copy_(torch.where(rms > 0, rms, torch.ones_like(rms)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 4) U, W, V, r -> (..., 3) dimensionless reaction rates."""
        out = self.mlp(x) * self.out_scale
        if self._config["biomass_factor"]:
            out = torch.cat([out[..., :2], out[..., 2:] * x[..., 2:3]], dim=-1)
        return out

    @property
    def io(self) -> ModelIO:
        """Its :meth:`reaction`: fields u, w, v and parameters R, alpha, k1, k2 -> du/dt, dw/dt, dv/dt
        in ``rk.UNITS`` per day, exactly units-equivariant."""
        return ModelIO.declared(
            rk.DECLARATION,
            (*FIELD_PORTS, REACTION_PARAMETER_PORT),
            RATE_PORTS,
            units="equivariant",
            apply=_run_reaction,
            description="Rietkerk reaction rates from the dimensionless reaction MLP",
        )

    def reaction(self) -> Reaction:
        """The model as a ``reaction`` for :func:`sims.rietkerk.solver.simulate` (dimensional in and out,
        ``rk.UNITS`` per day); it reads k1, k2, alpha and R from the parameters."""

        def reaction(u: torch.Tensor, w: torch.Tensor, v: torch.Tensor, p: Mapping[str, torch.Tensor]) -> tuple:
            k1, k2, alpha = _field_scales(p)
            r = (p["R"] / (alpha * k1)).expand_as(u)
            weights = next(self.parameters())
            x = torch.stack([u / k1, w / k1, v / k2, r], dim=-1).to(weights)
            with torch.no_grad():
                rates = self(x).to(u)
            return alpha * k1 * rates[..., 0], alpha * k1 * rates[..., 1], alpha * k2 * rates[..., 2]

        return reaction


def _mlp_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((model(batch["x"]) - batch["y"]) / model.out_scale).pow(2).mean()


def train_reaction_mlp(
    data: DiscoveryData,
    *,
    seed: int,
    hidden: Sequence[int] = (64, 64, 64),
    activation: str = "silu",
    biomass_factor: bool = True,
    epochs: int = 2000,
    lr: float = 3e-3,
    batch_size: int | None = 4096,
    val_fraction: float = 0.2,
    progress: bool | None = None,
) -> tuple[ReactionMLP, TrainResult]:
    """Fit a :class:`ReactionMLP` to ``data.reaction_targets()`` (the rates minus the known diffusion
    terms) with :func:`surrogates.training.train`; ``seed`` fixes the initial weights, the split and the
    batches. The learning rate decays tenfold over the run; the best validation weights are kept."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    x = torch.as_tensor(data.inputs())
    y = torch.as_tensor(data.reaction_targets())
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(val_fraction * len(data)))
    val, tr = order[:n_val], order[n_val:]
    seed_everything(seed)
    model = ReactionMLP(hidden, activation, biomass_factor).double()
    model.fit_scales(x[tr], y[tr])
    decay_every = max(1, epochs // 4)
    config = TrainConfig(
        seed=seed,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        lr_decay=10 ** (-1 / 4),
        lr_decay_every=decay_every,
        val_every=max(1, epochs // 100),
        dtype="float64",
        device="cpu",
        progress=progress,
    )
    result = train(model, _mlp_loss, {"x": x[tr], "y": y[tr]}, {"x": x[val], "y": y[val]}, config)
    model.eval()
    return model, result


# -- rollouts -------------------------------------------------------------------------------------


def _relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _stats(v: np.ndarray, dl: float, threshold: float) -> dict[str, Any]:
    s = pattern_statistics(v, dl, threshold)
    keys = ("regime", "mean", "cover_fraction", "dominant_wavelength", "vegetated_patches", "bare_patches")
    return {k: (str(s[k]) if k == "regime" else float(s[k])) for k in keys}


def compare_rollouts(
    discovery: Discovery | None,
    model: ReactionMLP | None,
    *,
    base_values: Mapping[str, float] = rk.RIETKERK_2002,
    rainfalls: Sequence[float] = TEST_RAINFALLS,
    grid: rk.Grid | None = None,
    T: float = 200.0,
    dt: float = 0.25,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Roll out the true model and the learned ones from the same seeded start at each rainfall.

    ``discovery``: the fitted equations, with their fitted diffusivities (:func:`learned_values`);
    ``model``: the MLP reaction with the true diffusivities (it learned the reaction terms only). Either may
    be None. One row per rainfall (l d^-1 m^-2) with, per model, the pattern statistics of the biomass at
    ``T`` (d) (regime, mean in g m^-2, cover fraction above 0.1 k2, dominant wavelength in m, patch counts),
    and for the learned models the relative L2 distance to the truth of the biomass and of all fields.
    ``grid`` defaults to 50 x 50 cells of 2 m, large enough for the three regimes at T = 200 d.
    """
    grid = grid or rk.Grid(100.0, 2.0)
    systems = [{**{k: float(base_values[k]) for k in rk.PHYSICAL}, "R": float(R)} for R in rainfalls]
    params = rk.Parameters.from_mapping(_stack_values(systems))
    z0 = rk.initial_state(params, grid, seeds=seed)  # one seed: the same seeded cells at every rainfall
    runs = {"truth": simulate(params, grid, z0, T=T, dt=dt)}
    if discovery is not None:
        learned = rk.Parameters.from_mapping(_stack_values([learned_values(discovery, s) for s in systems]))
        runs["sparse"] = simulate(learned, grid, z0, T=T, dt=dt, reaction=sparse_reaction(discovery))
    if model is not None:
        runs["mlp"] = simulate(params, grid, z0, T=T, dt=dt, reaction=model.reaction())
    rows = []
    for i, system in enumerate(systems):
        threshold = COVER_THRESHOLD_K2 * system["k2"]
        truth = runs["truth"].fields[i, -1]
        row: dict[str, Any] = {"R": system["R"], "T": T}
        for name, run in runs.items():
            final = run.fields[i, -1]
            entry = _stats(final[2].numpy(), grid.dl, threshold)
            entry["clipped"] = run.clipped
            if name != "truth":
                entry["relative_l2_v"] = _relative_l2(final[2], truth[2])
                entry["relative_l2_all"] = _relative_l2(final, truth)
                entry["same_regime"] = entry["regime"] == row["truth"]["regime"]
            row[name] = entry
        rows.append(row)
    return rows


# -- noise ----------------------------------------------------------------------------------------

STENCILS = {"central": {"spacing": 1, "half_width": 1}, "savgol": {"spacing": 25, "half_width": 10}}
"""Burst stencils (``burst_dt`` = 0.002 d): ``central``, the central difference over 0.004 d; ``savgol``, a
local quadratic fit over 21 snapshots 0.05 d apart (1 d), which averages the noise of the states, the
Laplacians and the derivative over the window at the price of a truncation error of the fit."""


def noise_study(
    values_list: Sequence[Mapping[str, float]],
    grid: rk.Grid,
    *,
    noise_levels: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2),
    stencils: Mapping[str, Mapping[str, int]] = STENCILS,
    threshold: float | Sequence[float] = 0.05,
    points_per_system: int = 4000,
    seed: int = 0,
    **burst_options: Any,
) -> list[dict[str, Any]]:
    """Discovery at each relative noise level (times each field's std, see :func:`sample_bursts`) and
    stencil: per row the maximum relative coefficient error over the true terms (overall and per equation;
    a missed term counts as 1), the spurious and the missed terms. The same points are used at every level."""
    rows = []
    for name, stencil in stencils.items():
        bursts = simulate_bursts(values_list, grid, **{**burst_options, **stencil})
        for noise in noise_levels:
            data = sample_bursts(
                bursts, points_per_system=points_per_system, rng=np.random.default_rng(seed), noise=float(noise)
            )
            d = discover(data, threshold)
            per_eq = {
                eq: max(
                    r["relative_error"] for r in d.table() if r["equation"] == eq and r["relative_error"] is not None
                )
                for eq in EQUATIONS
            }
            rows.append(
                {
                    "noise": float(noise),
                    "stencil": name,
                    "window_days": 2 * bursts.half_width * bursts.step,
                    "max_relative_error": d.max_relative_error,
                    "max_relative_error_by_equation": per_eq,
                    "spurious": [list(t) for t in d.spurious],
                    "missed": [list(t) for t in d.missed],
                }
            )
    return rows


# -- the study ------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON values: tuples as lists, numpy scalars as numbers, NaN and infinities as None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class StudySettings:
    """The sizes of :func:`run_study` (defaults: a few minutes on two CPU cores).

    ``train_n`` / ``n``: cells per side (of 2 m) of the discovery and the rollout grids; ``T`` (d): the
    rollout length; ``epochs``: MLP training epochs; ``points``: samples per training system.
    """

    n: int = 50
    train_n: int = 32
    T: float = 200.0
    epochs: int = 1500
    points: int = 4000
    noise: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2)
    threshold: float = 0.05
    seed: int = 0
    train_rainfalls: tuple[float, ...] = TRAIN_RAINFALLS
    test_rainfalls: tuple[float, ...] = TEST_RAINFALLS
    hidden: tuple[int, ...] = (64, 64, 64)


def run_study(settings: StudySettings, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Discovery table, noise study, MLP training and rollout comparison with the 2002 parameters at the
    training rainfalls; the numbers as a JSON-able dict."""
    train_systems = [{**rk.RIETKERK_2002, "R": R} for R in settings.train_rainfalls]
    train_grid = rk.Grid(2.0 * settings.train_n, 2.0)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    log("simulating the training systems and sampling their rates")
    data = discovery_data(
        train_systems, train_grid, rng=np.random.default_rng(settings.seed), points_per_system=settings.points
    )
    discovery = discover(data, settings.threshold)
    timings["discovery"] = time.perf_counter() - start
    log(f"discovery: max relative coefficient error {discovery.max_relative_error:.3g}")

    log("noise study")
    t0 = time.perf_counter()
    noise = noise_study(
        train_systems,
        train_grid,
        noise_levels=settings.noise,
        threshold=settings.threshold,
        points_per_system=settings.points,
        seed=settings.seed,
    )
    timings["noise_study"] = time.perf_counter() - t0

    log(f"training the reaction MLP ({settings.epochs} epochs)")
    t0 = time.perf_counter()
    model, result = train_reaction_mlp(data, seed=settings.seed, hidden=settings.hidden, epochs=settings.epochs)
    x, y = torch.as_tensor(data.inputs()), torch.as_tensor(data.reaction_targets())
    with torch.no_grad():
        relative = ((model(x) - y).pow(2).mean(0).sqrt() / y.pow(2).mean(0).sqrt()).tolist()
    timings["mlp_training"] = time.perf_counter() - t0

    log(f"rollouts at R = {', '.join(map(str, settings.test_rainfalls))} for {settings.T} d")
    t0 = time.perf_counter()
    rollouts = compare_rollouts(
        discovery,
        model,
        rainfalls=settings.test_rainfalls,
        grid=rk.Grid(2.0 * settings.n, 2.0),
        T=settings.T,
        seed=settings.seed,
    )
    timings["rollouts"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    summary = {k: v for k, v in result.to_dict().items() if k != "history"}
    return _jsonable(
        {
            "settings": vars(settings),
            "samples": len(data),
            "discovery": discovery.to_dict(),
            "noise_study": noise,
            "mlp": {
                "config": model.config,
                "training": summary,
                "relative_rms_error_on_samples": dict(zip(EQUATIONS, relative, strict=True)),
            },
            "rollouts": rollouts,
            "seconds": timings,
        }
    )


DISCOVERY_KIND = "rietkerk.discovery"
register_schema(
    DatasetSchema(
        kind=DISCOVERY_KIND,
        description="Rietkerk equation discovery: true and fitted coefficients, noise study, learned rollouts",
        variables={
            "true": VariableSpec(dims=("term",), units="1", dtype="float"),
            "fitted": VariableSpec(dims=("term",), units="1", dtype="float"),
            "max_relative_error": VariableSpec(dims=("noise", "stencil"), units="1", dtype="float"),
        },
    )
)


def discovery_dataset(study: Mapping[str, Any]) -> xr.Dataset:
    """The numbers of :func:`run_study` as a ``rietkerk.discovery`` dataset (the whole study in ``attrs['study']``)."""
    table = study["discovery"]["table"]
    noise = sorted({row["noise"] for row in study["noise_study"]})
    stencils = sorted({row["stencil"] for row in study["noise_study"]})
    errors = np.full((len(noise), len(stencils)), np.nan)
    spurious = np.zeros((len(noise), len(stencils)), dtype=np.int64)
    for row in study["noise_study"]:
        where = noise.index(row["noise"]), stencils.index(row["stencil"])
        errors[where] = np.nan if row["max_relative_error"] is None else row["max_relative_error"]
        spurious[where] = len(row["spurious"])
    rollouts = study["rollouts"]
    models = ("truth", "sparse", "mlp")
    return xr.Dataset(
        {
            "true": ("term", [r["true"] for r in table], {"units": "1"}),
            "fitted": ("term", [np.nan if r["fitted"] is None else r["fitted"] for r in table], {"units": "1"}),
            "max_relative_error": (("noise", "stencil"), errors, {"units": "1"}),
            "spurious_terms": (("noise", "stencil"), spurious, {"units": "1"}),
            "rollout_mean_v": (("R", "model"), [[r[m]["mean"] for m in models] for r in rollouts], {"units": "g m^-2"}),
            "rollout_regime": (("R", "model"), [[r[m]["regime"] for m in models] for r in rollouts], {"units": "1"}),
        },
        coords={
            "term": [f"d{r['equation']}/dtau: {r['term']}" for r in table],
            "noise": ("noise", noise, {"units": "1"}),
            "stencil": stencils,
            "R": ("R", [r["R"] for r in rollouts], {"units": "l d^-1 m^-2"}),
            "model": list(models),
        },
        attrs={"study": json.dumps(study, allow_nan=False)},
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m surrogates.rietkerk.discovery --out FILE.json``: run the study, write its numbers."""
    parser = argparse.ArgumentParser(
        prog="python -m surrogates.rietkerk.discovery",
        description="Rietkerk equation discovery: sparse regression, noise study, reaction MLP, rollouts.",
    )
    defaults = StudySettings()
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--n", type=int, default=defaults.n, help="rollout grid cells per side (2 m each)")
    parser.add_argument("--train-n", type=int, default=defaults.train_n, help="discovery grid cells per side")
    parser.add_argument("--T", type=float, default=defaults.T, help="rollout length, days")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="MLP training epochs")
    parser.add_argument("--points", type=int, default=defaults.points, help="samples per training system")
    parser.add_argument("--noise", type=float, nargs="+", default=list(defaults.noise), help="relative noise levels")
    parser.add_argument("--threshold", type=float, default=defaults.threshold, help="STLSQ threshold (share of RMS)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    settings = StudySettings(
        n=args.n,
        train_n=args.train_n,
        T=args.T,
        epochs=args.epochs,
        points=args.points,
        noise=tuple(args.noise),
        threshold=args.threshold,
        seed=args.seed,
    )
    results = run_study(settings, log=lambda text: print(text, file=sys.stderr, flush=True))
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, allow_nan=False)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
