"""Halo-scalar throughput and the workers' peak memory: ``python -m pipeline.halos.benchmark --out FILE.json``.

Synthetic NFW-like clouds (:func:`synthetic_catalog`, numpy only) of growing size are written to
temporary HDF5 files, opened lazily and reduced to their invariant scalars
(:func:`pipeline.halos.scalars.halo_scalars`' tasks) on local clusters of 1, 2 ... worker processes.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from pipeline.cluster import dask_scheduler
from pipeline.halos.scalars import DEFAULT_MIN_PARTICLES, G_KPC_KMS2_MSUN, HALO_DIM, _assemble, _tasks
from sims.halos.catalog import catalog_dataset


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


def throughput(
    n_halos: int = 200,
    particles_per_halo: int = 2000,
    *,
    scales: Sequence[int] = (1, 2, 4),
    workers: Sequence[int] = (1, 2),
    chunk_halos: int = 16,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Particles per second and the workers' peak memory, for catalogs of ``scale * n_halos`` halos.

    Each catalog is written to a temporary HDF5 file and opened lazily, as a real one would be, so
    the workers read their chunks from disk. Per worker count one local cluster runs a warm-up and
    then the scales in increasing order. Each worker's peak RSS during each run (Linux: VmHWM,
    reset before the run; elsewhere the lifetime peak) shows whether memory grows with the
    catalog (it should not: a task holds one chunk of halos).
    Writes JSON to ``out`` when given and returns the report.
    """
    from distributed import get_client

    report: dict[str, Any] = {
        "benchmark": "pipeline.halos.benchmark",
        "n_halos": n_halos,
        "particles_per_halo": particles_per_halo,
        "chunk_halos": chunk_halos,
        "scales": list(scales),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="halo-scalars-bench-") as tmp:
        paths = {}
        for scale in [0, *scales]:  # scale 0: a small warm-up catalog
            path = Path(tmp) / f"catalog_{scale}.nc"
            synthetic_catalog(max(chunk_halos, n_halos * scale), particles_per_halo, seed + scale).to_netcdf(
                path, engine="h5netcdf"
            )
            paths[scale] = path
        for n_workers in workers:
            with dask_scheduler("local", n_workers=n_workers) as where:
                client = get_client()
                for scale in [0, *scales]:
                    with xr.open_dataset(paths[scale], engine="h5netcdf", chunks={"particle": 1_000_000}) as ds:
                        n_particles = ds.sizes["particle"]
                        before = client.run(_worker_memory_mib)
                        reset = all(client.run(_reset_peak_rss).values())
                        # planning included, connecting to the cluster not (it is per catalog, not per particle)
                        t0 = time.perf_counter()
                        tasks, ids = _tasks(ds, chunk_halos, DEFAULT_MIN_PARTICLES, "raise")
                        result = _assemble(dask.compute(*tasks), ids, DEFAULT_MIN_PARTICLES)
                        seconds = time.perf_counter() - t0
                    if scale == 0:
                        continue
                    after = client.run(_worker_memory_mib)
                    report["runs"].append(
                        {
                            "workers": n_workers,
                            "scheduler": where,
                            "scale": scale,
                            "halos": int(result.sizes[HALO_DIM]),
                            "particles": int(n_particles),
                            "seconds": seconds,
                            "particles_per_second": n_particles / seconds,
                            "worker_rss_before_mib": [before[w]["rss"] for w in sorted(before)],
                            "worker_peak_rss_mib": [after[w]["peak"] for w in sorted(after)],
                            "worker_peak_above_before_mib": [
                                after[w]["peak"] - before[w]["rss"] for w in sorted(after)
                            ],
                            "peak_is_per_run": reset,
                            "chunk_particle_mib": chunk_halos * particles_per_halo * 7 * 8 / 2**20,
                        }
                    )
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m pipeline.halos.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--halos", type=int, default=200, help="halos of the 1x catalog")
    parser.add_argument("--particles", type=int, default=2000, help="particles per halo")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4], help="catalog sizes, in units of --halos")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local-cluster worker processes")
    parser.add_argument("--chunk-halos", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="halo_scalars_benchmark.json", help="JSON report path")
    args = parser.parse_args(argv)
    report = throughput(
        args.halos,
        args.particles,
        scales=args.scales,
        workers=args.workers,
        chunk_halos=args.chunk_halos,
        seed=args.seed,
        out=args.out,
    )
    for run in report["runs"]:
        print(
            f"{run['workers']} worker(s), {run['halos']:>6} halos, {run['particles']:>9} particles: "
            f"{run['particles_per_second']:.3g} particles/s, worker peak RSS "
            f"{', '.join(f'{p:.1f}' for p in run['worker_peak_rss_mib'])} MiB (above the RSS before the run: "
            f"{', '.join(f'{p:.1f}' for p in run['worker_peak_above_before_mib'])} MiB)"
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
