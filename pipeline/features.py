"""Feature extraction: from a dataset of declared quantities to invariant, dimensionless features.

For a system declaration, a :class:`FeaturePlan` lists

1. the *invariant scalars* of its symmetry group, each with units: scalar quantities themselves;
   inner products ``a.b`` of vectors (Euclidean for O(d), SO(d), E(d), SE(d); Minkowski for
   O(1,d)); determinants ``det(a,b,c)`` of d-tuples for SO(d) and SE(d); positions centred on
   their mean for E(d) and SE(d); traces ``tr(T^k)``, contractions ``a.T^k.b`` (k < d),
   ``tr(S^i T^j)`` (i, j < d; ``S:T`` for i = j = 1) and, under SO(d) and SE(d), ``det(a, T.a, ..., T^(d-1).a)`` of
   symmetric tensors; spatial ``mean(u)`` and ``std(u)`` of fields (invariant under periodic
   shifts, rotations and reflections of the grid);
2. the *Pi groups* of the dimensional analysis of those scalars (parameters preferred as the
   repeating quantities), which are the dimensionless features ``pi``;
3. for each scalar target, its *scaling monomial* (a monomial of the parameter scalars with the
   target's units), and the dimensionless target ``target / scale``.

:func:`extract` applies the plan lazily, chunk by chunk (``xarray.map_blocks`` over dask), so that
datasets larger than memory stream through. Dimensionless features are exactly invariant under
the group and under any change of units; nothing is shifted or standardised here (a
normalisation must stay multiplicative, see ``pipeline.normalize``).

Dataset conventions: each quantity is a data variable named like the quantity with a ``units``
attribute pint converts to the declared units. A vector's components are its dimension named
``space`` (else its last dimension), a field's grid its dimensions ``x`` and ``y`` (else its last
two), a tensor's components its last two dimensions. Every other dimension is a batch dimension
(sample, time, ...), broadcast across quantities by name; names such as ``sample`` and ``time``
are never taken as components or grid axes.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import dask.array
import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline import invariants as inv
from pipeline.dimensions import DimensionalAnalysis, DimensionalAnalysisError, Monomial
from pipeline.units import UnitsError, check_declaration, parse, scale_factor
from sims.declaration import DeclarationError, Kind, Role, SystemDeclaration

FEATURES_KIND = "features"
PI_DIM = "pi_group"
# The dimensional analysis of the invariant scalars grows with the cube of their number (about a
# second at 256); the built-in systems have about 20. Counted before anything is built.
MAX_INVARIANT_SCALARS = 256

register_schema(
    DatasetSchema(
        kind=FEATURES_KIND,
        description="invariant, dimensionless features of a dataset of declared quantities",
        # a system whose scalars admit no dimensionless combination has no Pi groups
        variables={"pi": VariableSpec(units="1", dtype="float", required=False)},
        coords={PI_DIM: VariableSpec(dims=(PI_DIM,), dtype="str", required=False)},
        attrs=("declaration", "feature_plan"),
    )
)


class FeatureError(DeclarationError):
    """A dataset that does not match its declaration; the message names the dataset and variable."""


Values = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class InvariantScalar:
    """One invariant scalar: its name, units, whether it depends on states, and how to compute it
    from the quantities' arrays (batch axes first, then the quantity's own axes). ``signed``: it
    may be negative or zero for valid inputs (an inner product of two vectors, a determinant), so
    it is not raised to fractional or negative powers unless nothing else carries its units."""

    name: str
    units: str
    role: Role
    inputs: tuple[str, ...]
    compute: Callable[[Values], Any]
    signed: bool = False


def _product_units(*units: str) -> str:
    """Units of a product, simplified by pint but not converted (``m * m`` -> ``m ** 2``)."""
    product = parse("1")
    for u in units:
        product = product * parse(u)
    text = f"{product.units:~}" if product.magnitude == 1 else f"{product:~}"
    return text or "1"  # pint writes a dimensionless product as "": the catalog's word for it is "1"


def _role(quantities: Sequence[Any]) -> Role:
    return Role.PARAMETER if all(q.role is Role.PARAMETER for q in quantities) else Role.STATE


@dataclass(frozen=True)
class _VectorInput:
    """How the invariants read one vector: its getter, units and the quantities it depends on."""

    get: Callable[[Values], Any]
    units: str
    depends_on: tuple[Any, ...]  # declared quantities (a centred position depends on every position)


def _vector_inputs(declaration: SystemDeclaration, vectors: Sequence[Any]) -> dict[str, _VectorInput]:
    """How to read each vector for the invariants: positions are converted to the first position's
    units and centred on their mean (translation invariance, E(d) and SE(d))."""
    positions = [q for q in vectors if q.kind is Kind.POSITION]
    plain = {q.name: _VectorInput(lambda v, n=q.name: v[n], q.units, (q,)) for q in vectors}
    if not positions:
        return plain
    if len(positions) < 2:
        raise FeatureError(
            f"system {declaration.name!r}: a single position ({positions[0].name}) has no translation-invariant "
            "content under E(d); declare at least two positions, or declare it a vector under O(d)"
        )
    common = positions[0].units
    factors = {}
    for q in positions:
        try:
            factors[q.name] = scale_factor(q.units, common, declaration.independent_units, where=f"position {q.name!r}")
        except UnitsError as exc:
            raise FeatureError(
                f"system {declaration.name!r}: positions must share dimensions to be centred: {exc}"
            ) from None

    def centroid(v: Values) -> Any:
        return sum(v[p] * f for p, f in factors.items()) / len(factors)

    for q in positions:
        plain[q.name] = _VectorInput(
            lambda v, n=q.name, f=factors[q.name]: v[n] * f - centroid(v), common, tuple(positions)
        )
    return plain


def _names(*groups: Sequence[Any]) -> tuple[str, ...]:
    """Names of the quantities in ``groups``, each once, in order of appearance."""
    return tuple(dict.fromkeys(q.name for group in groups for q in group))


def invariant_count(declaration: SystemDeclaration) -> int:
    """How many scalars :func:`invariant_scalars` builds, counted without building them (pairs of
    vectors grow quadratically, d-tuples for SO(d) combinatorially)."""
    inputs = declaration.select(roles=(Role.PARAMETER, Role.STATE))
    kinds = collections.Counter(q.kind for q in inputs)
    v = kinds[Kind.VECTOR] + kinds[Kind.POSITION]
    t, d = kinds[Kind.TENSOR], declaration.space_dim
    pairs = math.comb(v + 1, 2)
    powers = max(d, 2) - 1  # of a tensor between two vectors, a.T^k.b
    count = kinds[Kind.SCALAR] + 2 * kinds[Kind.FIELD] + pairs + t * d + t * powers * pairs
    count += math.comb(t, 2) * powers**2
    if declaration.group in ("SO", "SE"):
        count += math.comb(v, d) + (t * v if d >= 2 else 0)
    return count


def invariant_scalars(declaration: SystemDeclaration) -> tuple[InvariantScalar, ...]:
    """The invariant scalars the declaration's symmetry group allows (see the module docstring).

    Declared scalar quantities are taken to be positive (masses, rates, lengths) and may serve as
    repeating quantities of the dimensional analysis. At most ``MAX_INVARIANT_SCALARS``.
    """
    count = invariant_count(declaration)
    if count > MAX_INVARIANT_SCALARS:
        raise FeatureError(
            f"system {declaration.name!r}: its parameters and states give {count} invariant scalars under "
            f"{declaration.symmetry}; at most {MAX_INVARIANT_SCALARS} are allowed (declare fewer vectors or tensors)"
        )
    group, d = declaration.group, declaration.space_dim
    inputs = declaration.select(roles=(Role.PARAMETER, Role.STATE))
    scalars: list[InvariantScalar] = []
    for q in inputs:
        if q.kind is Kind.SCALAR:
            scalars.append(InvariantScalar(q.name, q.units, q.role, (q.name,), lambda v, n=q.name: v[n]))
        elif q.kind is Kind.FIELD:
            for stat, fn in (("mean", _field_mean), ("std", _field_std)):
                scalars.append(
                    InvariantScalar(
                        f"{stat}({q.name})", q.units, q.role, (q.name,), lambda v, n=q.name, f=fn: f(v[n]), signed=True
                    )
                )
    vectors = [q for q in inputs if q.is_vector]
    tensors = [q for q in inputs if q.kind is Kind.TENSOR]
    if tensors and group == "Lorentz":
        raise FeatureError(
            f"system {declaration.name!r}: tensor quantities ({', '.join(t.name for t in tensors)}) under "
            f"{declaration.symmetry} are not supported (their invariants need the metric); declare four-vectors"
        )
    vec = _vector_inputs(declaration, vectors)
    metric = inv.minkowski_metric(d - 1) if group == "Lorentz" else None
    for a, b in itertools.combinations_with_replacement(vectors, 2):
        deps = vec[a.name].depends_on + vec[b.name].depends_on
        scalars.append(
            InvariantScalar(
                f"{a.name}.{b.name}",
                _product_units(vec[a.name].units, vec[b.name].units),
                _role(deps),
                _names(deps),
                lambda v, fa=vec[a.name].get, fb=vec[b.name].get: inv.inner(fa(v), fb(v), metric),
                signed=a is not b or metric is not None,
            )
        )
    if group in ("SO", "SE"):
        for combo in itertools.combinations(vectors, d):
            deps = tuple(q for c in combo for q in vec[c.name].depends_on)
            scalars.append(
                InvariantScalar(
                    f"det({','.join(q.name for q in combo)})",
                    _product_units(*(vec[q.name].units for q in combo)),
                    _role(deps),
                    _names(deps),
                    lambda v, gs=tuple(vec[q.name].get for q in combo): inv.determinant(*(g(v) for g in gs)),
                    signed=True,
                )
            )
    for t in tensors:
        for k in range(1, d + 1):
            scalars.append(
                InvariantScalar(
                    f"tr({t.name}^{k})" if k > 1 else f"tr({t.name})",
                    _product_units(*([t.units] * k)),
                    t.role,
                    (t.name,),
                    lambda v, n=t.name, k=k: inv.tensor_traces(v[n], k)[..., k - 1],
                    signed=k % 2 == 1,
                )
            )
        # a.T^k.b up to k = d - 1: with the traces, every O(d)-invariant of one symmetric tensor and the
        # vectors (Cayley-Hamilton makes higher powers combinations of these)
        for k in range(1, max(d, 2)):
            for a, b in itertools.combinations_with_replacement(vectors, 2):
                deps = vec[a.name].depends_on + (t,) + vec[b.name].depends_on
                scalars.append(
                    InvariantScalar(
                        f"{a.name}.{power_name(t.name, k)}.{b.name}",
                        _product_units(vec[a.name].units, *([t.units] * k), vec[b.name].units),
                        _role(deps),
                        _names(deps),
                        lambda v, fa=vec[a.name].get, fb=vec[b.name].get, n=t.name, k=k: inv.contract_power(
                            fa(v), v[n], fb(v), k
                        ),
                        signed=a is not b or k % 2 == 1,  # a.T^2.a = |T a|^2
                    )
                )
        if group in ("SO", "SE") and d >= 2:
            # det(v, T.v, ..., T^(d-1).v): a reflection of a tensor and a vector is in general no rotation of
            # them (the tensor's axes fix the orientation), so without it SO(d) could not tell mirror images apart
            for a in vectors:
                deps = vec[a.name].depends_on + (t,)
                scalars.append(
                    InvariantScalar(
                        f"det({','.join(_krylov_names(a.name, t.name, d))})",
                        _product_units(*([vec[a.name].units] * d), *([t.units] * (d * (d - 1) // 2))),
                        _role(deps),
                        _names(deps),
                        lambda v, fa=vec[a.name].get, n=t.name: inv.determinant(
                            *(inv.tensor_apply(v[n], fa(v), k) for k in range(d))
                        ),
                        signed=True,
                    )
                )
    for s, t in itertools.combinations(tensors, 2):
        # tr(S^i T^j) for i, j < d: with both tensors' traces, every O(d)-invariant of two symmetric
        # tensors for d <= 3
        for i, j in itertools.product(range(1, max(d, 2)), repeat=2):
            scalars.append(
                InvariantScalar(
                    f"{s.name}:{t.name}" if i == j == 1 else f"tr({power_name(s.name, i)} {power_name(t.name, j)})",
                    _product_units(*([s.units] * i), *([t.units] * j)),
                    _role((s, t)),
                    (s.name, t.name),
                    lambda v, a=s.name, b=t.name, i=i, j=j: inv.traces_of_products(v[a], v[b], i, j),
                    signed=True,
                )
            )
    return tuple(scalars)


def power_name(name: str, k: int) -> str:
    """``T`` for k = 1, else ``T^k``: how invariant scalars and basis vectors name a tensor's powers."""
    return name if k == 1 else f"{name}^{k}"


