"""How a surrogate's output is built from the declared inputs so that it is exactly equivariant.

For a target T of a declared system (see docs/fit.md):

- a scalar target is invariant: T = scale(T) * f(pi), with scale(T) a monomial of the invariant
  scalars that carries T's units and pi the Pi groups (``pipeline.features``);
- a vector target is equivariant: T = sum_k scale_k * f_k(pi) * b_k over a basis of equivariant
  vectors b_k built from the inputs (every input vector, positions centred on their mean under E(d)
  and SE(d), and generalized cross products of d - 1 of them under SO(d) and SE(d)), each with the
  monomial scale_k that carries units(T) / units(b_k); a position target adds the inputs' centroid,
  which carries the translation.

A basis vector whose ratio of units no monomial of the invariant scalars reaches cannot enter a
units-equivariant model and is left out (said in :attr:`TargetDesign.left_out`); a target that no
monomial reaches at all is refused, naming what is missing.
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline import invariants as inv
from pipeline.dimensions import DimensionalAnalysisError, Monomial
from pipeline.features import FeatureError, FeaturePlan, _vector_inputs
from pipeline.units import parse
from sims.declaration import Kind, Quantity, Role, SystemDeclaration

#: At most this many basis vectors per vector target (d-tuples for cross products grow combinatorially).
MAX_BASIS = 64
ROUND_OFF_ZERO = 1e-9  # a value this small against the largest of its kind is a zero computed in floating point
TARGET_KINDS = (Kind.SCALAR, Kind.VECTOR, Kind.POSITION)


def quotient_units(numerator: str, denominator: str) -> str:
    """Units of numerator / denominator, simplified by pint (``m`` / ``m/s`` -> ``s``)."""
    q = parse(numerator) / parse(denominator)
    return f"{q.units:~}" if q.magnitude == 1 else f"{q:~}"


def product_units(*units: str) -> str:
    q = parse("1")
    for u in units:
        q = q * parse(u)
    return f"{q.units:~}" if q.magnitude == 1 else f"{q:~}"


@dataclass(frozen=True)
class BasisVector:
    """One equivariant vector built from the inputs: its name, units and how to compute it
    (``build(values)`` -> (batch, d), numpy or torch); ``scaling`` carries units(T) / units(b)."""

    name: str
    units: str
    build: Callable[[Any], Any]
    scaling: Monomial


@dataclass(frozen=True)
class TargetDesign:
    """The output design of one target (see the module docstring)."""

    target: Quantity
    plan: FeaturePlan  # of the inputs only
    scaling: Monomial | None  # carries T's units (None: a vector target that no scalar monomial reaches)
    basis: tuple[BasisVector, ...] = ()
    centroid: Callable[[Any], Any] | None = None  # for a position target
    left_out: tuple[str, ...] = ()

    @property
    def is_vector(self) -> bool:
        return self.target.kind is not Kind.SCALAR


def _scaling(plan: FeaturePlan, units: str) -> Monomial | None:
    try:
        return plan.analysis.scaling(units)
    except DimensionalAnalysisError:
        return None


def input_plan(declaration: SystemDeclaration, signed: Sequence[str] | None = None) -> FeaturePlan:
    """The feature plan of the declaration's inputs (its parameters and states); ``signed`` as
    :class:`~pipeline.features.FeaturePlan` takes it (see :func:`signed_on_data`)."""
    return FeaturePlan(declaration.inputs_only(), signed=signed)


def _vector_names(scalar: str) -> list[str] | None:
    """The vectors (and tensors) an inner product, contraction or determinant is made of, from its
    name (``a.b``, ``a.T.b``, ``det(a,b,c)``); None for other scalars."""
    det = re.fullmatch(r"det\(([A-Za-z0-9_,]+)\)", scalar)
    if det:
        return det.group(1).split(",")
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*){1,2}", scalar):
        return scalar.split(".")
    return None


def _euclidean(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x.reshape(len(x), -1) ** 2).sum(-1)) if x.ndim > 1 else np.abs(x)


@dataclass(frozen=True)
class DataConditions:
    """What the training data say about the invariant scalars (see :func:`conditions_on_data`)."""

    signed: tuple[str, ...]
    zero: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"signed": list(self.signed), "zero": list(self.zero)}


def conditions_on_data(declaration: SystemDeclaration, values: Mapping[str, np.ndarray]) -> DataConditions:
    """Which invariant scalars are zero on the data, and which may not be raised to fractional or
    negative powers.

    *Zero*: an inner product, contraction or determinant whose size is round-off against the product
    of its vectors' lengths on every sample (a massless four-momentum's square is 1e-16 of its energy
    squared): a constraint of the data, which carries no information and whose round-off no feature
    may amplify. *Signed*: every scalar that is not strictly positive on all samples, and every zero
    one; they enter Pi groups and scalings only where nothing else carries their dimensions.
    """
    inputs = declaration.inputs_only()
    with warnings.catch_warnings():  # the default plan may warn about powers that the data settle
        warnings.simplefilter("ignore")
        plan = input_plan(declaration)
    vectors = _vector_inputs(inputs, [q for q in inputs.quantities if q.is_vector])
    signed, zero = [], []
    for s in plan.scalars:
        v = np.asarray(s.compute(values), dtype=np.float64)
        parts = _vector_names(s.name)
        if parts is not None and all(p in values for p in parts):
            size = np.ones(v.shape)
            for p in parts:
                size = size * _euclidean(vectors[p].get(values) if p in vectors else values[p])
            if v.size and np.all(np.abs(v) <= ROUND_OFF_ZERO * size):
                zero.append(s.name)
        if s.name in zero or not (v.size and np.isfinite(v).all() and (v > 0).all()):
            signed.append(s.name)
    return DataConditions(tuple(signed), tuple(zero))


def design_for(declaration: SystemDeclaration, target: str, plan: FeaturePlan | None = None) -> TargetDesign:
    """The output design of ``target``; a FeatureError names what makes it impossible."""
    where = f"system {declaration.name!r}, target {target!r}"
    q = declaration.quantity(target)
    if q.role is not Role.TARGET:
        raise FeatureError(f"{where}: declared as a {q.role.value}, not a target")
    if q.kind not in TARGET_KINDS:
        raise FeatureError(
            f"{where}: a {q.kind.value} target is not supported; targets are scalars, vectors or positions"
        )
    plan = plan or input_plan(declaration)
    scaling = _scaling(plan, q.units)
    if q.kind is Kind.SCALAR:
        if scaling is None:
            raise FeatureError(
                f"{where}: no monomial of the invariant scalars of the inputs has the units {q.units!r}, so no "
                "units-equivariant model exists; declare the input that carries the missing dimension "
                f"(the scalars: {', '.join(f'{s.name} [{s.units}]' for s in plan.scalars)})"
            )
        return TargetDesign(q, plan, scaling)
    group, d = declaration.group, declaration.space_dim
    if q.kind is Kind.POSITION and group not in ("E", "SE"):
        raise FeatureError(f"{where}: a position target translates, which only E(d) and SE(d) include")
    inputs = declaration.inputs_only()
    vectors = [v for v in inputs.quantities if v.is_vector]
    if not vectors:
        raise FeatureError(f"{where}: a vector target needs vector inputs to be built from; none is declared")
    getters = _vector_inputs(inputs, vectors)
    candidates: list[tuple[str, str, Callable[[Any], Any]]] = [
        (v.name if v.kind is Kind.VECTOR else f"{v.name} (centred)", getters[v.name].units, getters[v.name].get)
        for v in vectors
    ]
    if group in ("SO", "SE") and d >= 2:
        plain = list(candidates)
        for combo in itertools.combinations(plain, d - 1):
            candidates.append(
                (
                    "x".join(c[0] for c in combo) if d > 2 else f"J{combo[0][0]}",
                    product_units(*(c[1] for c in combo)),
                    lambda v, gs=tuple(c[2] for c in combo): inv.generalized_cross(*(g(v) for g in gs)),
                )
            )
    if len(candidates) > MAX_BASIS:
        raise FeatureError(
            f"{where}: {len(candidates)} equivariant basis vectors; at most {MAX_BASIS} are supported (declare fewer vectors)"
        )
    basis, left_out = [], []
    for name, units, build in candidates:
        monomial = _scaling(plan, quotient_units(q.units, units))
        if monomial is None:
            left_out.append(name)
        else:
            basis.append(BasisVector(name, units, build, monomial))
    if not basis:
        raise FeatureError(
            f"{where}: no monomial of the invariant scalars carries the units {q.units!r} divided by those of any input "
            f"vector ({', '.join(f'{n} [{u}]' for n, u, _ in candidates)}), so no units-equivariant model exists; "
            "declare the input that carries the missing dimension"
        )
    centroid = None
    if q.kind is Kind.POSITION:
        positions = [v.name for v in vectors if v.kind is Kind.POSITION]

        def centroid(values: Any, names: tuple[str, ...] = tuple(positions)) -> Any:
            return sum(values[n] for n in names) / len(names)

        if any(declaration.quantity(p).units != q.units for p in positions):
            raise FeatureError(f"{where}: a position target needs the input positions in its own units {q.units!r}")
    return TargetDesign(q, plan, scaling, tuple(basis), centroid, tuple(left_out))


def targets_of(declaration: SystemDeclaration, chosen: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The declared targets (all, or ``chosen``, checked)."""
    declared = [q.name for q in declaration.select(roles=(Role.TARGET,))]
    if not declared:
        raise FeatureError(f"system {declaration.name!r} declares no target (a quantity with role 'target')")
    if not chosen:
        return declared
    unknown = [t for t in chosen if t not in declared]
    if unknown:
        raise FeatureError(
            f"system {declaration.name!r} declares no target {', '.join(unknown)}; targets: {', '.join(declared)}"
        )
    return list(dict.fromkeys(chosen))
