"""A charged particle in a uniform magnetic field: its displacement after a time t.

Physics. A particle of mass m and charge q in a uniform, static field B obeys m dv/dt = q v x B.
With omega = q |B| / m (the cyclotron frequency), b = B / |B|, v_par = (v0.b) b and
v_perp = v0 - v_par, the exact displacement after a time t from the initial velocity v0 is

    dx = v_par t + (sin(omega t) / omega) v_perp + ((1 - cos(omega t)) / omega) (v_perp x b),

a uniform drift along B plus a circle of radius |v_perp| / omega, traversed clockwise about b for
q > 0. (The code writes 1 - cos(omega t) as 2 sin^2(omega t / 2), which avoids the cancellation at
small omega t.) The target is exact: no noise. The sign of the last term is checked against a
numerical integration of the equation of motion in ``--check``.

Ranges (SI, order one, chosen so that omega t stays in [0, 6], inside [0, 2 pi]): m log-uniform in
[1, 2] kg, q log-uniform in [0.5, 1] C, |B| log-uniform in [1, 2] T (so omega is in [0.25, 2] rad/s),
t uniform in (0, 3] s, |v0| log-uniform in [0.5, 2] m/s; the directions of B and v0 are independent
and uniform on the sphere.

Broken symmetry, for the relaxed-symmetry study (docs/fit.md#relaxed-symmetry). With
``--background EPS`` every particle also feels a uniform field of EPS tesla along z that the
declaration does not list: dx is computed in the field B + EPS (0, 0, 1 T), while the file holds
only B. The declared SO(3) then holds only approximately, broken by an amount set by EPS (|B| is
1-2 T). EPS = 0 (the default) is the exact system.

Output. One netCDF file (engine h5netcdf) with a dimension ``sample``: scalars m (kg), q (C) and t (s)
with dims (sample,); vectors B (T), v0 (m/s) and the target dx (m) with dims (sample, space),
space = (x, y, z).

    python docs/examples/charged-particle/generate.py --out charged-particle.nc [--samples 4000] [--seed 0] \
        [--background EPS] [--force]
    python docs/examples/charged-particle/generate.py --check     # the self-test; writes nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

MASS_RANGE = (1.0, 2.0)  # kg, log-uniform
CHARGE_RANGE = (0.5, 1.0)  # C, log-uniform
FIELD_RANGE = (1.0, 2.0)  # T, log-uniform |B|
SPEED_RANGE = (0.5, 2.0)  # m/s, log-uniform |v0|
MAX_TIME = 3.0  # s, t uniform in (0, MAX_TIME]
SCRIPT = "docs/examples/charged-particle/generate.py"


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n directions uniform on the sphere, shape (n, 3)."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    return np.exp(rng.uniform(*np.log(bounds), size=n))


def displacement(m, q, B, v0, t):
    """Exact dx (n, 3) in m after time t (n,) for m dv/dt = q v x B; m, q, t (n,), B, v0 (n, 3)."""
    field = np.linalg.norm(B, axis=-1)
    b = B / field[:, None]
    omega = q * field / m
    v_par = (v0 * b).sum(-1)[:, None] * b
    v_perp = v0 - v_par
    phase = omega * t
    sin_term = (np.sin(phase) / omega)[:, None]
    cos_term = (2 * np.sin(phase / 2) ** 2 / omega)[:, None]  # (1 - cos(omega t)) / omega
    return v_par * t[:, None] + sin_term * v_perp + cos_term * np.cross(v_perp, b)


def sample(n: int, rng: np.random.Generator, background: float = 0.0) -> dict[str, np.ndarray]:
    """The inputs m, q, B, v0, t and the exact target dx for n particles; with ``background``, dx is
    the displacement in B plus an undeclared field of ``background`` tesla along z."""
    m = log_uniform(rng, MASS_RANGE, n)
    q = log_uniform(rng, CHARGE_RANGE, n)
    B = log_uniform(rng, FIELD_RANGE, n)[:, None] * unit_vectors(rng, n)
    v0 = log_uniform(rng, SPEED_RANGE, n)[:, None] * unit_vectors(rng, n)
    t = MAX_TIME * (1 - rng.random(n))  # (0, MAX_TIME]: never exactly 0
    felt = B + background * np.array([0.0, 0.0, 1.0])
    return {"m": m, "q": q, "B": B, "v0": v0, "t": t, "dx": displacement(m, q, felt, v0, t)}


UNITS = {"m": "kg", "q": "C", "B": "T", "v0": "m/s", "t": "s", "dx": "m"}
LONG_NAMES = {
    "m": "mass",
    "q": "charge (positive)",
    "B": "uniform magnetic field",
    "v0": "initial velocity",
    "t": "elapsed time",
    "dx": "displacement after time t, exact solution of m dv/dt = q v x B",
}


def make_dataset(n: int, seed: int, background: float = 0.0):
    import xarray as xr

    data = sample(n, np.random.default_rng(seed), background)
    data_vars = {}
    for name, values in data.items():
        attrs = {"units": UNITS[name], "long_name": LONG_NAMES[name]}
        if values.ndim == 2:
            data_vars[name] = (("sample", "space"), values, {**attrs, "components": "x y z"})
        else:
            data_vars[name] = (("sample",), values, attrs)
    return xr.Dataset(
        data_vars,
        attrs={
            "description": "A charged particle in a uniform magnetic field: mass, charge, field, initial velocity "
            "and elapsed time, and the exact displacement.",
            "generator": f"{SCRIPT} --samples {n} --seed {seed}" + (f" --background {background:g}" if background else ""),
            "background_field_T": float(background),
        },
    )


def check(n: int = 6, seed: int = 12345) -> None:
    """Self-test: the closed form against scipy's solve_ivp (rtol 1e-10) on a few particles, plus limits."""
    from scipy.integrate import solve_ivp

    drawn = sample(n, np.random.default_rng(seed))
    # plus one hand-set particle at the top of the omega t range (omega t = 6)
    hand = {"m": 1.0, "q": 1.0, "B": [0.0, 0.0, 2.0], "v0": [1.0, 0.0, 0.5], "t": 3.0}
    data = {k: np.concatenate([drawn[k], np.asarray(hand[k])[None]]) for k in hand}
    data["dx"] = displacement(data["m"], data["q"], data["B"], data["v0"], data["t"])
    n += 1
    worst = 0.0
    for i in range(n):
        m, q, B, v0, t = (data[k][i] for k in ("m", "q", "B", "v0", "t"))

        def rhs(_, y, m=m, q=q, B=B):
            return np.concatenate([y[3:], q / m * np.cross(y[3:], B)])

        sol = solve_ivp(rhs, (0.0, t), np.concatenate([np.zeros(3), v0]), method="DOP853", rtol=1e-10, atol=1e-12)
        assert sol.success, sol.message
        numeric = sol.y[:3, -1]
        err = np.linalg.norm(numeric - data["dx"][i]) / np.linalg.norm(numeric)
        # the same formula with the sign of the last term flipped, to show the check can tell them apart
        flipped = displacement(np.array([m]), np.array([-q]), B[None], v0[None], np.array([t]))[0]
        err_flipped = np.linalg.norm(numeric - flipped) / np.linalg.norm(numeric)
        omega_t = q * np.linalg.norm(B) / m * t
        print(f"omega t = {omega_t:5.3f}: relative error {err:.1e} (with the opposite sign: {err_flipped:.1e})")
        worst = max(worst, err)
    assert worst < 1e-8, worst
    # limits: t -> 0 gives v0 t; v0 along B gives straight-line motion
    tiny = displacement(data["m"], data["q"], data["B"], data["v0"], np.full(n, 1e-9))
    assert (np.linalg.norm(tiny - data["v0"] * 1e-9, axis=-1) <= 1e-8 * np.linalg.norm(tiny, axis=-1)).all()
    along = data["B"] / np.linalg.norm(data["B"], axis=-1, keepdims=True)
    straight = displacement(data["m"], data["q"], data["B"], along, data["t"])
    assert np.allclose(straight, along * data["t"][:, None], rtol=1e-12, atol=1e-14)
    big = sample(100_000, np.random.default_rng(seed))
    omega_t = big["q"] * np.linalg.norm(big["B"], axis=-1) / big["m"] * big["t"]
    print(f"omega t over 100000 draws: [{omega_t.min():.3g}, {omega_t.max():.3g}], median {np.median(omega_t):.3g}")
    print("check passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="netCDF file to write")
    parser.add_argument("--samples", type=int, default=4000, help="number of particles (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--background",
        type=float,
        default=0.0,
        metavar="EPS",
        help="an undeclared uniform field of EPS tesla along z, which breaks the declared SO(3) (default 0)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    parser.add_argument("--check", action="store_true", help="run the self-test and write nothing")
    args = parser.parse_args(argv)
    if args.check:
        check()
        return 0
    if args.out is None:
        parser.error("--out is required (or --check)")
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it")
    if not np.isfinite(args.background):
        parser.error(f"--background must be a finite number of tesla, got {args.background}")
    ds = make_dataset(args.samples, args.seed, args.background)
    ds.to_netcdf(args.out, engine="h5netcdf")
    print(f"wrote {args.samples} particles to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