def _krylov_names(vector: str, tensor: str, d: int) -> list[str]:
    """The names of v, T.v, ..., T^(d-1).v, as invariant scalars and basis vectors name them."""
    return [vector] + [f"{power_name(tensor, k)}.{vector}" for k in range(1, d)]


def _field_mean(u: Any) -> Any:
    return u.mean(dim=(-2, -1)) if inv.is_torch(u) else u.mean(axis=(-2, -1))


def _field_std(u: Any) -> Any:
    """Population standard deviation over the grid (numpy's default; torch's needs correction=0)."""
    return u.std(dim=(-2, -1), correction=0) if inv.is_torch(u) else u.std(axis=(-2, -1))


# Dimension names that always mean "one entry per sample/time/...": never components or grid axes.
BATCH_NAMES = frozenset({"sample", "time", "step", "trajectory", "system", "particle", "halo", "run", "seed"})
COMPONENT_NAMES = ("space", "component", "xyz")
GRID_NAMES = ("x", "y")
TARGET_BLOCK_BYTES = 64 * 2**20


def _core_dims(var: xr.DataArray, kind: Kind) -> tuple[str, ...]:
    """A quantity's own dimensions: found by name (``space`` for vectors, ``x`` and ``y`` for
    fields) wherever they are, else the last dimensions."""
    n = _core_ndim(kind)
    if n == 0:
        return ()
    if kind is Kind.FIELD and all(d in var.dims for d in GRID_NAMES):
        return GRID_NAMES
    if kind in (Kind.VECTOR, Kind.POSITION):
        named = [d for d in var.dims if d in COMPONENT_NAMES]
        if len(named) == 1:
            return (named[0],)
    return tuple(var.dims[var.ndim - n :])


