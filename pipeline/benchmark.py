"""Feature-extraction throughput: ``python -m pipeline.benchmark --out FILE.json``.

Writes a synthetic dataset in the layout of the spring-pendulum declaration (random parameters,
states and energies: the arithmetic is the same as for real trajectories) to a temporary catalog,
then times ``extract(...).compute()`` reading it back, on three schedulers:

- ``single-thread``: dask's synchronous scheduler;
- ``threads``: the threaded scheduler with ``--threads`` workers;
- ``local-cluster``: a ``distributed`` LocalCluster of ``--processes`` worker processes (1 thread
  each), started before the clock starts (its start-up time is reported separately).

Throughput is output scalars per second (every value of every output variable: invariant scalars,
Pi groups, target scales and dimensionless targets), best of ``--repeats`` runs; once with every
value brought back to the calling process (what writing features to the catalog needs) and once
with each variable summed where it was computed (the arithmetic and reading alone).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import dask
import numpy as np
import xarray as xr

from data_catalog import Catalog, DatasetSchema, register_schema, registered_kinds
from pipeline.features import extract
from sims.declaration import Kind, Role, find_system

RAW_KIND = "spring_pendulum.raw"


def synthetic_pendulum(n_samples: int, n_steps: int, seed: int = 0) -> xr.Dataset:
    """Random values in the pendulum declaration's layout (sample, time, space)."""
    decl = find_system("spring_pendulum")
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for q in decl.quantities:
        if q.kind is Kind.SCALAR and q.role is Role.PARAMETER:
            data[q.name] = ("sample", rng.uniform(1, 2, n_samples), {"units": q.units})
        elif q.is_vector and q.role is Role.PARAMETER:
            data[q.name] = (("sample", "space"), rng.normal(size=(n_samples, 3)), {"units": q.units})
        elif q.is_vector:
            data[q.name] = (("sample", "time", "space"), rng.normal(size=(n_samples, n_steps, 3)), {"units": q.units})
        else:
            data[q.name] = (("sample", "time"), rng.uniform(1, 3, (n_samples, n_steps)), {"units": q.units})
    return xr.Dataset(data)


def _best_time(run: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="eqs bench features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if RAW_KIND not in registered_kinds():
        register_schema(DatasetSchema(kind=RAW_KIND, description="synthetic pendulum states for the benchmark"))
    decl = find_system("spring_pendulum")
    results: dict[str, Any] = {
        "command": "python -m pipeline.benchmark " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "samples": args.samples,
        "steps": args.steps,
        "chunk_size": args.chunk_size,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="eqs-bench-") as tmp:
        catalog = Catalog(Path(tmp) / "catalog")
        ref = catalog.write(synthetic_pendulum(args.samples, args.steps), "bench", kind=RAW_KIND)
        results["input_bytes"] = catalog.info(ref).size_bytes

        def compute() -> xr.Dataset:
            return extract(catalog.open(ref), decl, chunk_size=args.chunk_size).compute()

        def compute_reduced() -> xr.Dataset:
            # the same work, but only per-variable sums travel back: separates transfer from compute
            return extract(catalog.open(ref), decl, chunk_size=args.chunk_size).sum().compute()

        with dask.config.set(scheduler="synchronous"):
            sample = compute()
        n_scalars = int(sum(v.size for v in sample.data_vars.values()))
        results["output_scalars"] = n_scalars

        def record(name: str, **extra: Any) -> None:
            full = _best_time(compute, args.repeats)
            reduced = _best_time(compute_reduced, args.repeats)
            results["runs"][name] = {
                "seconds": full,
                "scalars_per_second": n_scalars / full,
                "seconds_results_reduced_on_workers": reduced,
                "scalars_per_second_results_reduced_on_workers": n_scalars / reduced,
                **extra,
            }
            print(
                f"{name:>14}: {full:7.3f} s {n_scalars / full:10.3g} scalars/s;"
                f" reduced on workers {reduced:7.3f} s {n_scalars / reduced:10.3g} scalars/s",
                flush=True,
            )

        with dask.config.set(scheduler="synchronous"):
            record("single-thread")
        with dask.config.set(scheduler="threads", num_workers=args.threads):
            record("threads", workers=args.threads)
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.processes, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
        ):
            startup = time.perf_counter() - start
            record("local-cluster", workers=args.processes, startup_seconds=startup)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
