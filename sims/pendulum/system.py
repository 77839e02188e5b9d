"""The springy double pendulum in 3D (docs/protocols.md, both pendulum protocols): its declared quantities.

Two masses on springs hang from a pivot at the origin under gravity g; the state is positions and
momenta of both masses. Units are those of the units-equivariance protocol (kg, m, s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from sims.declaration import Kind, Quantity, Role, SystemDeclaration, register_system
from sims.integrate import (
    AdaptiveStats,
    IntegrationError,
    check_times,
    integrate_adaptive,
    non_finite_error,
)

P, S, T = Role.PARAMETER, Role.STATE, Role.TARGET

DECLARATION = register_system(
    SystemDeclaration(
        name="spring_pendulum",
        symmetry="O(3)",
        raw_kind="spring_pendulum.raw",
        description="springy double pendulum with a fixed pivot at the origin",
        quantities=(
            Quantity("m1", "kg", role=P, description="mass of the first bob"),
            Quantity("m2", "kg", role=P, description="mass of the second bob"),
            Quantity("k1", "kg s^-2", role=P, description="stiffness of the pivot spring"),
            Quantity("k2", "kg s^-2", role=P, description="stiffness of the spring between the bobs"),
            Quantity("l1", "m", role=P, description="rest length of the pivot spring"),
            Quantity("l2", "m", role=P, description="rest length of the spring between the bobs"),
            Quantity("g", "m s^-2", Kind.VECTOR, P, "gravitational acceleration"),
            Quantity("q1", "m", Kind.VECTOR, S, "position of the first bob (pivot at the origin)"),
            Quantity("q2", "m", Kind.VECTOR, S, "position of the second bob"),
            Quantity("p1", "kg m s^-1", Kind.VECTOR, S, "momentum of the first bob"),
            Quantity("p2", "kg m s^-1", Kind.VECTOR, S, "momentum of the second bob"),
            Quantity("H", "kg m^2 s^-2", role=T, description="total energy (the Hamiltonian)"),
        ),
    )
)


# -- physics ----------------------------------------------------------------------------------

VARIANTS = ("physical", "reference")
"""``physical``: H as written, 1/2 k2 (|q1 - q2| - l2)^2. ``reference``: the published benchmarks'
code, which drops that 1/2 (the second spring is twice as stiff); use it to compare with docs/protocols.md."""

SCALAR_PARAMETERS = ("m1", "m2", "k1", "k2", "l1", "l2")
STATE_VECTORS = ("q1", "q2", "p1", "p2")
STATE_DIM = 12


class PendulumInputError(ValueError):
    """Parameters or states the pendulum cannot take (names the field and what was expected)."""


def _spring2_factor(variant: str) -> float:
    if variant not in VARIANTS:
        raise PendulumInputError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return 0.5 if variant == "physical" else 1.0


@dataclass(frozen=True)
class Parameters:
    """One parameter set per system: scalars shaped (batch,), gravity ``g`` shaped (batch, 3).

    Units: kg (m1, m2), kg s^-2 (k1, k2), m (l1, l2), m s^-2 (g).
    """

    m1: torch.Tensor
    m2: torch.Tensor
    k1: torch.Tensor
    k2: torch.Tensor
    l1: torch.Tensor
    l2: torch.Tensor
    g: torch.Tensor

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, source: str = "parameters", dtype: torch.dtype = torch.float64, device=None
    ) -> "Parameters":
        """Check and convert a mapping of arrays (numpy, torch or numbers); errors name ``source`` and the field."""
        missing = [name for name in (*SCALAR_PARAMETERS, "g") if name not in values]
        if missing:
            raise PendulumInputError(f"{source}: missing parameter(s) {', '.join(missing)}")
        tensors = {
            name: torch.as_tensor(values[name], dtype=dtype, device=device) for name in (*SCALAR_PARAMETERS, "g")
        }
        batch = tensors["g"].shape[0] if tensors["g"].ndim == 2 else None
        problems = []
        if tensors["g"].ndim != 2 or tensors["g"].shape[-1] != 3:
            problems.append(f"g must be shaped (systems, 3), got {tuple(tensors['g'].shape)}")
        for name in SCALAR_PARAMETERS:
            t = tensors[name]
            if t.ndim == 0 and batch is not None:
                t = tensors[name] = t.expand(batch)
            if t.ndim != 1 or (batch is not None and t.shape[0] != batch):
                problems.append(f"{name} must be shaped (systems,) = ({batch},), got {tuple(t.shape)}")
            elif not torch.isfinite(t).all():
                problems.append(f"{name} has {int((~torch.isfinite(t)).sum())} non-finite value(s)")
            elif (t <= 0).any():
                problems.append(
                    f"{name} must be positive, got {float(t.min()):.6g} (first bad system {int((t <= 0).nonzero()[0])})"
                )
        if not torch.isfinite(tensors["g"]).all():
            problems.append("g has non-finite values")
        if problems:
            raise PendulumInputError(f"{source}: " + "; ".join(problems))
        return cls(**tensors)

    @property
    def batch(self) -> int:
        return self.g.shape[0]

    def to_mapping(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in (*SCALAR_PARAMETERS, "g")}

    def index(self, rows: Any) -> "Parameters":
        return Parameters(**{name: t[rows] for name, t in self.to_mapping().items()})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Parameters":
        return Parameters(**{name: t.to(device=device, dtype=dtype) for name, t in self.to_mapping().items()})

    def in_field(self, extra: Any) -> "Parameters":
        """The same systems with a uniform field ``extra`` (3 numbers, m s^-2) added to each one's gravity."""
        return replace(self, g=self.g + torch.as_tensor(extra, dtype=self.g.dtype, device=self.g.device))