def _core_hint(kind: Kind) -> str:
    if kind is Kind.FIELD:
        return "x and y"
    if kind is Kind.TENSOR:
        return "for the tensor components"
    return "'space'"


def _core_ndim(kind: Kind) -> int:
    return {Kind.SCALAR: 0, Kind.VECTOR: 1, Kind.POSITION: 1, Kind.TENSOR: 2, Kind.FIELD: 2}[kind]


class FeaturePlan:
    """What :func:`extract` computes for a declaration (invariants, Pi groups, target scalings)."""

    def __init__(
        self,
        declaration: SystemDeclaration,
        *,
        repeating: Sequence[str] | None = None,
        signed: Sequence[str] | None = None,
    ) -> None:
        """``signed`` overrides which invariant scalars may be zero or negative (by default those that
        can be for some inputs: inner products of distinct vectors, determinants, Minkowski products),
        e.g. with what the data show; they enter Pi groups and scalings only where nothing else can."""
        check_declaration(declaration)
        self.declaration = declaration
        self.scalars = invariant_scalars(declaration)
        if not self.scalars:
            raise FeatureError(
                f"system {declaration.name!r} has no parameter or state quantities to build features from"
            )
        self.signed = tuple(s.name for s in self.scalars if s.signed) if signed is None else tuple(signed)
        self.analysis = DimensionalAnalysis(
            [(s.name, s.units) for s in self.scalars],
            independent_units=declaration.independent_units,
            repeating=repeating,
            preferred=[s.name for s in self.scalars if s.role is Role.PARAMETER],
            signed=self.signed,
        )
        self.targets = declaration.select(roles=(Role.TARGET,))
        unsupported = [t.name for t in self.targets if t.kind is not Kind.SCALAR]
        if unsupported:
            raise FeatureError(
                f"system {declaration.name!r}: targets {unsupported} are not scalars; feature extraction makes "
                "dimensionless scalar targets (equivariant vector outputs are built in the models)"
            )
        self.scalings: dict[str, Monomial] = {}
        for t in self.targets:
            try:
                self.scalings[t.name] = self.analysis.scaling(t.units)
            except DimensionalAnalysisError as exc:
                raise FeatureError(f"system {declaration.name!r}, target {t.name!r}: {exc}") from None
        self._by_name = {s.name: s for s in self.scalars}
        self._warn_about_signed_powers()
        outputs = [s.name for s in self.scalars] + ["pi", PI_DIM]
        outputs += [name for t in self.targets for name in (f"scale({t.name})", f"{t.name}_pi")]
        clashes = sorted(n for n, c in collections.Counter(outputs).items() if c > 1)
        if clashes:
            raise FeatureError(
                f"system {declaration.name!r}: quantity names collide with feature names {clashes}; rename them"
            )

    def _warn_about_signed_powers(self) -> None:
        """A signed scalar under a fractional or negative power gives NaN or inf on some inputs."""
        signed = set(self.signed)
        monomials = [*self.pi_groups, *self.scalings.values()]
        risky = sorted(
            {m.name for m in monomials for q, p in m.exponents if q in signed and (p < 0 or p.denominator > 1)}
        )
        if risky:
            warnings.warn(
                f"system {self.declaration.name!r}: only signed scalars (inner products, determinants, Minkowski "
                f"products) carry some dimensions, so {risky} raise one to a fractional or negative power: NaN or "
                "inf where it is negative or zero. Declare a positive scalar with those units to avoid it.",
                stacklevel=3,
            )

    @property
    def pi_groups(self) -> tuple[Monomial, ...]:
        return self.analysis.pi_groups

    def describe(self) -> dict[str, Any]:
        return {
            "symmetry": self.declaration.symmetry,
            "invariant_scalars": [{"name": s.name, "units": s.units, "role": s.role.value} for s in self.scalars],
            "dimensional_analysis": self.analysis.describe(),
            "target_scalings": {t: m.to_dict() for t, m in self.scalings.items()},
        }

    def compute(self, values: Values) -> dict[str, Any]:
        """Every output for in-memory arrays (numpy or torch) of the declared quantities in their
        declared units, batch axes first and broadcastable (size-1 where a quantity does not vary):
        invariant scalars by name, ``pi`` (batch..., n_pi), per target ``scale(T)`` (in T's declared
        units: a model predicts T as scale(T) times a dimensionless output) and, when the target is
        among ``values``, ``T_pi = T / scale(T)``."""
        out: dict[str, Any] = {s.name: s.compute(values) for s in self.scalars}
        scalar_values = dict(out)
        if self.pi_groups:
            out["pi"] = _stack_last([g.evaluate(scalar_values) for g in self.pi_groups])
        for t in self.targets:
            scale = self.scalings[t.name].evaluate(scalar_values)
            out[f"scale({t.name})"] = scale
            if t.name in values:
                out[f"{t.name}_pi"] = values[t.name] / scale
        return out

    def inputs_of(self, output: str) -> tuple[str, ...]:
        """The declared quantities an output of :meth:`compute` depends on."""
        if output == "pi":
            return self._inputs_of_scalars(q for g in self.pi_groups for q in g.quantities)
        if output.startswith("scale(") and output.endswith(")"):
            return self._inputs_of_scalars(self.scalings[output[6:-1]].quantities)
        if output.endswith("_pi") and output[:-3] in self.scalings:
            return tuple(sorted({output[:-3], *self.inputs_of(f"scale({output[:-3]})")}))
        return self._by_name[output].inputs

    def _inputs_of_scalars(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted({i for n in names for i in self._by_name[n].inputs}))


