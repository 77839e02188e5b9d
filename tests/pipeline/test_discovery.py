"""The linear algebra of symmetry discovery (pipeline.discovery) on functions whose gradients are known
exactly: the algebras found are the right ones to round-off, and nothing is found where there is none."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import discovery as dv

RNG = np.random.default_rng(0)
N = 400


def _pair(d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return RNG.normal(size=(N, d)), RNG.normal(size=(N, d))


def test_an_o3_invariant_gives_so3():
    a, b = _pair()
    # f = a.b + |a|^2: grad_a = b + 2a, grad_b = a
    found = dv.solve(dv.invariance_rows([b + 2 * a, a], [a, b]))
    assert found.dimension == 3
    assert max(dv.principal_angles(found.basis, dv.rotation_algebra(3))) < 1e-6
    assert found.relative[3] > 0.3  # the next direction is far from a symmetry


def test_rotations_about_one_axis_give_one_generator_along_it():
    a, b = _pair()
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    # f = |a|^2 - (a.n)^2 + (b.n): invariant under rotations about n only
    grad_a = 2 * a - 2 * (a @ axis)[:, None] * axis
    grad_b = np.broadcast_to(axis, b.shape)
    found = dv.solve(dv.invariance_rows([grad_a, grad_b], [a, b]))
    assert found.dimension == 1
    found_axis = dv.rotation_axis(found.basis[0].reshape(3, 3))
    assert np.degrees(np.arccos(min(1.0, abs(found_axis @ axis)))) < 1e-6
    assert dv.principal_angles(found.basis, dv.rotations_about(axis))[0] < 1e-6


def test_a_minkowski_product_gives_the_lorentz_algebra():
    p, q = _pair(4)
    eta = np.diag([1.0, -1.0, -1.0, -1.0])
    found = dv.solve(dv.invariance_rows([q @ eta, p @ eta], [p, q]))
    assert found.dimension == 6
    assert max(dv.principal_angles(found.basis, dv.lorentz_algebra(4))) < 1e-6
    assert max(dv.principal_angles(found.basis, dv.rotation_algebra(4))) > 45  # boosts are not rotations


def test_an_equivariant_vector_output_gives_so3():
    a, b = _pair()
    s, t = (a * b).sum(1), (b * b).sum(1)
    f = s[:, None] * a + t[:, None] * b  # (a.b) a + |b|^2 b
    eye = np.eye(3)
    # J_a[i, j] = d f_i / d a_j = s delta_ij + a_i b_j ; J_b[i, j] = a_i a_j + t delta_ij + 2 b_i b_j
    jac_a = s[:, None, None] * eye + np.einsum("ni,nj->nij", a, b)
    jac_b = np.einsum("ni,nj->nij", a, a) + t[:, None, None] * eye + 2 * np.einsum("ni,nj->nij", b, b)
    found = dv.solve(dv.equivariance_rows([jac_a, jac_b], [a, b], f))
    assert found.dimension == 3
    assert max(dv.principal_angles(found.basis, dv.rotation_algebra(3))) < 1e-6


def _symmetric(d: int = 3) -> np.ndarray:
    m = RNG.normal(size=(N, d, d))
    return m + np.swapaxes(m, 1, 2)


def test_a_tensor_moves_with_the_vectors():
    """f = v^T T v: invariant when v -> g v and T -> g T g^T together, for orthogonal g only."""
    v, t = RNG.normal(size=(N, 3)), _symmetric()
    grad_v, grad_t = 2 * np.einsum("nab,nb->na", t, v), np.einsum("na,nb->nab", v, v)
    found = dv.solve(dv.invariance_rows([grad_v], [v], [grad_t], [t]))
    assert found.dimension == 3
    assert max(dv.principal_angles(found.basis, dv.rotation_algebra(3))) < 1e-6
    # the tensor held fixed (as discovery treated tensor inputs before): no rotation leaves f unchanged
    assert dv.solve(dv.invariance_rows([grad_v], [v])).dimension == 0


def test_a_tensor_alone_and_a_tensor_driven_vector_output():
    t = _symmetric()
    # f = tr(T^2) + tr(T)^2: grad = 2 T + 2 tr(T) I
    trace = np.trace(t, axis1=1, axis2=2)
    found = dv.solve(dv.invariance_rows([], [], [2 * t + 2 * trace[:, None, None] * np.eye(3)], [t]))
    assert found.dimension == 3 and max(dv.principal_angles(found.basis, dv.rotation_algebra(3))) < 1e-6
    # f = T v, equivariant: J_v[i, j] = T_ij, J_T[i, a, b] = delta_ia v_b
    v = RNG.normal(size=(N, 3))
    jac_t = np.einsum("ia,nb->niab", np.eye(3), v)
    found = dv.solve(dv.equivariance_rows([t], [v], np.einsum("nab,nb->na", t, v), [jac_t], [t]))
    assert found.dimension == 3 and max(dv.principal_angles(found.basis, dv.rotation_algebra(3))) < 1e-6


def test_a_function_without_symmetry_gives_nothing():
    """f = sin(w1.a) + (w2.b)^2 (w3.a) + exp(w4.b / 3) + (w5.a)(w6.b) with generic directions w_k (an
    axis-aligned f such as a_y b_z^2 would keep the scaling of a_y against b_z, which is found)."""
    a, b = _pair()
    w = np.random.default_rng(7).normal(size=(6, 3))
    u = [a @ w[0], b @ w[1], a @ w[2], b @ w[3], a @ w[4], b @ w[5]]
    grad_a = np.cos(u[0])[:, None] * w[0] + (u[1] ** 2)[:, None] * w[2] + u[5][:, None] * w[4]
    grad_b = (2 * u[1] * u[2])[:, None] * w[1] + (np.exp(u[3] / 3) / 3)[:, None] * w[3] + u[4][:, None] * w[5]
    found = dv.solve(dv.invariance_rows([grad_a, grad_b], [a, b]))
    assert found.dimension == 0 and found.relative[0] > 0.2


def test_scalings_match_the_dimensional_analysis():
    """f = m (a.b + |a|^2) (kg m^2) of m (kg), a and b (m): the changes of kg and of m are its scalings
    (a.b alone would also let a and b scale apart)."""
    a, b = _pair()
    m = RNG.uniform(1, 3, size=N)
    ab, aa = (a * b).sum(1), (a * a).sum(1)
    f = m * (ab + aa)
    directional = [f, m * (ab + 2 * aa), m * ab]  # m df/dm, a . grad_a f, b . grad_b f
    found = dv.solve(dv.scaling_rows(directional, f))
    exponents = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 2.0]])  # (kg, m) of m, a, b, f
    expected = dv.dimensional_scalings(exponents)
    assert found.dimension == expected.shape[0] == 2
    assert max(dv.principal_angles(found.basis, expected)) < 1e-6


def test_constant_inputs_restrict_the_predicted_scalings():
    """G (m^3 kg^-1 s^-2) constant: only the unit changes that keep G fixed are predicted."""
    # rows: G, m (kg), x (m), v (m/s), E (kg m^2 s^-2); columns: kg, m, s
    exponents = np.array([[-1, 3, -2], [1, 0, 0], [0, 1, 0], [0, 1, -1], [1, 2, -2]], dtype=float)
    assert dv.dimensional_scalings(exponents).shape[0] == 3
    kept = dv.dimensional_scalings(exponents, fixed=[0])
    assert kept.shape[0] == 2
    assert np.allclose(kept[:, 0], 0)  # G does not scale
    assert dv.dimensional_scalings(np.array([[1.0], [1.0]]), fixed=[0]).shape[0] == 0


def test_too_few_samples_are_refused():
    a, b = _pair()
    with pytest.raises(ValueError, match="cannot determine 9 unknowns"):
        dv.solve(dv.invariance_rows([b[:5], a[:5]], [a[:5], b[:5]]))


def _linear(found: dv.NullSpace, d: int) -> dict:
    """A discovery's linear result (surrogates.declared.discovery.discover) from a solution."""
    out = {
        "space_dim": d,
        "dimension": found.dimension,
        "angles_to_rotations": dv.principal_angles(found.basis, dv.rotation_algebra(d)).tolist(),
    }
    if d == 4:
        out["angles_to_lorentz"] = dv.principal_angles(found.basis, dv.lorentz_algebra(d)).tolist()
    if d == 3 and found.dimension == 1:
        axis = dv.rotation_axis(found.basis[0].reshape(3, 3))
        out["axis"] = axis.tolist()
        out["angles_to_rotations_about_axis"] = dv.principal_angles(found.basis, dv.rotations_about(axis)).tolist()
    return out


