"""Every way of building the symmetry in, side by side on one declared system (docs/fit.md#other-methods):
per method and training-set size, over seeds, the test error, the error on the group-moved test samples,
the measured symmetry error on the test samples, the parameter count, the training time per epoch, the
inference throughput at one batch shape and the memory a training step keeps for its backward pass at
another.

    python -m flows.declared.methods_benchmark DATA --declaration FILE --sizes 250 1000 2800 \\
        --seeds 3 --out methods.json

The sizes are numbers of training samples drawn from the training part of the declaration's split;
the validation and test parts are the same for every size. Every number is measured in this run, on
this machine, at the same batch shapes for every method.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pipeline.declared.evaluation import relative_errors
from pipeline.declared.methods import METHODS
from pipeline.declared.splits import group_elements, moved_by_group, random_split
from pipeline.model_symmetry import measure_equivariance
from pipeline.report.study import (
    StudyTable,
    add_report_option,
    check_study_outputs,
    command_line,
    write_study,
)
from pipeline.summaries import spread_text
from surrogates.declared.models import fit_surrogate, method_refusal, predict
from surrogates.training import TrainConfig, saved_for_backward_bytes

THROUGHPUT_BATCH = 4096
MEMORY_BATCH = 1024
SYMMETRY_SAMPLES = 64


class RunInputError(ValueError):
    """An option of a side-by-side run that the data or the declaration cannot honour (the message
    starts with the option's name)."""


def _config(seed: int, epochs: int) -> TrainConfig:
    """eqs fit's quick preset, with ``epochs`` in place of its own."""
    from flows.declared.flow import training_config

    return dataclasses.replace(training_config("quick", seed), epochs=epochs)


def throughput(model, values: dict[str, np.ndarray], repeats: int = 3) -> float:
    """Samples per second of ``predict`` on a batch of THROUGHPUT_BATCH samples (the test samples tiled)."""
    n = len(next(iter(values.values())))
    tiled = {k: np.concatenate([v] * (THROUGHPUT_BATCH // n + 1))[:THROUGHPUT_BATCH] for k, v in values.items()}
    predict(model, tiled, batch_size=THROUGHPUT_BATCH)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, tiled, batch_size=THROUGHPUT_BATCH)
        best = min(best, time.perf_counter() - start)
    return THROUGHPUT_BATCH / best


def training_memory(model, values: dict[str, np.ndarray], target: np.ndarray) -> int:
    """Bytes the autograd graph of one training loss on MEMORY_BATCH samples (the test samples tiled) keeps
    for the backward pass (``saved_for_backward_bytes``), the same on any machine."""
    from surrogates.declared.models import training_data

    n = len(target)
    tiled = {k: np.concatenate([v] * (MEMORY_BATCH // n + 1))[:MEMORY_BATCH] for k, v in values.items()}
    y = np.concatenate([target] * (MEMORY_BATCH // n + 1))[:MEMORY_BATCH]
    param = next(model.parameters())
    batch = {k: torch.as_tensor(v, dtype=param.dtype) for k, v in training_data(model, tiled, y).items()}
    model.train()
    saved = saved_for_backward_bytes(lambda: model.loss(batch))
    model.eval()
    return saved


def run(
    data: str,
    declaration: str,
    methods: Sequence[str],
    sizes: Sequence[int],
    seeds: int,
    epochs: int,
    hidden,
    strict: bool = False,
) -> dict[str, Any]:
    """Every method at every size and seed. A method that cannot model the system is refused
    (``RunInputError``) when ``strict`` (the methods were asked for by name), else left out with a note on
    stderr; a size above the training part's is refused."""
    from flows.declared.flow import checked_input

    decl, canonical, conditions, targets = checked_input(data, declaration, None, None, "pi" in methods)
    unfit = {m: why for m in methods if (why := method_refusal(m, decl))}
    if unfit and strict:
        raise RunInputError("--methods: " + "; ".join(unfit.values()))
    for why in unfit.values():
        print(f"note: left out: {why}", file=sys.stderr)
    methods = [m for m in methods if m not in unfit]
    names = [q.name for q in decl.inputs_only().quantities]
    values = {n: np.asarray(canonical[n].values, dtype=np.float64) for n in names}
    parts = random_split(canonical.sizes["sample"], decl.fit.split)
    too_large = [s for s in sizes if s > len(parts["train"])]
    if too_large:
        raise RunInputError(
            f"--sizes {' '.join(map(str, too_large))}: the training part of {data} has {len(parts['train'])} of its "
            f"{canonical.sizes['sample']} samples (the declaration's fit.split)"
        )
    matrices, translations = group_elements(decl, len(parts["test"]), seed=1)
    rows = []
    for target in targets:
        y = np.asarray(canonical[target].values, dtype=np.float64)

        def take(index: np.ndarray, y=y) -> tuple[dict[str, np.ndarray], np.ndarray]:
            return {n: v[index] for n, v in values.items()}, y[index]

        test_values, test_y = take(parts["test"])
        moved_values = moved_by_group(test_values, decl, matrices, translations)
        moved_y = moved_by_group({target: test_y}, decl, matrices, translations)[target]
        for method in methods:
            for size in sizes:
                for seed in range(seeds):
                    train = np.random.default_rng(seed).permutation(parts["train"])[:size]
                    model, result = fit_surrogate(
                        decl.to_dict(),
                        target,
                        method,
                        take(train),
                        take(parts["val"]),
                        _config(seed, epochs),
                        hidden=hidden,
                        gaussian=target in decl.fit.noisy,
                        signed=list(conditions.signed),
                        zero=list(conditions.zero),
                    )
                    predicted = predict(model, test_values)[0]
                    on_moved = predict(model, moved_values)[0]
                    data_sym = [test_values[q.name][:SYMMETRY_SAMPLES] for q in model.inputs]
                    rows.append(
                        {
                            "target": target,
                            "method": method,
                            "train_size": int(len(train)),
                            "seed": seed,
                            "test_error": float(np.median(relative_errors(predicted, test_y))),
                            "group_error": float(np.median(relative_errors(on_moved, moved_y))),
                            "symmetry_error": float(measure_equivariance(model, data=data_sym, trials=8).worst),
                            "parameters": int(sum(p.numel() for p in model.parameters())),
                            "epochs": int(result.epochs_run),
                            "seconds_per_epoch": result.seconds / max(1, result.epochs_run),
                            "samples_per_second": throughput(model, test_values),
                            "training_graph_bytes": training_memory(model, test_values, test_y),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return {
        "system": decl.name,
        "symmetry": decl.symmetry,
        "sizes": list(sizes),
        "seeds": seeds,
        "epochs": epochs,
        "hidden": list(hidden),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: mean +- std over seeds per target, method and size."""
    lines = [
        "| target | method | train | test error | group-moved error | symmetry error (worst) | parameters | "
        f"ms / epoch | samples / s | MB saved for backward ({MEMORY_BATCH} samples) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["target"], r["method"], r["train_size"]) for r in result["rows"]},
        key=lambda k: (k[0], METHODS.index(k[1]), k[2]),
    )
    for target, method, size in keys:
        group = [r for r in result["rows"] if (r["target"], r["method"], r["train_size"]) == (target, method, size)]

        def spread(key: str, rows=group) -> str:
            return spread_text([r[key] for r in rows])

        worst = max(r["symmetry_error"] for r in group)
        lines.append(
            f"| {target} | {method} | {size} | {spread('test_error')} | {spread('group_error')} | {worst:.1e} | "
            f"{group[0]['parameters']} | {1e3 * np.mean([r['seconds_per_epoch'] for r in group]):.0f} | "
            f"{np.mean([r['samples_per_second'] for r in group]):.3g} | "
            f"{np.mean([r['training_graph_bytes'] for r in group]) / 2**20:.3g} |"
        )
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_run_options(parser: argparse.ArgumentParser, methods: Sequence[str], epochs: int) -> None:
    """The options of a side-by-side run (this benchmark's and the relaxed-symmetry study's). ``--methods``
    is None when not given: the default ``methods`` then leave out, with a note, those the system cannot
    take, where methods named are refused (:func:`run`'s ``strict``)."""
    parser.add_argument("--declaration", required=True)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        help=f"default: {' '.join(methods)}, less those the system's symmetry rules out",
    )
    parser.add_argument("--sizes", type=positive_int, nargs="+", default=[250, 1000, 2800])
    parser.add_argument("--seeds", type=positive_int, default=3)
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[64, 64])
    parser.add_argument("--out", required=True, help="JSON file of every number (a .md beside it: the table)")
    add_report_option(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eqs bench methods", description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    add_run_options(parser, METHODS, epochs=400)
    args = parser.parse_args(argv)
    check_study_outputs(parser, args.out, report=args.report)
    methods, strict = args.methods or list(METHODS), args.methods is not None
    try:
        result = run(
            args.data, args.declaration, methods, args.sizes, args.seeds, args.epochs, tuple(args.hidden), strict
        )
    except RunInputError as exc:
        parser.error(str(exc))
    write_study(
        result,
        args.out,
        [StudyTable(table(result), labels=3)],
        report=args.report,
        title=f"Methods side by side: {result['system']}",
        summary=__doc__.split("\n\n")[0],
        command=command_line(parser, argv),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
