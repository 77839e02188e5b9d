"""The acceptance cases of symmetry discovery on the spring pendulum, at tiny sizes
(surrogates.declared.discovery_cases; the full-size run and its numbers are in docs/RESULTS.md)."""

from __future__ import annotations

import pytest

from surrogates.declared.discovery_cases import run_case, training_config


@pytest.mark.parametrize(
    "case, samples, epochs, hidden",
    [
        ("gravity-fixed", 1000, 60, (32, 32)),  # rotations about z: one generator, within 5 degrees of z
        ("gravity-input", 2000, 150, (64, 64)),  # all rotations: so(3), every principal angle below 5 degrees
        ("no-symmetry", 1000, 60, (32, 32)),  # a term along generic directions added: nothing
    ],
)
def test_the_pendulum_cases_find_what_the_energy_respects(case, samples, epochs, hidden):
    result = run_case(case, samples, training_config(epochs), hidden, threshold=0.2)
    assert result["passed"], (result["checks"], result["linear"]["relative_residuals"][:5], result["model_error"])


def test_the_background_field_adds_its_potential_to_the_same_inputs():
    """The relaxed-symmetry study's data (``--background EPS``): one declaration and the same inputs for every
    EPS; the energy gains the potential of an undeclared field of EPS along -x, m1 q1x + m2 q2x per unit
    (the EMLP protocol's draw has unit masses), which no rotation of the declared vectors accounts for."""
    import numpy as np

    from surrogates.declared.discovery_cases import case_data

    spec, values, exact = case_data("gravity-input", 200, seed=3)
    broken_spec, broken_values, broken = case_data("gravity-input", 200, seed=3, background=0.3)
    assert broken_spec == spec and values.keys() == broken_values.keys()
    assert all(np.array_equal(values[k], broken_values[k]) for k in values)
    np.testing.assert_allclose(broken - exact, 0.3 * (values["q1"][:, 0] + values["q2"][:, 0]), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_the_units_case_finds_the_scalings_of_kg_m_and_s():
    """The units case at the size whose model is accurate enough (about 1 %) to separate the three scalings of
    kg, m and s from the energy's near-symmetry (docs/RESULTS.md); with them the three rotations. Minutes."""
    result = run_case("units", 32000, training_config(800), (128, 128), threshold=0.2)
    assert result["passed"], (result["checks"], result["scalings"]["relative_residuals"][:5], result["model_error"])
