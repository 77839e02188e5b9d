"""How a surrogate's output is built from the declared inputs so that it is exactly equivariant.

For a target T of a declared system (see docs/fit.md):

- a scalar target is invariant: T = scale(T) * f(pi), with scale(T) a monomial of the invariant
  scalars that carries T's units and pi the Pi groups (``pipeline.features``);
- a vector target is equivariant: T = sum_k scale_k * f_k(pi) * b_k over a basis of equivariant
  vectors b_k built from the inputs (every input vector, positions centred on their mean under E(d)
  and SE(d), each of those times every tensor input's powers T, ..., T^(d-1); under SO(d) and SE(d)
  the generalized cross products of d - 1 input vectors, those within each v, T v, ..., T^(d-1) v, and
  the first ones times the tensors' powers), each with the monomial scale_k that carries
  units(T) / units(b_k); a position target adds the inputs' centroid, which carries the translation.

A basis vector whose ratio of units no monomial of the invariant scalars reaches cannot enter a
units-equivariant model and is left out (said in :attr:`TargetDesign.left_out`); a target that no
monomial reaches at all is refused, naming what is missing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import xarray as xr

from pipeline import invariants as inv
from pipeline.dimensions import DimensionalAnalysisError, Monomial
from pipeline.features import FeatureError, FeaturePlan, _product_units, _vector_inputs, power_name
from pipeline.units import parse
from sims.declaration import Kind, Quantity, Role, SystemDeclaration

#: At most this many basis vectors per vector target (d-tuples for cross products grow combinatorially).
MAX_BASIS = 256
ROUND_OFF_ZERO = 1e-9  # a value this small against the largest of its kind is a zero computed in floating point
TARGET_KINDS = (Kind.SCALAR, Kind.VECTOR, Kind.POSITION)
#: A basis vector before its units are checked: name, units, build, the lengths of what it is made of.
Candidate = tuple[str, str, Callable[[Any], Any], tuple[Callable[[Any], Any], ...]]


def quotient_units(numerator: str, denominator: str) -> str:
    """Units of numerator / denominator, simplified by pint (``m`` / ``m/s`` -> ``s``; ``m`` / ``m`` -> ``1``)."""
    q = parse(numerator) / parse(denominator)
    return (f"{q.units:~}" if q.magnitude == 1 else f"{q:~}") or "1"


def _frobenius(tensor: Any) -> Any:
    return ((tensor * tensor).sum(-1).sum(-1)) ** 0.5


def same_units(a: str, b: str) -> bool:
    """Whether two unit strings name the same unit (``m`` and ``meter``), not merely the same dimension."""
    return parse(a).units == parse(b).units and parse(a).magnitude == parse(b).magnitude


def check_positions(declaration: SystemDeclaration) -> None:
    """Positions translate together: a translation adds one vector to all of them, so they must share
    one unit (m and km would each need their own number)."""
    units = {q.units for q in declaration.quantities if q.kind is Kind.POSITION}
    first = next(iter(units), None)
    if first is not None and any(not same_units(first, u) for u in units):
        names = [q.name for q in declaration.quantities if q.kind is Kind.POSITION]
        raise FeatureError(
            f"system {declaration.name!r}: the positions {', '.join(names)} are declared in different units "
            f"({', '.join(sorted(units))}); a translation moves them all alike, so declare them in one unit"
        )


def product_units(*units: str) -> str:
    """Units of a product, simplified by pint; ``1`` when dimensionless."""
    return _product_units(*units)


@dataclass(frozen=True)
class BasisVector:
    """One equivariant vector built from the inputs: its name, units and how to compute it
    (``build(values)`` -> (batch, d), numpy or torch); ``scaling`` carries units(T) / units(b)."""

    name: str
    units: str
    build: Callable[[Any], Any]
    scaling: Monomial
    parts: tuple[Callable[[Any], Any], ...] = ()  # lengths of the vectors (and tensors) it is made of


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


PAIR_SUFFIXES = ("_i", "_j")


def view_declaration(declaration: SystemDeclaration) -> SystemDeclaration:
    """What the features are computed from: the declaration's inputs; with a relabelled set, its *pair
    view*, in which each member quantity q appears twice, as q_i (member i) and q_j (member j), so that
    the invariant scalars and Pi groups are those of an ordered pair of members with the global inputs."""
    check_positions(declaration)
    inputs = declaration.inputs_only()
    if inputs.permutation is None:
        return inputs
    members = set(inputs.permutation.quantities)
    quantities: list[Quantity] = []
    for q in inputs.quantities:
        if q.name in members:
            quantities += [dataclasses.replace(q, name=q.name + suffix) for suffix in PAIR_SUFFIXES]
        else:
            quantities.append(q)
    names = [q.name for q in quantities]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise FeatureError(
            f"system {declaration.name!r}: the pair view of the set names {clashes} twice; rename the quantities "
            f"that end in {' or '.join(PAIR_SUFFIXES)}"
        )
    return dataclasses.replace(inputs, quantities=tuple(quantities), permutation=None)


def partner_index(members: int) -> np.ndarray:
    """J[i, j]: j, except on the diagonal, where it is the next member: the (unused) diagonal of the
    pair arrays then holds a real pair, so that nothing there is 0 / 0 (a centred position of a pair
    with itself is zero), which would poison the gradients through the masked averages."""
    index = np.tile(np.arange(members), (members, 1))
    index[np.arange(members), np.arange(members)] = (np.arange(members) + 1) % members
    return index


def view_values(declaration: SystemDeclaration, values: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs' arrays as the view declaration reads them: unchanged without a set; with one, member
    arrays (sample, member, ...) become (sample, member i, 1, ...) and (sample, member i, member j, ...)
    and global ones (sample, 1, 1, ...), so that every feature comes out per ordered pair (sample, i, j).
    The diagonal i = j is filled with another pair (:func:`partner_index`) and is never used."""
    if declaration.permutation is None:
        return dict(values)
    out: dict[str, Any] = {}
    members = next(values[m].shape[1] for m in declaration.inputs_only().permutation.quantities)
    for q in declaration.inputs_only().quantities:
        x = values[q.name]
        is_numpy = isinstance(x, np.ndarray)
        index: Any = partner_index(members)
        if not is_numpy:  # a torch tensor
            import torch

            index = torch.as_tensor(index, device=x.device)
        own = tuple(x.shape[2:] if declaration.is_member(q.name) else x.shape[1:])
        shape = (x.shape[0], members, members, *own)
        # every array as (sample, i, j, ...): the invariants stack and multiply them without broadcasting
        expand = (lambda a: np.broadcast_to(a, shape)) if is_numpy else (lambda a: a.expand(shape))
        if declaration.is_member(q.name):
            out[q.name + PAIR_SUFFIXES[0]] = expand(x[:, :, None])
            out[q.name + PAIR_SUFFIXES[1]] = x[:, index]
        else:
            out[q.name] = expand(x[:, None, None])
    return out


