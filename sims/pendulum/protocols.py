"""The published pendulum benchmark protocols as dataset generators (docs/protocols.md, both pendulum protocols).

- ``emlp``: Finzi et al. 2021. Fixed parameters (all 1, g = 1 along -z); trajectories of 150
  points at dt = 0.2; one random 5-point chunk per trajectory for training and validation; test
  rollouts of 150 points starting from the first state of a random chunk.
- ``units``: Villar et al. 2023. Per-system m, k, l ~ U(1, 2), |g| ~ U(1, 2) in a random
  direction; 60-point trajectories, one random 10-point chunk each for training and validation;
  three test sets of 60-point trajectories from t = 0: ``exp1`` (training distribution), ``exp2``
  (exp1 with m1, m2, k1, k2, p1, p2 multiplied by one s ~ U(3, 7) per system: kg rescaled) and
  ``exp3`` (exp1 with m, k, l redrawn from U(1, 5)).

Ground truth comes from ``spring_pendulum.simulate`` (adaptive Dormand-Prince, rtol 1e-10 by
default, far tighter than the published rtol 1e-4 / 1e-7). Every draw comes from one numpy
generator seeded with ``seed``, so a protocol and seed give the same systems everywhere (and on the
CPU the same bits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import xarray as xr

from sims.pendulum import system as sp

PROTOCOLS = ("emlp", "units")
SPLITS = {"emlp": ("train", "val", "test"), "units": ("train", "val", "exp1", "exp2", "exp3")}
TEST_SPLITS = {"emlp": ("test",), "units": ("exp1", "exp2", "exp3")}


@dataclass(frozen=True)
class ProtocolConfig:
    """Sizes and numerics of one protocol run (times in s)."""

    protocol: str = "emlp"
    n_train: int = 500
    n_val: int = 500
    n_test: int = 500
    n_times: int = 150
    chunk: int = 5
    dt: float = 0.2
    seed: int = 2021
    variant: str = "reference"
    rtol: float = 1e-10
    kg_scale: tuple[float, float] = (3.0, 7.0)
    exp3_range: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.chunk <= self.n_times:
            problems.append(f"chunk must be between 2 and n_times = {self.n_times}, got {self.chunk}")
        if not self.dt > 0:
            problems.append(f"dt must be positive, got {self.dt}")
        if self.variant not in sp.VARIANTS:
            problems.append(f"variant must be one of {sp.VARIANTS}, got {self.variant!r}")
        if problems:
            raise ValueError("pendulum protocol: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolConfig:
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


PRESETS = {
    ("emlp", "paper"): ProtocolConfig("emlp"),
    ("emlp", "quick"): ProtocolConfig("emlp", n_train=200, n_val=100, n_test=100),
    ("units", "paper"): ProtocolConfig("units", n_train=30000, n_val=100, n_test=500, n_times=60, chunk=10, seed=0),
    ("units", "quick"): ProtocolConfig("units", n_train=1000, n_val=100, n_test=200, n_times=60, chunk=10, seed=0),
    # seconds: checks the plumbing (tests, a first look), says nothing about accuracy
    ("emlp", "smoke"): ProtocolConfig("emlp", n_train=16, n_val=8, n_test=8, n_times=20),
    ("units", "smoke"): ProtocolConfig("units", n_train=16, n_val=8, n_test=8, n_times=20, chunk=5, seed=0),
}


def preset(protocol: str, name: str, **overrides: Any) -> ProtocolConfig:
    if (protocol, name) not in PRESETS:
        raise ValueError(f"no preset {name!r} for protocol {protocol!r}; presets: {sorted(PRESETS)}")
    return replace(PRESETS[protocol, name], **overrides)


def _random_chunks(traj: torch.Tensor, chunk: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """One random window of ``chunk`` consecutive points per trajectory, and the index it starts at."""
    n, n_times = traj.shape[:2]
    starts = rng.integers(0, n_times - chunk + 1, n)
    index = torch.as_tensor(starts[:, None] + np.arange(chunk))
    return traj[torch.arange(n)[:, None], index], starts


def _dataset(
    cfg: ProtocolConfig,
    split: str,
    params: sp.Parameters,
    traj: torch.Tensor,
    start: np.ndarray | None,
    extra_attrs: dict[str, Any],
):
    times = cfg.dt * np.arange(traj.shape[1])
    attrs = {"protocol": cfg.protocol, "split": split, **extra_attrs}
    ds = sp.to_dataset(params, traj, times, variant=cfg.variant, attrs=attrs)
    if start is not None:
        ds["t_start"] = ("sample", cfg.dt * start.astype(np.float64), {"units": "s", "long_name": "chunk start time"})
    return ds


def generate(
    cfg: ProtocolConfig, *, device: str | torch.device = "cpu", progress=None, background: Any = None
) -> dict[str, xr.Dataset]:
    """All splits of the protocol as ``spring_pendulum.raw`` datasets, keyed by split name.

    ``progress(done, total)`` is called after each simulated batch when given. ``background`` (3 numbers,
    m s^-2) is an undeclared uniform field the simulation adds to every system's gravity while the
    datasets keep the declared g: data whose symmetry is broken by a known amount (the attribute
    ``undeclared_background`` records it).
    """
    extra_g = None if background is None else np.asarray(background, dtype=np.float64)
    if extra_g is not None and (extra_g.shape != (3,) or not np.isfinite(extra_g).all()):
        raise ValueError(f"pendulum protocol: background must be 3 finite numbers (m s^-2), got {background!r}")
    rng = np.random.default_rng(cfg.seed)
    times = torch.as_tensor(cfg.dt * np.arange(cfg.n_times), dtype=torch.float64)
    is_units = cfg.protocol == "units"
    ranges = (
        {"mass": (1.0, 2.0), "stiffness": (1.0, 2.0), "length": (1.0, 2.0), "gravity": (1.0, 2.0)} if is_units else {}
    )
    total = cfg.n_train + cfg.n_val + (3 if is_units else 2) * cfg.n_test
    done = 0

    def run(params_np: dict[str, np.ndarray], z0_np: np.ndarray) -> tuple[sp.Parameters, torch.Tensor]:
        nonlocal done
        params = sp.Parameters.from_mapping(params_np, device=device)
        simulated = params if extra_g is None else params.in_field(extra_g)
        z0 = torch.as_tensor(z0_np, dtype=torch.float64, device=device)
        traj = sp.simulate(simulated, z0, times, variant=cfg.variant, rtol=cfg.rtol, atol=cfg.rtol * 1e-2)
        done += len(z0_np)
        if progress is not None:
            progress(done, total)
        return params, traj.cpu()

    n_fit = cfg.n_train + cfg.n_val + (0 if is_units else cfg.n_test)
    params_np = sp.sample_parameters(n_fit, rng, random_direction=is_units, **ranges)
    params, traj = run(params_np, sp.sample_initial_states(n_fit, rng))
    chunks, starts = _random_chunks(traj, cfg.chunk, rng)
    params = params.to("cpu")
    out = {}
    extra_attrs = {} if extra_g is None else {"undeclared_background": extra_g.tolist()}
    for split, rows in (("train", slice(0, cfg.n_train)), ("val", slice(cfg.n_train, cfg.n_train + cfg.n_val))):
        out[split] = _dataset(cfg, split, params.index(rows), chunks[rows], starts[rows], extra_attrs)
    if not is_units:
        rows = slice(cfg.n_train + cfg.n_val, n_fit)
        test_params = params.index(rows)
        test_params_np = {k: v.numpy() for k, v in test_params.to_mapping().items()}
        _, rollouts = run(test_params_np, chunks[rows, 0].numpy())
        out["test"] = _dataset(cfg, "test", test_params, rollouts, starts[rows], extra_attrs)
        return out

    exp1 = sp.sample_parameters(cfg.n_test, rng, random_direction=True, **ranges)
    z0 = sp.sample_initial_states(cfg.n_test, rng)
    s = rng.uniform(*cfg.kg_scale, cfg.n_test)
    exp2 = {k: v * s if k in ("m1", "m2", "k1", "k2") else v for k, v in exp1.items()}
    z0_exp2 = np.concatenate([z0[:, :6], z0[:, 6:] * s[:, None]], axis=1)
    redrawn = sp.sample_parameters(
        cfg.n_test, rng, mass=cfg.exp3_range, stiffness=cfg.exp3_range, length=cfg.exp3_range
    )
    exp3 = {**exp1, **{k: redrawn[k] for k in sp.SCALAR_PARAMETERS}}
    for split, p, z in (("exp1", exp1, z0), ("exp2", exp2, z0_exp2), ("exp3", exp3, z0)):
        test_params, rollouts = run(p, z)
        out[split] = _dataset(cfg, split, test_params.to("cpu"), rollouts, None, extra_attrs)
        if split == "exp2":
            out[split]["kg_scale"] = ("sample", s, {"units": "1", "long_name": "factor applied to every kg input"})
    return out
