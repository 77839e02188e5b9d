"""Rietkerk statistics and emulator features: exact invariance under changes of units and under the
rescaling that defines the OOD split, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.rietkerk.features import TARGETS, emulator_features, parameter_pi_groups, statistics_dataset
from pipeline.rietkerk.regimes import MAPS, regime_labels, regime_map, regime_map_figure
from pipeline.units import change_units
from sims.rietkerk import protocols as rp
from sims.rietkerk import system as rk


@pytest.fixture(scope="module")
def raw():
    return rp.generate_split(rp.preset("smoke"), "val")


def test_pi_groups_are_the_twelve_of_anchors():
    names = {g.name for g in parameter_pi_groups()}
    assert len(names) == 12
    assert {"R alpha^-1 k1^-1", "W0", "dw alpha^-1", "dv alpha^-1", "T alpha", "dt alpha", "dl L^-1"} <= names


def test_statistics_and_features_do_not_change_with_units(raw):
    base = emulator_features(statistics_dataset(raw))
    other_raw = change_units(raw, rp.UNITS_SPLIT, independent=rk.DECLARATION.independent_units)
    other_stats = statistics_dataset(other_raw)
    other = emulator_features(other_stats)
    np.testing.assert_allclose(other["pi"].values, base["pi"].values, rtol=1e-13)
    np.testing.assert_allclose(other["target_pi"].values, base["target_pi"].values, rtol=1e-12, atol=1e-15)
    assert not np.allclose(other["raw"].values, base["raw"].values)  # the baseline's inputs do change
    stats = statistics_dataset(raw)
    for name in ("cover_fraction", "vegetated_patches", "bare_patches", "regime"):
        np.testing.assert_array_equal(other_stats[name].values, stats[name].values)
    np.testing.assert_allclose(other_stats["dominant_wavelength"].values, 100 * stats["dominant_wavelength"].values)
    assert list(base["target"].values) == list(TARGETS)


def test_rescaled_systems_have_identical_pi_groups():
    cfg = rp.preset("smoke")
    values, run, _ = rp.split_parameters(cfg, "test")
    scaled, scaled_run = rp.rescale(values, run, rp.TIME_RESCALE, rp.LENGTH_RESCALE)
    pi = [
        np.array(
            [g.evaluate({**v, **{k: np.full(len(v["R"]), x) for k, x in r.items()}}) for g in parameter_pi_groups()]
        )
        for v, r in ((values, run), (scaled, scaled_run))
    ]
    np.testing.assert_allclose(pi[1], pi[0], rtol=1e-13)
    assert scaled_run["T"] == 3 * run["T"] and scaled["alpha"].max() < values["alpha"].min()


def test_mixed_unit_scales_are_made_coherent(raw):
    """R given in ml instead of l (the rest in l): the Pi groups must not move."""
    other = statistics_dataset(raw)
    base = emulator_features(other)
    other["R"] = other["R"] * 1000
    other["R"].attrs["units"] = "ml d^-1 m^-2"
    np.testing.assert_allclose(emulator_features(other)["pi"].values, base["pi"].values, rtol=1e-13)


def test_errors_name_the_missing_variable(raw):
    with pytest.raises(rk.RietkerkInputError, match=r"run.h5: missing variable\(s\) \['v'\]"):
        statistics_dataset(raw.drop_vars("v"), source="run.h5")
    stats = statistics_dataset(raw)
    with pytest.raises(rk.RietkerkInputError, match="mean_v"):
        emulator_features(stats.drop_vars("mean_v"), source="stats.h5")


def test_regime_map_on_a_small_grid_and_its_figure():
    ds = regime_map("talk", L=64.0, dl=2.0, T=100.0, rainfall=[0.25, 0.6])
    assert regime_labels(ds) == ["bare", "uniform"]
    assert not ds["vegetated_state_exists"].values[0] and ds["vegetated_state_exists"].values[1]
    png = regime_map_figure([ds], snapshots=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(MAPS) == {"talk", "rietkerk2002"}
    with pytest.raises(rk.RietkerkInputError, match="unknown regime map"):
        regime_map("nope")


@pytest.mark.slow
def test_regime_maps_match_anchors():
    """docs/protocols.md#rietkerk on the 100 x 100 grid at T = 200 d (about 40 s)."""
    talk_map = regime_map("talk", rainfall=[0.3, 0.375, 0.4, 0.5, 0.6])
    talk = dict(zip(talk_map["R"].values.tolist(), regime_labels(talk_map)))
    assert talk[0.3] == "bare" and talk[0.375] in ("spots", "labyrinth", "gaps") and talk[0.4] != "uniform"
    assert talk[0.5] == "uniform" and talk[0.6] == "uniform"
    paper = regime_labels(regime_map("rietkerk2002", rainfall=[0.75, 1.0, 1.25]))
    assert paper == ["spots", "labyrinth", "gaps"]
