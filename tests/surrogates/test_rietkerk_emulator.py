"""The Rietkerk emulators: exact units equivariance of the Pi-group emulator (and the baseline's
failure), catalog round trip and the evaluation dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_catalog import Catalog, check_dataset
from pipeline.rietkerk.features import emulator_features, statistics_dataset
from pipeline.symmetry import SymmetryError, assert_units_equivariant
from pipeline.units import change_units
from sims.rietkerk import protocols as rp
from sims.rietkerk import system as rk
from surrogates.artifacts import load_model
from surrogates.rietkerk import runs as sr
from surrogates.training import TrainConfig


@pytest.fixture(scope="module")
def features():
    cfg = rp.preset("smoke")
    out = {split: rp.generate_split(cfg, split) for split in ("train", "val")}
    units = change_units(out["val"], rp.UNITS_SPLIT, independent=rk.DECLARATION.independent_units)
    feats = {split: emulator_features(statistics_dataset(ds)) for split, ds in out.items()}
    feats["units"] = emulator_features(statistics_dataset(units))
    return feats


def _train(kind, features, epochs=30):
    config = TrainConfig(seed=0, epochs=epochs, lr=3e-3, val_every=5, progress=False)
    return sr.train_emulator(kind, features["train"], features["val"], config, hidden=(16, 16))


def test_pi_emulator_is_exactly_units_equivariant_and_the_baseline_is_not(features):
    """On the data path (a dataset converted to other units) and on each model's declared interface
    (the 16 parameters under random changes of l, g, d and m)."""
    parameters = (torch.as_tensor(features["val"]["raw"].values),)
    pi_model, _ = _train("pi", features)
    base = sr.predict_dimensionless(pi_model, features["val"])
    other = sr.predict_dimensionless(pi_model, features["units"])
    np.testing.assert_allclose(other, base, rtol=1e-12, atol=1e-14)
    assert pi_model.io.units == "invariant"
    assert_units_equivariant(pi_model, data=parameters, rtol=1e-12)
    dim_model, _ = _train("dimensional", features)
    base = sr.predict_dimensionless(dim_model, features["val"])
    other = sr.predict_dimensionless(dim_model, features["units"])
    assert np.max(np.abs(other - base)) > 1e-2 * np.max(np.abs(base))
    assert dim_model.io.units == "none"
    with pytest.raises(SymmetryError, match="units equivariance") as failed:
        assert_units_equivariant(dim_model, data=parameters)
    assert min(failed.value.report.errors) > 1e-2


def test_the_declared_pi_inputs_are_those_of_the_features(features):
    raw = torch.as_tensor(features["val"]["raw"].values)
    np.testing.assert_allclose(sr.pi_of_parameters(raw).numpy(), features["val"]["pi"].values, rtol=1e-13, atol=0)
    assert [s.name for s in sr.PARAMETERS.slots] == list(features["val"]["parameter"].values)


def test_training_lowers_the_loss_and_the_model_round_trips(tmp_path, features):
    model, result = _train("pi", features, epochs=60)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    cat = Catalog(tmp_path / "cat")
    train_ref = cat.write(features["train"], "f-train", kind="rietkerk.features")
    val_ref = cat.write(features["val"], "f-val", kind="rietkerk.features")
    config = TrainConfig(seed=0, epochs=60, lr=3e-3, val_every=5, progress=False)
    ref = sr.store_emulator(cat, "emu", "pi", model, result, config, (train_ref, val_ref), {"preset": "smoke"})
    loaded = load_model(cat, ref, device="cpu")
    np.testing.assert_array_equal(
        sr.predict_dimensionless(loaded.model, features["val"]), sr.predict_dimensionless(model, features["val"])
    )
    units_ref = cat.write(features["units"], "f-units", kind="rietkerk.features")
    evaluation = cat.open(sr.evaluate_emulator(cat, ref, units_ref, split="units")).load()
    assert check_dataset(evaluation, "evaluation") == []
    assert evaluation.attrs["split"] == "units" and evaluation["rmse"].sizes["target"] == 4
    assert 0 < float(evaluation["score"]) < 1


def test_unknown_emulator_is_refused(features):
    with pytest.raises(ValueError, match="unknown emulator 'nope'"):
        sr.train_emulator("nope", features["train"], features["val"], TrainConfig(seed=0, epochs=1))


def test_pi_inputs_must_be_positive(features):
    model, _ = _train("pi", features, epochs=2)
    bad = features["val"].copy(deep=True)
    bad["pi"][0, 1] = 0.0
    assert not torch.isfinite(torch.as_tensor(sr.predict_dimensionless(model, bad))).all()
