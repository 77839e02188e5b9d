"""The symmetry checks of a model, read from its :class:`~pipeline.model_io.ModelIO`: random group
elements act on every declared input and output as its kind says, random changes of units rescale
them as their units say. :func:`pipeline.symmetry.assert_equivariant` and
:func:`pipeline.symmetry.assert_units_equivariant` call these for a model; the measurements (the
largest relative error, which the comparison of methods reports) are :func:`measure_equivariance`
and :func:`measure_units_equivariance`.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline.invariants import is_torch
from pipeline.matrix_groups import MatrixGroup
from pipeline.model_io import ModelIO, Port, Slot, model_io, space_dim
from pipeline.symmetry import (
    GroupElement,
    SymmetryReport,
    _as_tuple,
    _check,
    _like,
    elementwise_relative_error,
    random_element,
    random_unit_scales,
    relative_error,
    unit_factor,
)
from pipeline.units import dimension_vector, scale_factor, substitute_units


def act_port(g: GroupElement, x: Any, port: Port, d: int | None) -> Any:
    """Apply ``g`` to the array of ``port``: every slot as its kind says (packed slots column by column)."""
    if all(slot.kind == "scalar" for slot in port.slots):
        return x
    if not port.packed:
        return _act_slot(g, x, port.slots[0], d, packed=False)
    parts = [_act_slot(g, x[..., cols], slot, d, packed=True) for slot, cols in port.segments(d)]
    if is_torch(x):
        import torch

        return torch.cat(parts, dim=-1)
    return np.concatenate(parts, axis=-1)


def _act_slot(g: GroupElement, x: Any, slot: Slot, d: int | None, *, packed: bool) -> Any:
    if slot.kind == "scalar":
        return x
    if slot.kind == "field":
        raise ValueError(f"{slot.name}: a field lives on a grid, which no group of the check moves")
    if slot.kind == "tensor" and packed:
        assert d is not None
        return g.act(x.reshape(*x.shape[:-1], d, d), "tensor").reshape(x.shape)
    return g.act(x, slot.kind)


def _port_factor(port: Port, factor: Callable[[str], Any], d: int | None) -> np.ndarray:
    """The factor each value of ``port`` is multiplied by: () or (n,) for an unpacked port,
    (width,) or (n, width) for a packed one (``factor(units)`` a number or a per-sample array)."""
    per_slot = [np.asarray(factor(slot.units), dtype=np.float64) for slot in port.slots]
    if not port.packed:
        return per_slot[0]
    blocks = [np.repeat(f[..., None], slot.size(d), axis=-1) for f, slot in zip(per_slot, port.slots, strict=True)]
    lead = np.broadcast_shapes(*(b.shape[:-1] for b in blocks))
    return np.concatenate([np.broadcast_to(b, lead + b.shape[-1:]) for b in blocks], axis=-1)


def scale_port(x: Any, port: Port, factor: Callable[[str], Any], d: int | None) -> Any:
    """``x`` in the new units: each slot times ``factor(slot units)``. A per-sample factor (n,) runs
    along the first axis of ``x``."""
    f = _port_factor(port, factor, d)
    if np.all(f == 1.0):
        return x
    per_sample = f.ndim == (2 if port.packed else 1)
    if per_sample:
        tail = (f.shape[-1],) if port.packed else ()
        f = f.reshape((f.shape[0],) + (1,) * (np.ndim(x) - 1 - len(tail)) + tail)
    return x * _like(f, x)


def _in_float64(model: Any) -> Any:
    """``model`` itself, or a float64 copy of a torch module with other floating parameters."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of the project
        return model
    if not isinstance(model, torch.nn.Module):
        return model
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.dtype == torch.float64 for t in tensors if t.is_floating_point()):
        return model
    return copy.deepcopy(model).double()


def _prepare(
    model: Any, io: ModelIO | None, data: Sequence[Any] | None, n: int, rng: np.random.Generator
) -> tuple[ModelIO, Callable[[Sequence[Any]], tuple[Any, ...]], tuple[Any, ...]]:
    io = model_io(model) if io is None else io
    model = _in_float64(model)
    inputs = io.as_arrays(tuple(data) if data is not None else io.sample(n, rng))
    if len(inputs) != len(io.inputs):
        raise ValueError(f"{len(inputs)} inputs for the {len(io.inputs)} ports of the model's ModelIO")

    def run(xs: Sequence[Any]) -> tuple[Any, ...]:
        with _no_grad():
            out = _as_tuple(io.call(model, *xs))
        if len(out) != len(io.outputs):
            raise ValueError(f"the model returned {len(out)} outputs for the {len(io.outputs)} ports of its ModelIO")
        return tuple(o.detach() if is_torch(o) else o for o in out)

    return io, run, inputs


class _no_grad:
    """torch.no_grad() when torch is there (a Hamiltonian model enables gradients for itself)."""

    def __enter__(self) -> None:
        import torch

        self._context = torch.no_grad()
        self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


def group_name(model: Any, io: ModelIO | None, group: str | None) -> str:
    return group or (model_io(model) if io is None else io).group


