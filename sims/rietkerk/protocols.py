"""Parameter sweeps of the Rietkerk model for the emulator and its out-of-distribution tests.

Every sample draws its 12 parameters, runs from a seeded start (10 % of cells seeded with 2 k2 of
biomass, so that the start is itself dimensionless) to T, and keeps the first and last snapshot.
The splits:

- ``train`` / ``val`` / ``test``: parameters uniform in ``TRAIN_RANGES`` around the 2002 values;
- ``rainfall``: R above the training range (every Pi group but R/(alpha k1) in range);
- ``shifted``: c, dv and alpha outside their training ranges;
- ``rescaled``: training-range systems rescaled to 3x slower dynamics on a 2x larger patch (every
  rate / 3, every diffusivity x 4/3, T and dt x 3, L and dl x 2): new dimensional values far outside
  the training ranges, identical Pi groups. (The ``units`` split, the test systems in other units,
  needs no simulation: ``pipeline.units.change_units``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from sims.rietkerk import system as rk
from sims.rietkerk.data import to_dataset
from sims.rietkerk.solver import simulate

TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "R": (0.7, 1.2),
    "alpha": (0.15, 0.25),
    "k2": (4.0, 6.0),
    "W0": (0.15, 0.25),
    "Du": (75.0, 125.0),
    "gm": (0.04, 0.06),
    "k1": (4.0, 6.0),
    "dw": (0.15, 0.25),
    "Dw": (0.075, 0.125),
    "c": (8.0, 12.0),
    "dv": (0.2, 0.3),
    "Dv": (0.075, 0.125),
}
OOD_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "rainfall": {"R": (1.2, 1.45)},
    "shifted": {"c": (12.0, 15.0), "dv": (0.15, 0.2), "alpha": (0.25, 0.3)},
}
TIME_RESCALE, LENGTH_RESCALE = 3.0, 2.0
SIMULATED_SPLITS = ("train", "val", "test", "rainfall", "shifted", "rescaled")
OOD_SPLITS = ("units", "rainfall", "shifted", "rescaled")
UNITS_SPLIT = {"l": "ml", "g": "kg", "d": "hour", "m": "cm"}
"""days -> hours, m -> cm, l -> ml, g -> kg (the same systems in other units)."""


@dataclass(frozen=True)
class SweepConfig:
    """Sizes, grid and run of a sweep preset; ``seed`` fixes every parameter draw and initial field."""

    name: str
    n_train: int
    n_val: int
    n_test: int
    n_ood: int
    L: float = 200.0
    dl: float = 4.0
    T: float = 200.0
    dt: float = 0.5  # 1 d is unstable where c, gm and the biomass are high (the shifted split)
    seeded_fraction: float = 0.1
    seed_biomass_k2: float = 2.0
    batch: int = 64
    seed: int = 0
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(TRAIN_RANGES))

    def size(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}.get(split, self.n_ood)

    def to_dict(self) -> dict:
        return {**asdict(self), "ranges": {k: list(v) for k, v in self.ranges.items()}}


PRESETS = {
    "smoke": SweepConfig("smoke", n_train=24, n_val=8, n_test=8, n_ood=8, L=64.0, dl=4.0, T=20.0, batch=16),
    "quick": SweepConfig("quick", n_train=384, n_val=96, n_test=128, n_ood=128),
    "paper": SweepConfig("paper", n_train=3000, n_val=500, n_test=500, n_ood=500, dl=2.0, batch=32),
}


def preset(name: str) -> SweepConfig:
    if name not in PRESETS:
        raise rk.RietkerkInputError(f"unknown Rietkerk preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def split_seed(cfg: SweepConfig, split: str) -> int:
    """One independent stream per split, so that adding samples to one split moves no other."""
    return int(np.random.SeedSequence([cfg.seed, SIMULATED_SPLITS.index(split)]).generate_state(1)[0])


def split_parameters(cfg: SweepConfig, split: str) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """(parameters, run {T, dt, L, dl}, initial-field seeds) of one simulated split."""
    if split not in SIMULATED_SPLITS:
        raise rk.RietkerkInputError(f"unknown split {split!r}; simulated splits are {SIMULATED_SPLITS}")
    rng = np.random.default_rng(split_seed(cfg, split))
    n = cfg.size(split)
    values = rk.sample_parameters(n, rng, {**cfg.ranges, **OOD_RANGES.get(split, {})})
    run = {"T": cfg.T, "dt": cfg.dt, "L": cfg.L, "dl": cfg.dl}
    if split == "rescaled":
        values, run = rescale(values, run, TIME_RESCALE, LENGTH_RESCALE)
    seeds = rng.integers(0, 2**31 - 1, n)
    return values, run, seeds


def rescale(values: Mapping[str, np.ndarray], run: Mapping[str, float], time: float, length: float):
    """The same dimensionless systems with time stretched by ``time`` and lengths by ``length``."""
    out = dict(values)
    for name in ("R", "alpha", "gm", "dw", "dv"):  # rates (per day)
        out[name] = values[name] / time
    for name in rk.DIFFUSION:
        out[name] = values[name] * length**2 / time
    return out, {"T": run["T"] * time, "dt": run["dt"] * time, "L": run["L"] * length, "dl": run["dl"] * length}


def generate_split(
    cfg: SweepConfig,
    split: str,
    *,
    device=None,
    dtype: torch.dtype = torch.float64,
    progress: Callable[[int, int], None] | None = None,
    replicate: int = 0,
):
    """Simulate one split in batches: a ``rietkerk.raw`` dataset with the first and last snapshot.
    ``replicate`` k > 0: the same systems from other random initial fields (an independent stream per k),
    which measures how much the statistics vary for given parameters (the emulators' floor)."""
    values, run, seeds = split_parameters(cfg, split)
    if replicate:
        rng = np.random.default_rng([split_seed(cfg, split), int(replicate)])
        seeds = rng.integers(0, 2**31 - 1, len(seeds))
    grid = rk.Grid(run["L"], run["dl"])
    n = len(seeds)
    parts, clipped = [], 0
    for start in range(0, n, cfg.batch):
        rows = slice(start, min(start + cfg.batch, n))
        params = rk.Parameters.from_mapping({k: v[rows] for k, v in values.items()}, source=f"split {split}")
        z0 = rk.initial_state(
            params,
            grid,
            seeds=seeds[rows],
            seeded_fraction=cfg.seeded_fraction,
            seed_biomass=cfg.seed_biomass_k2 * values["k2"][rows],
        )
        solution = simulate(
            params.to(device=device, dtype=dtype), grid, z0.to(device=device, dtype=dtype), T=run["T"], dt=run["dt"]
        )
        clipped += solution.clipped
        parts.append(replace(solution, fields=solution.fields.cpu()))
        if progress is not None:
            progress(rows.stop, n)
    fields = torch.cat([p.fields for p in parts])
    solution = replace(parts[0], fields=fields, clipped=clipped)
    params = rk.Parameters.from_mapping(values, source=f"split {split}")
    attrs = {
        "split": split,
        "preset": cfg.name,
        "initial_condition": "seeded",
        "seeded_fraction": cfg.seeded_fraction,
        "seed_biomass_k2": cfg.seed_biomass_k2,
        "laplacian": "fd5",
        "method": "sbdf2",
        "sweep_seed": cfg.seed,
        "replicate": int(replicate),
    }
    return to_dataset(params, grid, solution, dt=run["dt"], seeds=seeds, attrs=attrs)
