"""The Rietkerk sweep as a declared system (surrogates.rietkerk.generic_path): every statistic is
reachable by a units-equivariant surrogate, which is exact under the changes of units the Rietkerk
OOD split makes (litres an independent unit)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.declared.design import design_for
from pipeline.declared.splits import factors
from sims.rietkerk import system as rk
from surrogates.declared.models import DeclaredSurrogate, predict
from surrogates.rietkerk.generic_path import TARGETS, declaration, dimensionless


def _parameters(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {p: rk.RIETKERK_2002.get(p, 1.0) * np.exp(rng.uniform(-0.5, 0.5, n)) for p in rk.PARAMETERS}


def test_every_statistic_has_a_units_equivariant_design():
    decl = declaration()
    assert decl.independent_units == ("l",)
    for target in TARGETS:
        design = design_for(decl, target)
        assert design.scaling is not None


def test_the_generic_surrogate_is_exact_under_the_rietkerk_change_of_units():
    decl = declaration()
    values = _parameters(32, np.random.default_rng(0))
    # the units split of the sweep: grams -> kg, litres -> ml, days -> hours, metres -> cm
    scales = {"[mass]": 1e-3, "[liter]": 1e3, "[time]": 24.0, "[length]": 100.0}
    f = factors(decl, scales)
    for target in TARGETS:
        model = DeclaredSurrogate(decl.to_dict(), target, "pi", hidden=(8,)).double()
        model.fit_normalisation(values, np.ones(32))
        base = predict(model, values)[0]
        moved = predict(model, {q: v * f[q] for q, v in values.items()})[0]
        np.testing.assert_allclose(moved, base * f[target], rtol=1e-10)


def test_statistics_are_made_dimensionless_by_each_samples_own_scales():
    stats = xr.Dataset({"k2": ("sample", [2.0, 4.0]), "k1": ("sample", [10.0, 20.0])})
    values = {"mean_v": np.array([1.0, 1.0]), "std_v": np.array([2.0, 2.0]), "mean_w": np.array([5.0, 5.0])}
    values["cover_fraction"] = np.array([0.5, 0.25])
    out = dimensionless(stats, values)
    np.testing.assert_allclose(out, [[0.5, 1.0, 0.5, 0.5], [0.25, 0.5, 0.25, 0.25]])
