"""Pendulum benchmarks: simulator throughput against a scipy loop at equal accuracy, training speed.

    python -m surrogates.pendulum.benchmark --systems 2000 --scipy-systems 50 --out bench.json

1. Accuracy first: both simulator backends (``compiled``: a step size per system, numba;
   ``torch``: one step size per batch) at ``--rtol`` and scipy's DOP853 at a ladder of tolerances
   are each compared with a tight DOP853 reference (rtol 1e-13) on ``--check-systems`` systems over
   30 time units; for each backend, scipy's loosest tolerance that is at least as accurate is the
   one timed ("equal accuracy").
2. Throughput: systems per second for ``--systems`` systems in one batch (compiled),
   ``--torch-systems`` (torch), and for a Python loop of ``solve_ivp`` over ``--scipy-systems``
   systems calling the simulator's torch vector field (scipy; once more with the equations in
   plain numpy), all on the EMLP protocol's 150-point trajectories; then the compiled backend at
   each batch size of ``--sizes``.
3. Training: optimizer steps per second of every surrogate on the two protocols' batch shapes; with
   ``--training-limit`` also, for the HNNs at the units protocol's shape, the work of the matrix products
   per step against the machine's large-matrix rate: the fastest step the same arithmetic allows.
4. Integrator floor: the protocols' score of the models' integrator (RK4, ``substeps`` per
   interval) applied to the true vector field, on the quick presets' test sets: the error a
   perfect learned vector field would still have.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch
from scipy.integrate import solve_ivp

from sims.pendulum import compiled
from sims.pendulum import system as sp
from surrogates.devices import pick_device
from surrogates.pendulum import models as pm

TIMES = 0.2 * np.arange(150)
TRAINING_SHAPES = {"emlp": (500, 5), "units": (512, 10)}  # (chunks, points per chunk) of a training batch
HNN_MODELS = ("scalar-hnn", "mlp-hnn", "dimensional-hnn", "dimensionless-hnn")


def _systems(n: int, seed: int) -> tuple[sp.Parameters, torch.Tensor]:
    rng = np.random.default_rng(seed)
    ranges = dict(mass=(1, 2), stiffness=(1, 2), length=(1, 2), gravity=(1, 2))
    params = sp.Parameters.from_mapping(sp.sample_parameters(n, rng, random_direction=True, **ranges))
    return params, torch.as_tensor(sp.sample_initial_states(n, rng))


def _scipy(params: sp.Parameters, z0: torch.Tensor, rtol: float, variant: str, rhs: str = "torch") -> np.ndarray:
    out = []
    for i in range(z0.shape[0]):
        f = _torch_rhs(params.index(slice(i, i + 1)), variant) if rhs == "torch" else _numpy_rhs(params, i, variant)
        sol = solve_ivp(
            f, (TIMES[0], TIMES[-1]), z0[i].numpy(), method="DOP853", rtol=rtol, atol=rtol * 1e-2, t_eval=TIMES
        )
        out.append(sol.y.T)
    return np.stack(out)


def _torch_rhs(one: sp.Parameters, variant: str):
    """The simulator's own vector field, one system at a time (the baseline of issue 20)."""
    return lambda t, z: sp.vector_field(torch.from_numpy(z)[None], one, variant)[0].numpy()


def _numpy_rhs(params: sp.Parameters, i: int, variant: str):
    """The same equations in plain numpy: a faster loop body than a torch call per evaluation."""
    m1, m2, k1, k2, l1, l2 = (float(getattr(params, n)[i]) for n in sp.SCALAR_PARAMETERS)
    g = params.g[i].numpy()
    c2 = 0.5 if variant == "physical" else 1.0

    def rhs(t, z):
        q1, q2 = z[0:3], z[3:6]
        d = q1 - q2
        r1, r12 = np.sqrt(q1 @ q1), np.sqrt(d @ d)
        f1 = (k1 * (r1 - l1) / r1) * q1
        f2 = (2 * c2 * k2 * (r12 - l2) / r12) * d
        return np.concatenate([z[6:9] / m1, z[9:12] / m2, -f1 - f2 + m1 * g, f2 + m2 * g])

    return rhs


def _error(traj: np.ndarray, reference: np.ndarray) -> float:
    return float((np.linalg.norm(traj - reference, axis=-1) / np.linalg.norm(reference, axis=-1)).max())


def _rate(run, systems: int) -> dict:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return {"systems": systems, "seconds": seconds, "systems_per_second": systems / seconds}


def _ours(backend: str, systems: int, rtol: float, variant: str, seed: int) -> dict:
    params, z0 = _systems(systems, seed=seed)
    return _rate(
        lambda: sp.simulate(params, z0, TIMES, variant=variant, rtol=rtol, atol=rtol * 1e-2, backend=backend), systems
    )


