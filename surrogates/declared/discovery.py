"""Symmetries of a declared system discovered from its data (``eqs discover``, docs/discovery.md): an
unconstrained model (the ``raw`` baseline) is fitted, differentiated at held-out samples, and the
linear algebra of :mod:`pipeline.discovery` finds the generators and scalings it respects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pipeline import discovery as dv
from pipeline.declared.evaluation import relative_errors
from pipeline.units import dimension_vector
from sims.declaration import Kind, SystemDeclaration
from surrogates.declared.models import DeclaredSurrogate, predict

CONSTANT = 1e-12  # an input whose spread over the data is below this fraction of its size is constant


def derivatives(model: DeclaredSurrogate, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The model's output f at ``values`` (n, *out) and, per input, the derivative of every output
    component: (n, *out, *input) (float64)."""
    model.eval()
    param = next(iter(model.buffers()))
    inputs = {
        q.name: torch.tensor(np.asarray(values[q.name]), dtype=param.dtype, device=param.device, requires_grad=True)
        for q in model.inputs
    }
    out = model._predict(inputs)[0]
    n = out.shape[0]
    flat = out.reshape(n, -1)
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in inputs}
    for c in range(flat.shape[1]):
        found = torch.autograd.grad(flat[:, c].sum(), list(inputs.values()), retain_graph=True, allow_unused=True)
        for name, g in zip(inputs, found):
            grads[name].append(torch.zeros_like(inputs[name]) if g is None else g)
    jac = {
        name: torch.stack(parts, 1).reshape(n, *out.shape[1:], *inputs[name].shape[1:]).detach().cpu().numpy()
        for name, parts in grads.items()
    }
    return out.detach().cpu().numpy(), jac


def _linear_rows(model: DeclaredSurrogate, values: Mapping[str, np.ndarray], out, jac) -> np.ndarray:
    """Constraint rows (n, r, d^2) of the linear symmetries of the declared vector space, acting on
    every vector (v -> g v) and rank-2 tensor (T -> g T g^T) input together."""
    names = [q.name for q in model.inputs if q.kind in (Kind.VECTOR, Kind.POSITION)]
    tensor_names = [q.name for q in model.inputs if q.kind is Kind.TENSOR]
    if not names and not tensor_names:
        raise ValueError(
            "the system declares no vector or tensor inputs: there is no vector space to find symmetries of"
        )
    d = model.d
    vectors = [np.asarray(values[name], dtype=float) for name in names]
    tensors = [np.asarray(values[name], dtype=float) for name in tensor_names]
    n = out.shape[0]
    if not model.design.is_vector:  # one invariance block per scalar output (a member target: per member)
        outputs = out.reshape(n, -1).shape[1]
        blocks = [
            dv.invariance_rows(
                [jac[name].reshape(n, outputs, *vectors[k].shape[1:])[:, c] for k, name in enumerate(names)],
                vectors,
                [jac[name].reshape(n, outputs, d, d)[:, c] for name in tensor_names],
                tensors,
            )
            for c in range(outputs)
        ]
        return np.stack(blocks, 1)
    members = out.reshape(n, -1, d).shape[1]
    blocks = []
    for m in range(members):
        jacobians = [jac[name].reshape(n, members, d, *vectors[k].shape[1:])[:, m] for k, name in enumerate(names)]
        tensor_jacobians = [jac[name].reshape(n, members, d, d, d)[:, m] for name in tensor_names]
        output = out.reshape(n, members, d)[:, m]
        blocks.append(dv.equivariance_rows(jacobians, vectors, output, tensor_jacobians, tensors))
    return np.concatenate(blocks, 1)


def constant_inputs(decl: SystemDeclaration, values: Mapping[str, np.ndarray]) -> list[str]:
    """The inputs that do not vary over the data (to round-off)."""
    out = []
    for q in decl.inputs_only().quantities:
        x = np.asarray(values[q.name], dtype=float)
        if np.std(x, axis=0).max() <= CONSTANT * max(np.abs(x).max(), np.finfo(float).tiny):
            out.append(q.name)
    return out


