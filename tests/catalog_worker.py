"""A separate process that writes to a catalog, for the concurrency and crash tests.

    python catalog_worker.py ROOT NAME SEED COUNT [--start-file F] [--stall-at data|rename --signal-file F]

Waits for --start-file to exist (so that several workers start together), then writes COUNT
datasets (seeds SEED, SEED+1, ...). With --stall-at it signals through --signal-file and hangs at
that point of its first write, for the parent to kill it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import dask.array as da  # noqa: E402
from support import demo_dataset  # noqa: E402  (registers the test kind)

from data_catalog import Catalog  # noqa: E402


def _stall(signal_file: str) -> None:
    Path(signal_file).write_text(str(os.getpid()))
    time.sleep(600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("seed", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("--start-file")
    parser.add_argument("--stall-at", choices=["data", "rename"])
    parser.add_argument("--signal-file")
    args = parser.parse_args()

    if args.start_file:
        while not os.path.exists(args.start_file):
            time.sleep(0.005)
    catalog = Catalog(args.root)
    for seed in range(args.seed, args.seed + args.count):
        ds = demo_dataset(seed)
        if args.stall_at == "data":
            # a big lazy variable whose third block hangs: the HDF5 file is half written
            def block(x, block_info=None):
                if block_info and block_info[0]["chunk-location"][0] == 2:
                    _stall(args.signal_file)
                return x

            big = da.ones((64, 100_000), chunks=(8, 100_000)).map_blocks(block, dtype=float)
            ds = ds.assign(big=(("row", "col"), big, {"units": "1"}))
        elif args.stall_at == "rename":
            # hang inside the lock, just before the version file gets its final name
            for fn_name in ("link", "replace"):
                original = getattr(os, fn_name)

                def stalled(src, dst, _original=original):
                    if str(dst).endswith(".h5"):
                        _stall(args.signal_file)
                    return _original(src, dst)

                setattr(os, fn_name, stalled)
        print(catalog.write(ds, args.name, seed=seed), flush=True)


if __name__ == "__main__":
    main()