def measure_equivariance(
    model: Any,
    io: ModelIO | None = None,
    *,
    data: Sequence[Any] | None = None,
    group: str | MatrixGroup | None = None,
    trials: int = 8,
    seed: int = 0,
    n: int = 4,
    elementwise: bool = False,
) -> SymmetryReport:
    """The worst relative error of model(g . x) against g . model(x) over ``trials`` random elements g.

    ``io`` defaults to ``model.io``; ``data`` are the inputs in the order of ``io.inputs`` (default:
    ``n`` random samples drawn by ``io``); ``group`` defaults to the system's, ``io.group``, and may
    also be a subgroup of O(d) given by its generators (a :class:`~pipeline.matrix_groups.MatrixGroup`,
    such as the rotations about one axis). Inputs and outputs move as their slots' kinds say
    (positions translate under E(d) and SE(d) only). The model runs in float64 (a copy is cast when
    it is not). Errors are norm-wise (:func:`relative_error`), or element by element with ``elementwise``.
    """
    error = elementwise_relative_error if elementwise else relative_error
    rng = np.random.default_rng(seed)
    io, run, inputs = _prepare(model, io, data, n, rng)
    if isinstance(group, MatrixGroup):
        d = group.d
        if io.space_dim is not None and io.space_dim != d:
            raise ValueError(f"group {group.name} acts on R^{d}, but the model's vectors are in R^{io.space_dim}")

        def draw(trial: int) -> GroupElement:
            return GroupElement(group.random_element(rng), description=f"element of {group.name}")

    else:
        name = (group or io.group).replace(" ", "")
        if name == "none":
            raise ValueError(f"system {io.system or '(unnamed)'} declares no symmetry group: there is nothing to check")
        d = space_dim(name)

        def draw(trial: int) -> GroupElement:
            return random_element(name, rng, reflection=trial % 2 == 1, time_reversal=trial % 4 >= 2)

    reference = run(inputs)
    report = SymmetryReport()
    for trial in range(trials):
        g = draw(trial)
        moved = run(tuple(act_port(g, x, p, d) for x, p in zip(inputs, io.inputs, strict=True)))
        for port, out, expected in zip(io.outputs, moved, reference, strict=True):
            _check(report, error(out, act_port(g, expected, port, d)), f"output {port.name}, {g.description}")
    return report


def _unit_dimensions(io: ModelIO) -> list[str]:
    return sorted(
        {
            dim
            for port in (*io.inputs, *io.outputs)
            for slot in port.slots
            for dim, _ in dimension_vector(slot.units, io.independent_units, f"slot {slot.name}")
        }
    )


def measure_units_equivariance(
    model: Any,
    io: ModelIO | None = None,
    *,
    data: Sequence[Any] | None = None,
    trials: int = 8,
    seed: int = 0,
    n: int = 4,
    dimensions: Sequence[str] | None = None,
    per_sample: bool = False,
    substitutions: Mapping[str, str] | None = None,
    elementwise: bool = False,
) -> SymmetryReport:
    """The worst relative error of model(inputs in new units) against its outputs converted to them.

    Each trial draws a factor per base dimension of the quantities (log-uniform in [0.1, 10]; only
    ``dimensions``, e.g. ``("[mass]",)``, when given), converts every input by the factor its
    declared units imply and expects every output converted by its own. ``per_sample`` draws the
    factors per sample (along the first axis of every input and output, which must then all have
    it, or not carry those dimensions). ``substitutions`` instead makes one trial of a named change
    of units (``{"d": "hour", "m": "cm"}``), converted with pint. Errors are norm-wise
    (:func:`relative_error`), or element by element with ``elementwise``.
    """
    error = elementwise_relative_error if elementwise else relative_error
    rng = np.random.default_rng(seed)
    io, run, inputs = _prepare(model, io, data, n, rng)
    d = io.space_dim
    independent = io.independent_units
    reference = run(inputs)
    report = SymmetryReport()
    if substitutions is not None:
        subs = dict(substitutions)

        def named(units: str) -> float:
            return scale_factor(units, substitute_units(units, subs), independent)

        changes: list[tuple[Callable[[str], Any], str]] = [
            (named, "units changed to " + ", ".join(f"{a} -> {b}" for a, b in subs.items()))
        ]
    else:
        dims = _unit_dimensions(io)
        if dimensions is not None:
            unknown = sorted(set(dimensions) - set(dims))
            if unknown:
                raise ValueError(f"no quantity of the model carries the dimensions {unknown}; it has {dims}")
            dims = [dim for dim in dims if dim in dimensions]
        batch = int(np.shape(inputs[0])[0]) if per_sample else None
        changes = []
        for _ in range(trials):
            if batch is None:
                scales: dict[str, Any] = random_unit_scales(dims, rng)
                desc = "units rescaled by " + ", ".join(f"{dim} x{s:.3g}" for dim, s in scales.items())
            else:
                scales = {dim: np.exp(rng.uniform(np.log(0.1), np.log(10.0), batch)) for dim in dims}
                desc = f"units rescaled per sample along {', '.join(dims)}"
            changes.append(((lambda u, s=scales: unit_factor(u, s, independent)), desc))
    for factor, desc in changes:
        moved = run(tuple(scale_port(x, p, factor, d) for x, p in zip(inputs, io.inputs, strict=True)))
        for port, out, expected in zip(io.outputs, moved, reference, strict=True):
            _check(report, error(out, scale_port(expected, port, factor, d)), f"output {port.name}, {desc}")
    return report