def _stack_last(arrays: Sequence[Any]) -> Any:
    if inv.is_torch(arrays[0]):
        import torch

        return torch.stack(torch.broadcast_tensors(*arrays), -1)
    return np.stack(np.broadcast_arrays(*arrays), -1)


# --- datasets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where each quantity sits in a dataset: its variable, core dims and units factor."""

    batch_dims: tuple[str, ...]
    dims_of: Mapping[str, tuple[str, ...]]  # batch dims of each quantity
    core_dims: Mapping[str, tuple[str, ...]]
    factors: Mapping[str, float]
    targets: tuple[str, ...]


def problems_text(
    problems: Sequence[str], source: str, declaration: SystemDeclaration, ds: xr.Dataset, *, missing: bool
) -> str:
    """Every problem of dataset ``source`` read as ``declaration``'s system, in one message (naming the
    dataset's variables when a declared one is missing)."""
    declared_in = f" (declared in {declaration.source})" if declaration.source else ""
    return (
        f"{len(problems)} problem(s) with {source} as system {declaration.name!r}{declared_in}"
        + (f" ({source} has variables {_variables_of(ds)})" if missing else "")
        + ":\n  - "
        + "\n  - ".join(problems)
    )


def _variables_of(ds: xr.Dataset, limit: int = 20) -> str:
    names = sorted(map(str, ds.data_vars))
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _layout(ds: xr.Dataset, plan: FeaturePlan, source: str, *, allow_missing_targets: bool = False) -> _Layout:
    """Match every declared quantity to the dataset's variable of that name (a missing target is
    skipped only with ``allow_missing_targets``: nothing else would notice that it was never used)."""
    decl = plan.declaration
    problems: list[str] = []
    core: dict[str, tuple[str, ...]] = {}
    factors: dict[str, float] = {}
    batch: list[str] = []
    dims_of: dict[str, tuple[str, ...]] = {}
    present = set(ds.data_vars)
    missing = False
    targets = tuple(t for t in plan.targets if t.name in present or not allow_missing_targets)
    declared_in = f" in {decl.source}" if decl.source else ""
    for q in [*decl.select(roles=(Role.PARAMETER, Role.STATE)), *targets]:
        where = f"{source}: variable {q.name!r}"
        if q.name not in present:
            declared = f"declared{declared_in} as a {q.kind.value} {q.role.value} in {q.units}"
            problems.append(f"{where} is missing ({declared})")
            missing = True
            continue
        var = ds[q.name]
        units = var.attrs.get("units")
        if not isinstance(units, str):
            problems.append(f"{where} has no 'units' attribute; expected units convertible to {q.units!r}")
        else:
            try:
                factors[q.name] = scale_factor(units, q.units, decl.independent_units, where=where)
            except UnitsError as exc:
                problems.append(str(exc))
        n_core = _core_ndim(q.kind)
        if var.ndim < n_core:
            problems.append(
                f"{where} has dims {var.dims}; a {q.kind.value} needs at least {n_core} dimension(s) of its own"
            )
            continue
        dims = _core_dims(var, q.kind)
        core[q.name] = dims
        misplaced = [d for d in dims if d in BATCH_NAMES]
        if misplaced:
            problems.append(
                f"{where} has dims {var.dims}: {misplaced} would be taken as its own "
                f"({'grid' if q.kind is Kind.FIELD else 'component'}) dimension(s); name those {_core_hint(q.kind)} "
                "or put them last"
            )
        if q.is_vector and var.sizes[dims[0]] != decl.space_dim:
            problems.append(
                f"{where}: its component dimension {dims[0]!r} has length {var.sizes[dims[0]]}, expected "
                f"{decl.space_dim} (vectors of {decl.symmetry})"
            )
        if q.kind is Kind.TENSOR and tuple(var.sizes[d] for d in dims) != (decl.space_dim, decl.space_dim):
            problems.append(
                f"{where}: its component dimensions {dims} have lengths {tuple(var.sizes[d] for d in dims)}, "
                f"expected {decl.space_dim}x{decl.space_dim}"
            )
        if not np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.complexfloating):
            problems.append(f"{where} has dtype {var.dtype}; expected real numbers")
        dims_of[q.name] = tuple(d for d in var.dims if d not in dims)
        for dim in dims_of[q.name]:
            if dim not in batch:
                batch.append(dim)
    for name, dims in core.items():
        clash = sorted(set(dims) & set(batch))
        if clash:
            problems.append(
                f"{source}: variable {name!r} uses {clash} as its own (component or grid) dimension, "
                "but other variables use it as a batch dimension"
            )
    if problems:
        raise FeatureError(problems_text(problems, source, decl, ds, missing=missing))
    return _Layout(tuple(batch), dims_of, core, factors, tuple(t.name for t in targets))


