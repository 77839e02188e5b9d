"""The validation sigma68 of halo models under other training settings, on stored features.

``python -m flows.halos.tuning --catalog CAT --features NAME --preset quick --model catalog
--model global --weight-decay 1e-4 --weight-decay 1e-2 --hidden 64x64 --out tuning.json`` trains
each model with each weight decay and hidden size on the random split's training halos (the preset's
other settings, ``--seeds`` seeds) and scores it on the split's validation halos only, never the
test halos, so that a setting chosen here leaves the test numbers honest. Halos whose catalog
properties were not all measured are left out of a catalog model's score, as of its training.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from collections.abc import Sequence

import numpy as np

from data_catalog import Catalog
from flows.halos.flow import training_config
from pipeline.halos.features import split_indices
from pipeline.metrics import sigma68
from surrogates.halos import runs as hr
from surrogates.halos.models import predict_gaussian


def validation_sigma68(
    features, model: str, target: str, config, hidden: Sequence[int]
) -> float:  # fmt: skip
    """sigma68 of ``target`` on the random split's validation halos, the model trained on its training halos."""
    module, _, variables = hr.train_halo_model(model, features, "random", target, config, hidden=hidden)
    rows = split_indices(features, "random")["val"]
    if "catalog" in variables and "catalog_valid" in features:
        rows = rows[np.asarray(features["catalog_valid"].values)[rows]]
    mean, _ = predict_gaussian(module, hr.design_matrix(features, variables)[rows])
    return float(sigma68(np.asarray(features[target].values)[rows] - mean))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.halos.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", required=True, help="The catalog holding the features.")
    parser.add_argument("--features", required=True, help="The halos.features dataset, NAME[@vN].")
    parser.add_argument("--preset", default="quick", help="The preset whose training settings are varied.")
    parser.add_argument("--target", default="log_mstar")
    parser.add_argument("--model", action="append", required=True, help="A halo model (repeatable).")
    parser.add_argument("--weight-decay", action="append", type=float, required=True, help="Repeatable.")
    parser.add_argument("--hidden", action="append", default=None, help="Hidden sizes such as 64x64 (repeatable).")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", required=True, help="JSON file of the scores.")
    args = parser.parse_args(argv)
    features = Catalog(args.catalog).open(args.features).load()
    hidden_sizes = [tuple(int(n) for n in h.split("x")) for h in (args.hidden or ["64x64"])]
    rows = []
    for model, decay, hidden in itertools.product(args.model, args.weight_decay, hidden_sizes):
        scores = [
            validation_sigma68(
                features,
                model,
                args.target,
                dataclasses.replace(training_config(args.preset, seed, model), weight_decay=decay),
                hidden,
            )
            for seed in range(args.seeds)
        ]
        row = {"model": model, "weight_decay": decay, "hidden": list(hidden), "val_sigma68": float(np.mean(scores)),
               "std": float(np.std(scores)), "seeds": scores}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(
            {"features": args.features, "preset": args.preset, "target": args.target, "rows": rows}, handle, indent=2
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
