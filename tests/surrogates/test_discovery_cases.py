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
