"""Halo-scalar throughput beside the machine's limits: ``python -m pipeline.halos.benchmark --out FILE.json``.

Synthetic NFW-like clouds (:func:`synthetic_catalog`, numpy only) of growing size are written to
temporary HDF5 files (plain netCDF, and with ``--engines store`` as the data catalog writes them),
opened lazily and reduced to their invariant scalars (:func:`pipeline.halos.scalars.halo_scalars`'
tasks) on local clusters of 1, 2 ... worker processes and, with ``--threads``, on this process's
threaded scheduler, for each ``--chunk-halos``; every run's scalars are checked against those of the
catalog in memory. Beside them, on the largest catalog (:func:`limits`): the in-memory
moment kernel and the whole in-memory scalars on 1 and 2 threads, a plain numpy pass
``(x * x).sum(1)`` over the same position array, and a plain read of the same three particle
arrays from the same file (h5py, one process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from data_catalog import Catalog, read_dataset_file
from data_catalog.h5read import open_netcdf
from pipeline.cluster import dask_scheduler
from pipeline.halos.scalars import (
    DEFAULT_MIN_PARTICLES,
    G_KPC_KMS2_MSUN,
    HALO_DIM,
    _assemble,
    _tasks,
    halo_scalar_array,
    halo_scalars,
    shell_moment_arrays,
    shell_moments,
)
from pipeline.outputs import output_file_problem
from sims.halos.catalog import HALOS_KIND, catalog_dataset


def synthetic_catalog(n_halos: int, particles_per_halo: int, seed: int = 0) -> xr.Dataset:
    """Random NFW-like halos (numpy only): triaxial clouds out to 1.2 R200m, Gaussian velocities.

    M200m log-uniform in [1e11, 1e13] Msun, R200m for 200 times a mean density of 39.7 Msun/kpc^3,
    concentration 10 (M / 1e12 Msun)^-0.1, axis ratios 1 : 0.8 : 0.6 in a random orientation,
    velocity dispersion 0.6 V per axis around a random bulk velocity, equal particle masses.
    """
    rng = np.random.default_rng(seed)
    M = 10 ** rng.uniform(11, 13, n_halos)
    R = (3 * M / (4 * np.pi * 200 * 39.7)) ** (1 / 3)
    conc = 10 * (M / 1e12) ** -0.1
    grid = np.linspace(0, 1.2, 512)
    n = particles_per_halo
    pos, vel = np.empty((n_halos * n, 3)), np.empty((n_halos * n, 3))
    mass = np.empty(n_halos * n)
    centre = rng.uniform(0, 1e5, (n_halos, 3))
    bulk = rng.normal(0, 300, (n_halos, 3))
    for i in range(n_halos):
        cdf = np.log1p(conc[i] * grid) - conc[i] * grid / (1 + conc[i] * grid)
        r = np.interp(rng.uniform(0, cdf[-1], n), cdf, grid) * R[i]  # NFW by inverse CDF
        u = rng.normal(size=(n, 3))
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        x = (u / np.linalg.norm(u, axis=1, keepdims=True) * r[:, None] * (1.0, 0.8, 0.6)) @ q.T
        V = np.sqrt(G_KPC_KMS2_MSUN * M[i] / R[i])
        rows = slice(i * n, (i + 1) * n)
        pos[rows] = centre[i] + x
        vel[rows] = bulk[i] + rng.normal(0, 0.6 * V, (n, 3))
        mass[rows] = M[i] / max(1, int((np.linalg.norm(x, axis=1) < R[i]).sum()))
    return catalog_dataset(
        {
            "halo_id": np.arange(n_halos),
            "M200m": M,
            "R200m": R,
            "position": centre,
            "velocity": bulk,
            "particle_count": np.full(n_halos, n),
        },
        {"particle_position": pos, "particle_velocity": vel, "particle_mass": mass},
        source_format="synthetic",
        source="pipeline.halos.benchmark",
    )


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux: ``/proc/self/clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _worker_memory_mib() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MiB.

    Linux's VmHWM is per process image (reset by exec and by :func:`_reset_peak_rss`), unlike
    ``getrusage``'s ru_maxrss, which a spawned worker inherits from its parent across exec; the
    latter is the fallback elsewhere (macOS reports it in bytes).
    """
    peak = _status_mib("VmHWM")
    if peak is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = maxrss / (1024**2 if sys.platform == "darwin" else 1024)
    return {"rss": _status_mib("VmRSS") or float("nan"), "peak": peak}


