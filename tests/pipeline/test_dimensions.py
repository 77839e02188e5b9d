"""Exact dimensional analysis: integer kernels, Pi groups, scaling monomials (docs/protocols.md)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dimensions import (
    DimensionalAnalysis,
    DimensionalAnalysisError,
    hermite_rows,
    integer_kernel,
    integer_solution,
)
from pipeline.features import FeaturePlan
from pipeline.units import dimension_vector, parse
from sims.declaration import Role, find_system

RIETKERK = find_system("rietkerk")
PENDULUM = find_system("spring_pendulum")

# The 12 groups of docs/protocols.md#rietkerk, as exponents.
PUBLISHED_RIETKERK = [
    {"c": 1, "gm": 1, "alpha": -1},
    {"alpha": 1, "k1": 1, "R": -1},
    {"alpha": 1, "k2": 1, "R": -1, "c": -1},
    {"dw": 1, "alpha": -1},
    {"dv": 1, "alpha": -1},
    {"W0": 1},
    {"Dv": 1, "alpha": -1, "L": -2},
    {"Du": 1, "alpha": -1, "L": -2},
    {"alpha": 1, "T": 1},
    {"alpha": 1, "dt": 1},
    {"Dw": 1, "alpha": -1, "L": -2},
    {"dl": 1, "L": -1},
]


def exponent_matrix(groups, names) -> np.ndarray:
    return np.array([[float(g.get(n, 0)) for n in names] for g in groups])


def group_vectors(analysis: DimensionalAnalysis, groups=None) -> list[dict[str, Fraction]]:
    return [dict(g.exponents) for g in (analysis.pi_groups if groups is None else groups)]


def assert_dimensionless_by_pint(analysis: DimensionalAnalysis, group) -> None:
    product = parse("1")
    for name, power in group.exponents:
        product = product * parse(analysis.units[name]) ** float(power)
    assert product.dimensionless, f"{group.name} has units {product.units}"
    assert (
        dimension_vector(
            " ".join(f"({analysis.units[n]})**{float(p)}" for n, p in group.exponents), analysis.independent_units
        )
        == ()
    )


def rietkerk_inputs():
    return [(q.name, q.units) for q in RIETKERK.select(roles=(Role.PARAMETER,))]


def test_rietkerk_with_litres_independent_has_exactly_the_12_published_groups():
    analysis = DimensionalAnalysis(rietkerk_inputs(), independent_units=("l",))
    assert len(analysis.names) == 16
    assert analysis.base_dimensions == ("[length]", "[liter]", "[mass]", "[time]")
    assert analysis.rank == 4
    assert len(analysis.pi_groups) == 12
    ours = exponent_matrix(group_vectors(analysis), analysis.names)
    published = exponent_matrix(PUBLISHED_RIETKERK, analysis.names)
    assert np.linalg.matrix_rank(published) == 12
    assert np.linalg.matrix_rank(np.vstack([ours, published])) == 12  # the same 12-dimensional space
    for group in analysis.pi_groups:
        assert_dimensionless_by_pint(analysis, group)
    assert all(p.denominator == 1 for g in analysis.pi_groups for _, p in g.exponents)
    assert "Du alpha^-1 L^-2" in analysis.pi_group_names and "T alpha" in analysis.pi_group_names


def test_rietkerk_with_litres_as_cubic_metres_has_13_groups():
    analysis = DimensionalAnalysis(rietkerk_inputs())
    assert analysis.rank == 3 and len(analysis.pi_groups) == 13
    for group in analysis.pi_groups:
        product = parse("1")
        for name, power in group.exponents:
            product = product * parse(analysis.units[name]) ** float(power)
        assert product.to_reduced_units().dimensionless


def test_rietkerk_groups_of_the_declaration_match():
    analysis = DimensionalAnalysis.of_declaration(RIETKERK, roles=(Role.PARAMETER,))
    assert len(analysis.pi_groups) == 12


def test_pendulum_quantities_give_the_buckingham_count_and_an_energy_scale():
    analysis = DimensionalAnalysis.of_declaration(PENDULUM)
    assert len(analysis.names) == 11 and analysis.rank == 3
    assert len(analysis.pi_groups) == 11 - 3
    for group in analysis.pi_groups:
        assert_dimensionless_by_pint(analysis, group)
        assert group.exponents[0][1] == 1  # each group holds one non-repeating quantity to the first power
    energy = analysis.scaling("kg m^2 s^-2")
    assert set(energy.quantities) <= {q.name for q in PENDULUM.select(roles=(Role.PARAMETER,))}
    units = parse("1")
    for name, power in energy.exponents:
        units = units * parse(analysis.units[name]) ** float(power)
    assert units.dimensionality == parse("J").dimensionality


def test_pendulum_invariant_scalars_count_matches_an_independent_rank():
    plan = FeaturePlan(PENDULUM)
    names = [s.name for s in plan.scalars]
    assert len(names) == 6 + 15  # six scalars and the Gram matrix of g, q1, q2, p1, p2
    matrix = np.array(
        [
            [float(dict(dimension_vector(s.units)).get(d, 0)) for s in plan.scalars]
            for d in ("[mass]", "[length]", "[time]")
        ]
    )
    assert len(plan.pi_groups) == len(names) - np.linalg.matrix_rank(matrix) == 18
    assert plan.scalings["H"].quantities and all(
        next(s for s in plan.scalars if s.name == q).role is Role.PARAMETER for q in plan.scalings["H"].quantities
    )


def test_unreachable_target_units_give_a_clear_error():
    analysis = DimensionalAnalysis.of_declaration(PENDULUM)
    with pytest.raises(DimensionalAnalysisError, match=r"none of them carries \[temperature\]"):
        analysis.scaling("K")
    only_lengths = DimensionalAnalysis([("l1", "m"), ("l2", "m")])
    with pytest.raises(DimensionalAnalysisError, match=r"none of them carries \[time\]"):
        only_lengths.scaling("s")


def test_unreachable_within_the_spanned_dimensions_gives_a_clear_error():
    analysis = DimensionalAnalysis([("v", "m s^-1"), ("a", "m s^-2")])
    assert analysis.scaling("s").name == "v a^-1"
    with pytest.raises(DimensionalAnalysisError, match="span only combinations"):
        DimensionalAnalysis([("v", "m s^-1"), ("w", "m s^-1")]).scaling("m")


def test_fractional_scaling_when_no_integer_monomial_exists():
    analysis = DimensionalAnalysis([("g", "m s^-2"), ("l", "m")])
    assert analysis.scaling("s").exponents == (("g", Fraction(-1, 2)), ("l", Fraction(1, 2)))


def test_integer_and_rational_bases_span_the_same_space_and_are_dimensionless():
    analysis = DimensionalAnalysis.of_declaration(PENDULUM)
    rational = exponent_matrix(group_vectors(analysis), analysis.names)
    lattice = exponent_matrix(group_vectors(analysis, analysis.integer_groups), analysis.names)
    assert np.linalg.matrix_rank(np.vstack([rational, lattice])) == len(analysis.pi_groups)
    assert all(p.denominator == 1 for g in analysis.integer_groups for _, p in g.exponents)
    for group in analysis.integer_groups:
        assert_dimensionless_by_pint(analysis, group)
    integer = DimensionalAnalysis.of_declaration(PENDULUM, exponents="integer")
    assert integer.pi_groups == analysis.integer_groups
    assert any(p.denominator == 2 for g in analysis.pi_groups for _, p in g.exponents)  # p / sqrt(m k) / l


def test_explicit_repeating_quantities_are_checked():
    inputs = rietkerk_inputs()
    chosen = DimensionalAnalysis(inputs, independent_units=("l",), repeating=("R", "alpha", "c", "L"))
    assert "k1 R^-1 alpha" in chosen.pi_group_names
    with pytest.raises(DimensionalAnalysisError, match="independent"):
        DimensionalAnalysis(inputs, independent_units=("l",), repeating=("alpha", "dw", "c", "L"))
    with pytest.raises(DimensionalAnalysisError, match="not among"):
        DimensionalAnalysis(inputs, independent_units=("l",), repeating=("nope", "alpha", "c", "L"))


def test_all_dimensionless_inputs_are_their_own_groups():
    analysis = DimensionalAnalysis([("a", "1"), ("b", "")])
    assert analysis.rank == 0 and analysis.pi_group_names == ("a", "b")


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda m: st.integers(1, 7).flatmap(
            lambda n: st.lists(st.lists(st.integers(-3, 3), min_size=n, max_size=n), min_size=m, max_size=m)
        )
    )
)
def test_integer_kernel_is_an_exact_saturated_lattice_basis(matrix):
    a = np.array(matrix, dtype=object)
    rank, basis = integer_kernel(matrix)
    n = len(matrix[0])
    assert rank == np.linalg.matrix_rank(np.array(matrix, dtype=float))
    assert len(basis) == n - rank
    for vector in basis:
        assert all(sum(a[i, j] * vector[j] for j in range(n)) == 0 for i in range(len(matrix)))
    if basis:
        # saturated: the Hermite form has unit pivots only if every primitive kernel vector is an
        # integer combination; check via the gcd of the maximal minors (1 for a saturated lattice)
        import itertools
        import math

        b = np.array(basis, dtype=float)
        k = len(basis)
        minors = [round(np.linalg.det(b[:, cols])) for cols in itertools.combinations(range(n), k)]
        assert math.gcd(*[int(x) for x in minors]) == 1
        rows, pivots = hermite_rows(basis, list(range(n)))
        assert pivots == sorted(pivots) and all(rows[i][p] > 0 for i, p in enumerate(pivots))


def test_integer_scaling_may_need_more_than_rank_many_quantities():
    analysis = DimensionalAnalysis([("A", "m^2"), ("V", "m^3")])
    assert analysis.scaling("m").exponents == (("A", Fraction(-1)), ("V", Fraction(1)))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda m: st.integers(1, 6).flatmap(
            lambda n: st.tuples(
                st.lists(st.lists(st.integers(-3, 3), min_size=n, max_size=n), min_size=m, max_size=m),
                st.lists(st.integers(-3, 3), min_size=n, max_size=n),
            )
        )
    )
)
def test_integer_solution_solves_whenever_an_integer_solution_exists(case):
    matrix, x_true = case
    rhs = [sum(a * x for a, x in zip(row, x_true, strict=True)) for row in matrix]
    x = integer_solution(matrix, rhs)
    assert x is not None
    assert [sum(a * xi for a, xi in zip(row, x, strict=True)) for row in matrix] == rhs
    assert integer_solution([[2, 4]], [1]) is None and integer_solution([[1, 1], [1, 1]], [1, 2]) is None