def discover(
    model: DeclaredSurrogate,
    values: Mapping[str, np.ndarray],
    threshold: float = dv.THRESHOLD,
    constant: Sequence[str] = (),
    gap: float = dv.GAP,
) -> dict[str, Any]:
    """The linear symmetries of the declared vector space and the scalings the fitted ``model``
    respects at the samples ``values``, compared with the rotations, the Lorentz algebra and the
    dimensional analysis of the declaration (angles in degrees)."""
    decl, d = model.decl, model.d
    out, jac = derivatives(model, values)
    result: dict[str, Any] = {
        "target": model.target,
        "samples": int(out.shape[0]),
        "threshold": threshold,
        "gap": gap,
    }
    if any(q.kind in (Kind.VECTOR, Kind.POSITION, Kind.TENSOR) for q in model.inputs):
        found = dv.solve(_linear_rows(model, values, out, jac), threshold, gap)
        generators = found.basis.reshape(-1, d, d)
        linear: dict[str, Any] = {
            "space_dim": d,
            "dimension": found.dimension,
            "generators": generators.tolist(),
            "relative_residuals": found.relative.tolist(),
            "angles_to_rotations": dv.principal_angles(found.basis, dv.rotation_algebra(d)).tolist(),
        }
        if decl.group == "Lorentz":
            linear["angles_to_lorentz"] = dv.principal_angles(found.basis, dv.lorentz_algebra(d)).tolist()
        if d == 3 and found.dimension == 1:
            axis = dv.rotation_axis(generators[0])
            linear["axis"] = axis.tolist()
            linear["angles_to_rotations_about_axis"] = dv.principal_angles(
                found.basis, dv.rotations_about(axis)
            ).tolist()
        result["linear"] = linear
    result["scalings"] = _scalings(model, values, out, jac, constant, threshold, gap)
    return result


def _scalings(model, values, out, jac, constant: Sequence[str], threshold: float, gap: float) -> dict[str, Any]:
    decl = model.decl
    n = out.shape[0]
    names = [q.name for q in model.inputs if q.name not in constant]
    directional = []
    for name in names:
        x = np.asarray(values[name], dtype=float)
        j = jac[name].reshape(n, -1, x[0].size)  # (n, outputs, input components)
        directional.append(np.einsum("noi,ni->no", j, x.reshape(n, -1)))
    found = dv.solve(dv.scaling_rows(directional, out.reshape(n, -1)), threshold, gap)
    units = [q.units for q in model.inputs] + [model.design.target.units]
    vectors = [dict(dimension_vector(u, decl.independent_units)) for u in units]
    base = sorted({b for v in vectors for b in v})
    exponents = np.array([[float(v.get(b, 0)) for b in base] for v in vectors]).reshape(len(units), len(base))
    order = [i for i, q in enumerate(model.inputs) if q.name not in constant] + [len(model.inputs)]
    fixed = [i for i, q in enumerate(model.inputs) if q.name in constant]
    expected_all = dv.dimensional_scalings(exponents, fixed)
    expected = expected_all[:, order] if expected_all.size else expected_all
    return {
        "quantities": names + [model.target],
        "left_out_as_constant": list(constant),
        "dimension": found.dimension,
        "exponents": found.basis.tolist(),
        "relative_residuals": found.relative.tolist(),
        "base_dimensions": base,
        "expected_dimension": int(expected.shape[0]),
        "angles_to_dimensional": dv.principal_angles(found.basis, expected).tolist(),
        # whether or not they pass the threshold and gap: how close the best directions are to the units'
        "angles_of_best_to_dimensional": dv.principal_angles(found.ordered[: len(expected)], expected).tolist(),
    }


def median_error(model: DeclaredSurrogate, values: Mapping[str, np.ndarray], target: np.ndarray) -> float:
    """The median relative error of the fitted model on the samples the discovery reads."""
    return float(np.median(relative_errors(predict(model, values)[0], np.asarray(target))))
