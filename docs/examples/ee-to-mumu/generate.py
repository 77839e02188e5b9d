"""Events of e+ e- -> mu+ mu- (tree-level QED, massless limit) and their differential cross-section.

Physics. At tree level, with the lepton masses neglected, the unpolarised differential cross-section
of e-(p1) e+(p2) -> mu-(p3) mu+(p4) in the centre-of-mass (CM) frame is

    dsigma/dOmega = alpha^2 / (4 s) * (1 + cos^2 theta),

with theta the angle between the e- and the mu- in the CM frame and alpha = 1/137.035999. Written
in Lorentz invariants (metric (+,-,-,-), p4 = p1 + p2 - p3, every p_i^2 = 0):

    s = (p1 + p2)^2 = 2 p1.p2,   t = (p1 - p3)^2 = -2 p1.p3,   u = (p2 - p3)^2 = -2 p2.p3,
    1 + cos^2 theta = 2 (t^2 + u^2) / s^2,

so the target is dsigma_domega = alpha^2 / (4 s) * 2 (t^2 + u^2) / s^2, in GeV^-2 (natural units,
hbar = c = 1), evaluated in any frame. The stored target carries multiplicative Gaussian noise of
3 %: dsigma_domega = exact * (1 + 0.03 * N(0, 1)), drawn independently per event.

Events. sqrt(s) is log-uniform in [10, 200] GeV. In the CM frame the e- and e+ are massless and back
to back along a direction uniform on the sphere, and the mu- goes along a direction drawn
independently and uniformly on the sphere (not from the 1 + cos^2 theta distribution), so every
scattering angle is covered evenly. Each event is then boosted to its own lab frame by a pure boost
of rapidity uniform in [0, 0.5] along a direction uniform on the sphere.

Output. One netCDF file (engine h5netcdf) with a dimension ``sample``: the four-vectors p1 (e-),
p2 (e+), p3 (mu-) with dims (sample, space), space = (E, px, py, pz), time component first, in GeV;
the target dsigma_domega with dims (sample,), in GeV^-2.

    python docs/examples/ee-to-mumu/generate.py --out ee-to-mumu.nc [--samples 4000] [--seed 0] [--force]
    python docs/examples/ee-to-mumu/generate.py --check     # the self-test; writes nothing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ALPHA = 1 / 137.035999
NOISE = 0.03  # relative standard deviation of the multiplicative Gaussian noise on the target
SQRT_S_RANGE = (10.0, 200.0)  # GeV, log-uniform
MAX_RAPIDITY = 0.5
METRIC = np.array([1.0, -1.0, -1.0, -1.0])
SCRIPT = "docs/examples/ee-to-mumu/generate.py"


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minkowski product a.b along the last axis, metric (+,-,-,-)."""
    return (a * METRIC * b).sum(-1)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n directions uniform on the sphere, shape (n, 3)."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def boost(p: np.ndarray, rapidity: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Pure boosts of four-vectors p (n, 4) by rapidity (n,) along unit directions (n, 3)."""
    ch, sh = np.cosh(rapidity), np.sinh(rapidity)
    energy, momentum = p[:, 0], p[:, 1:]
    parallel = (momentum * direction).sum(-1)
    new_energy = ch * energy + sh * parallel
    new_parallel = sh * energy + ch * parallel
    new_momentum = momentum + (new_parallel - parallel)[:, None] * direction
    return np.concatenate([new_energy[:, None], new_momentum], axis=-1)