def view_dataset(data: xr.Dataset, declaration: SystemDeclaration) -> xr.Dataset:
    """The inputs as the features read them: with a relabelled set, each member quantity q as q_i along
    ``<dim>_i`` and q_j along ``<dim>_j``, so that xarray broadcasts them to every ordered pair."""
    names = [q.name for q in declaration.inputs_only().quantities]
    if declaration.permutation is None:
        return data[names]
    dim = declaration.permutation.dim
    variables = {}
    for name in names:
        if declaration.is_member(name):
            for suffix in PAIR_SUFFIXES:
                variables[name + suffix] = data[name].rename({dim: dim + suffix})
        else:
            variables[name] = data[name]
    return xr.Dataset(variables).assign_coords(
        {dim + s: (dim + s, np.arange(data.sizes[dim]), {"units": "1"}) for s in PAIR_SUFFIXES}
    )


def off_diagonal(x: np.ndarray, members: int) -> np.ndarray:
    """The entries of distinct pairs (i != j) of a (sample, i, j, ...) array, as (sample, pairs, ...)."""
    x = np.broadcast_to(x, (x.shape[0], members, members, *x.shape[3:]))
    return x[:, ~np.eye(members, dtype=bool)]


def input_plan(declaration: SystemDeclaration, signed: Sequence[str] | None = None) -> FeaturePlan:
    """The feature plan of the declaration's inputs (its parameters and states; with a relabelled set,
    of its pair view); ``signed`` as :class:`~pipeline.features.FeaturePlan` takes it (see
    :func:`conditions_on_data`)."""
    return FeaturePlan(view_declaration(declaration), signed=signed)