def split_state(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q1, q2, p1, p2) from states shaped (..., 12)."""
    return z[..., 0:3], z[..., 3:6], z[..., 6:9], z[..., 9:12]


def check_state(z: torch.Tensor, *, source: str = "state", batch: int | None = None) -> None:
    """States must be finite and shaped (systems, 12) [q1, q2, p1, p2]."""
    if z.ndim != 2 or z.shape[-1] != STATE_DIM or (batch is not None and z.shape[0] != batch):
        expected = f"({batch if batch is not None else 'systems'}, 12)"
        raise PendulumInputError(f"{source}: states must be shaped {expected} [q1, q2, p1, p2], got {tuple(z.shape)}")
    bad = ~torch.isfinite(z).all(dim=-1)
    if bad.any():
        raise PendulumInputError(
            f"{source}: {int(bad.sum())} state(s) contain NaN or infinity (first: system {int(bad.nonzero()[0])})"
        )


def _per_system(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast per-system scalars (batch,) against arrays shaped (batch, ..., 3)."""
    return x.reshape(x.shape + (1,) * (like.ndim - 1))


def hamiltonian(z: torch.Tensor, params: Parameters, variant: str = "physical") -> torch.Tensor:
    """Total energy (kg m^2 s^-2) of states (batch, ..., 12); per-system parameters broadcast over ``...``."""
    c2 = _spring2_factor(variant)
    q1, q2, p1, p2 = split_state(z)
    m1, m2, k1, k2, l1, l2 = (_per_system(getattr(params, n), z)[..., 0] for n in SCALAR_PARAMETERS)
    g = params.g.reshape(params.g.shape[:1] + (1,) * (z.ndim - 2) + (3,))
    kinetic = (p1 * p1).sum(-1) / (2 * m1) + (p2 * p2).sum(-1) / (2 * m2)
    springs = 0.5 * k1 * (q1.norm(dim=-1) - l1) ** 2 + c2 * k2 * ((q1 - q2).norm(dim=-1) - l2) ** 2
    gravity = -m1 * (g * q1).sum(-1) - m2 * (g * q2).sum(-1)
    return kinetic + springs + gravity


