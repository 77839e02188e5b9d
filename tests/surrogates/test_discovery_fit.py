"""Symmetry discovery from data through a fitted unconstrained model (surrogates.declared.discovery), at
tiny sizes: the rotations about the one axis a target respects, within 5 degrees; nothing for a target
without symmetry; the scalings found lie in the span dimensional analysis predicts."""

from __future__ import annotations

import numpy as np
import pytest

from surrogates.declared import discovery
from surrogates.declared.models import fit_surrogate
from surrogates.training import TrainConfig

SPEC = {
    "name": "toy",
    "symmetry": "O(3)",
    "quantities": [
        {"name": "m", "units": "kg", "kind": "scalar", "role": "parameter"},
        {"name": "a", "units": "m", "kind": "vector", "role": "state"},
        {"name": "b", "units": "m", "kind": "vector", "role": "state"},
        {"name": "y", "units": "kg m^2", "kind": "scalar", "role": "target"},
    ],
}


def _targets(m, a, b):
    return {
        # invariant under rotations about z (and reflections through planes containing it) only
        "about z": m * (a[:, 0] ** 2 + a[:, 1] ** 2 + a[:, 2] * b[:, 2] + a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]),
        # no linear symmetry of the vectors
        "none": m * (a[:, 0] * b[:, 1] + a[:, 2] ** 2 + 0.5 * a[:, 1] * b[:, 0] ** 2),
    }


@pytest.fixture(scope="module")
def found():
    rng = np.random.default_rng(0)
    n = 1000
    m, a, b = rng.uniform(1, 3, size=n), rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    values = {"m": m, "a": a, "b": b}
    parts = {"train": slice(0, 700), "val": slice(700, 850), "test": slice(850, n)}
    config = TrainConfig(seed=0, epochs=60, batch_size=128, lr=3e-3, progress=False)
    out = {}
    for name, y in _targets(m, a, b).items():

        def take(part, y=y):
            return {k: v[parts[part]] for k, v in values.items()}, y[parts[part]]

        model, _ = fit_surrogate(SPEC, "y", "raw", take("train"), take("val"), config, hidden=(32, 32))
        out[name] = discovery.discover(model, take("test")[0])
        out[name]["model_error"] = discovery.median_error(model, *take("test"))
    return out


def test_rotations_about_the_axis_the_target_respects_are_found(found):
    result = found["about z"]
    assert result["model_error"] < 0.2
    linear = result["linear"]
    assert linear["dimension"] == 1
    axis = np.asarray(linear["axis"])
    assert np.degrees(np.arccos(min(1.0, abs(axis[2])))) < 5.0
    assert linear["angles_to_rotations"][0] < 5.0  # a rotation, not another linear map


def test_a_target_without_symmetry_gives_no_generator(found):
    assert found["none"]["linear"]["dimension"] == 0
    assert found["none"]["linear"]["relative_residuals"][0] > found["none"]["threshold"]


def test_the_scalings_found_lie_in_the_span_of_the_units(found):
    scalings = found["about z"]["scalings"]
    assert scalings["expected_dimension"] == 2 and scalings["base_dimensions"] == ["[length]", "[mass]"]
    assert 1 <= scalings["dimension"] <= 2
    assert max(scalings["angles_to_dimensional"]) < 5.0