_NAME = r"[A-Za-z][A-Za-z0-9_]*"


def _vector_names(scalar: str) -> list[str] | None:
    """The vectors (and tensors, once per power) an inner product, contraction or determinant is made
    of, from its name (``a.b``, ``a.T.b``, ``a.T^2.b``, ``det(a,b,c)``, ``det(a,T.a,T^2.a)``); None for
    other scalars."""

    def factors(product: str) -> list[str]:
        out = []
        for part in product.split("."):
            name, _, power = part.partition("^")
            out += [name] * (int(power) if power else 1)
        return out

    factor = rf"{_NAME}(\^\d+)?"
    det = re.fullmatch(rf"det\(({factor}(\.{factor})*(,{factor}(\.{factor})*)*)\)", scalar)
    if det:
        return [name for item in det.group(1).split(",") for name in factors(item)]
    if re.fullmatch(rf"{_NAME}(\.{factor})?\.{_NAME}", scalar):
        return factors(scalar)
    return None


def lengths(x: np.ndarray, kind: Kind) -> np.ndarray:
    """A scalar's absolute value, a vector's Euclidean length, a tensor's Frobenius norm, over its own axes."""
    x = np.asarray(x, dtype=np.float64)
    if kind is Kind.SCALAR:
        return np.abs(x)
    return np.sqrt((x**2).sum((-2, -1) if kind is Kind.TENSOR else -1))


@dataclass(frozen=True)
class DataConditions:
    """What the training data say about the invariant scalars (see :func:`conditions_on_data`)."""

    signed: tuple[str, ...]
    zero: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"signed": list(self.signed), "zero": list(self.zero)}

    @classmethod
    def from_json(cls, text: str) -> "DataConditions":
        """From ``json.dumps(to_dict())``, as the features dataset stores it (attribute ``conditions``)."""
        data = json.loads(text)
        return cls(tuple(data["signed"]), tuple(data["zero"]))


def conditions_on_data(declaration: SystemDeclaration, values: Mapping[str, np.ndarray]) -> DataConditions:
    """Which invariant scalars are zero on the data, and which may not be raised to fractional or
    negative powers.

    *Zero*: an inner product, contraction or determinant whose size is round-off against the product
    of its vectors' lengths on every sample (a massless four-momentum's square is 1e-16 of its energy
    squared): a constraint of the data, which carries no information and whose round-off no feature
    may amplify. *Signed*: every scalar that is not strictly positive on all samples, and every zero
    one; they enter Pi groups and scalings only where nothing else carries their dimensions.
    """
    view = view_declaration(declaration)
    with warnings.catch_warnings():  # the default plan may warn about powers that the data settle
        warnings.simplefilter("ignore")
        plan = input_plan(declaration)
    values = view_values(declaration, values)
    members = declaration.permutation and next(
        values[q + PAIR_SUFFIXES[0]].shape[1] for q in declaration.inputs_only().permutation.quantities
    )

    def pairs(x: Any) -> np.ndarray:  # every sample (and distinct pair of members), flattened
        x = np.asarray(x, dtype=np.float64)
        return off_diagonal(x, members).reshape(-1) if members else x.reshape(-1)

    vectors = _vector_inputs(view, [q for q in view.quantities if q.is_vector])
    signed, zero = [], []
    for s in plan.scalars:
        computed = np.asarray(s.compute(values), dtype=np.float64)
        v = pairs(computed)
        parts = _vector_names(s.name)
        if parts is not None and all(p in values for p in parts):
            size = np.ones(())
            for p in parts:
                size = size * lengths(vectors[p].get(values) if p in vectors else values[p], view.quantity(p).kind)
            size = pairs(np.broadcast_to(size, np.broadcast_shapes(size.shape, computed.shape)))
            if v.size and np.all(np.abs(v) <= ROUND_OFF_ZERO * size):
                zero.append(s.name)
        if s.name in zero or not (v.size and np.isfinite(v).all() and (v > 0).all()):
            signed.append(s.name)
    return DataConditions(tuple(signed), tuple(zero))