def _scipy_rate(systems: int, rtol: float, variant: str, rhs: str) -> dict:
    params, z0 = _systems(systems, seed=3)
    return {"rtol": rtol, "rhs": rhs, **_rate(lambda: _scipy(params, z0, rtol, variant, rhs), systems)}


def simulator(
    systems: int,
    scipy_systems: int,
    check_systems: int,
    rtol: float,
    variant: str,
    torch_systems: int,
    sizes: list[int],
) -> dict:
    """Accuracy of both backends and scipy's ladder against one reference, then throughput at equal accuracy."""
    params, z0 = _systems(check_systems, seed=1)
    reference = _scipy(params, z0, 1e-13, variant)
    start = time.perf_counter()
    # the first compiled call loads (or, after a change of the kernel's source, compiles) the kernel
    first = sp.simulate(params, z0, TIMES, variant=variant, rtol=rtol, atol=rtol * 1e-2, backend="compiled")
    first_call_s = time.perf_counter() - start
    errors = {
        "compiled": _error(first.numpy(), reference),
        "torch": _error(
            sp.simulate(params, z0, TIMES, variant=variant, rtol=rtol, atol=rtol * 1e-2, backend="torch").numpy(),
            reference,
        ),
    }
    ladder = {r: _error(_scipy(params, z0, r, variant), reference) for r in (1e-8, 1e-9, 1e-10, 1e-11, 1e-12)}
    matching = {b: max((r for r, e in ladder.items() if e <= errors[b]), default=min(ladder)) for b in errors}

    ours = {
        "compiled": _ours("compiled", systems, rtol, variant, seed=2),
        "torch": _ours("torch", torch_systems, rtol, variant, seed=2),
    }
    scipy = {r: _scipy_rate(scipy_systems, r, variant, "torch") for r in sorted(set(matching.values()))}
    scipy_numpy = _scipy_rate(scipy_systems, matching["compiled"], variant, "numpy")
    by_size = [_ours("compiled", n, rtol, variant, seed=5) for n in sizes]
    speedup = {b: ours[b]["systems_per_second"] / scipy[matching[b]]["systems_per_second"] for b in ours}
    return {
        "time_units": float(TIMES[-1]),
        "points": len(TIMES),
        "our_rtol": rtol,
        "our_max_relative_error": errors,
        "scipy_error_by_rtol": {str(k): v for k, v in ladder.items()},
        "scipy_rtol_at_equal_accuracy": matching,
        "compiled_first_call_seconds": first_call_s,
        "ours": ours,
        "scipy_loop": {str(r): v for r, v in scipy.items()},
        "scipy_loop_numpy_rhs": scipy_numpy,
        "speedup_at_equal_accuracy": speedup,
        "speedup_compiled_vs_scipy_numpy_rhs": ours["compiled"]["systems_per_second"]
        / scipy_numpy["systems_per_second"],
        "compiled_by_batch_size": by_size,
    }


def integrator_floor(variant: str) -> dict:
    from pipeline.metrics import geometric_mean, relative_error
    from sims.integrate import integrate_fixed
    from sims.pendulum import protocols as pp

    out = {}
    for protocol in pp.PROTOCOLS:
        data = pp.generate(pp.preset(protocol, "quick", variant=variant))
        for split in pp.TEST_SPLITS[protocol]:
            params, truth, times = sp.from_dataset(data[split])
            for substeps in (1, 2):
                predicted = integrate_fixed(
                    lambda t, z, params=params: sp.vector_field(z, params, variant),
                    truth[:, 0],
                    torch.as_tensor(times),
                    substeps=substeps,
                )
                out[f"{protocol}/{split}/rk4x{substeps}"] = geometric_mean(
                    relative_error(predicted.numpy(), truth.numpy())
                )
    return out


