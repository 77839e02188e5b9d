"""Throughput of the catalog's write, deduplicated write, read and verify, written to a JSON file.

    python -m data_catalog.benchmark --sizes-mb 16 256 --small-files 100 --out catalog-bench.json

Each size is one float64 dataset of random values written to a fresh temporary catalog; times are wall-clock seconds of the best of ``--repeat``.
With ``--small-files N``, N small datasets of the shape the flows write (20 variables of a few
hundred values, a string coordinate, attributes) are opened and loaded through the catalog's reader
and through xarray's h5netcdf engine, side by side, and verified.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr

from .schema import DatasetSchema, VariableSpec, register_schema
from .store import Catalog
from .version import code_version

BENCH_KIND = "benchmark.random"

register_schema(
    DatasetSchema(
        kind=BENCH_KIND,
        description="random values for the catalog benchmark",
        variables={"values": VariableSpec(dims=("row", "col"), units="1", dtype="float")},
    )
)


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _small_dataset(rng: np.random.Generator, rows: int = 300, variables: int = 20) -> xr.Dataset:
    data = {f"v{i}": (("row",), rng.random(rows), {"units": "1", "long_name": f"value {i}"}) for i in range(variables)}
    data["values"] = (("row", "col"), rng.random((rows, 3)), {"units": "1"})
    coords = {"label": ("row", np.array([f"row-{i}" for i in range(rows)])), "col": ["x", "y", "z"]}
    return xr.Dataset(data, coords=coords, attrs={"comment": "benchmark", "scales": [1.0, 2.0]})


def small_files(n: int, repeat: int = 3, seed: int = 0) -> dict:
    """Open and load ``n`` small versions: the catalog's reader against the h5netcdf engine."""
    from .h5read import AS_STORED
    from .store import read_dataset_file

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="eqs-bench-") as root:
        catalog = Catalog(root)
        paths = [catalog.path_of(catalog.write(_small_dataset(rng), f"small-{i}", kind=BENCH_KIND)) for i in range(n)]

        def load_all(opener: Callable[[Path], xr.Dataset]) -> None:
            for path in paths:
                with opener(path) as ds:
                    ds.load()

        ours = _best(lambda: load_all(lambda p: read_dataset_file(p, lazy=False)), repeat)
        peer = _best(lambda: load_all(lambda p: xr.open_dataset(p, engine="h5netcdf", **AS_STORED)), repeat)
        verify = _best(catalog.verify, repeat)
    return {
        "files": n,
        "catalog_reader_ms_per_file": round(1e3 * ours / n, 2),
        "h5netcdf_engine_ms_per_file": round(1e3 * peer / n, 2),
        "speedup": round(peer / ours, 2),
        "verify_ms_per_file": round(1e3 * verify / n, 2),
    }


def run(sizes_mb: list[float], repeat: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes_mb:
        n_rows = max(1, int(size * 2**20 / 8 / 1024))
        with tempfile.TemporaryDirectory(prefix="eqs-bench-") as root:
            catalog = Catalog(root)
            datasets = [
                xr.Dataset({"values": (("row", "col"), rng.random((n_rows, 1024)), {"units": "1"})})
                for _ in range(repeat)
            ]
            pending = iter(datasets)
            write = _best(lambda: catalog.write(next(pending), "bench", kind=BENCH_KIND), repeat)
            dedupe = _best(lambda: catalog.write(datasets[0], "bench", kind=BENCH_KIND), repeat)
            read = _best(lambda: catalog.open("bench@v1")["values"].values, repeat)
            verify = _best(lambda: catalog.verify("bench@v1"), repeat)
            file_mb = catalog.path_of("bench@v1").stat().st_size / 2**20
        data_mb = n_rows * 1024 * 8 / 2**20
        rows.append(
            {
                "data_mb": round(data_mb, 1),
                "file_mb": round(file_mb, 1),
                "write_s": round(write, 3),
                "identical_write_s": round(dedupe, 3),
                "open_and_load_s": round(read, 3),
                "verify_s": round(verify, 3),
                "write_mb_per_s": round(data_mb / write, 1),
                "read_mb_per_s": round(data_mb / read, 1),
                "verify_mb_per_s": round(data_mb / verify, 1),
            }
        )
    return {
        "benchmark": "catalog-io",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "repeat": repeat,
        "results": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="eqs bench catalog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[16, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-files", type=int, default=0, help="also time opening this many small versions")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the numbers")
    args = parser.parse_args(argv)
    result = run(args.sizes_mb, args.repeat)
    if args.small_files:
        result["small_files"] = small_files(args.small_files, args.repeat)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    header = "| data MB | file MB | write s | identical write s | open+load s | verify s |"
    print(header + "\n|" + "---|" * 6)
    for r in result["results"]:
        print(
            f"| {r['data_mb']} | {r['file_mb']} | {r['write_s']} | {r['identical_write_s']} | "
            f"{r['open_and_load_s']} | {r['verify_s']} |"
        )
    if args.small_files:
        r = result["small_files"]
        print(
            f"{r['files']} small versions, open+load per file: catalog reader {r['catalog_reader_ms_per_file']} ms, "
            f"h5netcdf engine {r['h5netcdf_engine_ms_per_file']} ms ({r['speedup']}x); verify {r['verify_ms_per_file']} ms"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