def vector_field(z: torch.Tensor, params: Parameters, variant: str = "physical") -> torch.Tensor:
    """Hamilton's equations dz/dt = (dH/dp, -dH/dq), written out (no autograd) for states (batch, 12)."""
    c2 = _spring2_factor(variant)
    q1, q2, p1, p2 = split_state(z)
    m1, m2, k1, k2, l1, l2 = (getattr(params, n)[:, None] for n in SCALAR_PARAMETERS)
    r1 = q1.norm(dim=-1, keepdim=True)
    d = q1 - q2
    r12 = d.norm(dim=-1, keepdim=True)
    spring1 = k1 * (r1 - l1) / r1 * q1
    spring2 = 2 * c2 * k2 * (r12 - l2) / r12 * d
    dp1 = -spring1 - spring2 + m1 * params.g
    dp2 = spring2 + m2 * params.g
    return torch.cat([p1 / m1, p2 / m2, dp1, dp2], dim=-1)


BACKENDS = ("auto", "compiled", "torch")
"""``compiled``: :mod:`sims.pendulum.compiled`, each system with its own step size (CPU, float64).
``torch``: :func:`sims.integrate.integrate_adaptive`, one step size for the whole batch (any device
and dtype). ``auto`` takes the compiled kernel whenever the states are float64 on the CPU."""


def simulate(
    params: Parameters,
    z0: torch.Tensor,
    times: Sequence[float] | torch.Tensor,
    *,
    variant: str = "physical",
    rtol: float = 1e-11,
    atol: float = 1e-13,
    stats: AdaptiveStats | None = None,
    max_steps: int = 1_000_000,
    backend: str = "auto",
) -> torch.Tensor:
    """Trajectories (systems, len(times), 12) from states ``z0`` (systems, 12) at ``times[0]``.

    Adaptive Dormand-Prince 5(4) (see :data:`BACKENDS`), on the device and in the dtype of ``z0``;
    ``max_steps`` bounds the steps of one trajectory. ``stats`` counts the batch's steps on the torch
    backend and, on the compiled one, the sum over systems of each system's own steps.

    The default tolerances are a decade tighter than the protocols' rtol 1e-10: with a step size per
    system, most systems no longer ride on the smaller steps of the batch's worst one, and callers
    who pass no tolerance take the result as ground truth.

    Raises :class:`PendulumInputError` on bad shapes, NaN or non-positive parameters, and
    :class:`sims.integrate.IntegrationError` naming the systems that could not be integrated.
    """
    c2 = _spring2_factor(variant)
    check_state(z0, source="initial state", batch=params.batch)
    if backend not in BACKENDS:
        raise PendulumInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if rtol < 100 * torch.finfo(z0.dtype).eps:
        raise PendulumInputError(f"rtol {rtol:g} is below what {z0.dtype} can resolve; pass float64 states")
    compilable = z0.device.type == "cpu" and z0.dtype == torch.float64
    if backend == "compiled" and not compilable:
        raise PendulumInputError(f"the compiled backend takes float64 states on the CPU, got {z0.dtype} on {z0.device}")
    params = params.to(device=z0.device, dtype=z0.dtype)
    times = torch.as_tensor(times, dtype=torch.float64)
    if backend == "torch" or not compilable:
        return integrate_adaptive(
            lambda t, z: vector_field(z, params, variant),
            z0,
            times,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            stats=stats,
        )
    return _simulate_compiled(params, z0, times, c2, rtol=rtol, atol=atol, max_steps=max_steps, stats=stats)