@functools.cache
def _training_batch(protocol: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunks (float64, CPU) of the batch shape of ``protocol`` (TRAINING_SHAPES) and their contexts,
    simulated once for every model."""
    batch, chunk = TRAINING_SHAPES[protocol]
    params, z0 = _systems(batch, seed=4)
    return sp.simulate(params, z0, torch.as_tensor(TIMES[:chunk])), pm.theta_of(params)


def _step_function(name: str, protocol: str, dtype: torch.dtype, device: torch.device):
    """One optimizer step (Adam, the rollout loss, one RK4 step per interval) of model ``name`` on the batch
    shape of ``protocol`` (TRAINING_SHAPES), as a closure."""
    chunk = TRAINING_SHAPES[protocol][1]
    times = torch.as_tensor(TIMES[:chunk])
    chunks, contexts = _training_batch(protocol)
    z = chunks.to(device=device, dtype=dtype)
    theta = contexts.to(device=device, dtype=dtype)
    model = pm.build_model(name).to(device=device, dtype=dtype)
    model.fit_inputs(z.reshape(-1, 12), theta.repeat_interleave(chunk, 0))
    loss = pm.chunk_loss(times.to(dtype), substeps=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch_data = {"z": z, "theta": theta}

    def step() -> None:
        optimizer.zero_grad()
        loss(model, batch_data).backward()
        optimizer.step()

    return step


def _steps_per_second(step, steps: int, device: torch.device) -> float:
    for _ in range(2):  # warm-up
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return steps / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training(steps: int, dtype: torch.dtype, device: torch.device) -> dict:
    return {
        f"{protocol}/{name}": _steps_per_second(_step_function(name, protocol, dtype, device), steps, device)
        for protocol in TRAINING_SHAPES
        for name in pm.MODELS
    }


GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def peak_gemm_rate(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Floating-point operations per second of one large square matrix product: the machine's rate at the
    work that dominates a training step, as its BLAS reaches it with the threads torch has."""
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_limit(steps: int, dtype: torch.dtype, device: torch.device, models: tuple[str, ...]) -> dict:
    """Per HNN model at the units protocol's batch shape: the steps per second, the matrix products' work
    per step (counted by torch's profiler, forward and both backward passes), their share of the profiled
    step's CPU time, and the step time that work alone would take at ``peak_gemm_rate``: the most any
    implementation of the same arithmetic could gain on this machine (``max_speedup``)."""
    from torch.profiler import ProfilerActivity, profile

    peak = peak_gemm_rate(dtype, device)
    out: dict = {"peak_gemm_gflops": peak / 1e9, "shape": dict(zip(("chunks", "points"), TRAINING_SHAPES["units"]))}
    for name in models:
        step = _step_function(name, "units", dtype, device)
        rate = _steps_per_second(step, steps, device)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            step()
        events = prof.key_averages()
        flops = sum(e.flops for e in events if e.key in GEMM_OPS)
        gemm_seconds = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / 1e6
        total_seconds = sum(e.self_cpu_time_total for e in events) / 1e6
        out[name] = {
            "steps_per_second": rate,
            "gemm_gflop_per_step": flops / 1e9,
            "gemm_share_of_step": gemm_seconds / total_seconds if device.type == "cpu" else None,
            # with every other operation gone and the products as fast as they are here
            "max_speedup_products_as_they_run": total_seconds / gemm_seconds if device.type == "cpu" else None,
            "gemm_gflops_in_step": flops / gemm_seconds / 1e9 if device.type == "cpu" else None,
            "floor_seconds_per_step": flops / peak,
            "max_speedup": (1 / rate) / (flops / peak),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m surrogates.pendulum.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--systems", type=int, default=2000)
    parser.add_argument("--scipy-systems", type=int, default=50)
    parser.add_argument("--check-systems", type=int, default=8)
    parser.add_argument("--rtol", type=float, default=1e-10)
    parser.add_argument("--variant", choices=sp.VARIANTS, default="reference")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--device", default=None, help="for the training benchmark (default: the best available)")
    parser.add_argument("--torch-systems", type=int, default=None, help="batch of the torch path (default: --systems)")
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[1000, 10000, 100000], help="batches for the compiled throughput"
    )
    parser.add_argument("--skip-simulator", action="store_true")
    parser.add_argument("--skip-floor", action="store_true", help="skip the integrator floor")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument(
        "--training-limit",
        action="store_true",
        help="also the HNNs' training limit at the units protocol's shape (matrix products against the step)",
    )
    parser.add_argument("--out", required=True, help="JSON file for the results")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    result = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch_threads": torch.get_num_threads(),
            "numba_threads": compiled.numba_threads(),
            "device": str(device),
        },
        "args": vars(args),
    }
    if not args.skip_simulator:
        result["simulator"] = simulator(
            args.systems,
            args.scipy_systems,
            args.check_systems,
            args.rtol,
            args.variant,
            args.torch_systems or args.systems,
            args.sizes,
        )
    if not args.skip_floor:
        result["integrator_floor"] = integrator_floor(args.variant)
    if not args.skip_training:
        result["training_steps_per_second"] = {
            str(dtype).removeprefix("torch."): training(args.train_steps, dtype, device)
            for dtype in (torch.float64, torch.float32)
        }
    if args.training_limit:
        result["training_limit"] = {
            str(dtype).removeprefix("torch."): training_limit(args.train_steps, dtype, device, HNN_MODELS)
            for dtype in (torch.float64, torch.float32)
        }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