def test_the_discovered_group_is_named_as_a_declaration_states_it():
    a, b = _pair()
    rotations = dv.discovered_group(_linear(dv.solve(dv.invariance_rows([b + 2 * a, a], [a, b])), 3))
    assert (rotations.linear, rotations.symmetry(False), rotations.symmetry(True)) == ("rotations", "SO(3)", "SE(3)")
    axis = np.array([1.0, 2.0, 2.0]) / 3.0
    grad_a = 2 * a - 2 * (a @ axis)[:, None] * axis
    about = dv.discovered_group(
        _linear(dv.solve(dv.invariance_rows([grad_a, np.broadcast_to(axis, b.shape)], [a, b])), 3)
    )
    assert about.linear == "axis" and about.symmetry(False) == "SO(3)"
    assert abs(np.dot(about.axis, axis)) == pytest.approx(1.0, abs=1e-10)
    p, q = _pair(4)
    eta = np.diag([1.0, -1.0, -1.0, -1.0])
    lorentz = dv.discovered_group(_linear(dv.solve(dv.invariance_rows([q @ eta, p @ eta], [p, q])), 4))
    assert (lorentz.linear, lorentz.symmetry(False)) == ("lorentz", "O(1,3)")
    nothing = dv.discovered_group({"space_dim": 3, "dimension": 0, "angles_to_rotations": []})
    assert nothing.symmetry(True) == "none"


def test_a_discovered_algebra_no_declaration_states_is_refused_with_what_was_found():
    a, b = _pair()
    # f = |a|^2 / |b|^2: invariant under rotations and under the common scaling of a and b (the identity)
    norm_a, norm_b = (a * a).sum(1, keepdims=True), (b * b).sum(1, keepdims=True)
    found = dv.solve(dv.invariance_rows([2 * a / norm_b, -2 * b * norm_a / norm_b**2], [a, b]))
    assert found.dimension == 4
    with pytest.raises(ValueError, match=r"the 4 discovered generator\(s\) are not so\(3\), the Lorentz algebra"):
        dv.discovered_group(_linear(found, 3))