def _simulate_compiled(
    params: Parameters, z0: torch.Tensor, times: torch.Tensor, c2: float, *, rtol, atol, max_steps, stats
) -> torch.Tensor:
    # numba is imported and the kernel loaded on first use only
    from sims.pendulum import compiled

    ts = np.asarray(check_times(times))
    if not (rtol > 0 and atol > 0):  # as integrate_adaptive
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    columns = np.column_stack([getattr(params, n).numpy() for n in SCALAR_PARAMETERS] + [params.g.numpy()])
    out, counts, outcome, when = compiled.integrate(
        z0.detach().numpy(), columns, c2, ts, rtol=rtol, atol=atol, max_steps=max_steps
    )
    if stats is not None:
        stats.accepted += int(counts[:, 0].sum())
        stats.rejected += int(counts[:, 1].sum())
        stats.evaluations += int(counts[:, 2].sum())
    _raise_failures(outcome, when, max_steps)
    return torch.from_numpy(out)


def _raise_failures(outcome: np.ndarray, when: np.ndarray, max_steps: int) -> None:
    """The compiled kernel's per-system failures as integrate_adaptive's errors, naming the systems."""
    from sims.pendulum import compiled

    for code in (compiled.NON_FINITE, compiled.UNDERFLOW, compiled.TOO_MANY_STEPS):
        rows = np.flatnonzero(outcome == code)
        if not len(rows):
            continue
        t = float(when[rows[0]])
        if code == compiled.NON_FINITE:
            raise non_finite_error(rows.tolist(), t)
        systems = f"for {len(rows)} system(s), first rows {rows[:10].tolist()}"
        if code == compiled.UNDERFLOW:
            raise IntegrationError(f"step size underflow at t = {t:.6g} {systems} (stiff or diverging trajectory)")
        raise IntegrationError(f"more than {max_steps} steps before t = {t:.6g} {systems}")


# -- sampling ---------------------------------------------------------------------------------

Q1_MEAN = (0.0, 0.0, -1.5)
Q2_MEAN = (0.0, 0.0, -3.0)
Q_SIGMA = 0.2
P_SIGMA = 0.4


def sample_initial_states(n: int, rng: np.random.Generator) -> np.ndarray:
    """docs/protocols.md, EMLP protocol: q1 = (0,0,-1.5) + 0.2 N(0,I), q2 = (0,0,-3) + 0.2 N(0,I), p = 0.4 N(0,I6)."""
    q1 = np.asarray(Q1_MEAN) + Q_SIGMA * rng.standard_normal((n, 3))
    q2 = np.asarray(Q2_MEAN) + Q_SIGMA * rng.standard_normal((n, 3))
    p = P_SIGMA * rng.standard_normal((n, 6))
    return np.concatenate([q1, q2, p], axis=1)


