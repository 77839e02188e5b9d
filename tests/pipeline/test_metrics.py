"""The protocols' error metric, its units-invariant variant and the evaluation datasets."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import (
    blockwise_relative_error,
    evaluation_dataset,
    geometric_mean,
    relative_error,
)

BLOCKS = ((0, 6), (6, 12))


def test_relative_error_is_the_published_formula():
    a, b = np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]])
    assert relative_error(a, b)[0] == pytest.approx(1.0)  # |a - 0| / (|a| + 0)
    a, b = np.array([1.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0])
    assert relative_error(a, b) == pytest.approx(1.0 / (3.0 + np.sqrt(14.0)))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    diverged = np.array([[np.nan, 0.0, 0.0], [np.inf, 1.0, 0.0], [1e308, 1e308, 0.0]])
    np.testing.assert_array_equal(relative_error(diverged, np.ones((3, 3))), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="differ in shape"):
        relative_error(np.zeros((2, 3)), np.zeros((3, 3)))


def test_geometric_mean_clamps_at_1e7_and_counts_divergence_as_the_maximum():
    assert geometric_mean(np.array([1e-3, 1e-1])) == pytest.approx(1e-2)
    assert geometric_mean(np.array([0.0, 1e-1])) == pytest.approx(np.sqrt(1e-8))
    assert geometric_mean(np.array([np.nan, 1e-2])) == pytest.approx(0.1)


def test_blockwise_error_ignores_a_change_of_units_while_the_published_one_does_not():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(5, 7, 12))
    predicted = true + 0.01 * rng.normal(size=true.shape)
    scale = np.r_[np.ones(6), 50.0 * np.ones(6)]  # momenta in other units (kg -> 50 kg... any factor)
    assert blockwise_relative_error(predicted * scale, true * scale, BLOCKS) == pytest.approx(
        blockwise_relative_error(predicted, true, BLOCKS), rel=1e-12
    )
    assert (
        abs(
            geometric_mean(relative_error(predicted * scale, true * scale))
            / geometric_mean(relative_error(predicted, true))
            - 1
        )
        > 0.01
    )


def test_evaluation_dataset_holds_scores_and_states(catalog):
    rng = np.random.default_rng(1)
    true = rng.normal(size=(4, 3, 12))
    predicted = true * 1.01
    ds = evaluation_dataset(
        predicted,
        true,
        np.arange(3) * 0.2,
        blocks=BLOCKS,
        components=(("q", 0, 6, "m"), ("p", 6, 12, "kg m s^-1")),
        model="m@v1",
        data="d@v1",
        split="test",
    )
    assert float(ds.score) == pytest.approx(geometric_mean(relative_error(predicted, true)))
    assert ds["predicted_p"].attrs["units"] == "kg m s^-1" and ds["predicted_q"].shape == (4, 3, 6)
    assert ds["score_per_time"].shape == (3,)
    ref = catalog.write(ds, "evaluation-demo", kind="evaluation")
    assert catalog.info(ref).kind == "evaluation"


def test_sigma68_is_half_the_16_84_range():
    from pipeline.metrics import sigma68, sigma68_by_bin

    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.2, 200_000)
    assert abs(sigma68(r) - 0.2) < 0.003  # a Gaussian's sigma68 is its sigma
    assert sigma68(np.array([0.0, 1.0, np.nan, 2.0])) == pytest.approx(
        0.5 * (np.percentile([0, 1, 2], 84) - np.percentile([0, 1, 2], 16))
    )
    with pytest.raises(ValueError, match="no finite residuals"):
        sigma68(np.array([np.nan]))
    logm = rng.uniform(10, 14, r.size)
    rows = sigma68_by_bin(logm, r, [10, 12, 14, 15])
    assert [row["n"] > 0 for row in rows] == [True, True, False] and np.isnan(rows[2]["sigma68"])
