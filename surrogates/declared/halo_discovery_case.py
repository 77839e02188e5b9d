"""The halo case of symmetry discovery (docs/discovery.md#the-halo-case): Bullock's spin lambda' of the
halos of Rockstar catalogs, as the halo finder measured it, from each halo's angular momentum J, virial
mass and virial radius, beside two vectors it does not depend on (the halo's bulk velocity and the
major axis of its shape). lambda' = |J| / (sqrt(2) M V R) with V^2 = G M / R, so rotating the three
vectors together leaves it unchanged: discovery must find so(3), three generators.

``python -m surrogates.declared.halo_discovery_case CATALOG... --out halo-discovery.json`` fits the
unconstrained model and runs the discovery; ``--write DIR`` writes ``DIR/data.nc`` and
``DIR/declaration.json`` instead, the files of ``eqs discover`` and ``eqs fit``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sims.halos.catalog import HaloCatalogError
from sims.halos.rockstar import read_rockstar_columns, rockstar_particle_mass, rockstar_physical_factor
from surrogates.declared.discovery_cases import Expected, case_dataset, checks, fit_and_discover, training_config
from surrogates.training import TrainConfig

# Newton's constant in kpc (km/s)^2 / Msun (CODATA G with the IAU nominal solar mass, as astropy gives it)
G_KPC = 4.30091727e-6
EXPECTED = Expected(generators=3, rotations=True)
MIN_PARTICLES, MAX_PARTICLES = 20.0, 40.0
COLUMNS = ("Mvir", "Rvir", "JX", "JY", "JZ", "VX", "VY", "VZ", "A[x]", "A[y]", "A[z]", "spin_bullock")
QUANTITIES = [
    {"name": "J", "units": "Msun kpc km/s", "kind": "vector", "role": "state", "description": "angular momentum"},
    {"name": "V", "units": "km/s", "kind": "vector", "role": "state", "description": "bulk velocity"},
    {"name": "A", "units": "kpc", "kind": "vector", "role": "state", "description": "major axis of the shape"},
    {"name": "M", "units": "Msun", "kind": "scalar", "role": "state", "description": "virial mass"},
    {"name": "R", "units": "kpc", "kind": "scalar", "role": "state", "description": "virial radius (physical)"},
    {"name": "G", "units": "kpc km^2 s^-2 Msun^-1", "kind": "scalar", "role": "parameter", "description": "Newton's G"},
    {
        "name": "spin",
        "units": "1",
        "kind": "scalar",
        "role": "target",
        "description": "Bullock's lambda' (spin_bullock)",
    },
]
SPEC = {
    "name": "rockstar_spin",
    "description": "Bullock's spin of Rockstar halos from their angular momentum, virial mass and radius",
    "symmetry": "SO(3)",  # J is an axial vector and the major axis has no sign: rotations, not reflections
    "quantities": QUANTITIES,
}


def spin_case(
    paths: Sequence[str | Path], min_particles: float = MIN_PARTICLES, max_particles: float = MAX_PARTICLES
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The inputs (physical Msun, kpc, km/s) and lambda' of the halos of Rockstar ASCII catalogs with
    ``min_particles`` to ``max_particles`` particles in Mvir (by the header's particle mass) and a measured
    spin."""
    parts: list[dict[str, np.ndarray]] = []
    for path in paths:
        header, raw = read_rockstar_columns(path, COLUMNS)
        particle_mass = rockstar_particle_mass(header)
        if particle_mass is None:
            raise HaloCatalogError(f"{path}: no '#Particle mass: ...' line, needed for --min-particles")
        mass, radius = (rockstar_physical_factor(header, c) for c in ("mass", "radius"))
        particles = raw["Mvir"] * mass / particle_mass
        keep = (particles >= min_particles) & (particles <= max_particles) & (raw["spin_bullock"] > 0)

        def vector(names: Sequence[str], factor: float) -> np.ndarray:
            return np.stack([raw[c][keep] for c in names], axis=1) * factor

        parts.append(
            {
                "J": vector(("JX", "JY", "JZ"), rockstar_physical_factor(header, "angular_momentum")),
                "V": vector(("VX", "VY", "VZ"), rockstar_physical_factor(header, "velocity")),
                "A": vector(("A[x]", "A[y]", "A[z]"), radius),  # Rockstar writes A in the radii's units
                "M": raw["Mvir"][keep] * mass,
                "R": raw["Rvir"][keep] * radius,
                "spin": raw["spin_bullock"][keep],
            }
        )
    values = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if values["spin"].size < 10:
        raise HaloCatalogError(
            f"{list(map(str, paths))}: {values['spin'].size} halos with --min-particles {min_particles:g} to "
            f"--max-particles {max_particles:g} and a measured spin; at least 10 are needed"
        )
    values["G"] = np.full(values["spin"].shape, G_KPC)
    spin = values.pop("spin")
    return values, spin


