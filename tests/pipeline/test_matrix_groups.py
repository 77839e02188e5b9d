"""Invariant tensors of matrix groups: their number against the character formula (an independent
reference: the mean of trace(g)^r over the group), their exact invariance, and bad groups refused."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import support

from pipeline.matrix_groups import MatrixGroup, about_z, invariant_tensors

RANKS = range(7)


def _finite_group(group: MatrixGroup) -> list[np.ndarray]:
    """Every element of a finite group, by closing its generators under products."""
    elements = [np.eye(group.d)]
    frontier = list(elements)
    while frontier:
        new = []
        for g, h in itertools.product(frontier, group.discrete_generators):
            product = g @ h
            if not any(np.allclose(product, e, atol=1e-9) for e in elements + new):
                new.append(product)
        elements += new
        frontier = new
    return elements


def _circle_mean(f, points: int = 4096) -> float:
    """The mean over the rotation angle about z (the trapezoid rule is exact for these trigonometric polynomials)."""
    theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return float(np.mean(f(theta)))


def _so3_mean(f, points: int = 200_001) -> float:
    """The Haar mean of a class function of SO(3) by Weyl's integration formula over the rotation angle."""
    theta = np.linspace(0, np.pi, points)
    return float(np.trapezoid(f(theta) * (1 - np.cos(theta)) / np.pi, theta))


def _character_dimension(name: str, r: int) -> float:
    """dim of the invariants of (R^3)^{(x) r} = the Haar mean of trace(g)^r."""
    rotation = lambda t: (1 + 2 * np.cos(t)) ** r  # noqa: E731 - the character of a rotation about an axis
    if name == "SO(3)":
        return _so3_mean(rotation)
    if name == "O(3)":  # the other component is -SO(3): trace(-g)^r = (-1)^r trace(g)^r
        return 0.5 * (1 + (-1) ** r) * _so3_mean(rotation)
    if name == "SO(2)":
        return _circle_mean(rotation)
    if name == "O(2)":  # the mirrors through a vertical plane have eigenvalues 1, 1, -1
        return 0.5 * (_circle_mean(rotation) + 1.0)
    elements = _finite_group(about_z(name))
    return float(np.mean([np.trace(g) ** r for g in elements]))


GROUPS = support.matrix_groups()


@pytest.mark.parametrize("name", GROUPS)
def test_the_number_of_invariant_tensors_is_the_character_formulas(name):
    found = [invariant_tensors(GROUPS[name], r).shape[1] for r in RANKS]
    expected = [_character_dimension(name, r) for r in RANKS]
    np.testing.assert_allclose(found, expected, atol=1e-6)
    assert found[0] == 1 and (found[2] >= 1)  # the scalar and the identity (the metric) are always there


def test_the_finite_groups_have_their_orders():
    assert len(_finite_group(about_z("D2"))) == 4 and len(_finite_group(about_z("D6"))) == 12


@pytest.mark.parametrize("name", GROUPS)
def test_invariant_tensors_are_orthonormal_and_exactly_invariant(name):
    group, rng = GROUPS[name], np.random.default_rng(0)
    for r in range(1, 6):
        basis = invariant_tensors(group, r)
        np.testing.assert_allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-13)
        for _ in range(3):
            g = group.random_element(rng)
            moved = basis.reshape((group.d,) * r + (-1,))
            for axis in range(r):  # g on every index
                moved = np.moveaxis(np.tensordot(g, moved, axes=([1], [axis])), 0, axis)
            np.testing.assert_allclose(moved.reshape(basis.shape), basis, atol=1e-12)


def test_random_elements_belong_to_the_group():
    rng = np.random.default_rng(1)
    for name, group in GROUPS.items():
        g = group.random_element(rng)
        np.testing.assert_allclose(g @ g.T, np.eye(3), atol=1e-12)
        if name != "O(3)" and name != "SO(3)":  # subgroups of O(3) fixing the z axis
            np.testing.assert_allclose(g[:, 2], [0, 0, 1], atol=1e-12)
        if name.startswith("SO"):
            assert np.linalg.det(g) == pytest.approx(1.0)
    # the metric of a rank-2 SO(2) basis: the identity, e_z e_z and the rotation generator (three)
    assert invariant_tensors(GROUPS["SO(2)"], 2).shape[1] == 3


def test_bad_generators_and_names_are_refused():
    with pytest.raises(ValueError, match="antisymmetric"):
        MatrixGroup("bad", 2, lie=(((1.0, 0.0), (0.0, 1.0)),))
    with pytest.raises(ValueError, match="orthogonal"):
        MatrixGroup("bad", 2, discrete=(((2.0, 0.0), (0.0, 1.0)),))
    with pytest.raises(ValueError, match="unknown group about z 'D0'"):
        about_z("D0")