def _block_values(block: xr.Dataset, layout: _Layout) -> dict[str, np.ndarray]:
    """Each quantity as float64 in declared units, batch axes first in layout order (size 1 where
    the quantity does not vary along a batch dimension)."""
    values = {}
    for name in [*layout.core_dims, *layout.targets]:
        var = block[name]
        missing = [d for d in layout.batch_dims if d not in var.dims]
        if missing:
            var = var.expand_dims(missing)
        var = var.transpose(*layout.batch_dims, *layout.core_dims.get(name, ()))
        values[name] = np.asarray(var.data, dtype=np.float64) * layout.factors[name]
    return values


def _output_specs(plan: FeaturePlan, layout: _Layout) -> list[tuple[str, tuple[str, ...], str, dict[str, Any]]]:
    """(name, dims, units, extra attrs) of every output variable, in output order; each output
    varies along the batch dimensions of the quantities it depends on."""

    def dims(output: str) -> tuple[str, ...]:
        used = {d for q in plan.inputs_of(output) for d in layout.dims_of[q]}
        return tuple(d for d in layout.batch_dims if d in used)

    specs = [
        (s.name, dims(s.name), s.units, {"feature": "invariant scalar", "role": s.role.value}) for s in plan.scalars
    ]
    if plan.pi_groups:
        specs.append(("pi", (*dims("pi"), PI_DIM), "1", {"feature": "Pi groups of the invariant scalars"}))
    for target in plan.targets:
        t = target.name
        scaling = plan.scalings[t]
        attrs = {"feature": "target scale", "monomial": scaling.name}
        specs.append((f"scale({t})", dims(f"scale({t})"), target.units, attrs))
        if t in layout.targets:
            attrs = {"feature": "dimensionless target", "target": t, "monomial": scaling.name}
            specs.append((f"{t}_pi", dims(f"{t}_pi"), "1", attrs))
    return specs


