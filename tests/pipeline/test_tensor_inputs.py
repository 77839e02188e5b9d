"""Symmetric tensor inputs: the invariant scalars and the equivariant vectors they give are complete
enough to write a rigid body's Euler equation exactly, and SO(3) tells mirror images apart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.declared.design import conditions_on_data, design_for
from pipeline.features import invariant_count, invariant_scalars
from sims.declaration import SystemDeclaration

RIGID_BODY = {
    "name": "rigid_body",
    "quantities": [
        {"name": "I", "units": "kg m^2", "kind": "tensor", "role": "state"},
        {"name": "w", "units": "1/s", "kind": "vector", "role": "state"},
        {"name": "tau", "units": "N m", "kind": "vector", "role": "state"},
        {"name": "wdot", "units": "1/s^2", "kind": "vector", "role": "target"},
    ],
}


def _declared(symmetry: str, spec: dict = RIGID_BODY) -> SystemDeclaration:
    return SystemDeclaration.from_dict({**spec, "symmetry": symmetry})


def _rigid_bodies(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    axes = Rotation.random(n, random_state=seed).as_matrix()
    inertia = np.einsum("nij,nj,nkj->nik", axes, rng.uniform(1, 3, (n, 3)), axes)
    return {"I": inertia, "w": rng.normal(size=(n, 3)), "tau": rng.normal(size=(n, 3))}


def _scalar(decl: SystemDeclaration, name: str, values) -> np.ndarray:
    return next(s for s in invariant_scalars(decl.inputs_only()) if s.name == name).compute(values)


def test_eulers_equation_is_a_combination_of_the_basis_with_invariant_coefficients():
    """I dw/dt = tau - w x I w, solved for dw/dt: by Cayley-Hamilton I^-1 = (I^2 - tr(I) I + c2) / det I
    and I^-1 (w x I w) = (I w x I^2 w) / det I, so the target is a combination of four basis vectors whose
    coefficients are functions of the traces. Checked against numpy's solve."""
    decl = _declared("SO(3)")
    values = _rigid_bodies(64)
    basis = {b.name: b.build(values) for b in design_for(decl, "wdot").basis}
    t1, t2, t3 = (_scalar(decl, name, values) for name in ("tr(I)", "tr(I^2)", "tr(I^3)"))
    c2 = (t1**2 - t2) / 2
    det = (t1**3 - 3 * t1 * t2 + 2 * t3) / 6
    rebuilt = (
        basis["I^2.tau"] - t1[:, None] * basis["I.tau"] + c2[:, None] * basis["tau"] - basis["(I.w)x(I^2.w)"]
    ) / det[:, None]
    w, inertia = values["w"], values["I"]
    expected = np.linalg.solve(inertia, (values["tau"] - np.cross(w, np.einsum("nij,nj->ni", inertia, w)))[..., None])
    np.testing.assert_allclose(rebuilt, expected[..., 0], rtol=1e-10, atol=1e-12)


def test_so3_tells_a_tensor_and_a_vector_from_their_mirror_image():
    """A reflection of (I, w) is in general no rotation of them: every O(3) invariant agrees on the two,
    and det(w, I w, I^2 w) has opposite signs, so an SO(3) model can give them different outputs."""
    values = _rigid_bodies(32, seed=1)
    mirror = np.diag([-1.0, 1.0, 1.0])
    mirrored = {"I": mirror @ values["I"] @ mirror, "w": values["w"] @ mirror, "tau": values["tau"] @ mirror}
    for s in invariant_scalars(_declared("O(3)").inputs_only()):
        np.testing.assert_allclose(s.compute(mirrored), s.compute(values), rtol=1e-12, err_msg=s.name)
    chirality = _scalar(_declared("SO(3)"), "det(w,I.w,I^2.w)", values)
    np.testing.assert_allclose(_scalar(_declared("SO(3)"), "det(w,I.w,I^2.w)", mirrored), -chirality, rtol=1e-12)
    assert np.abs(chirality).min() > 1e-6


def test_a_vector_along_an_axis_of_the_tensor_gives_zero_chirality_and_it_is_left_out():
    """w along a principal axis of I on every sample: w x I w and det(w, I w, I^2 w) are round-off, a
    constraint of the data that no feature may amplify."""
    values = _rigid_bodies(40, seed=2)
    values["I"] = np.einsum("ni,ij->nij", np.random.default_rng(3).uniform(1, 3, (40, 3)), np.eye(3))
    values["w"] = values["w"] * np.array([1.0, 0.0, 0.0])
    conditions = conditions_on_data(_declared("SO(3)").inputs_only(), values)
    assert "det(w,I.w,I^2.w)" in conditions.zero
    assert "det(tau,I.tau,I^2.tau)" not in conditions.zero


def test_the_invariants_of_two_tensors_match_their_definition():
    spec = {
        "name": "two_tensors",
        "quantities": [
            {"name": "S", "units": "m^2", "kind": "tensor", "role": "state"},
            {"name": "T", "units": "s", "kind": "tensor", "role": "state"},
            {"name": "y", "units": "1", "role": "target"},
        ],
    }
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 16, 3, 3))
    values = {"S": a + np.swapaxes(a, 1, 2), "T": b + np.swapaxes(b, 1, 2)}
    scalars = {s.name: s for s in invariant_scalars(_declared("O(3)", spec).inputs_only())}
    power = np.linalg.matrix_power
    for i, j in itertools.product((1, 2), repeat=2):
        name = "S:T" if i == j == 1 else f"tr({'S' if i == 1 else 'S^2'} {'T' if j == 1 else 'T^2'})"
        expected = np.trace(power(values["S"], i) @ power(values["T"], j), axis1=1, axis2=2)
        np.testing.assert_allclose(scalars[name].compute(values), expected, rtol=1e-12, err_msg=name)
    assert scalars["tr(S^2 T)"].units == "m ** 4 * s"


@pytest.mark.parametrize("symmetry", ["O(3)", "SO(3)", "O(2)", "SO(2)", "E(3)", "SE(2)"])
@pytest.mark.parametrize("vectors,tensors", [(1, 1), (2, 1), (3, 2), (0, 2)])
def test_the_count_made_before_building_is_what_is_built(symmetry, vectors, tensors):
    kind = "position" if symmetry.startswith(("E", "SE")) and vectors else "vector"
    quantities = [
        {"name": f"v{k}", "units": "m", "kind": kind, "role": "state"}
        for k in range(max(vectors, 2 * (kind == "position")))
    ]
    quantities += [{"name": f"T{k}", "units": "kg", "kind": "tensor", "role": "state"} for k in range(tensors)]
    decl = SystemDeclaration.from_dict(
        {
            "name": "counted",
            "symmetry": symmetry,
            "quantities": [*quantities, {"name": "y", "units": "1", "role": "target"}],
        }
    )
    assert invariant_count(decl.inputs_only()) == len(invariant_scalars(decl.inputs_only()))


def test_the_rigid_body_examples_target_is_eulers_equation_in_the_principal_axes(capsys):
    from fit_examples import generator

    generator("rigid-body").check(n=200)
    assert "check passed" in capsys.readouterr().out
