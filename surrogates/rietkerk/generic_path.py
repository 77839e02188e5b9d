"""The Rietkerk emulator through the generic path of ``eqs fit``, beside the hand-written one.

The Rietkerk sweep fits the generic path exactly: per sample, 16 scalar parameters with units
(litres of water an independent unit) and four pattern statistics. This comparison trains the
generic Pi-group surrogate (``surrogates.declared``: one per statistic, scale monomial times an MLP
of the Pi groups) on the sweep's train and validation statistics already in a catalog, with the
hand-written emulator's training settings (read from its stored model), and scores both on every
test split of the sweep with the protocol's metric (docs/protocols.md#rietkerk): the statistics made
dimensionless by each test sample's own k2 and k1, the geometric-mean relative error over samples,
and the RMSE per statistic. The test splits are given to the generic surrogates as their numbers
(the units split in its own units), so the units split also tests its exact units-equivariance.

    python -m surrogates.rietkerk.generic_path --catalog DIR [--preset quick] [--seeds 2] [--out F.json]

The catalog must hold the sweep of the preset (``eqs reproduce rietkerk --preset quick`` or the
main job's demo run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.declared.data import checked_data
from pipeline.declared.design import conditions_on_data
from pipeline.metrics import geometric_mean, relative_error
from pipeline.rietkerk.features import TARGET_SCALES, TARGETS
from sims.declaration import Quantity, Role, SystemDeclaration
from sims.rietkerk import system as rk
from surrogates.declared.models import fit_surrogate, predict
from surrogates.rietkerk.runs import HIDDEN
from surrogates.training import TrainConfig

SPLITS = ("test", "units", "rescaled", "shifted", "rainfall")


def declaration() -> SystemDeclaration:
    """The sweep as a declared system: the 16 parameters, and the four statistics as targets."""
    units = {t: rk.UNITS[TARGET_SCALES[t]] if TARGET_SCALES[t] else "1" for t in TARGETS}
    quantities = [rk.DECLARATION.quantity(p) for p in rk.PARAMETERS]
    quantities += [Quantity(t, units[t], role=Role.TARGET, description=f"pattern statistic {t}") for t in TARGETS]
    return SystemDeclaration(
        name="rietkerk_statistics",
        quantities=tuple(quantities),
        independent_units=rk.DECLARATION.independent_units,
        description="Rietkerk pattern statistics at the end of a run, from the 16 parameters",
    )


def dimensionless(stats: Any, values: dict[str, np.ndarray]) -> np.ndarray:
    """(sample, 4) statistics over each sample's own k2 and k1, in the dataset's units."""
    columns = []
    for t in TARGETS:
        scale = TARGET_SCALES[t]
        columns.append(values[t] / np.asarray(stats[scale].values, dtype=np.float64) if scale else values[t])
    return np.stack(columns, -1)


def hand_written(catalog: Catalog, preset: str, split: str) -> dict[str, Any]:
    """The stored evaluations of the hand-written Pi emulator on ``split`` (every seed's version)."""
    name = f"rietkerk-{preset}-pi-emulator-on-{split}"
    refs = [f"{name}@v{v}" for v in catalog.versions(name)]
    scores, rmse = [], []
    for ref in refs:
        with catalog.open(ref) as ds:
            scores.append(float(ds["score"].values))
            rmse.append(np.asarray(ds["rmse"].values, dtype=np.float64))
    return {"score": scores, "rmse": np.mean(rmse, 0).tolist(), "refs": refs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="catalog holding the Rietkerk sweep of the preset")
    parser.add_argument("--preset", default="quick", help="the sweep's preset (default quick)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds of the generic surrogates (default 2)")
    parser.add_argument("--out", default=None, help="write the numbers here as JSON")
    args = parser.parse_args(argv)
    catalog = Catalog(args.catalog)
    decl = declaration()
    inputs = list(rk.PARAMETERS)
    stats = {s: catalog.open(f"rietkerk-{args.preset}-{s}-statistics").load() for s in ("train", "val", *SPLITS)}
    canonical = {s: checked_data(stats[s], decl, f"rietkerk-{args.preset}-{s}-statistics") for s in ("train", "val")}
    conditions = conditions_on_data(decl, {q: canonical["train"][q].values for q in inputs})
    stored = catalog.info(f"rietkerk-{args.preset}-pi-emulator").params["training"]
    started = time.perf_counter()
    predictions: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for seed in range(args.seeds):
        config = TrainConfig(**{**stored, "seed": seed, "progress": False})
        models = {}
        for target in TARGETS:
            sets = [
                ({q: c[q].values for q in inputs}, c[target].values) for c in (canonical["train"], canonical["val"])
            ]
            models[target] = fit_surrogate(
                decl.to_dict(),
                target,
                "pi",
                *sets,
                config,
                hidden=HIDDEN,
                signed=list(conditions.signed),
                zero=list(conditions.zero),
            )[0]
        for split in SPLITS:  # the numbers as the split gives them, in its own units
            given = {q: np.asarray(stats[split][q].values, dtype=np.float64) for q in inputs}
            predicted = {t: predict(models[t], given)[0] for t in TARGETS}
            predictions[split].append(dimensionless(stats[split], predicted))
    seconds = time.perf_counter() - started
    rows = []
    for split in SPLITS:
        true = dimensionless(stats[split], {t: np.asarray(stats[split][t].values, dtype=np.float64) for t in TARGETS})
        generic = [geometric_mean(relative_error(p, true)) for p in predictions[split]]
        rmse = np.mean([np.sqrt(np.mean((p - true) ** 2, axis=0)) for p in predictions[split]], 0)
        theirs = hand_written(catalog, args.preset, split)
        rows.append(
            {
                "split": split,
                "samples": int(true.shape[0]),
                "generic_score": float(np.mean(generic)),
                "generic_score_seeds": generic,
                "hand_written_score": float(np.mean(theirs["score"])),
                "hand_written_score_seeds": theirs["score"],
                "generic_rmse": dict(zip(TARGETS, map(float, rmse))),
                "hand_written_rmse": dict(zip(TARGETS, theirs["rmse"])),
                "hand_written_refs": theirs["refs"],
            }
        )
    print(f"Rietkerk {args.preset}: geometric-mean relative error of the dimensionless statistics (mean over seeds)")
    print(f"{'split':<10}{'generic Pi surrogates':>24}{'hand-written Pi emulator':>27}")
    for r in rows:
        print(f"{r['split']:<10}{r['generic_score']:>24.4f}{r['hand_written_score']:>27.4f}")
    result = {
        "preset": args.preset,
        "seeds": args.seeds,
        "training": stored,
        "hidden": list(HIDDEN),
        "generic_training_seconds": seconds,
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