def massless(energy: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Massless four-vectors (E, E n) of energies (n,) along unit directions (n, 3)."""
    return energy[:, None] * np.concatenate([np.ones((len(energy), 1)), direction], axis=-1)


def cross_section(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """dsigma/dOmega in GeV^-2 from invariants: alpha^2 / (4 s) * 2 (t^2 + u^2) / s^2."""
    s = 2 * dot(p1, p2)
    t = -2 * dot(p1, p3)
    u = -2 * dot(p2, p3)
    return ALPHA**2 / (4 * s) * 2 * (t**2 + u**2) / s**2


def sample_events(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Lab-frame four-momenta p1, p2, p3 (n, 4) in GeV and the exact target (n,) in GeV^-2."""
    sqrt_s = np.exp(rng.uniform(*np.log(SQRT_S_RANGE), size=n))
    beam, muon = unit_vectors(rng, n), unit_vectors(rng, n)
    half = sqrt_s / 2
    rapidity = rng.uniform(0.0, MAX_RAPIDITY, size=n)
    boost_direction = unit_vectors(rng, n)
    p1, p2, p3 = (boost(massless(half, d), rapidity, boost_direction) for d in (beam, -beam, muon))
    return {"p1": p1, "p2": p2, "p3": p3, "dsigma_domega": cross_section(p1, p2, p3)}


def make_dataset(n: int, seed: int):
    import xarray as xr

    rng = np.random.default_rng(seed)
    events = sample_events(n, rng)
    noisy = events["dsigma_domega"] * (1 + NOISE * rng.normal(size=n))
    components = "E px py pz (time first, metric +,-,-,-)"
    names = {"p1": "electron (e-)", "p2": "positron (e+)", "p3": "muon (mu-)"}
    data_vars = {
        name: (("sample", "space"), events[name], {"units": "GeV", "components": components, "long_name": long})
        for name, long in names.items()
    }
    data_vars["dsigma_domega"] = (
        ("sample",),
        noisy,
        {
            "units": "GeV^-2",
            "long_name": "dsigma/dOmega in the CM frame, alpha^2/(4s) (1 + cos^2 theta)",
            "noise": f"multiplicative Gaussian, relative standard deviation {NOISE}",
        },
    )
    return xr.Dataset(
        data_vars,
        attrs={
            "description": "e+ e- -> mu+ mu- at tree level in the massless limit: lab-frame four-momenta "
            "and the CM differential cross-section with 3 % multiplicative noise.",
            "generator": f"{SCRIPT} --samples {n} --seed {seed}",
        },
    )


def check(n: int = 2000, seed: int = 12345) -> None:
    """Self-test: massless momenta to round-off, and the invariant formula equals the CM-frame one.

    The CM frame is recovered from the lab-frame momenta alone (boosting back along the total
    momentum), so this also checks the boosts.
    """
    events = sample_events(n, np.random.default_rng(seed))
    p1, p2, p3 = events["p1"], events["p2"], events["p3"]
    for name, p in (("p1", p1), ("p2", p2), ("p3", p3)):
        rel = np.abs(dot(p, p)) / p[:, 0] ** 2
        print(f"max |{name}^2| / E^2 = {rel.max():.2e}")
        assert rel.max() < 1e-12, name
        assert (p[:, 0] > 0).all(), name
    total = p1 + p2
    s = dot(total, total)
    velocity = total[:, 1:] / total[:, :1]
    speed = np.linalg.norm(velocity, axis=-1)
    back = [boost(p, -np.arctanh(speed), velocity / speed[:, None]) for p in (p1, p2, p3)]
    net = np.abs(back[0][:, 1:] + back[1][:, 1:]).max(-1) / back[0][:, 0]
    print(f"max |p1 + p2| / E in the recovered CM frame = {net.max():.2e}")
    assert net.max() < 1e-12
    a, b = back[0][:, 1:], back[2][:, 1:]
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    cm = ALPHA**2 / (4 * s) * (1 + cos**2)
    rel = np.abs(events["dsigma_domega"] / cm - 1)
    print(f"max relative difference, invariant formula vs CM-frame formula = {rel.max():.2e}")
    assert rel.max() < 1e-10
    sqrt_s = np.sqrt(s)
    print(f"sqrt(s) in [{sqrt_s.min():.2f}, {sqrt_s.max():.2f}] GeV; cos theta in [{cos.min():.3f}, {cos.max():.3f}]")
    print("check passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="netCDF file to write")
    parser.add_argument("--samples", type=int, default=4000, help="number of events (default 4000)")
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
    ds = make_dataset(args.samples, args.seed)
    ds.to_netcdf(args.out, engine="h5netcdf")
    print(f"wrote {args.samples} events to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