def sample_parameters(
    n: int,
    rng: np.random.Generator,
    *,
    mass: tuple[float, float] = (1.0, 1.0),
    stiffness: tuple[float, float] = (1.0, 1.0),
    length: tuple[float, float] = (1.0, 1.0),
    gravity: tuple[float, float] = (1.0, 1.0),
    random_direction: bool = False,
) -> dict[str, np.ndarray]:
    """Per-system parameters, each uniform in its (low, high) range; g along -z or in a random direction."""
    out = {}
    for names, (low, high) in ((("m1", "m2"), mass), (("k1", "k2"), stiffness), (("l1", "l2"), length)):
        for name in names:
            out[name] = rng.uniform(low, high, n)
    size = rng.uniform(*gravity, n)
    if random_direction:
        direction = rng.standard_normal((n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    else:
        direction = np.tile([0.0, 0.0, -1.0], (n, 1))
    out["g"] = size[:, None] * direction
    return out


# -- datasets in the catalog ------------------------------------------------------------------

RAW_KIND = DECLARATION.raw_kind


def _check_raw(ds: xr.Dataset) -> list[str]:
    problems = []
    for name in (*SCALAR_PARAMETERS,):
        if name in ds and (~(ds[name].values > 0)).any():
            problems.append(f"{name}: every value must be positive and finite")
    for name in ("g", *STATE_VECTORS):
        if name in ds and not np.isfinite(ds[name].values).all():
            problems.append(f"{name}: values must be finite")
    return problems


# Units are checked where they are used: feature extraction converts any units pint reads (pipeline),
# while ``from_dataset`` (simulation, training) takes the declared ones only.
register_schema(
    DatasetSchema(
        kind=RAW_KIND,
        description="springy double pendulum: per-system parameters and trajectories of (q1, q2, p1, p2)",
        variables={
            **{name: VariableSpec(dims=("sample",), dtype="float") for name in SCALAR_PARAMETERS},
            "g": VariableSpec(dims=("sample", "space"), dtype="float"),
            **{name: VariableSpec(dims=("sample", "time", "space"), dtype="float") for name in STATE_VECTORS},
            "H": VariableSpec(dims=("sample", "time"), dtype="float", required=False),
        },
        coords={"time": VariableSpec(dims=("time",), dtype="float")},
        check=_check_raw,
    )
)


def to_dataset(
    params: Parameters,
    trajectories: torch.Tensor,
    times: Sequence[float],
    *,
    variant: str,
    attrs: Mapping[str, Any] = (),
) -> xr.Dataset:
    """A ``spring_pendulum.raw`` dataset: parameters per sample, states per (sample, time), true H."""
    traj = trajectories.detach().cpu().to(torch.float64)
    cpu_params = params.to(device="cpu", dtype=torch.float64)
    energy = hamiltonian(traj, cpu_params, variant).numpy()
    q1, q2, p1, p2 = (x.numpy() for x in split_state(traj))
    ds = xr.Dataset(
        coords={
            "sample": ("sample", np.arange(traj.shape[0]), {"units": "1"}),
            "time": ("time", np.asarray(times, dtype=np.float64), {"units": "s"}),
            "space": ["x", "y", "z"],
        },
        attrs={"variant": variant, **dict(attrs)},
    )
    for name in SCALAR_PARAMETERS:
        ds[name] = ("sample", getattr(cpu_params, name).numpy(), {"units": DECLARATION.quantity(name).units})
    ds["g"] = (("sample", "space"), cpu_params.g.numpy(), {"units": "m s^-2"})
    for name, values in zip(STATE_VECTORS, (q1, q2, p1, p2)):
        ds[name] = (("sample", "time", "space"), values, {"units": DECLARATION.quantity(name).units})
    ds["H"] = (("sample", "time"), energy, {"units": "kg m^2 s^-2", "variant": variant})
    return ds


def from_dataset(ds: xr.Dataset, *, source: str = "dataset", device=None, dtype=torch.float64):
    """(Parameters, trajectories (sample, time, 12), times in s) from a ``spring_pendulum.raw`` dataset.

    Variables must carry the declared units literally (kg, kg s^-2, m, m s^-2, kg m s^-1; time in s);
    datasets in other units are converted by ``pipeline`` first.
    """
    for name in (*SCALAR_PARAMETERS, "g", *STATE_VECTORS, "time"):
        if name not in ds.variables:
            raise PendulumInputError(f"{source}: missing variable {name!r}")
        expected = "s" if name == "time" else DECLARATION.quantity(name).units
        found = ds[name].attrs.get("units")
        if found != expected:
            raise PendulumInputError(f"{source}: variable {name!r} is in {found!r}, expected {expected!r}")
    params = Parameters.from_mapping(
        {n: ds[n].values for n in (*SCALAR_PARAMETERS, "g")}, source=source, dtype=dtype, device=device
    )
    states = [ds[n].transpose("sample", "time", "space").values for n in STATE_VECTORS]
    traj = torch.as_tensor(np.concatenate(states, axis=-1), dtype=dtype, device=device)
    if not torch.isfinite(traj).all():
        raise PendulumInputError(f"{source}: states contain NaN or infinity")
    return params, traj, ds["time"].values.astype(np.float64)
