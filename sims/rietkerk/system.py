"""The Rietkerk vegetation model (docs/protocols.md#rietkerk): declaration, parameters, reaction terms,
uniform states and their linear stability, initial conditions and parameter sampling.

Litres of water are an independent base unit: the model never converts water volumes into
cubic metres, so the 16 inputs span four base units (l, g, d, m) and give 12 Pi groups.
The solver lives in ``sims.rietkerk.solver``; datasets in ``sims.rietkerk.data``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from sims.declaration import Kind, Quantity, Role, SystemDeclaration, register_system

P, S = Role.PARAMETER, Role.STATE

DECLARATION = register_system(
    SystemDeclaration(
        name="rietkerk",
        independent_units=("l",),
        raw_kind="rietkerk.raw",
        description="surface water u, soil water w and biomass v on a periodic square patch",
        quantities=(
            Quantity("R", "l d^-1 m^-2", role=P, description="rainfall"),
            Quantity("alpha", "d^-1", role=P, description="infiltration rate"),
            Quantity("k2", "g m^-2", role=P, description="saturation constant of infiltration"),
            Quantity("W0", "1", role=P, description="bare-soil infiltration fraction"),
            Quantity("Du", "m^2 d^-1", role=P, description="surface water diffusion"),
            Quantity("gm", "l g^-1 d^-1", role=P, description="water uptake"),
            Quantity("k1", "l m^-2", role=P, description="uptake half-saturation"),
            Quantity("dw", "d^-1", role=P, description="soil water loss"),
            Quantity("Dw", "m^2 d^-1", role=P, description="soil water diffusion"),
            Quantity("c", "g l^-1", role=P, description="water-to-biomass conversion"),
            Quantity("dv", "d^-1", role=P, description="vegetation loss"),
            Quantity("Dv", "m^2 d^-1", role=P, description="vegetation diffusion"),
            Quantity("T", "d", role=P, description="run length"),
            Quantity("dt", "d", role=P, description="time step"),
            Quantity("L", "m", role=P, description="patch side"),
            Quantity("dl", "m", role=P, description="grid step"),
            Quantity("u", "l m^-2", Kind.FIELD, S, "surface water"),
            Quantity("w", "l m^-2", Kind.FIELD, S, "soil water"),
            Quantity("v", "g m^-2", Kind.FIELD, S, "biomass"),
        ),
    )
)

PARAMETERS = tuple(q.name for q in DECLARATION.select(roles=(Role.PARAMETER,)))
FIELDS = ("u", "w", "v")
PHYSICAL = ("R", "alpha", "k2", "W0", "Du", "gm", "k1", "dw", "Dw", "c", "dv", "Dv")
"""The 12 parameters of the equations; T, dt, L, dl describe the run and the grid."""
DIFFUSION = ("Du", "Dw", "Dv")
UNITS = {q.name: q.units for q in DECLARATION.quantities}

TALK = {
    "R": 0.375,
    "alpha": 0.2,
    "k2": 5.0,
    "W0": 0.1,
    "Du": 100.0,
    "gm": 0.05,
    "k1": 5.0,
    "dw": 0.2,
    "Dw": 0.1,
    "c": 20.0,
    "dv": 0.25,
    "Dv": 0.1,
}
"""docs/protocols.md#rietkerk, 'talk default': bare below R = 1/3, Turing patterns near R = 0.37-0.45."""
RIETKERK_2002 = {**TALK, "R": 1.0, "W0": 0.2, "c": 10.0}
"""Rietkerk et al. (2002): spots / labyrinths / gaps at R = 0.75 / 1.0 / 1.25."""
PARAMETER_SETS = {"talk": TALK, "rietkerk2002": RIETKERK_2002}

MIN_CELLS = 16
MAX_CELLS = 4096
"""Cells per side at most: one system's three float64 fields are then 400 MB."""


class RietkerkInputError(ValueError):
    """Parameters, grids or states the model cannot take (names the field and what was expected)."""


