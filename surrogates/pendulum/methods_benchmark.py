"""The ways of building a symmetry into a pendulum surrogate side by side (docs/fit.md#other-methods).

``--protocol emlp`` (O(3)): per model and training-set size, over seeds, the protocol's score on the test
rollouts and on the same rollouts each rotated by its own random element of O(2) about gravity's axis z
(the data's symmetry) or of O(3) (states and gravity), and the measured symmetry errors of the vector field
under both (float64).

``--protocol units`` (the units, with O(3)): the protocol's score on its three test sets (Exp 1, the
training distribution; Exp 2, kg rescaled; Exp 3, shifted parameters), on Exp 1 rotated in O(3), and the
measured O(3) and units errors of the vector field (float64).

Both: the parameter count, the memory one training loss keeps for its backward pass (MEMORY_CHUNKS chunks,
the same shapes for every model; ``--memory-only`` measures it alone, untrained), the training time per
epoch and the vector field's throughput. The JSON also keeps each training's best validation loss, the
number a choice of settings should be made on.

    python -m surrogates.pendulum.methods_benchmark --preset quick --sizes 50 200 --seeds 3 --out methods.json
    python -m surrogates.pendulum.methods_benchmark --protocol units --preset quick --sizes 250 1000 --out units.json

The data are the protocol preset's (docs/protocols.md); a size is the number of training chunks, the
first of the preset's training split; validation and test are the same for every size. Every number is
measured in this run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from data_catalog import Catalog
from pipeline.metrics import geometric_mean, relative_error
from pipeline.report.study import (
    StudyTable,
    add_report_option,
    check_study_outputs,
    command_line,
    write_study,
)
from pipeline.summaries import spread_text
from pipeline.symmetry import random_orthogonal
from sims.pendulum import protocols as pp
from sims.pendulum import system as sp
from surrogates.artifacts import load_model
from surrogates.pendulum import models as pm
from surrogates.pendulum import runs as pr
from surrogates.training import saved_for_backward_bytes

MODELS = (
    "scalar-hnn",
    "mlp-hnn",
    "mlp-hnn-augment",
    "mlp-hnn-penalty",
    "relaxed-hnn",
    *pm.EMLP_MODELS,
)
UNITS_MODELS = ("mlp-hnn", "dimensional-hnn", "dimensional-hnn-units-augment", "relaxed-units-hnn", "dimensionless-hnn")
MODELS_BY_PROTOCOL = {"emlp": MODELS, "units": UNITS_MODELS}
DEFAULT_SIZES = {"emlp": (50, 200), "units": (250, 1000)}
THROUGHPUT_BATCH = 4096
MEMORY_CHUNKS = 100  # chunks of the training loss whose saved tensors are counted: one shape for every model


def rotated_split(ds, seed: int = 1, about_gravity: bool = False):
    """The test trajectories, each rotated (states and gravity) by its own Haar-random element of O(3), or
    with ``about_gravity`` of O(2) about the z axis (gravity's: the protocol's data are symmetric under it)."""
    params, traj, times = sp.from_dataset(ds)
    rng = np.random.default_rng(seed)
    matrices = torch.as_tensor(np.stack([_element(rng, about_gravity) for _ in range(traj.shape[0])]))
    moved, theta = pm.rotated(traj, pm.theta_of(params), matrices)
    return pm.parameters_of(theta), moved, times


def _element(rng: np.random.Generator, about_gravity: bool) -> np.ndarray:
    return pr.ABOUT_GRAVITY.random_element(rng) if about_gravity else random_orthogonal(3, rng)


def score(model: torch.nn.Module, params, truth: torch.Tensor, times) -> float:
    """The protocol's score: the geometric mean of the relative state error over rollouts and times."""
    predicted = pr.predict(model, params, truth[:, 0], times)
    return float(geometric_mean(relative_error(predicted.numpy(), truth.numpy())))


def throughput(model: torch.nn.Module, z: torch.Tensor, theta: torch.Tensor, repeats: int = 3) -> float:
    """Vector-field evaluations per second on THROUGHPUT_BATCH states (the test states tiled)."""
    index = torch.arange(THROUGHPUT_BATCH) % z.shape[0]
    z, theta = z[index], theta[index]
    model.eval()
    model(z, theta)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(z, theta)
        best = min(best, time.perf_counter() - start)
    return THROUGHPUT_BATCH / best


def training_memory(model: torch.nn.Module, train) -> int:
    """Bytes autograd keeps for the backward pass of one training loss (with its augmentation, penalty or
    prior) on the first MEMORY_CHUNKS chunks of the training split ``train``
    (``surrogates.training.saved_for_backward_bytes``): the same shapes for every model."""
    params, chunks, times = sp.from_dataset(train.isel(sample=slice(0, MEMORY_CHUNKS)))
    batch = {"z": chunks, "theta": pm.theta_of(params)}
    loss = pm.chunk_loss(torch.as_tensor(times - times[0]))
    model.train()
    try:
        return saved_for_backward_bytes(lambda: loss(model, batch))
    finally:
        model.eval()