def design_for(
    declaration: SystemDeclaration, target: str, plan: FeaturePlan | None = None, units_equivariant: bool = True
) -> TargetDesign:
    """The output design of ``target``; a FeatureError names what makes it impossible. Without
    ``units_equivariant`` (a model that is not units-equivariant), a scalar target whose units no
    monomial of the inputs carries gets no scaling instead of an error."""
    where = f"system {declaration.name!r}, target {target!r}"
    q = declaration.quantity(target)
    if q.role is not Role.TARGET:
        raise FeatureError(f"{where}: declared as a {q.role.value}, not a target")
    if q.kind not in TARGET_KINDS:
        raise FeatureError(
            f"{where}: a {q.kind.value} target is not supported; targets are scalars, vectors or positions"
        )
    if plan is None:  # without the data, every inner product may be signed: the data's plan warns, not this one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            plan = input_plan(declaration)
    scaling = _scaling(plan, q.units)
    if q.kind is Kind.SCALAR:
        if scaling is None and units_equivariant:
            raise FeatureError(
                f"{where}: no monomial of the invariant scalars of the inputs has the units {q.units!r}, so no "
                "units-equivariant (pi) model exists; declare the input that carries the missing dimension, or "
                "train the other methods alone "
                f"(the scalars: {', '.join(f'{s.name} [{s.units}]' for s in plan.scalars)})"
            )
        return TargetDesign(q, plan, scaling)
    group, d = declaration.group, declaration.space_dim
    if q.kind is Kind.POSITION and group not in ("E", "SE"):
        raise FeatureError(f"{where}: a position target translates, which only E(d) and SE(d) include")
    inputs = view_declaration(declaration)
    vectors = [v for v in inputs.quantities if v.is_vector]
    if not vectors:
        raise FeatureError(f"{where}: a vector target needs vector inputs to be built from; none is declared")
    getters = _vector_inputs(inputs, vectors)
    candidates: list[Candidate] = [
        (
            v.name if v.kind is Kind.VECTOR else f"{v.name} (centred)",
            getters[v.name].units,
            getters[v.name].get,
            (lambda values, g=getters[v.name].get: inv.norm(g(values)),),
        )
        for v in vectors
    ]
    plain = list(candidates)
    tensors = [q for q in inputs.quantities if q.kind is Kind.TENSOR]
    # T^k v (k < d) is a vector of O(d) too; with v itself they span what any function of T and v can
    # point along, with coefficients of the invariants (Cayley-Hamilton: in 3-D,
    # T^-1 v = (T^2 v - tr(T) T v + c2(T) v) / det T)
    names = {c[0] for c in plain}
    krylov = [[v] + [_applied(t, v, k, names) for k in range(1, max(d, 2))] for t in tensors for v in plain]
    candidates += [b for family in krylov for b in family[1:]]
    if group in ("SO", "SE") and d >= 2:
        crosses = [_cross(combo, d, names) for combo in itertools.combinations(plain, d - 1)]
        candidates += crosses
        # the cross products within each v, T.v, ..., T^(d-1).v (w x I w, I w x I^2 w of a rigid body) and
        # T^k applied to the plain ones ((I a) x (I b) = adj(I) (a x b))
        for family in krylov:
            candidates += [_cross(c, d, names) for c in itertools.combinations(family, d - 1) if c != (family[0],)]
        candidates += [_applied(t, c, k, names) for t in tensors for c in crosses for k in range(1, d)]
    if len(candidates) > MAX_BASIS:
        raise FeatureError(
            f"{where}: {len(candidates)} equivariant basis vectors; at most {MAX_BASIS} are supported (declare fewer vectors or tensors)"
        )
    basis, left_out = [], []
    for name, units, build, parts in candidates:
        monomial = _scaling(plan, quotient_units(q.units, units))
        if monomial is None:
            left_out.append(name)
        else:
            basis.append(BasisVector(name, units, build, monomial, parts))
    if not basis:
        raise FeatureError(
            f"{where}: no monomial of the invariant scalars carries the units {q.units!r} divided by those of any input "
            f"vector ({', '.join(f'{c[0]} [{c[1]}]' for c in candidates)}), so no units-equivariant model exists; "
            "declare the input that carries the missing dimension"
        )
    centroid = None
    if q.kind is Kind.POSITION:
        positions = [v.name for v in vectors if v.kind is Kind.POSITION]
        if not positions:
            raise FeatureError(f"{where}: a position target moves with the input positions; none is declared")
        if declaration.permutation is not None:
            raise FeatureError(
                f"{where}: a position target beside a relabelled set is not supported; declare a displacement"
            )

        def centroid(values: Any, names: tuple[str, ...] = tuple(positions)) -> Any:
            return sum(values[n] for n in names) / len(names)

        if any(not same_units(inputs.quantity(p).units, q.units) for p in positions):
            raise FeatureError(f"{where}: a position target needs the input positions in its own units {q.units!r}")
    return TargetDesign(q, plan, scaling, tuple(basis), centroid, tuple(left_out))


