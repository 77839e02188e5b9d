"""Time and peak memory of :func:`sims.halos.snapshot.attach_snapshot_particles` on a large synthetic snapshot.

``python -m sims.halos.snapshot_benchmark --particles N --halos H --out FILE.json`` writes, streaming (a
block of particles at a time), a Gadget-HDF5 snapshot of N dark-matter particles in ``--files`` files
(float32 ``Coordinates`` in comoving kpc/h and ``Velocities`` in km sqrt(a)/s, uint64 ``ParticleIDs``,
``MassTable[1]``: 32 bytes a particle) and a canonical catalog of H halos without particles; then
attaches the particles and writes, as JSON, the wall time, particles per second and the peak resident
memory beside the snapshot's size on disk. The snapshot and the catalog are deleted at the end
(``--keep`` keeps them).

The synthetic box: 100 Mpc/h at z = 0, h = 0.6774, Omega_m = 0.31, so the particle mass follows from N.
H halos at uniform random centres (several near the faces, so periodic wrapping matters) hold
``--halo-fraction`` of the particles, their counts drawn from dN/dn ~ n^-2; each halo's R200m is that of
200 times the mean matter density for its count, 90 % of its particles lie within R200m (density ~ 1/r),
10 % between R200m and 1.5 R200m; the rest of the particles are a uniform background. Halos are written
one after the other, then the background, in blocks of whole halos.

Writing, and attaching, each run in a process of their own (``--phase write`` / ``--phase attach``),
so that the peak RSS reported for the attachment (``resource.getrusage``: ``RUSAGE_SELF`` of its
process, ``RUSAGE_CHILDREN`` the largest of its slab workers) holds no memory of the writing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

H = 0.6774
OMEGA_M = 0.31
RHO_CRIT = 277.536627  # h^2 Msun kpc^-3: (Msun/h) / (kpc/h)^3
BOX = 100_000.0  # kpc/h, comoving
G = 4.300917270e-6  # kpc (km/s)^2 / Msun
BLOCK = 2**21  # particles generated and written at a time
_ODD = np.uint64(0x9E3779B97F4A7C15)  # IDs: row x this odd number mod 2^64, a bijection that scrambles the order


def _halos(n_particles: int, n_halos: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Counts, centres (kpc/h), R200m (kpc/h) and bulk velocities of the halos."""
    rng = np.random.default_rng([seed, 0])
    raw = 1.0 / rng.uniform(1.0 / 2e5, 1.0 / 200.0, n_halos)  # dN/dn ~ n^-2 between 200 and 2e5
    counts = np.maximum(1, np.floor(raw * fraction * n_particles / raw.sum())).astype(np.int64)
    particle_mass = OMEGA_M * RHO_CRIT * BOX**3 / n_particles  # Msun/h
    mass = counts / 0.9 * particle_mass  # 90 % of a halo's particles lie within R200m
    radius = np.cbrt(3.0 * mass / (4.0 * np.pi * 200.0 * OMEGA_M * RHO_CRIT))
    centres = rng.uniform(0.0, BOX, (n_halos, 3))
    edge = rng.choice(n_halos, size=max(1, n_halos // 50), replace=False)  # 2 % of halos straddle a face
    centres[edge, 0] = rng.uniform(-0.5, 0.5, edge.size) * radius[edge] % BOX
    return {
        "count": counts,
        "mass": mass,
        "radius": radius,
        "centre": centres,
        "velocity": rng.normal(0.0, 300.0, (n_halos, 3)),
        "particle_mass": np.array(particle_mass),
    }


def _halo_block(halos: dict[str, np.ndarray], first: int, last: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (kpc/h, wrapped) and velocities (km/s) of the particles of halos first..last - 1."""
    rng = np.random.default_rng([seed, 1, first])
    counts = halos["count"][first:last]
    owner = np.repeat(np.arange(first, last), counts)
    n = owner.size
    radius = halos["radius"][owner]
    outer = rng.random(n) < 0.1
    r = np.where(outer, radius * rng.uniform(1.0, 1.5, n), radius * np.sqrt(rng.random(n)))
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    pos = np.mod(halos["centre"][owner] + r[:, None] * direction, BOX)
    sigma = np.sqrt(G * halos["mass"][owner] / H / (2.0 * radius / H))
    vel = halos["velocity"][owner] + sigma[:, None] * rng.normal(size=(n, 3))
    return pos, vel


def _blocks(halos: dict[str, np.ndarray], n_particles: int, seed: int):
    """Blocks of (positions, velocities): whole halos, then the uniform background."""
    ends = np.cumsum(halos["count"])
    first = 0
    while first < ends.size:
        last = max(first + 1, int(np.searchsorted(ends, (ends[first - 1] if first else 0) + BLOCK, side="right")))
        yield _halo_block(halos, first, last, seed)
        first = last
    rest = n_particles - int(ends[-1])
    for start in range(0, rest, BLOCK):
        n = min(BLOCK, rest - start)
        rng = np.random.default_rng([seed, 2, start])
        yield rng.uniform(0.0, BOX, (n, 3)), rng.normal(0.0, 300.0, (n, 3))


def write_snapshot(folder: Path, n_particles: int, n_halos: int, n_files: int, fraction: float, seed: int) -> dict:
    """The snapshot ``folder/snap_000.<i>.hdf5`` and the catalog ``folder/halos.h5``; their sizes."""
    from sims.halos.catalog import catalog_dataset
    from sims.halos.readers import write_canonical

    halos = _halos(n_particles, n_halos, fraction, seed)
    if int(halos["count"].sum()) > n_particles:
        raise ValueError(f"{n_halos} halos need {int(halos['count'].sum())} particles; give more --particles")
    mass_table = float(halos["particle_mass"]) / 1e10
    edges = np.linspace(0, n_particles, n_files + 1).astype(np.int64)
    paths = [folder / f"snap_000.{k}.hdf5" for k in range(n_files)]
    handles = []
    for k, path in enumerate(paths):
        f = h5py.File(path, "w")
        n = int(edges[k + 1] - edges[k])
        header = f.create_group("Header")
        header.attrs.update(
            {
                "NumPart_ThisFile": np.array([0, n, 0, 0, 0, 0], dtype=np.uint32),
                "NumPart_Total": np.array([0, n_particles % 2**32, 0, 0, 0, 0], dtype=np.uint32),
                "NumPart_Total_HighWord": np.array([0, n_particles >> 32, 0, 0, 0, 0], dtype=np.uint32),
                "NumFilesPerSnapshot": n_files,
                "MassTable": np.array([0.0, mass_table, 0.0, 0.0, 0.0, 0.0]),
                "Time": 1.0,
                "Redshift": 0.0,
                "BoxSize": BOX,
                "HubbleParam": H,
                "Omega0": OMEGA_M,
            }
        )
        part = f.create_group("PartType1")
        part.create_dataset("Coordinates", shape=(n, 3), dtype=np.float32)
        part.create_dataset("Velocities", shape=(n, 3), dtype=np.float32)
        part.create_dataset("ParticleIDs", shape=(n,), dtype=np.uint64)
        handles.append(f)
    try:
        row = 0
        for pos, vel in _blocks(halos, n_particles, seed):
            ids = np.arange(row, row + pos.shape[0], dtype=np.uint64) * _ODD
            pos32 = pos.astype(np.float32)
            pos32[pos32 >= BOX] = 0.0  # float32 rounding up to the box edge
            done = 0
            while done < pos.shape[0]:
                k = int(np.searchsorted(edges, row, side="right")) - 1
                take = min(pos.shape[0] - done, int(edges[k + 1]) - row)
                local = slice(row - int(edges[k]), row - int(edges[k]) + take)
                part = handles[k]["PartType1"]
                part["Coordinates"][local] = pos32[done : done + take]
                part["Velocities"][local] = vel[done : done + take].astype(np.float32)
                part["ParticleIDs"][local] = ids[done : done + take]
                row += take
                done += take
        if row != n_particles:
            raise RuntimeError(f"wrote {row} particles, expected {n_particles}")
    finally:
        for f in handles:
            f.close()
    n_chunk = 4096
    chunks = (
        catalog_dataset(
            {
                "halo_id": np.arange(i, min(i + n_chunk, n_halos)) + 1000,
                "M200m": halos["mass"][i : i + n_chunk] / H,
                "R200m": halos["radius"][i : i + n_chunk] / H,
                "position": halos["centre"][i : i + n_chunk] / H,
                "velocity": halos["velocity"][i : i + n_chunk],
            },
            None,
            source_format="synthetic",
            redshift=0.0,
            hubble=H,
            box_size_kpc=BOX / H,
            source="benchmark halos",
        )
        for i in range(0, n_halos, n_chunk)
    )
    write_canonical(chunks, folder / "halos.h5")
    return {
        "snapshot_bytes": sum(p.stat().st_size for p in paths),
        "snapshot_files": n_files,
        "halo_particles_written": int(halos["count"].sum()),
        "particle_mass_msun": mass_table * 1e10 / H,
    }


def _peak_rss_mb() -> dict[str, float]:
    # Linux reports ru_maxrss in KiB
    return {
        "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def attach(folder: Path, chunk_particles: int | None, workers: int | None) -> dict[str, Any]:
    """Attach the particles of ``folder``'s snapshot to its catalog; time, counts and peak memory."""
    from sims.halos.readers import iter_hdf5
    from sims.halos.snapshot import (
        DEFAULT_CHUNK_PARTICLES,
        attach_snapshot_particles,
        read_snapshot_header,
    )

    header = read_snapshot_header(folder / "snap_000.0.hdf5")
    kwargs: dict[str, Any] = {"chunk_particles": chunk_particles or DEFAULT_CHUNK_PARTICLES, "scratch": folder}
    if workers:
        kwargs["workers"] = workers
    start = time.perf_counter()
    first = after_pass_one = None
    n_chunks = n_halos = n_pairs = 0
    largest = 0
    for chunk in attach_snapshot_particles(iter_hdf5(folder / "halos.h5"), header, **kwargs):
        if first is None:  # pass 1 (the slabs) is over when the first chunk comes
            first = time.perf_counter() - start
            after_pass_one = _peak_rss_mb()["peak_rss_self_mb"]
        n_chunks += 1
        n_halos += chunk.sizes["halo"]
        n_pairs += chunk.sizes["particle"]
        largest = max(largest, chunk.sizes["particle"])
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "first_chunk_s": first,
        "peak_rss_self_after_slabs_mb": after_pass_one,
        "particles_per_s": header.n_particles / wall,
        "halos_out": n_halos,
        "halo_particle_pairs": n_pairs,
        "chunks": n_chunks,
        "largest_chunk_particles": largest,
        "chunk_particles": kwargs["chunk_particles"],
        "workers": workers or len(os.sched_getaffinity(0)),
        **_peak_rss_mb(),
    }


def _phase(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "sims.halos.snapshot_benchmark", "--phase", phase, "--dir", str(args.dir)]
    command += ["--particles", str(args.particles), "--halos", str(args.halos), "--files", str(args.files)]
    command += ["--halo-fraction", str(args.halo_fraction), "--seed", str(args.seed)]
    if args.chunk_particles:
        command += ["--chunk-particles", str(args.chunk_particles)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sims.halos.snapshot_benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, required=True, help="dark-matter particles in the snapshot")
    parser.add_argument("--halos", type=int, required=True, help="halos in the catalog")
    parser.add_argument("--out", type=Path, help="the JSON report (required unless --phase is given)")
    parser.add_argument("--files", type=int, default=4, help="files of the snapshot (default 4)")
    parser.add_argument("--halo-fraction", type=float, default=0.4, help="fraction of particles in halos (0.4)")
    parser.add_argument("--chunk-particles", type=int, default=None, help="slab rows and particles per chunk")
    parser.add_argument("--workers", type=int, default=None, help="slab worker processes (default: the cores)")
    parser.add_argument("--dir", type=Path, default=None, help="where the snapshot goes (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the snapshot and the catalog")
    parser.add_argument("--phase", choices=("write", "attach"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "write":
        args.dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        result = write_snapshot(args.dir, args.particles, args.halos, args.files, args.halo_fraction, args.seed)
        print(json.dumps({**result, "write_s": time.perf_counter() - start, **_peak_rss_mb()}))
        return 0
    if args.phase == "attach":
        print(json.dumps(attach(args.dir, args.chunk_particles, args.workers)))
        return 0
    if args.out is None:
        parser.error("--out is required")
    made = args.dir is None
    args.dir = Path(tempfile.mkdtemp(prefix="eqs-snapshot-benchmark-")) if made else args.dir
    try:
        written = _phase(args, "write")
        attached = _phase(args, "attach")
    finally:
        if not args.keep:
            for name in [f"snap_000.{k}.hdf5" for k in range(args.files)] + ["halos.h5"]:
                (args.dir / name).unlink(missing_ok=True)
            if made:
                shutil.rmtree(args.dir, ignore_errors=True)
    report = {
        "particles": args.particles,
        "halos": args.halos,
        "snapshot_gb_on_disk": written["snapshot_bytes"] / 1e9,
        "write": written,
        "attach": attached,
        "machine": {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0))},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
