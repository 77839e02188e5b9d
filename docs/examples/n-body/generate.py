"""Data of the n-body example: four point masses under Newtonian gravity (docs/examples/n-body).

Each sample is a configuration of N bodies (default 4) with masses m_i, positions x_i and velocities
v_i, and the gravitational constant G = 6.674e-11 m^3 kg^-1 s^-2. The targets are exact:

    E   = sum_i m_i |v_i|^2 / 2  -  sum_{i<j} G m_i m_j / |x_i - x_j|          (J, the total energy)
    a_i = sum_{j != i} G m_j (x_j - x_i) / |x_j - x_i|^3                     (m/s^2, per body)

Ranges: m_i log-uniform in [1e9, 1e10] kg; x_i uniform in a cube of side 100 m, redrawn until every
pair is at least 5 m apart; v_i Gaussian with 0.1 m/s per component (so that the kinetic and the
potential energy are of the same order). The bodies are the members of a relabelled set along the
dimension ``body``; G is one number for the whole file (a parameter without the sample dimension).

    python docs/examples/n-body/generate.py --out n-body.nc [--samples 4000] [--bodies 4] [--seed 0]
    python docs/examples/n-body/generate.py --check   # the formulas against a finite difference
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

G = 6.674e-11  # m^3 kg^-1 s^-2
MIN_DISTANCE = 5.0  # m
BOX = 100.0  # m


def sample(n: int, bodies: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    m = np.exp(rng.uniform(np.log(1e9), np.log(1e10), (n, bodies)))
    x = rng.uniform(0.0, BOX, (n, bodies, 3))
    while True:  # redraw the configurations that have two bodies too close
        r = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1) + np.eye(bodies) * BOX
        close = r.min(axis=(1, 2)) < MIN_DISTANCE
        if not close.any():
            break
        x[close] = rng.uniform(0.0, BOX, (int(close.sum()), bodies, 3))
    v = rng.normal(0.0, 0.1, (n, bodies, 3))
    return {"m": m, "x": x, "v": v}


def energy(m: np.ndarray, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    kinetic = 0.5 * (m * (v**2).sum(-1)).sum(-1)
    r = np.linalg.norm(x[:, :, None] - x[:, None, :], axis=-1)
    i, j = np.triu_indices(m.shape[1], k=1)
    potential = -(G * m[:, i] * m[:, j] / r[:, i, j]).sum(-1)
    return kinetic + potential


def acceleration(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    d = x[:, None, :, :] - x[:, :, None, :]  # d[:, i, j] = x_j - x_i
    r = np.linalg.norm(d, axis=-1)
    inv = np.where(r > 0, r, np.inf) ** -3.0
    return G * (m[:, None, :, None] * d * inv[..., None]).sum(2)


def make_dataset(n: int, seed: int, bodies: int = 4):
    import xarray as xr

    rng = np.random.default_rng(seed)
    s = sample(n, bodies, rng)
    return xr.Dataset(
        {
            "G": ((), G, {"units": "m^3 kg^-1 s^-2"}),
            "m": (("sample", "body"), s["m"], {"units": "kg"}),
            "x": (("sample", "body", "space"), s["x"], {"units": "m"}),
            "v": (("sample", "body", "space"), s["v"], {"units": "m/s"}),
            "E": (("sample",), energy(s["m"], s["x"], s["v"]), {"units": "J"}),
            "a": (("sample", "body", "space"), acceleration(s["m"], s["x"]), {"units": "m/s^2"}),
        },
        attrs={
            "description": f"{bodies} point masses under Newtonian gravity: total energy and accelerations",
            "generator": f"docs/examples/n-body/generate.py --samples {n} --bodies {bodies} --seed {seed}",
        },
    )


def check(n: int = 5, seed: int = 1) -> None:
    """The acceleration is minus the gradient of the potential energy over the mass (central differences)."""
    rng = np.random.default_rng(seed)
    s = sample(n, 4, rng)
    a = acceleration(s["m"], s["x"])
    zero = np.zeros_like(s["v"])
    worst = 0.0
    h = 1e-3
    for body in range(4):
        for axis in range(3):
            up, down = s["x"].copy(), s["x"].copy()
            up[:, body, axis] += h
            down[:, body, axis] -= h
            force = -(energy(s["m"], up, zero) - energy(s["m"], down, zero)) / (2 * h)
            worst = max(worst, float(np.max(np.abs(force / s["m"][:, body] - a[:, body, axis]) / np.abs(a).max())))
    print(f"acceleration against -grad(potential)/m: largest relative difference {worst:.2e}")
    if worst > 1e-6:
        raise SystemExit("check failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="netCDF file to write")
    parser.add_argument("--samples", type=int, default=4000, help="number of configurations (default 4000)")
    parser.add_argument("--bodies", type=int, default=4, help="bodies per configuration (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("--check", action="store_true", help="run the self-test and write nothing")
    args = parser.parse_args(argv)
    if args.check:
        check()
        return 0
    if args.out is None:
        parser.error("--out is required (or --check)")
    if args.samples < 1 or args.bodies < 2:
        parser.error("--samples must be >= 1 and --bodies >= 2")
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; add --force to replace it")
    make_dataset(args.samples, args.seed, args.bodies).to_netcdf(args.out, engine="h5netcdf")
    print(f"wrote {args.samples} configurations of {args.bodies} bodies to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
