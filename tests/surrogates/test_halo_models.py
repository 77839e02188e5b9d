"""Halo models: the fitted stellar-to-halo relation, the Gaussian MLP and forward selection on data
whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import sigma68
from surrogates.halos import models as sh
from surrogates.training import TrainConfig


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    logm = rng.uniform(10.5, 13.5, n)
    informative = rng.normal(size=(n, 2))
    noise = rng.normal(size=(n, 10))
    y = sh.double_power_law(logm, -1.6, 11.7, 1.3, 0.6) + 0.12 * informative[:, 0] + 0.06 * informative[:, 1]
    y = y + 0.08 * rng.normal(size=n)
    return logm, np.column_stack([informative, noise]), y


def test_the_stellar_to_halo_fit_recovers_its_parameters():
    logm, _, y = _data()
    fit = sh.StellarToHaloRelation.fit(logm, y)
    np.testing.assert_allclose(fit.params, (-1.6, 11.7, 1.3, 0.6), atol=0.05)
    assert fit.scatter == pytest.approx(np.sqrt(0.12**2 + 0.06**2 + 0.08**2), rel=0.05)


def test_gaussian_mlp_reaches_the_noise_and_its_sigma_is_calibrated():
    logm, extra, y = _data()
    x = np.column_stack([logm, extra])
    config = TrainConfig(seed=0, epochs=150, batch_size=256, lr=3e-3, val_every=10, progress=False)
    model, _ = sh.train_gaussian_mlp(x[:2500], y[:2500], x[2500:3000], y[2500:3000], config)
    mean, sigma = sh.predict_gaussian(model, x[3000:])
    residual = y[3000:] - mean
    assert sigma68(residual) < 0.10  # the irreducible part is 0.08
    assert 0.7 < np.median(sigma) / np.std(residual) < 1.3
    with pytest.raises(ValueError, match="training features contain NaN"):
        bad = x[:100].copy()
        bad[3, 2] = np.nan
        sh.train_gaussian_mlp(bad, y[:100], x[:10], y[:10], config)


def test_forward_selection_names_the_informative_features_first():
    logm, extra, y = _data()
    residuals = y - sh.StellarToHaloRelation.fit(logm[:3000], y[:3000]).predict(logm)[0]
    names = ["strong", "weak", *[f"noise{i}" for i in range(10)]]
    rows = sh.forward_selection(extra[:2500], residuals[:2500], extra[2500:], residuals[2500:], names, steps=3)
    assert [r["feature"] for r in rows[1:3]] == ["strong", "weak"]
    assert rows[0]["sigma68"] > rows[1]["sigma68"] > rows[2]["sigma68"]
    assert rows[2]["sigma68"] == pytest.approx(0.08, rel=0.1)