PARTICLE_ARRAYS = ("particle_position", "particle_velocity", "particle_mass")


def _best_rate(n: int, run: Callable[[], Any], repeats: int) -> float:
    """n / (the fastest of ``repeats`` timed calls), after one untimed call."""
    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return n / best


def _in_threads(function: Callable[..., Any], arrays: dict[str, np.ndarray], chunk_halos: int, threads: int) -> None:
    """``function`` over chunks of ``chunk_halos`` halos on ``threads`` threads (the kernel releases the GIL)."""
    counts = arrays["counts"]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pieces = []
    for start in range(0, counts.size, chunk_halos):
        stop = min(start + chunk_halos, counts.size)
        rows = slice(int(offsets[start]), int(offsets[stop]))
        pieces.append(
            {
                **{n: arrays[n][rows] for n in ("position", "velocity", "mass")},
                **{n: arrays[n][start:stop] for n in ("counts", "centre", "M200m", "R200m")},
            }
        )
    if threads == 1:
        for piece in pieces:
            function(**piece)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda piece: function(**piece), pieces))


def limits(ds: xr.Dataset, path: str | Path, *, chunk_halos: int = 256, repeats: int = 3) -> dict[str, Any]:
    """Particles per second of the in-memory kernel and of the machine's limits on the same arrays.

    ``ds``: the catalog in memory; ``path``: the same catalog as an HDF5 file. In memory, on 1 and 2
    threads (chunks of ``chunk_halos`` halos): the moment kernel (:func:`shell_moments`), the whole
    scalars (:func:`halo_scalar_array`, moments and eigenvalues and contractions); the plain numpy
    pass ``(x * x).sum(1)`` over the positions; and a plain read of the three particle arrays from
    ``path`` with h5py (one process; the file is in the page cache, as for the end-to-end runs).
    Each is the fastest of ``repeats`` after a warm-up.
    """
    import h5py

    arrays = shell_moment_arrays(ds)
    n = int(arrays["mass"].size)
    x = arrays["position"]

    def read() -> None:
        with h5py.File(path, "r") as f:
            for name in PARTICLE_ARRAYS:
                f[name][...]

    def all_scalars(**piece: np.ndarray) -> Any:
        return halo_scalar_array(**piece, too_few="mark")

    out: dict[str, Any] = {"particles": n, "chunk_halos": chunk_halos, "repeats": repeats}
    for threads in (1, 2):
        out[f"moments_kernel_{threads}_threads"] = _best_rate(
            n, lambda t=threads: _in_threads(shell_moments, arrays, chunk_halos, t), repeats
        )
        out[f"scalars_in_memory_{threads}_threads"] = _best_rate(
            n, lambda t=threads: _in_threads(all_scalars, arrays, chunk_halos, t), repeats
        )
    out["numpy_xx_sum_1_thread"] = _best_rate(n, lambda: (x * x).sum(1), repeats)
    out["plain_read_h5py_1_process"] = _best_rate(n, read, repeats)
    return out


# the readers of a catalog file the benchmark compares: "store" is the file the data catalog writes,
# opened as the flows open a version (dask chunks as stored); the others read a plain netCDF file
OPENERS = {
    "catalog": lambda path, chunks: open_netcdf(path, chunks=chunks),
    "h5netcdf": lambda path, chunks: xr.open_dataset(path, engine="h5netcdf", chunks=chunks),
    "store": lambda path, chunks: read_dataset_file(path),
}


