"""A rigid body: its angular acceleration from Euler's equations, given its inertia tensor, its angular
velocity and the torque on it.

Physics. For a rigid body with inertia tensor I (about its centre of mass, in the lab axes of the
instant), angular velocity w and applied torque tau, the rate of change of the angular momentum
L = I w is tau, and the lab-frame I changes as the body turns (dI/dt = W I - I W, W the cross-product
matrix of w). Together, Euler's equations in the lab axes:

    I dw/dt = tau - w x (I w),    so    dw/dt = I^-1 (tau - w x I w).

The target needs the inverse of the tensor and a cross product through it, so it is a test of how
completely a model reads a tensor input. The self-test (``--check``) compares it with the textbook form
in the body's principal axes, I1 dw1/dt = (I2 - I3) w2 w3 + tau1 and its cyclic permutations.

Ranges: principal moments uniform in [1, 2] x 1e3 g cm^2 (any two sum to at least the third, as for
a real body), principal axes uniformly random (a Haar rotation); each component of w normal with a
standard deviation of 30 rpm, of tau normal with 5e3 dyn cm. The file is written in those units (g cm^2,
rpm, dyn cm, and the target in rad/s^2) and the declaration is in SI: `eqs fit` converts on the way in.

Output. One netCDF file (engine h5netcdf) with a dimension ``sample``: the tensor I with dims
(sample, space, space2) and the vectors w, tau and the target wdot with dims (sample, space).

    python docs/examples/rigid-body/generate.py --out rigid-body.nc [--samples 4000] [--seed 0] [--force]
    python docs/examples/rigid-body/generate.py --check     # the self-test; writes nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

MOMENT_RANGE = (1e3, 2e3)  # g cm^2, uniform per principal moment
SPIN_SCALE = 30.0  # rpm, standard deviation of each component of w
TORQUE_SCALE = 5e3  # dyn cm, standard deviation of each component of tau
SCRIPT = "docs/examples/rigid-body/generate.py"
UNITS = {"I": "g * cm**2", "w": "rpm", "tau": "dyn * cm", "wdot": "rad / s**2"}
TO_SI = {"I": 1e-7, "w": 2 * np.pi / 60, "tau": 1e-7}  # g cm^2 -> kg m^2, rpm -> rad/s, dyn cm -> N m


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """n Haar-random rotations (QR of Gaussian matrices, signs fixed; det +1), shape (n, 3, 3); numpy
    only, as every example's generator, so that a user can read and copy it without the project."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def angular_acceleration(inertia: np.ndarray, w: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """dw/dt = I^-1 (tau - w x I w), in the units of consistent SI inputs; (n, 3)."""
    rhs = tau - np.cross(w, np.einsum("nij,nj->ni", inertia, w))
    return np.linalg.solve(inertia, rhs[..., None])[..., 0]


def sample(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The inputs and target in the file's units, and the principal moments and axes they came from."""
    moments = rng.uniform(*MOMENT_RANGE, size=(n, 3))
    axes = random_rotations(rng, n)
    data = {
        "I": np.einsum("nij,nj,nkj->nik", axes, moments, axes),
        "w": SPIN_SCALE * rng.normal(size=(n, 3)),
        "tau": TORQUE_SCALE * rng.normal(size=(n, 3)),
    }
    data["wdot"] = angular_acceleration(*(data[k] * TO_SI[k] for k in ("I", "w", "tau")))
    return data, moments, axes


def make_dataset(n: int, seed: int):
    import xarray as xr

    data, _, _ = sample(n, np.random.default_rng(seed))
    dims = {"I": ("sample", "space", "space2")}
    return xr.Dataset(
        {k: (dims.get(k, ("sample", "space")), v, {"units": UNITS[k]}) for k, v in data.items()},
        attrs={
            "description": "A rigid body: inertia tensor, angular velocity and torque, and the angular "
            "acceleration from Euler's equations.",
            "generator": f"{SCRIPT} --samples {n} --seed {seed}",
        },
    )


def check(n: int = 1000, seed: int = 12345) -> None:
    """Self-test: the lab-frame formula against Euler's equations in the principal axes."""
    data, moments, axes = sample(n, np.random.default_rng(seed))
    w = np.einsum("nji,nj->ni", axes, data["w"] * TO_SI["w"])  # body components
    tau = np.einsum("nji,nj->ni", axes, data["tau"] * TO_SI["tau"])
    i1, i2, i3 = (moments * TO_SI["I"]).T
    body = np.stack(
        [
            ((i2 - i3) * w[:, 1] * w[:, 2] + tau[:, 0]) / i1,
            ((i3 - i1) * w[:, 2] * w[:, 0] + tau[:, 1]) / i2,
            ((i1 - i2) * w[:, 0] * w[:, 1] + tau[:, 2]) / i3,
        ],
        -1,
    )
    lab = np.einsum("nij,nj->ni", axes, body)
    error = np.abs(lab - data["wdot"]).max() / np.abs(lab).max()
    print(
        f"lab-frame formula against the principal-axes equations: largest difference {error:.1e} of the largest value"
    )
    assert error < 1e-12, error
    inertia, w_lab, tau_lab = (data[k] * TO_SI[k] for k in ("I", "w", "tau"))
    opposite = np.linalg.solve(inertia, (tau_lab + np.cross(w_lab, np.einsum("nij,nj->ni", inertia, w_lab)))[..., None])
    wrong = np.abs(lab - opposite[..., 0]).max() / np.abs(lab).max()
    print(f"the same with the opposite sign of w x I w: {wrong:.1e}, so the check tells the two apart")
    assert wrong > 1e-2, wrong
    print("check passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="netCDF file to write")
    parser.add_argument("--samples", type=int, default=4000, help="number of bodies (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    make_dataset(args.samples, args.seed).to_netcdf(args.out, engine="h5netcdf")
    print(f"wrote {args.samples} bodies to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