def memory_only(protocol: str, preset: str, models: Sequence[str], hidden: Sequence[int] | None) -> dict:
    """The parameters and training memory of every model, untrained (neither depends on the weights)."""
    train = pp.generate(pp.preset(protocol, preset))["train"]
    params, chunks, _ = sp.from_dataset(train)
    rows = []
    for name in models:
        model = pm.build_model(name, **({"hidden": tuple(hidden)} if hidden else {})).double()
        model.fit_inputs(chunks.reshape(-1, sp.STATE_DIM), pm.theta_of(params).repeat_interleave(chunks.shape[1], 0))
        rows.append(
            {
                "model": name,
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "training_memory_bytes": training_memory(model, train),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {"protocol": protocol, "preset": preset, "memory_chunks": MEMORY_CHUNKS, "rows": rows}


def memory_table(result: dict[str, Any]) -> str:
    lines = ["| model | parameters | training memory (MB) |", "|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['parameters']} | {row['training_memory_bytes'] / 1e6:.3g} |")
    return "\n".join(lines)


def _emlp_scores(model: torch.nn.Module, data: dict, z0: torch.Tensor, theta: torch.Tensor) -> dict[str, float]:
    return {
        "test": score(model, *data["test"]),
        "rotated": score(model, *data["rotated"]),
        "rotated_about_gravity": score(model, *data["rotated_about_gravity"]),
        **pr.symmetry_errors(model, z0, theta, "emlp"),
    }


def _units_scores(model: torch.nn.Module, data: dict, z0: torch.Tensor, theta: torch.Tensor) -> dict[str, float]:
    return {
        **{split: score(model, *data[split]) for split in pp.TEST_SPLITS["units"]},
        "rotated": score(model, *data["rotated"]),
        **pr.symmetry_errors(model, z0, theta, "units"),
    }


def _test_sets(protocol: str, data: dict) -> dict[str, tuple]:
    """The scored rollouts by name: the protocol's test splits and their rotated copies."""
    if protocol == "emlp":
        return {
            "test": sp.from_dataset(data["test"]),
            "rotated": rotated_split(data["test"]),
            "rotated_about_gravity": rotated_split(data["test"], about_gravity=True),
        }
    sets = {split: sp.from_dataset(data[split]) for split in pp.TEST_SPLITS["units"]}
    return {**sets, "rotated": rotated_split(data["exp1"])}


def run(
    preset: str,
    models: Sequence[str],
    sizes: Sequence[int],
    seeds: int,
    hidden: Sequence[int] | None,
    protocol: str = "emlp",
    bilinear_init: float | None = None,
) -> dict:
    """``bilinear_init``: the EMLP HNNs' bilinear weights' initial spread [default: the models' own]."""
    data = pp.generate(pp.preset(protocol, preset))
    test_sets = _test_sets(protocol, data)
    params, truth, _ = test_sets[pp.TEST_SPLITS[protocol][0]]
    z0, theta = truth[: pr.SYMMETRY_STATES, 0], pm.theta_of(params)[: pr.SYMMETRY_STATES]
    scores = _emlp_scores if protocol == "emlp" else _units_scores
    rows = []
    memory: dict[str, int] = {}  # per model: the bytes kept for backward do not depend on the weights
    with tempfile.TemporaryDirectory() as folder:
        catalog = Catalog(folder)
        val = catalog.write(data["val"], "val", kind=sp.RAW_KIND)
        for size in sizes:
            train = catalog.write(data["train"].isel(sample=slice(0, size)), f"train-{size}", kind=sp.RAW_KIND)
            for name in models:
                for seed in range(seeds):
                    config = pr.training_config(protocol, preset, seed, progress=False)
                    options = {"hidden": tuple(hidden)} if hidden else {}
                    if bilinear_init is not None and name in pm.EMLP_MODELS:
                        options["bilinear_init"] = bilinear_init
                    started = time.perf_counter()
                    ref = pr.train_model(catalog, name, train, val, config, model_options=options)
                    seconds = time.perf_counter() - started
                    loaded = load_model(catalog, ref, device="cpu", dtype=torch.float64)
                    model = loaded.model
                    if name not in memory:
                        memory[name] = training_memory(model, data["train"])
                    rows.append(
                        {
                            "model": name,
                            "train_chunks": int(size),
                            "seed": seed,
                            **({"bilinear_init": model.config["bilinear_init"]} if name in pm.EMLP_MODELS else {}),
                            **scores(model, test_sets, z0, theta),
                            # the validation loss of the kept weights: what a choice of settings should read
                            "best_val_loss": loaded.training.get("best_val"),
                            "parameters": int(sum(p.numel() for p in model.parameters())),
                            "training_memory_bytes": memory[name],
                            "seconds_per_epoch": seconds / max(1, int(loaded.training["epochs_run"])),
                            "fields_per_second": throughput(model, z0, theta),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return {
        "protocol": protocol,
        "preset": preset,
        "sizes": list(sizes),
        "seeds": seeds,
        "bilinear_init": bilinear_init,
        "rows": rows,
    }


# (title, row key, "spread" over seeds or the "worst" over seeds) per column, by protocol
COLUMNS = {
    "emlp": (
        ("test score", "test", "spread"),
        ("rotated about z", "rotated_about_gravity", "spread"),
        ("rotated in O(3)", "rotated", "spread"),
        ("symmetry error, O(2) about z", "symmetry_error_about_gravity", "worst"),
        ("symmetry error, O(3)", "symmetry_error", "worst"),
    ),
    "units": (
        ("Exp 1", "exp1", "spread"),
        ("Exp 2 (kg x s)", "exp2", "spread"),
        ("Exp 3 (m, k, l ~ U(1,5))", "exp3", "spread"),
        ("Exp 1 rotated in O(3)", "rotated", "spread"),
        ("symmetry error, O(3)", "symmetry_error", "worst"),
        ("units error", "units_error", "worst"),
    ),
}


def table(result: dict[str, Any]) -> str:
    """Markdown: mean +- std over seeds per model and size; the worst symmetry errors over seeds ("-": a
    number the run that wrote the rows did not measure)."""
    protocol = result.get("protocol", "emlp")
    columns = COLUMNS[protocol]
    titles = ["model", "train chunks", *(c[0] for c in columns), "parameters", "training memory (MB)"]
    titles += ["s / epoch", "fields / s"]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    order = MODELS_BY_PROTOCOL[protocol]
    keys = sorted({(r["model"], r["train_chunks"]) for r in result["rows"]}, key=lambda k: (order.index(k[0]), k[1]))
    for model, size in keys:
        group = [r for r in result["rows"] if (r["model"], r["train_chunks"]) == (model, size)]

        def cell(key: str, how: str, rows=group) -> str:
            if not all(key in r for r in rows):
                return "-"
            values = [r[key] for r in rows]
            return spread_text(values) if how == "spread" else f"{max(values):.1e}"

        cells = [model, str(size), *(cell(key, how) for _, key, how in columns), str(group[0]["parameters"])]
        memory = group[0].get("training_memory_bytes")
        cells.append("-" if memory is None else f"{memory / 1e6:.3g}")
        cells += [
            f"{np.mean([r['seconds_per_epoch'] for r in group]):.3g}",
            f"{np.mean([r['fields_per_second'] for r in group]):.3g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m surrogates.pendulum.methods_benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--protocol", choices=sorted(MODELS_BY_PROTOCOL), default="emlp")
    parser.add_argument("--preset", choices=["smoke", "quick", "paper"], default="quick")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted({m for models in MODELS_BY_PROTOCOL.values() for m in models}),
        help="default: every model of the protocol (emlp: %s; units: %s)"
        % (", ".join(MODELS), ", ".join(UNITS_MODELS)),
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="training chunks [default: emlp 50 200, units 250 1000]")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", help="the MLPs' widths [default: the models' own]")
    parser.add_argument(
        "--bilinear-init",
        type=float,
        metavar="SPREAD",
        help="the EMLP HNNs' bilinear weights' initial standard deviation [default: the models' own, %g]"
        % pm.EMLP_BILINEAR_INIT,
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only the parameters and training memory of each model, untrained (neither depends on the weights)",
    )
    parser.add_argument("--out", required=True, help="JSON file of every number (a .md beside it: the table)")
    add_report_option(parser)
    args = parser.parse_args(argv)
    check_study_outputs(parser, args.out, report=args.report)
    models = args.models or MODELS_BY_PROTOCOL[args.protocol]
    wrong = [m for m in models if m not in MODELS_BY_PROTOCOL[args.protocol]]
    if wrong:
        parser.error(
            f"--models {' '.join(wrong)}: not compared in --protocol {args.protocol}; "
            f"choose from {', '.join(MODELS_BY_PROTOCOL[args.protocol])}"
        )
    sizes = args.sizes or DEFAULT_SIZES[args.protocol]
    if min(sizes) < 1:
        parser.error(f"--sizes must be positive, got {sizes}")
    if args.bilinear_init is not None:
        if not (np.isfinite(args.bilinear_init) and args.bilinear_init > 0):
            parser.error(f"--bilinear-init must be positive and finite, got {args.bilinear_init}")
        if not set(models) & set(pm.EMLP_MODELS):
            parser.error("--bilinear-init sets the EMLP HNNs' spread; --models has no emlp-hnn-* model")
    if args.memory_only:
        result = memory_only(args.protocol, args.preset, models, args.hidden)
        text = memory_table(result)
    else:
        result = run(
            args.preset,
            models,
            sizes,
            args.seeds,
            args.hidden,
            protocol=args.protocol,
            bilinear_init=args.bilinear_init,
        )
        text = table(result)
    what = "training memory" if args.memory_only else "methods side by side"
    if args.bilinear_init is not None and not args.memory_only:
        what += f" (EMLP bilinear spread {args.bilinear_init:g})"
    write_study(
        result,
        args.out,
        [StudyTable(text, labels=1 if args.memory_only else 2)],
        report=args.report,
        title=f"The pendulum's {what}, {args.protocol} protocol, {args.preset} preset",
        summary=__doc__.split("\n\n")[0],
        command=command_line(parser, argv),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
