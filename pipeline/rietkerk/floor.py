"""The replicate floor of the Rietkerk emulators: how much the pattern statistics of the same systems
differ between random initial fields, in the emulators' own score (docs/systems/rietkerk.md).

    python -m pipeline.rietkerk.floor --preset quick --out floor.json

A split's systems are simulated twice, from their own initial fields and from others (replicate 1),
and the dimensionless statistics the emulators predict are compared: the score of one replicate as a
prediction of the other (the geometric mean over systems of |a - b| / (|a| + |b|), as the emulators are
scored), and per statistic the RMSE / sqrt(2), each replicate's own spread about their mean. No emulator
that reads only the parameters can do better on average than the first.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.metrics import blockwise_relative_error, geometric_mean, relative_error
from pipeline.rietkerk.features import TARGETS, emulator_features, statistics_dataset
from sims.rietkerk import protocols as rp


def replicate_floor(preset: str, split: str = "test", replicate: int = 1) -> dict[str, Any]:
    """The floor of ``split`` at ``preset``'s sizes: scores and RMSE per statistic between replicates."""
    cfg = rp.preset(preset)
    started = time.perf_counter()
    targets = [
        emulator_features(statistics_dataset(rp.generate_split(cfg, split, replicate=r)))["target_pi"].values
        for r in (0, replicate)
    ]
    a, b = targets
    blocks = [(j, j + 1) for j in range(len(TARGETS))]
    return {
        "preset": preset,
        "split": split,
        "systems": int(a.shape[0]),
        "score": geometric_mean(relative_error(a, b)),
        "score_blockwise": geometric_mean(blockwise_relative_error(a, b, blocks)),
        "rmse_over_sqrt2": dict(zip(TARGETS, map(float, np.sqrt(np.mean((a - b) ** 2, axis=0) / 2)))),
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.rietkerk.floor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(rp.PRESETS), default="quick")
    parser.add_argument("--split", choices=rp.SIMULATED_SPLITS, default="test")
    parser.add_argument("--out", required=True, help="JSON file of the numbers")
    args = parser.parse_args(argv)
    result = replicate_floor(args.preset, args.split)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
