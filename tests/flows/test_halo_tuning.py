"""The tuning command scores settings on the validation halos, never the test halos."""

from __future__ import annotations

import json

import numpy as np

from data_catalog import Catalog
from flows.halos import tuning
from pipeline.halos.features import FEATURES_KIND, halo_features, split_indices
from sims.halos.population import PopulationConfig, generate_population


def test_tuning_scores_each_setting_on_the_validation_halos(tmp_path, monkeypatch):
    population = generate_population(PopulationConfig(n_halos=120, max_particles=100, seed=2))
    features = halo_features(population)  # catalog properties, no scalars
    Catalog(tmp_path / "c").write(features, "f", kind=FEATURES_KIND)
    seen = []
    real = tuning.predict_gaussian

    def spy(module, x):
        seen.append(x.shape[0])
        return real(module, x)

    monkeypatch.setattr(tuning, "predict_gaussian", spy)
    out = tmp_path / "tuning.json"
    args = ["--catalog", str(tmp_path / "c"), "--features", "f", "--preset", "smoke", "--model", "catalog"]
    assert (
        tuning.main([*args, "--weight-decay", "1e-4", "--weight-decay", "1e-2", "--seeds", "1", "--out", str(out)]) == 0
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["weight_decay"] for r in rows] == [1e-4, 1e-2]
    assert all(0 < r["val_sigma68"] < 1 and np.isfinite(r["std"]) for r in rows)
    val = split_indices(features, "random")["val"]
    measured = int(features["catalog_valid"].values[val].sum())
    assert seen == [measured, measured]  # the validation halos with every property measured, nothing else
