"""Speed and accuracy of the Rietkerk solvers against py-pde's explicit Euler, and batched throughput.

Units: lengths in m (cell side dl = 2 m, patch side L = n dl), times in days (T, dt), wall times in seconds,
throughput in simulations per minute. Errors are relative L2 norms over the three fields (u, w, v) stacked.
Rietkerk (2002) parameters at R = 1.0 (labyrinths), seeded bare-soil start with seed 0 (seeds 0..B-1 in batches).
py-pde is optional (``pip install py-pde``, the ``reference`` extra); it integrates the same semi-discrete system
(5-point Laplacian, periodic) with forward Euler at dt = 0.005 d, below the explicit limit dl^2 / (4 Du) = 0.01 d.
Ours: each ``--methods`` x ``--dtypes`` x ``--dts`` (a step that is unstable for a method is recorded as such), then
batched throughput of each method at its largest step within the 1e-2 target; speedups per simulation.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch

from sims.rietkerk.solver import METHODS, explicit_reference, simulate
from sims.rietkerk.system import RIETKERK_2002, Grid, Parameters, RietkerkInputError, initial_state

DL, PYPDE_DT, TOLERANCE = 2.0, 0.005, 1e-2  # cell side (m), py-pde's Euler step (d), relative L2 target
EQUATIONS = {  # docs/protocols.md#rietkerk, with the parameters passed to py-pde as named constants
    "u": "R - alpha * (v + k2 * W0) / (v + k2) * u + Du * laplace(u)",
    "w": "alpha * (v + k2 * W0) / (v + k2) * u - gm * v * w / (k1 + w) - dw * w + Dw * laplace(w)",
    "v": "c * gm * v * w / (k1 + w) - dv * v + Dv * laplace(v)",
}


def _pde():
    import pde  # optional dependency, imported only when a py-pde run is asked for

    return pde


def pypde_problem(values: Mapping[str, float], state0: np.ndarray, L: float) -> tuple[Any, Any]:
    """py-pde's (PDE, FieldCollection) for one system; ``state0`` is our (3, n, n) array of (u, w, v).

    Our arrays are indexed [y, x] (rfft2 layout), py-pde's field.data [x, y]; both put cell i at (i + 1/2) dl,
    so the transpose maps one grid onto the other exactly.
    """
    pde = _pde()
    n = state0.shape[-1]
    grid = pde.CartesianGrid([[0.0, L], [0.0, L]], [n, n], periodic=True)
    consts = {k: float(values[k]) for k in RIETKERK_2002}
    fields = [pde.ScalarField(grid, np.ascontiguousarray(a.T), label=name) for a, name in zip(state0, "uwv")]
    return pde.PDE(EQUATIONS, bc="periodic", consts=consts), pde.FieldCollection(fields)


def pypde_solve(problem: tuple[Any, Any], T: float, dt: float = PYPDE_DT) -> np.ndarray:
    """Forward Euler (py-pde 'euler', fixed step, no trackers) to ``T`` days: (3, n, n) in our [y, x] layout."""
    eq, state = problem
    result = eq.solve(state.copy(), t_range=T, dt=dt, solver="euler", adaptive=False, tracker=None, backend="numba")
    return np.stack([f.data.T for f in result])


def pypde_stepping(problem: tuple[Any, Any], T: float, dt: float = PYPDE_DT) -> tuple[np.ndarray, float]:
    """Euler steps only (stepper compiled beforehand): the (3, n, n) result and the stepping wall time in s."""
    eq, state = problem
    state = state.copy()
    stepper = _pde().EulerSolver(eq, backend="numba", adaptive=False).make_stepper(state, dt=dt)
    initial = state.data.copy()
    stepper(state, 0.0, dt)  # numba compiles the loop on its first call, not in make_stepper
    state.data[...] = initial
    start = time.perf_counter()
    stepper(state, 0.0, T)
    return np.stack([f.data.T for f in state]), time.perf_counter() - start


def pypde_laplacian_error(n: int, L: float, seed: int = 0) -> float:
    """Max |py-pde laplace - 5-point np.roll stencil| (m^-2) on a uniform random field, via a compiled PDE rhs."""
    pde = _pde()
    grid = pde.CartesianGrid([[0.0, L], [0.0, L]], [n, n], periodic=True)
    field = pde.ScalarField(grid, np.random.default_rng(seed).random((n, n)))
    lap = pde.PDE({"a": "laplace(a)"}, bc="periodic").make_pde_rhs(field, backend="numba")(field.data, 0.0)
    a, dl = field.data, L / n
    stencil = (np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1) - 4 * a) / dl**2
    return float(np.abs(lap - stencil).max())


def _clock(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def time_simulate(
    params: Parameters, grid: Grid, state0: torch.Tensor, T: float, dt: float, repeats: int, method: str = "sbdf2"
):
    """(solution, best wall time in s) of ``repeats`` fd5 runs after one warm-up (allocator, cuFFT plans)."""
    out, best = simulate(params, grid, state0, T=T, dt=dt, laplacian="fd5", method=method), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = simulate(params, grid, state0, T=T, dt=dt, laplacian="fd5", method=method)
        if state0.device.type == "cuda":
            torch.cuda.synchronize(state0.device)
        best = min(best, time.perf_counter() - start)
    return out, best


def _problem(batch: int, grid: Grid, dtype: torch.dtype, device: torch.device) -> tuple[Parameters, torch.Tensor]:
    params = Parameters.from_mapping({k: np.full(batch, v) for k, v in RIETKERK_2002.items()}, dtype=dtype)
    state0 = initial_state(params, grid, kind="seeded", seeds=np.arange(batch))
    return params.to(device=device), state0.to(device=device)


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    installed = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: installed.get(name) for name in ("py-pde", "numba", "numpy")},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    want_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if want_cuda else "cpu")
    grid, T = Grid(args.n * DL, DL), args.T
    report: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, "-m", "sims.rietkerk.benchmark", *sys.argv[1:]]),
        "arguments": vars(args),
        "machine": machine(device),
        "setup": {"n": grid.n, "L_m": grid.L, "dl_m": grid.dl, "T_d": T, "parameters": RIETKERK_2002, "seed": 0},
    }
    params, state0 = _problem(1, grid, torch.float64, torch.device("cpu"))
    s0 = state0[0].numpy()
    use_pypde = args.pypde is not False and importlib.util.find_spec("pde") is not None
    if args.pypde and not use_pypde:
        sys.exit("--pypde: py-pde is not installed; `pip install py-pde` (the package's `reference` extra)")
    if args.pypde is None and not use_pypde:
        print("py-pde is not installed: skipping the py-pde comparison (`pip install py-pde` to include it)")
    targets: dict[str, np.ndarray] = {}
    if use_pypde:
        problem = pypde_problem(RIETKERK_2002, s0, grid.L)
        cold = _clock(pypde_solve, problem, T)[1]
        targets["pypde"], steady = _clock(pypde_solve, problem, T)
        stepped, stepping = pypde_stepping(problem, T)
        report["pypde"] = {
            "dt_d": PYPDE_DT,
            "solver": "euler, fixed dt, numba backend",
            "first_solve_s": cold,  # numba compilation of operators, rhs and stepper included
            "second_solve_s": steady,  # py-pde still jit-compiles a fresh stepper in every solve()
            "stepping_only_s": stepping,  # the compiled Euler loop alone
            "stepping_vs_solve_max_abs": float(np.abs(stepped - targets["pypde"]).max()),
            "laplacian_vs_5point_max_abs_m-2": pypde_laplacian_error(grid.n, grid.L),
        }
    if args.reference:
        targets["explicit_reference"], seconds = _clock(explicit_reference, RIETKERK_2002, s0, grid.dl, T, PYPDE_DT)
        report["explicit_reference_s"] = seconds
        if use_pypde:  # two independent forward-Euler codes: should agree to round-off
            report["pypde"]["rel_l2_vs_explicit_reference"] = rel_l2(targets["pypde"], targets["explicit_reference"])

    ours = []
    for method in args.methods:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            p, z0 = params.to(device=device, dtype=dtype), state0.to(device=device, dtype=dtype)
            for dt in args.dts:
                row = {"method": method, "dtype": dtype_name, "dt_d": dt, "device": device.type}
                try:
                    sol, seconds = time_simulate(p, grid, z0, T, dt, args.repeats, method)
                except RietkerkInputError as error:  # unstable at this step: recorded, not fatal
                    ours.append(row | {"error": str(error), "meets_1e-2": False})
                    continue
                final = sol.fields[0, -1].double().cpu().numpy()
                row |= {"steps": sol.steps, "seconds": seconds, "clipped": sol.clipped}
                for name, target in targets.items():
                    row[f"rel_l2_vs_{name}"] = rel_l2(final, target)
                if use_pypde:
                    row["speedup_vs_pypde_second_solve"] = report["pypde"]["second_solve_s"] / seconds
                    row["speedup_vs_pypde_stepping"] = report["pypde"]["stepping_only_s"] / seconds
                errors = [row[f"rel_l2_vs_{name}"] for name in targets]
                row["meets_1e-2"] = max(errors) <= TOLERANCE if errors else None
                ours.append(row)
    report["ours"] = ours

    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    throughput = []
    for method in args.methods:
        meeting = [row["dt_d"] for row in ours if row["method"] == method and row["meets_1e-2"]]
        if not meeting and targets:
            continue  # no step of this method is within the target: no throughput to report
        dt = max(meeting) if meeting else args.dts[-1]
        for dev in devices:
            for dtype in (torch.float64, torch.float32):
                for batch in args.batches:
                    pb, zb = _problem(batch, grid, dtype, dev)
                    seconds = time_simulate(pb, grid, zb, T, dt, args.repeats, method)[1]
                    row = {"method": method, "device": dev.type, "dtype": str(dtype).removeprefix("torch.")}
                    row |= {"batch": batch, "dt_d": dt, "seconds": seconds, "sims_per_minute": 60.0 * batch / seconds}
                    if use_pypde:  # py-pde's one stepping run against our wall time per simulation in the batch
                        row["speedup_per_sim_vs_pypde_stepping"] = report["pypde"]["stepping_only_s"] * batch / seconds
                    throughput.append(row)
    report["throughput"] = throughput
    return report


def print_table(report: dict[str, Any]) -> None:
    info = report["machine"]
    print(f"{report['setup']['n']}^2 cells, T = {report['setup']['T_d']} d; {info['cpu_model']}; {info['device']}")
    if "pypde" in report:
        r = report["pypde"]
        print(
            f"py-pde euler dt={r['dt_d']}: first {r['first_solve_s']:.2f} s, second {r['second_solve_s']:.2f} s, "
            f"stepping {r['stepping_only_s']:.2f} s; laplace vs 5-point {r['laplacian_vs_5point_max_abs_m-2']:.1e}"
        )
    columns = {"rel_l2_vs_pypde": ".2e", "rel_l2_vs_explicit_reference": ".2e"}
    columns |= {"speedup_vs_pypde_second_solve": ".1f", "speedup_vs_pypde_stepping": ".1f"}
    print(
        "method  dtype  dt  steps  s  relL2(py-pde)  relL2(numpy ref)  x(py-pde 2nd solve)  x(py-pde stepping)  <=1e-2"
    )
    for row in report["ours"]:
        if "error" in row:
            print(f"{row['method']}  {row['dtype']}  {row['dt_d']:g}  unstable: {row['error'][:80]}")
            continue
        cells = [format(row[k], f) if k in row else "-" for k, f in columns.items()]
        head = f"{row['method']}  {row['dtype']}  {row['dt_d']:g}  {row['steps']}  {row['seconds']:.4f}  "
        print(head + "  ".join(cells) + f"  {row['meets_1e-2']}")
    print("method  device  dtype  batch  dt  s  sims/min  x(py-pde stepping) per simulation")
    for r in report["throughput"]:
        x = r.get("speedup_per_sim_vs_pypde_stepping")
        print(
            f"{r['method']}  {r['device']}  {r['dtype']}  {r['batch']}  {r['dt_d']:g}  {r['seconds']:.4f}  "
            f"{r['sims_per_minute']:.1f}  " + (f"{x:.0f}" if x is not None else "-")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sims.rietkerk.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="cells per side (dl = 2 m, L = 2 n m)")
    parser.add_argument("--T", type=float, default=200.0, help="run length in days")
    parser.add_argument("--dts", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="our time steps in days")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="batch sizes for throughput")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["sbdf2", "etdrk4"], help="our time steppers")
    parser.add_argument("--dtypes", nargs="+", choices=("float64", "float32"), default=["float64"])
    parser.add_argument("--pypde", action=argparse.BooleanOptionalAction, default=None, help="default: if installed")
    parser.add_argument("--reference", action="store_true", help="also run the numpy explicit Euler (slow)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the warm-up; the best is kept")
    parser.add_argument("--out", help="write the full report to this JSON file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    report = run(args)
    print_table(report)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
