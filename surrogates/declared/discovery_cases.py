"""The acceptance cases of symmetry discovery on the spring pendulum (docs/discovery.md#the-pendulum-cases):
its energy from states drawn as the EMLP protocol draws them, with gravity fixed along -z (rotations
about z), with gravity an input (all rotations), with every parameter varying (the scalings of kg, m and
s), and with a term added that breaks every symmetry (nothing).

``python -m surrogates.declared.discovery_cases --samples 4000 --out discovery.json`` runs them at full
size and writes every number; the tests run them at tiny sizes. ``--write DIR`` writes each case's data
and declaration instead (``DIR/<case>/data.nc`` and ``declaration.json``, the files of ``eqs discover`` and
``eqs fit``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.declared.splits import random_split
from sims.pendulum.system import (
    Q1_MEAN,
    Q2_MEAN,
    Parameters,
    hamiltonian,
    sample_initial_states,
    sample_parameters,
)
from surrogates.declared import discovery
from surrogates.declared.models import fit_surrogate
from surrogates.training import TrainConfig

STATE = [("q1", "m"), ("q2", "m"), ("p1", "kg m/s"), ("p2", "kg m/s")]
SCALARS = [("m1", "kg"), ("m2", "kg"), ("k1", "kg/s^2"), ("k2", "kg/s^2"), ("l1", "m"), ("l2", "m")]
CASES = ("gravity-fixed", "gravity-input", "units", "no-symmetry")
SPLIT = (0.7, 0.15, 0.15)
UNITS_MOMENTUM_FACTOR = 2.5
UNITS_SPREAD_FACTOR = 3.0


@dataclass(frozen=True)
class Expected:
    """What a case must find: the number of generators and the algebra they lie in, or the scalings."""

    generators: int | None = None
    axis: tuple[float, float, float] | None = None
    rotations: bool = False
    scalings: int | None = None


EXPECTED = {
    "gravity-fixed": Expected(generators=1, axis=(0.0, 0.0, 1.0)),
    "gravity-input": Expected(generators=3, rotations=True),
    "units": Expected(scalings=3),
    "no-symmetry": Expected(generators=0),
}


def case_data(
    case: str, n: int, seed: int = 0, background: float = 0.0
) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """The declaration, inputs and energy of ``case`` (n samples); with ``background``, the energy also
    holds an undeclared uniform field of ``background`` m/s^2 along -x that pulls both masses (a broken
    symmetry of controlled size, for the relaxed-symmetry study). Along x, across the axis the protocol's
    pendulum hangs along: a field along z would add about -background (|q1| + |q2|), nearly invariant."""
    rng = np.random.default_rng(seed)
    states = sample_initial_states(n, rng)
    if case == "units":
        # every parameter varies, so that the target's dependence on each is seen; the positions' and
        # momenta's spreads wider and gravity weaker than the protocol's, so that no term dominates the
        # energy (a dominant term makes every scaling that keeps it a near-symmetry of the whole)
        states[:, :3] = Q1_MEAN + UNITS_SPREAD_FACTOR * (states[:, :3] - Q1_MEAN)
        states[:, 3:6] = Q2_MEAN + UNITS_SPREAD_FACTOR * (states[:, 3:6] - Q2_MEAN)
        states[:, 6:] *= UNITS_MOMENTUM_FACTOR
        params = sample_parameters(
            n, rng, mass=(0.5, 2.0), stiffness=(1.0, 4.0), length=(0.5, 2.0), gravity=(0.2, 0.8), random_direction=True
        )
    else:
        params = sample_parameters(n, rng, random_direction=case == "gravity-input")
    energy = hamiltonian(torch.as_tensor(states), Parameters.from_mapping(params)).numpy()
    if background:  # the potential of the undeclared field: -m (b . q) for each mass, b = (-background, 0, 0)
        energy = energy + background * (params["m1"] * states[:, 0] + params["m2"] * states[:, 3])
    values = {name: states[:, 3 * i : 3 * i + 3] for i, (name, _) in enumerate(STATE)}
    quantities = [{"name": name, "units": units, "kind": "vector", "role": "state"} for name, units in STATE]
    if case in ("gravity-input", "units"):
        values["g"] = params["g"]
        quantities.append({"name": "g", "units": "m/s^2", "kind": "vector", "role": "parameter"})
    if case == "units":
        for name, units in SCALARS:
            values[name] = params[name]
            quantities.append({"name": name, "units": units, "kind": "scalar", "role": "parameter"})
    if case == "no-symmetry":  # terms along fixed generic directions: no rotation, no scaling keeps them
        w = np.random.default_rng(99).normal(size=(3, 3))
        q1, p2 = values["q1"], values["p2"]
        energy = energy + 0.5 * np.sin(2 * q1 @ w[0]) + (p2 @ w[1]) ** 2 * (q1 @ w[2])
    quantities.append({"name": "H", "units": "kg m^2/s^2", "kind": "scalar", "role": "target"})
    spec = {"name": f"pendulum_{case.replace('-', '_')}", "symmetry": "O(3)", "quantities": quantities}
    return spec, values, energy


def _target_name(spec: dict[str, Any]) -> str:
    (name,) = [q["name"] for q in spec["quantities"] if q["role"] == "target"]
    return name


def case_dataset(spec: dict[str, Any], values: dict[str, np.ndarray], target: np.ndarray):
    """The case as an ``eqs fit`` data file's dataset: one variable per quantity, in its declared units
    (``target``: the values of the declaration's target)."""
    import xarray as xr

    units = {q["name"]: q["units"] for q in spec["quantities"]}
    data = {}
    for name, v in {**values, _target_name(spec): target}.items():
        dims = ("sample", "space") if np.ndim(v) == 2 else ("sample",)
        data[name] = (dims, np.asarray(v, dtype=np.float64), {"units": units[name]})
    return xr.Dataset(data, coords={"space": ["x", "y", "z"]}, attrs={"description": spec["name"]})


def write_case(case: str, n: int, folder: Path, background: float = 0.0) -> None:
    """``folder/data.nc`` and ``folder/declaration.json`` of ``case`` (n samples)."""
    spec, values, energy = case_data(case, n, background=background)
    folder.mkdir(parents=True, exist_ok=True)
    case_dataset(spec, values, energy).to_netcdf(folder / "data.nc", engine="h5netcdf")
    (folder / "declaration.json").write_text(json.dumps(spec, indent=1) + "\n")


def training_config(epochs: int, seed: int = 0) -> TrainConfig:
    """The training of the unconstrained model: eqs fit's quick preset with ``epochs``."""
    return TrainConfig(
        seed=seed, epochs=epochs, batch_size=128, lr=3e-3, lr_decay=0.5, lr_decay_every=100, val_every=2, patience=25
    )


def fit_and_discover(
    spec: dict[str, Any],
    values: dict[str, np.ndarray],
    target: np.ndarray,
    config: TrainConfig,
    hidden: Sequence[int],
    threshold: float,
) -> dict[str, Any]:
    """Fit the unconstrained model of the declaration's target on the random split's training part and
    discover what it respects at the held-out samples (inputs constant over the data left out of the
    scalings); with the model's error there and the seconds taken."""
    parts = random_split(target.size, SPLIT)

    def take(part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return {k: v[parts[part]] for k, v in values.items()}, target[parts[part]]

    started = time.perf_counter()
    model, _ = fit_surrogate(spec, _target_name(spec), "raw", take("train"), take("val"), config, hidden=hidden)
    constant = discovery.constant_inputs(model.decl, values)
    result = discovery.discover(model, take("test")[0], threshold, constant=constant)
    result.update(model_error=discovery.median_error(model, *take("test")), seconds=time.perf_counter() - started)
    return result


def run_case(case: str, n: int, config: TrainConfig, hidden: Sequence[int], threshold: float) -> dict[str, Any]:
    """Fit the unconstrained model on the case's data and discover what it respects at held-out samples;
    with the checks of :data:`EXPECTED` (``passed``)."""
    spec, values, energy = case_data(case, n)
    result = fit_and_discover(spec, values, energy, config, hidden, threshold)
    result["case"] = case
    result["checks"] = checks(case, result)
    result["passed"] = all(result["checks"].values())
    return result


def checks(case: str | Expected, result: dict[str, Any], tolerance_degrees: float = 5.0) -> dict[str, bool]:
    """Each condition of the case (its name, or what it must find), by name."""
    want = EXPECTED[case] if isinstance(case, str) else case
    linear, scalings = result["linear"], result["scalings"]
    out: dict[str, bool] = {}
    if want.generators is not None:
        out["generators"] = linear["dimension"] == want.generators
    if want.axis is not None and linear["dimension"] == 1:
        cosine = abs(float(np.dot(linear["axis"], want.axis)))
        out["axis within tolerance"] = float(np.degrees(np.arccos(min(1.0, cosine)))) < tolerance_degrees
        out["a rotation"] = max(linear["angles_to_rotations"]) < tolerance_degrees
    if want.rotations:
        out["so(3)"] = bool(linear["angles_to_rotations"]) and max(linear["angles_to_rotations"]) < tolerance_degrees
    if want.scalings is not None:
        out["scalings"] = scalings["dimension"] == scalings["expected_dimension"] == want.scalings
        angles = scalings["angles_to_dimensional"]
        out["scalings match the units"] = bool(angles) and max(angles) < tolerance_degrees
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--out", help="JSON file of every number")
    parser.add_argument("--write", type=Path, metavar="DIR", help="write DIR/<case>/data.nc and declaration.json")
    parser.add_argument(
        "--background", type=float, default=0.0, metavar="EPS", help="with --write: an undeclared field along -x"
    )
    args = parser.parse_args(argv)
    if args.background and args.write is None:
        parser.error("--background is for the data files of --write")
    if args.write is not None:
        for case in args.cases:
            write_case(case, args.samples, args.write / case, args.background)
        return 0
    if args.out is None:
        parser.error("--out is required (or --write DIR)")
    config = training_config(args.epochs)
    results = []
    for case in args.cases:
        r = run_case(case, args.samples, config, tuple(args.hidden), args.threshold)
        results.append(r)
        lin, sc = r["linear"], r["scalings"]
        print(
            f"{case:14s} model error {r['model_error']:.3g}  generators {lin['dimension']} "
            f"(residuals {', '.join(f'{v:.3g}' for v in lin['relative_residuals'][:4])})  axis {lin.get('axis')}  "
            f"angles to so(3) {[round(a, 2) for a in lin['angles_to_rotations']]}  scalings {sc['dimension']}/"
            f"{sc['expected_dimension']} angles {[round(a, 2) for a in sc['angles_to_dimensional']]} "
            f"(best {sc['expected_dimension']}: {[round(a, 2) for a in sc['angles_of_best_to_dimensional']]})  "
            f"{'passed' if r['passed'] else 'FAILED'} {r['checks']}  ({r['seconds']:.0f} s)"
        )
    with open(args.out, "w") as f:
        json.dump({"samples": args.samples, "epochs": args.epochs, "hidden": args.hidden, "results": results}, f)
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