def _operand(name: str, plain: Collection[str]) -> str:
    return name if name in plain else f"({name})"


def _applied(tensor: Quantity, vector: Candidate, power: int, plain: Collection[str]) -> Candidate:
    """T^k b as a basis vector (``plain``: the names that need no brackets)."""
    name, units, get, lengths_of = vector
    return (
        f"{power_name(tensor.name, power)}.{_operand(name, plain)}",
        product_units(*([tensor.units] * power), units),
        lambda values, n=tensor.name, g=get: inv.tensor_apply(values[n], g(values), power),
        (*lengths_of, *([lambda values, n=tensor.name: _frobenius(values[n])] * power)),
    )


def _cross(combo: Sequence[Candidate], d: int, plain: Collection[str]) -> Candidate:
    """The generalized cross product of d - 1 basis vectors (J b in two dimensions)."""
    names = [_operand(c[0], plain) for c in combo]
    return (
        "x".join(names) if d > 2 else f"J{names[0]}",
        product_units(*(c[1] for c in combo)),
        lambda v, gs=tuple(c[2] for c in combo): inv.generalized_cross(*(g(v) for g in gs)),
        tuple(length for c in combo for length in c[3]),
    )


def targets_of(
    declaration: SystemDeclaration, chosen: tuple[str, ...] | list[str] | None = None, *, option: str = ""
) -> list[str]:
    """The declared targets (all, or ``chosen``, checked; ``option`` names where they were chosen)."""
    declared = [q.name for q in declaration.select(roles=(Role.TARGET,))]
    if not declared:
        raise FeatureError(f"system {declaration.name!r} declares no target (a quantity with role 'target')")
    if not chosen:
        return declared
    unknown = [t for t in chosen if t not in declared]
    if unknown:
        said = f"{option} {', '.join(unknown)}: " if option else ""
        raise FeatureError(
            f"{said}system {declaration.name!r} declares no target {', '.join(unknown)}; targets: {', '.join(declared)}"
        )
    return list(dict.fromkeys(chosen))