def _select_dims(
    array: np.ndarray, batch_dims: Sequence[str], keep: Sequence[str], sizes: Mapping[str, int]
) -> np.ndarray:
    """Broadcast ``array`` (batch axes first, then extra axes) to the block and keep only ``keep``."""
    n_batch = len(batch_dims)
    array = np.asarray(array, dtype=np.float64)
    array = array.reshape(array.shape + (1,) * max(0, n_batch - array.ndim))
    full = tuple(sizes[d] if d in keep else 1 for d in batch_dims) + array.shape[n_batch:]
    array = np.broadcast_to(array, full)
    index = tuple(slice(None) if d in keep else 0 for d in batch_dims)
    return np.array(array[index])  # a copy; stays 0-d when nothing varies


def _batch_chunks(ds: xr.Dataset, plan: FeaturePlan, layout: _Layout, chunk_size: int | None) -> dict[str, int]:
    """Chunk lengths along the batch dimensions: blocks of about ``TARGET_BLOCK_BYTES`` of inputs
    and outputs, filled from the last batch dimension outwards; ``chunk_size`` fixes the chunk
    length along ``sample`` (else along the first batch dimension)."""
    per_entry = 8 * (len(plan.scalars) + len(plan.pi_groups) + 3 * len(layout.targets))
    for core in layout.core_dims.values():
        per_entry += 8 * int(np.prod([ds.sizes[d] for d in core]))
    budget = max(1, TARGET_BLOCK_BYTES // per_entry)
    fixed = "sample" if "sample" in layout.batch_dims else layout.batch_dims[0]
    order = [d for d in reversed(layout.batch_dims) if d != fixed] + [fixed]
    chunks = {}
    for d in order:
        size = ds.sizes[d]
        if d == fixed and chunk_size:
            chunks[d] = min(chunk_size, size)
        else:
            chunks[d] = max(1, min(size, budget))
        budget = max(1, budget // chunks[d])
    return chunks


def extract(
    dataset: xr.Dataset,
    declaration: SystemDeclaration | FeaturePlan,
    *,
    chunk_size: int | None = None,
    source: str = "dataset",
    allow_missing_targets: bool = False,
) -> xr.Dataset:
    """Lazily compute the features of ``dataset`` (see the module docstring) as an xarray Dataset.

    Blocks hold about 64 MiB, filled from the last batch dimension outwards; ``chunk_size`` fixes
    the chunk length along ``sample`` (else along the first batch dimension). Component and grid
    dimensions are never split. Nothing is computed
    until the result is loaded or written. ``source`` names the dataset in error messages.

    Every declared quantity must be a variable of ``dataset``; with ``allow_missing_targets`` a
    target may be absent (inputs to predict from): its ``scale(T)`` is computed, ``T_pi`` is not.
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    plan = declaration if isinstance(declaration, FeaturePlan) else FeaturePlan(declaration)
    layout = _layout(dataset, plan, source, allow_missing_targets=allow_missing_targets)
    if not layout.batch_dims:
        raise FeatureError(f"{source}: no batch dimension (sample, time, ...); features are computed per sample")
    names = list(layout.core_dims) + list(layout.targets)
    ds = dataset[names]
    chunks: dict[str, Any] = {d: -1 for dims in layout.core_dims.values() for d in dims}
    chunks.update(_batch_chunks(ds, plan, layout, chunk_size))
    ds = ds.chunk({d: c for d, c in chunks.items() if d in ds.dims})
    specs = _output_specs(plan, layout)
    sizes = {d: ds.sizes[d] for d in layout.batch_dims}
    block_chunks = {d: ds.chunks[d] if d in ds.chunks else (sizes[d],) for d in layout.batch_dims}
    n_pi = len(plan.pi_groups)
    template_vars = {}
    for name, dims, units, attrs in specs:
        shape = tuple(sizes[d] if d != PI_DIM else n_pi for d in dims)
        chunk_spec = tuple(block_chunks[d] if d != PI_DIM else (n_pi,) for d in dims)
        template_vars[name] = (
            dims,
            dask.array.empty(shape, chunks=chunk_spec, dtype=np.float64),
            {"units": units, **attrs},
        )
    coords = {d: dataset.coords[d] for d in layout.batch_dims if d in dataset.coords}
    if n_pi:
        coords[PI_DIM] = (PI_DIM, np.array(plan.analysis.pi_group_names, dtype=str))
    template = xr.Dataset(template_vars, coords=coords)

    def block_features(block: xr.Dataset) -> xr.Dataset:
        values = _block_values(block, layout)
        computed = plan.compute(values)
        sizes = {d: block.sizes[d] for d in layout.batch_dims}
        out = {}
        for name, dims, units, attrs in specs:
            keep = [d for d in dims if d != PI_DIM]
            out[name] = (dims, _select_dims(computed[name], layout.batch_dims, keep, sizes), {"units": units, **attrs})
        block_coords = {d: block.coords[d] for d in layout.batch_dims if d in block.coords}
        if n_pi:
            block_coords[PI_DIM] = coords[PI_DIM]
        return xr.Dataset(out, coords=block_coords)

    result = xr.map_blocks(block_features, ds, template=template)
    result.attrs.update(
        {
            "declaration": plan.declaration.to_json(),
            "feature_plan": json.dumps(plan.describe(), sort_keys=True),
            "system": plan.declaration.name,
        }
    )
    return result


def features_name(source_name: str) -> str:
    """The catalog name of the features of dataset ``source_name``."""
    return f"{source_name}-features"


def write_features(
    catalog: Any,
    ref: str,
    declaration: SystemDeclaration,
    *,
    name: str | None = None,
    chunk_size: int | None = None,
) -> str:
    """Extract the features of catalog dataset ``ref`` and store them with ``ref`` as parent.

    Computation runs on whatever dask scheduler is active (see ``pipeline.cluster``).
    Returns the new (or identical existing) version's ref.
    """
    resolved = catalog.resolve(ref)
    dataset = catalog.open(resolved)
    features = extract(dataset, declaration, chunk_size=chunk_size, source=f"dataset {resolved}")
    target = name or features_name(resolved.split("@")[0])
    return catalog.write(
        features,
        target,
        kind=FEATURES_KIND,
        parents=[resolved],
        params={"system": declaration.name},  # not the chunking: it does not change the content
    )


def declaration_of(dataset: xr.Dataset, *, source: str = "dataset") -> SystemDeclaration:
    """The declaration recorded in a dataset's ``declaration`` attribute (JSON, within the limits of
    ``sims.declaration.parse_json``)."""
    text = dataset.attrs.get("declaration")
    if not isinstance(text, str):
        raise FeatureError(f"{source} records no declaration (no 'declaration' attribute)")
    return SystemDeclaration.from_json(text, source=f"{source} attribute 'declaration'")


__all__ = [
    "FEATURES_KIND",
    "FeatureError",
    "FeaturePlan",
    "InvariantScalar",
    "declaration_of",
    "extract",
    "features_name",
    "invariant_scalars",
    "write_features",
]