def bullock_spin(values: dict[str, np.ndarray]) -> np.ndarray:
    """lambda' recomputed from the inputs (the check that the target is their function)."""
    m, r = values["M"], values["R"]
    return np.linalg.norm(values["J"], axis=1) / (np.sqrt(2.0) * m * np.sqrt(values["G"] * m / r) * r)


def write_case(paths: Sequence[str | Path], folder: Path, min_particles: float, max_particles: float) -> None:
    values, spin = spin_case(paths, min_particles, max_particles)
    folder.mkdir(parents=True, exist_ok=True)
    case_dataset(SPEC, values, spin).to_netcdf(folder / "data.nc", engine="h5netcdf")
    (folder / "declaration.json").write_text(json.dumps(SPEC, indent=1) + "\n")


def run_case(
    paths: Sequence[str | Path],
    particles: tuple[float, float],
    config: TrainConfig,
    hidden: Sequence[int],
    threshold: float = 0.2,
) -> dict[str, Any]:
    """Fit the unconstrained model on the halos with ``particles`` (min, max) particles and discover what
    it respects at the held-out ones; with the checks of :data:`EXPECTED` (``passed``)."""
    values, spin = spin_case(paths, *particles)
    result = fit_and_discover(SPEC, values, spin, config, hidden, threshold)
    result.update(
        case="rockstar-spin",
        halos=int(spin.size),
        catalogs=[Path(p).name for p in paths],
        particles=list(particles),
        target_recomputed_error=float(np.median(np.abs(bullock_spin(values) / spin - 1.0))),
    )
    result["checks"] = checks(EXPECTED, result)
    result["passed"] = all(result["checks"].values())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalogs", nargs="+", type=Path, help="Rockstar out_*.list or halos_*.ascii files")
    parser.add_argument("--min-particles", type=float, default=MIN_PARTICLES, help="in Mvir, by the particle mass")
    parser.add_argument("--max-particles", type=float, default=MAX_PARTICLES)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file of every number")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write DIR/data.nc and DIR/declaration.json")
    args = parser.parse_args(argv)
    try:
        if args.write is not None:
            write_case(args.catalogs, args.write, args.min_particles, args.max_particles)
            return 0
        if args.out is None:
            parser.error("--out is required (or --write DIR)")
        config = training_config(args.epochs, args.seed)
        r = run_case(
            args.catalogs, (args.min_particles, args.max_particles), config, tuple(args.hidden), args.threshold
        )
    except HaloCatalogError as exc:
        parser.exit(2, f"Error: {exc}\n")
    lin, sc = r["linear"], r["scalings"]
    print(
        f"{r['halos']} halos  model error {r['model_error']:.3g}  generators {lin['dimension']} "
        f"(residuals {', '.join(f'{v:.3g}' for v in lin['relative_residuals'][:5])})  "
        f"angles to so(3) {[round(a, 2) for a in lin['angles_to_rotations']]}  scalings {sc['dimension']} "
        f"(with G fixed, the units give {sc['expected_dimension']})  "
        f"{'passed' if r['passed'] else 'FAILED'} {r['checks']}  ({r['seconds']:.0f} s)"
    )
    with open(args.out, "w") as f:
        json.dump({"epochs": args.epochs, "hidden": args.hidden, "result": r}, f)
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