def throughput(
    n_halos: int = 200,
    particles_per_halo: int = 2000,
    *,
    scales: Sequence[int] = (1, 2, 4),
    workers: Sequence[int] = (1, 2),
    threads: bool = False,
    chunk_halos: int | Sequence[int] = 256,
    seed: int = 0,
    repeats: int = 3,
    with_limits: bool = True,
    particle_chunk: int | None = None,
    engines: Sequence[str] = ("catalog",),
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Particles per second and the workers' peak memory, for catalogs of ``scale * n_halos`` halos.

    Each catalog is written to a temporary HDF5 file and opened lazily, as a real one would be, so
    the workers read their chunks from disk: without dask chunks (each task reads its own rows), or
    with dask chunks of ``particle_chunk`` particles. Per worker count one local cluster runs a warm-up and
    then the scales in increasing order; with ``threads``, so does this process's threaded scheduler
    (the flows' default). Each worker's peak RSS during each run (Linux: VmHWM,
    reset before the run; elsewhere the lifetime peak) shows whether memory grows with the
    catalog (it should not: a task holds one block of rows). Each (scheduler, chunk_halos, scale) is
    run ``repeats`` times; ``particles_per_second`` is the best, and ``same_as_in_memory`` says whether
    its scalars equal those of the catalog held in memory. ``engines`` are the readers of the file,
    each timed in the same run (:data:`OPENERS`). With ``with_limits``, ``limits``
    holds :func:`limits` on the largest catalog.
    Writes JSON to ``out`` when given and returns the report.
    """
    chunk_sizes = [chunk_halos] if isinstance(chunk_halos, int) else list(chunk_halos)
    report: dict[str, Any] = {
        "benchmark": "pipeline.halos.benchmark",
        "n_halos": n_halos,
        "particles_per_halo": particles_per_halo,
        "chunk_halos": chunk_sizes,
        "scales": list(scales),
        "repeats": repeats,
        # None: no dask chunks, each task reads its own rows (the fast path); else dask chunks of particles
        "open_chunks": None if particle_chunk is None else {"particle": particle_chunk},
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": [],
    }
    schedulers: list[tuple[str, int]] = [("local", n) for n in workers] + ([("threads", 0)] if threads else [])
    with tempfile.TemporaryDirectory(prefix="halo-scalars-bench-") as tmp:
        paths: dict[tuple[str, int], Path] = {}
        expected = {}
        store = Catalog(Path(tmp) / "catalog")
        for scale in [0, *scales]:  # scale 0: a small warm-up catalog
            path = Path(tmp) / f"catalog_{scale}.nc"
            catalog = synthetic_catalog(max(min(chunk_sizes), n_halos * scale), particles_per_halo, seed + scale)
            catalog.to_netcdf(path, engine="h5netcdf")
            for engine in engines:
                paths[engine, scale] = path
            if "store" in engines:
                paths["store", scale] = store.path_of(store.write(catalog, f"halos-{scale}", kind=HALOS_KIND))
            expected[scale] = halo_scalars(catalog, dask_address="synchronous")["scalars"].values
            if with_limits and scale == max(scales):
                report["limits"] = limits(catalog, path, chunk_halos=max(chunk_sizes), repeats=repeats)
            del catalog
        for kind, n_workers in schedulers:
            with dask_scheduler(kind, n_workers=n_workers or None) as where:
                probe = _Probe(kind)
                for engine in engines:
                    for chunk in chunk_sizes:
                        for scale in [0, *scales]:
                            count = repeats if scale else 1
                            _run(report, probe, where, paths[engine, scale], scale, chunk, n_workers, count, engine,
                                 expected[scale])  # fmt: skip
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=2))
    return report


class _Probe:
    """The memory of the processes that run the tasks: a local cluster's workers, or this process."""

    def __init__(self, kind: str) -> None:
        from distributed import get_client

        self.client = get_client() if kind == "local" else None

    def memory(self) -> dict[str, dict[str, float]]:
        return self.client.run(_worker_memory_mib) if self.client else {"this process": _worker_memory_mib()}

    def reset(self) -> bool:
        return all(self.client.run(_reset_peak_rss).values()) if self.client else _reset_peak_rss()


def _run(
    report: dict[str, Any],
    probe: _Probe,
    where: str,
    path: Path,
    scale: int,
    chunk: int,
    n_workers: int,
    repeats: int,
    engine: str,
    expected: np.ndarray,
) -> None:
    """End to end from the file: plan the tasks, compute them, assemble; the best of ``repeats``."""
    seconds = []
    for _ in range(repeats):
        with OPENERS[engine](path, chunks=report["open_chunks"]) as ds:
            n_particles = ds.sizes["particle"]
            before = probe.memory()
            reset = probe.reset()
            # planning included, connecting to the cluster not (it is per catalog, not per particle)
            t0 = time.perf_counter()
            tasks, ids = _tasks(ds, chunk, DEFAULT_MIN_PARTICLES, "raise")
            result = _assemble(dask.compute(*tasks), ids, DEFAULT_MIN_PARTICLES)
            seconds.append(time.perf_counter() - t0)
    if scale == 0:
        return
    after = probe.memory()
    report["runs"].append(
        {
            "workers": n_workers or "threads",
            "engine": engine,
            "scheduler": where,
            "chunk_halos": chunk,
            "scale": scale,
            "halos": int(result.sizes[HALO_DIM]),
            "particles": int(n_particles),
            "seconds": min(seconds),
            "seconds_all": seconds,
            "particles_per_second": n_particles / min(seconds),
            "same_as_in_memory": bool(np.array_equal(result["scalars"].values, expected, equal_nan=True)),
            "worker_rss_before_mib": [before[w]["rss"] for w in sorted(before)],
            "worker_peak_rss_mib": [after[w]["peak"] for w in sorted(after)],
            "worker_peak_above_before_mib": [after[w]["peak"] - before[w]["rss"] for w in sorted(after)],
            "peak_is_per_run": reset,
            "chunk_particle_mib": chunk * report["particles_per_halo"] * 7 * 8 / 2**20,
        }
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.halos.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--halos", type=int, default=200, help="halos of the 1x catalog")
    parser.add_argument("--particles", type=int, default=2000, help="particles per halo")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="catalog sizes, in units of --halos")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local-cluster worker processes")
    parser.add_argument(
        "--threads", action="store_true", help="also this process's threaded scheduler (the flows' default)"
    )
    parser.add_argument("--chunk-halos", type=int, nargs="+", default=[256], help="halos per dask task (each is run)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (the best is kept)")
    parser.add_argument("--no-limits", action="store_true", help="skip the in-memory kernel and the limits")
    parser.add_argument(
        "--particle-chunk", type=int, default=None, help="open the files with dask chunks of this many particles"
    )
    parser.add_argument(
        "--engines", nargs="+", choices=sorted(OPENERS), default=["catalog"], help="readers of the file, side by side"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="halo_scalars_benchmark.json", help="JSON report path")
    args = parser.parse_args(argv)
    why = output_file_problem(args.out)
    if why:
        parser.error(f"--out {args.out}: {why}")
    report = throughput(
        args.halos,
        args.particles,
        scales=args.scales,
        workers=args.workers,
        threads=args.threads,
        chunk_halos=args.chunk_halos,
        seed=args.seed,
        repeats=args.repeats,
        with_limits=not args.no_limits,
        particle_chunk=args.particle_chunk,
        engines=args.engines,
        out=args.out,
    )
    for run in report["runs"]:
        where = "threaded scheduler" if run["workers"] == "threads" else f"{run['workers']} worker(s)"
        same = "" if run["same_as_in_memory"] else " NOT EQUAL TO THE IN-MEMORY SCALARS"
        print(
            f"end to end from file ({run['engine']}), {where}, {run['chunk_halos']} halos/task, "
            f"{run['halos']:>6} halos, {run['particles']:>9} particles: "
            f"{run['particles_per_second']:.3g} particles/s, worker peak RSS "
            f"{', '.join(f'{p:.1f}' for p in run['worker_peak_rss_mib'])} MiB (above the RSS before the run: "
            f"{', '.join(f'{p:.1f}' for p in run['worker_peak_above_before_mib'])} MiB){same}"
        )
    if "limits" in report:
        lim = report["limits"]
        best = {}
        for run in report["runs"]:
            if run["scale"] == max(args.scales):
                key = str(run["workers"])
                best[key] = max(best.get(key, 0.0), run["particles_per_second"])
        print(f"ours beside the limits, {lim['particles']} particles (particles/s):")
        rows = [
            ("moment kernel, in memory, 1 thread", lim["moments_kernel_1_threads"]),
            ("moment kernel, in memory, 2 threads", lim["moments_kernel_2_threads"]),
            ("all scalars, in memory, 1 thread", lim["scalars_in_memory_1_threads"]),
            ("all scalars, in memory, 2 threads", lim["scalars_in_memory_2_threads"]),
            *((f"all scalars, end to end from file, {_label(w)}, best", r) for w, r in sorted(best.items())),
            ("limit: numpy (x * x).sum(1) over the positions, 1 thread", lim["numpy_xx_sum_1_thread"]),
            ("limit: plain h5py read of the 3 particle arrays, 1 process", lim["plain_read_h5py_1_process"]),
        ]
        for label, rate in rows:
            print(f"  {label:<62} {rate / 1e6:8.2f} M")
        for key in ("2", "threads"):
            if key in best:
                print(f"  end to end ({_label(key)}) / plain read: {best[key] / lim['plain_read_h5py_1_process']:.2f}")
    print(f"wrote {args.out}")
    return report


def _label(workers: str) -> str:
    return "threaded scheduler" if workers == "threads" else f"{workers} worker(s)"


if __name__ == "__main__":
    main()