def positive_number(value: Any, what: str, units: str = "") -> float:
    """``value`` as a finite float > 0, else a RietkerkInputError naming ``what`` (a bool, a string or
    an int too large for a float is refused here, not as a TypeError or OverflowError later)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number) and number > 0:
            return number
    of_units = f" of {units}" if units else ""
    raise RietkerkInputError(f"{what} must be a positive, finite number{of_units}, got {value!r}")


@dataclass(frozen=True)
class Parameters:
    """The 12 physical parameters, one value per system: tensors shaped (batch,), units in ``UNITS``."""

    R: torch.Tensor
    alpha: torch.Tensor
    k2: torch.Tensor
    W0: torch.Tensor
    Du: torch.Tensor
    gm: torch.Tensor
    k1: torch.Tensor
    dw: torch.Tensor
    Dw: torch.Tensor
    c: torch.Tensor
    dv: torch.Tensor
    Dv: torch.Tensor

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, source: str = "parameters", dtype: torch.dtype = torch.float64, device=None
    ) -> Parameters:
        """Check and convert numbers or arrays (broadcast to one batch); errors name ``source`` and the field.

        Rates, constants and c must be positive, diffusivities and R non-negative, W0 in [0, 1].
        """
        missing = [name for name in PHYSICAL if name not in values]
        if missing:
            raise RietkerkInputError(f"{source}: missing parameter(s) {', '.join(missing)}")
        arrays = {}
        for name in PHYSICAL:
            try:
                arrays[name] = np.atleast_1d(np.asarray(values[name], dtype=np.float64))
            except (TypeError, ValueError, OverflowError):  # text, objects, ints too large for a float
                raise RietkerkInputError(
                    f"{source}: {name} must be a number or a 1-D array of numbers, got {type(values[name]).__name__}"
                ) from None
        problems = []
        bad_shape = [f"{n} {a.shape}" for n, a in arrays.items() if a.ndim != 1]
        if bad_shape:
            raise RietkerkInputError(f"{source}: parameters must be numbers or 1-D arrays, got {', '.join(bad_shape)}")
        batch = max(a.shape[0] for a in arrays.values())
        for name, a in arrays.items():
            if a.shape[0] not in (1, batch):
                problems.append(f"{name} has {a.shape[0]} values, expected 1 or {batch}")
                continue
            arrays[name] = a = np.broadcast_to(a, (batch,))
            bad = np.flatnonzero(~np.isfinite(a) | (a < 0))
            where = f" (first bad system {int(bad[0])})" if bad.size else ""
            if not np.isfinite(a).all():
                problems.append(f"{name} has {int((~np.isfinite(a)).sum())} non-finite value(s){where}")
            elif name in DIFFUSION and (a < 0).any():
                problems.append(f"{name} is a diffusivity and must be >= 0 {UNITS[name]}, got {a.min():.6g}{where}")
            elif name == "R" and (a < 0).any():
                problems.append(f"R (rainfall) must be >= 0 {UNITS[name]}, got {a.min():.6g}{where}")
            elif name == "W0" and ((a < 0) | (a > 1)).any():
                problems.append(f"W0 is a fraction and must lie in [0, 1], got {a.min():.6g}..{a.max():.6g}")
            elif name not in (*DIFFUSION, "R", "W0") and (a <= 0).any():
                problems.append(f"{name} must be > 0 {UNITS[name]}, got {a.min():.6g}")
        if problems:
            raise RietkerkInputError(f"{source}: " + "; ".join(problems))
        return cls(**{n: torch.as_tensor(np.array(a), dtype=dtype, device=device) for n, a in arrays.items()})

    @property
    def batch(self) -> int:
        return self.R.shape[0]

    def to_mapping(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def numpy(self) -> dict[str, np.ndarray]:
        return {name: t.detach().cpu().double().numpy() for name, t in self.to_mapping().items()}

    def index(self, rows: Any) -> Parameters:
        return Parameters(**{name: t[rows] for name, t in self.to_mapping().items()})

    def to(self, device=None, dtype: torch.dtype | None = None) -> Parameters:
        return Parameters(**{name: t.to(device=device, dtype=dtype) for name, t in self.to_mapping().items()})

    def diffusivities(self) -> torch.Tensor:
        """(batch, 3) diffusion coefficients of (u, w, v) in m^2 d^-1."""
        return torch.stack([self.Du, self.Dw, self.Dv], dim=-1)


@dataclass(frozen=True)
class Grid:
    """A periodic square patch of side ``L`` split into cells of side ``dl`` (both in m)."""

    L: float
    dl: float

    def __post_init__(self) -> None:
        for name in ("L", "dl"):
            positive_number(getattr(self, name), f"grid: {name}", "metres")
        cells = float(self.L) / float(self.dl)  # inf for L = 1e308, dl = 1e-308: checked before round()
        if not cells <= MAX_CELLS + 0.5:
            raise RietkerkInputError(
                f"grid too fine: L / dl = {self.L} / {self.dl} = {cells:.6g} cells per side, at most {MAX_CELLS} "
                "are allowed; increase dl"
            )
        if abs(cells - round(cells)) > 1e-9 * cells:
            raise RietkerkInputError(f"grid: L = {self.L} m is not a whole number of cells of dl = {self.dl} m")
        if round(cells) < MIN_CELLS:
            raise RietkerkInputError(
                f"grid too coarse for L: L / dl = {self.L} / {self.dl} = {round(cells)} cells per side, "
                f"need at least {MIN_CELLS}; decrease dl"
            )

    @property
    def n(self) -> int:
        return round(self.L / self.dl)

    def coordinates(self) -> np.ndarray:
        """Cell centres in m, (n,)."""
        return (np.arange(self.n) + 0.5) * self.dl


# -- the equations ----------------------------------------------------------------------------


def reactions(u: torch.Tensor, w: torch.Tensor, v: torch.Tensor, p: Mapping[str, torch.Tensor]):
    """Local terms of du/dt, dw/dt, dv/dt (units of the fields per day); ``p`` broadcasts against u."""
    infiltration = p["alpha"] * (v + p["k2"] * p["W0"]) / (v + p["k2"]) * u
    uptake = p["gm"] * v * w / (p["k1"] + w)
    return p["R"] - infiltration, infiltration - uptake - p["dw"] * w, p["c"] * uptake - p["dv"] * v


def uniform_states(values: Mapping[str, float]) -> dict[str, tuple[float, float, float] | None]:
    """The spatially uniform steady states (u, w, v) of one parameter set.

    ``bare``: v = 0, w = R/dw, u = R/(alpha W0) (None when W0 = 0). ``vegetated``: w* = dv k1/(c gm - dv),
    v* = c (R - dw w*)/dv, which exists only when c gm > dv and R > dw w*.
    """
    p = {k: float(values[k]) for k in PHYSICAL}
    bare = (p["R"] / (p["alpha"] * p["W0"]), p["R"] / p["dw"], 0.0) if p["W0"] > 0 else None
    vegetated = None
    if p["c"] * p["gm"] > p["dv"]:
        w = p["dv"] * p["k1"] / (p["c"] * p["gm"] - p["dv"])
        v = p["c"] * (p["R"] - p["dw"] * w) / p["dv"]
        if v > 0:
            u = p["R"] * (v + p["k2"]) / (p["alpha"] * (v + p["k2"] * p["W0"]))
            vegetated = (u, w, v)
    return {"bare": bare, "vegetated": vegetated}


def jacobian(values: Mapping[str, float], state: tuple[float, float, float]) -> np.ndarray:
    """3x3 Jacobian of the reaction terms at ``state`` (per day), rows/columns ordered (u, w, v)."""
    p = {k: float(values[k]) for k in PHYSICAL}
    u, w, v = state
    a, k2, w0, gm, k1 = p["alpha"], p["k2"], p["W0"], p["gm"], p["k1"]
    h = (v + k2 * w0) / (v + k2)
    dh = k2 * (1 - w0) / (v + k2) ** 2
    sat = w / (k1 + w)
    dsat = k1 / (k1 + w) ** 2
    return np.array(
        [
            [-a * h, 0.0, -a * u * dh],
            [a * h, -gm * v * dsat - p["dw"], a * u * dh - gm * sat],
            [0.0, p["c"] * gm * v * dsat, p["c"] * gm * sat - p["dv"]],
        ]
    )


@dataclass(frozen=True)
class Stability:
    """Linear stability of the uniform vegetated state against modes exp(i q x)."""

    exists: bool
    growth_uniform: float  # largest real eigenvalue at q = 0, d^-1
    growth_max: float  # largest real eigenvalue over q, d^-1
    fastest_wavelength: float  # 2 pi / q at growth_max, m (inf when q = 0)

    @property
    def turing_unstable(self) -> bool:
        return self.exists and self.growth_uniform < 0 < self.growth_max


def linear_stability(values: Mapping[str, float], wavelengths: np.ndarray | None = None) -> Stability:
    """Dispersion relation of the uniform vegetated state, max_q Re eig(J - q^2 diag(Du, Dw, Dv)).

    ``wavelengths`` (m) default to a log grid from 0.5 m to 10 km.
    """
    states = uniform_states(values)
    if states["vegetated"] is None:
        return Stability(False, math.nan, math.nan, math.nan)
    J = jacobian(values, states["vegetated"])
    lam = np.geomspace(0.5, 1e4, 4000) if wavelengths is None else np.asarray(wavelengths, dtype=float)
    q2 = (2 * np.pi / lam) ** 2
    D = np.diag([float(values[n]) for n in DIFFUSION])
    growth = np.linalg.eigvals(J[None] - q2[:, None, None] * D[None]).real.max(axis=1)
    best = int(np.argmax(growth))
    uniform = float(np.linalg.eigvals(J).real.max())
    if growth[best] <= uniform:
        return Stability(True, uniform, uniform, math.inf)
    return Stability(True, uniform, float(growth[best]), float(lam[best]))


# -- initial conditions and sampling ------------------------------------------------------------

INITIAL_CONDITIONS = ("seeded", "perturbed")


def initial_state(
    params: Parameters,
    grid: Grid,
    *,
    kind: str = "seeded",
    seeds: np.ndarray | int = 0,
    seeded_fraction: float = 0.1,
    seed_biomass: float | np.ndarray = 10.0,
    noise: float = 0.01,
) -> torch.Tensor:
    """(batch, 3, n, n) fields (u, w, v), one numpy generator per system seeded from ``seeds``.

    ``seeded`` (docs/protocols.md#rietkerk): bare soil u = R/(alpha W0), w = R/dw, with ``seed_biomass`` g m^-2 of
    biomass in a random ``seeded_fraction`` of the cells. ``perturbed``: the uniform vegetated state
    with every field multiplied by (1 + noise N(0, 1)); where there is none (R too low), bare soil with
    a trace of biomass, noise k2 |N(0, 1)|. Small perturbations follow the linear stability of the
    uniform states; large seeds can settle on the patterned branch where uniform states are stable.
    """
    if kind not in INITIAL_CONDITIONS:
        raise RietkerkInputError(f"initial condition must be one of {INITIAL_CONDITIONS}, got {kind!r}")
    if not (isinstance(seeded_fraction, numbers.Real) and 0 < seeded_fraction <= 1):
        raise RietkerkInputError(f"seeded_fraction must lie in (0, 1], got {seeded_fraction!r}")
    try:
        biomass = np.broadcast_to(np.asarray(seed_biomass, dtype=np.float64), (params.batch,))
        seeds = np.broadcast_to(np.atleast_1d(seeds), (params.batch,))
    except (TypeError, ValueError, OverflowError):
        raise RietkerkInputError(
            f"seed_biomass and seeds must be numbers, one value or one per system ({params.batch})"
        ) from None
    if not (
        np.isfinite(biomass).all()
        and (biomass > 0).all()
        and isinstance(noise, numbers.Real)
        and math.isfinite(noise)
        and noise >= 0
    ):
        raise RietkerkInputError("seed_biomass must be > 0 g m^-2 (one value, or one per system) and noise >= 0")
    if not (np.issubdtype(seeds.dtype, np.integer) and (seeds >= 0).all()):
        raise RietkerkInputError(f"seeds must be non-negative integers (numpy generator seeds), got {seeds[:10]}")
    values = params.numpy()
    n = grid.n
    out = np.empty((params.batch, 3, n, n))
    for i in range(params.batch):
        rng = np.random.default_rng(int(seeds[i]))
        p = {k: values[k][i] for k in PHYSICAL}
        if kind == "seeded":
            if p["W0"] <= 0:
                raise RietkerkInputError(f"system {i}: the seeded (bare-soil) start needs W0 > 0, got {p['W0']}")
            out[i, 0] = p["R"] / (p["alpha"] * p["W0"])
            out[i, 1] = p["R"] / p["dw"]
            out[i, 2] = np.where(rng.random((n, n)) < seeded_fraction, biomass[i], 0.0)
        else:
            state = uniform_states(p)["vegetated"]
            if state is not None:
                out[i] = np.asarray(state)[:, None, None] * np.maximum(1 + noise * rng.standard_normal((3, n, n)), 0)
            elif p["W0"] > 0:  # no vegetated state: bare soil with a trace of biomass
                out[i, 0] = p["R"] / (p["alpha"] * p["W0"])
                out[i, 1] = p["R"] / p["dw"]
                out[i, 2] = noise * p["k2"] * np.abs(rng.standard_normal((n, n)))
            else:
                raise RietkerkInputError(f"system {i}: no uniform state to perturb (R = {p['R']:.4g}, W0 = 0)")
    return torch.as_tensor(out, dtype=params.R.dtype, device=params.R.device)


def sample_parameters(
    n: int,
    rng: np.random.Generator,
    ranges: Mapping[str, tuple[float, float]],
    *,
    base: Mapping[str, float] = RIETKERK_2002,
) -> dict[str, np.ndarray]:
    """``n`` parameter sets: each name in ``ranges`` uniform in (low, high) (in ``UNITS``), the rest from ``base``."""
    unknown = sorted(set(ranges) - set(PHYSICAL))
    if unknown:
        raise RietkerkInputError(f"cannot sample unknown parameter(s) {unknown}; known: {PHYSICAL}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise RietkerkInputError(f"the number of parameter sets must be an integer >= 0, got {n!r}")
    for name, bounds in ranges.items():
        # numpy raises OverflowError for an infinite range and quietly draws from a reversed one
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError, OverflowError):
            raise RietkerkInputError(f"range of {name} must be two numbers (low, high), got {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise RietkerkInputError(f"range of {name} must be finite with low <= high, got ({low}, {high})")
    out = {name: np.full(n, float(base[name])) for name in PHYSICAL}
    for name in PHYSICAL:  # a fixed order, so that a seed means the same draws whatever the mapping's order
        if name in ranges:
            low, high = ranges[name]
            out[name] = rng.uniform(low, high, n)
    return out
