"""The OOD splits of a declared system, derived from its declaration (docs/fit.md#what-eqs-fit-does).

- ``test``: the held-out part of a random train/val/test split (in distribution);
- ``group``: the test set with every sample moved by its own random element of the declared group
  (rotations with and without reflections, Lorentz transformations with boosts, translations of the
  positions); targets move as their kind says;
- ``permutation``: for a system with a relabelled set, the test set with the members of every sample
  relabelled by their own random permutation; member targets are permuted alike;
- ``units``: the test set in other units: one random change of every base unit (log-uniform factor
  in [0.01, 100] per base dimension), every quantity converted by the factor its units imply;
- ``shift``: train on the samples with the lower values of the ``shift_by`` quantity, test on the top;
- ``rescaled``: the test set with every dimensional input moved outside its training range by a
  change of scale of the base dimensions, while the Pi groups, which no change of scale moves, stay
  inside; the targets follow their units (the same physics at another scale). Only where such a
  change exists (see :func:`rescaling`).

Split indices are drawn with a fixed seed, so every training seed sees the same held-out samples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, register_schema
from pipeline.declared.data import SAMPLE, SPACE, SPACE_COL, DataError
from pipeline.declared.design import PAIR_SUFFIXES, lengths, view_values
from pipeline.features import FeaturePlan
from pipeline.symmetry import random_element, random_unit_scales, unit_factor
from pipeline.units import dimension_vector
from sims.declaration import Kind, Role, SystemDeclaration

SPLIT_KIND = "declared.split"
TESTSET_KIND = "declared.testset"
SPLIT_SEED = 0
SPLITS = ("test", "group", "permutation", "units", "shift", "rescaled")
IN_DISTRIBUTION = "test"
UNITS_RANGE = (0.01, 100.0)
RESCALE_TRIES = 4000
RESCALE_LOG10 = 6.0  # search changes of scale up to 10^6 per base dimension

for kind, description in (
    (SPLIT_KIND, "indices of the train, validation and test samples of a declared system's split"),
    (TESTSET_KIND, "a declared system's test samples as a model is given them, with how they were made"),
):
    register_schema(DatasetSchema(kind=kind, description=description, attrs=("split",)))


def random_split(n: int, fractions: Sequence[float], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Train, val and test indices (sorted) of a random split with the given fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(fractions[2] * n)))
    n_val = max(1, int(round(fractions[1] * n)))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {k: np.sort(v) for k, v in parts.items()}


def shift_split(values: np.ndarray, fractions: Sequence[float], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The samples with the top ``fractions[2]`` of ``values`` as test; train and val drawn at random
    from the rest in proportion to their fractions."""
    n = len(values)
    n_test = max(1, int(round(fractions[2] * n)))
    order = np.argsort(values, kind="stable")
    test, rest = order[n - n_test :], order[: n - n_test]
    rest = np.random.default_rng(seed).permutation(rest)
    n_val = max(1, int(round(len(rest) * fractions[1] / (fractions[0] + fractions[1]))))
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": np.sort(test)}


def shift_values(data: xr.Dataset, declaration: SystemDeclaration, plan: FeaturePlan, shift_by: str) -> np.ndarray:
    """Per sample, the value of ``shift_by``: a declared scalar input, or an invariant scalar of ``plan``
    (with a relabelled set, one of the global inputs only: a pair's invariant is not one per sample)."""
    inputs = [q.name for q in declaration.quantities if q.role is not Role.TARGET]
    pair_names = {
        m + s for m in (declaration.permutation.quantities if declaration.permutation else ()) for s in PAIR_SUFFIXES
    }
    scalars = [s.name for s in plan.scalars if not set(s.inputs) & pair_names]
    declared = [i for i in inputs if declaration.quantity(i).kind is Kind.SCALAR and not declaration.is_member(i)]
    n = data.sizes[SAMPLE]
    if shift_by in declared:
        return np.asarray(data[shift_by].values, dtype=np.float64)
    if shift_by in scalars:
        values = view_values(declaration, {q: np.asarray(data[q].values, dtype=np.float64) for q in inputs})
        computed = np.asarray(next(s for s in plan.scalars if s.name == shift_by).compute(values), dtype=np.float64)
        per_sample = computed.reshape(n, -1)[:, 0] if computed.ndim else np.full(n, float(computed))
        return np.broadcast_to(per_sample, (n,)).copy()
    raise DataError(
        f"system {declaration.name!r}: --shift-by (or fit.shift_by) {shift_by!r} is neither a declared scalar input "
        f"nor an invariant scalar of the global inputs; choose from {', '.join(dict.fromkeys([*declared, *scalars])) or 'none'}"
    )


def split_dataset(parts: Mapping[str, np.ndarray], split: str, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    return xr.Dataset(
        {k: (k, np.asarray(v, dtype=np.int64), {"units": "1"}) for k, v in parts.items()},
        attrs={"split": split, **dict(attrs or {})},
    )


# -- the test sets ------------------------------------------------------------------------------------


def _move(g_matrix: np.ndarray, translation: np.ndarray | None, x: np.ndarray, kind: Kind) -> np.ndarray:
    """One group element per sample acting on x: (n, d), or (n, members, d) for a set's members."""
    if kind is Kind.SCALAR:
        return x
    if kind is Kind.TENSOR:
        return np.einsum("nij,njk,nlk->nil", g_matrix, x, g_matrix)
    out = np.einsum("nij,n...j->n...i", g_matrix, x)
    if kind is Kind.POSITION and translation is not None:
        out = out + translation.reshape(len(translation), *([1] * (x.ndim - 2)), translation.shape[-1])
    return out


def random_permutations(n: int, members: int, seed: int) -> np.ndarray:
    """One random relabelling of the members per sample, (n, members)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(members) for _ in range(n)]) if n else np.zeros((0, members), dtype=np.int64)


def permuted(
    values: Mapping[str, np.ndarray], declaration: SystemDeclaration, permutations: np.ndarray
) -> dict[str, np.ndarray]:
    """The member quantities of ``values`` relabelled per sample (new member k is old member perm[k])."""
    out = {}
    for name, v in values.items():
        if declaration.is_member(name):
            index = permutations.reshape(*permutations.shape, *([1] * (v.ndim - 2)))
            out[name] = np.take_along_axis(v, index, axis=1)
        else:
            out[name] = v
    return out


def group_elements(
    declaration: SystemDeclaration, n: int, seed: int, position_spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """One random element of the declared group per sample: matrices (n, d, d) and, for E(d) and SE(d),
    translations (n, d) of about ``position_spread``."""
    rng = np.random.default_rng(seed)
    elements = [random_element(declaration.symmetry, rng) for _ in range(n)]
    matrices = np.stack([g.matrix for g in elements])
    if declaration.group in ("E", "SE"):
        return matrices, np.stack([g.translation for g in elements]) / 3.0 * position_spread
    return matrices, None


def moved_by_group(
    values: Mapping[str, np.ndarray],
    declaration: SystemDeclaration,
    matrices: np.ndarray,
    translations: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Every quantity of ``values`` moved by the per-sample group elements."""
    return {name: _move(matrices, translations, v, declaration.quantity(name).kind) for name, v in values.items()}


def base_dimensions(declaration: SystemDeclaration) -> list[str]:
    return sorted(
        {
            dim
            for q in declaration.quantities
            for dim, _ in dimension_vector(q.units, declaration.independent_units, f"quantity {q.name!r}")
        }
    )


def factors(declaration: SystemDeclaration, scales: Mapping[str, float]) -> dict[str, float]:
    """How each quantity's numbers change when the unit of each base dimension shrinks by ``scales``."""
    return {q.name: unit_factor(q.units, scales, declaration.independent_units) for q in declaration.quantities}


def random_units(declaration: SystemDeclaration, seed: int) -> dict[str, float]:
    return random_unit_scales(base_dimensions(declaration), np.random.default_rng(seed), *UNITS_RANGE)


def rescaling(
    declaration: SystemDeclaration,
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    seed: int = SPLIT_SEED,
) -> tuple[dict[str, float] | None, str]:
    """A change of scale of the base dimensions that puts every nonzero dimensional input of the test
    set outside the range of its training values, and why (or why there is none)."""
    inputs = [q for q in declaration.quantities if q.role is not Role.TARGET]
    dims = base_dimensions(declaration)
    exponents = {
        q.name: dict(dimension_vector(q.units, declaration.independent_units, f"quantity {q.name!r}")) for q in inputs
    }
    dimensional = [q.name for q in inputs if exponents[q.name]]
    if not dimensional:
        return None, "every input is dimensionless: no change of scale moves them"
    ranges = {}
    for name in dimensional:
        kind = declaration.quantity(name).kind
        tr, te = lengths(train[name], kind).reshape(-1), lengths(test[name], kind).reshape(-1)
        tr, te = tr[tr > 0], te[te > 0]
        if tr.size == 0 or te.size == 0:
            continue
        ranges[name] = (np.log10(tr.min()), np.log10(tr.max()), np.log10(te.min()), np.log10(te.max()))
    if not ranges:
        return None, f"every dimensional input ({', '.join(dimensional)}) is zero in the training or test set"
    matrix = np.array([[float(exponents[n].get(dim, 0)) for dim in dims] for n in ranges])
    rng = np.random.default_rng(seed)
    best: np.ndarray | None = None
    for _ in range(RESCALE_TRIES):
        k = np.round(rng.uniform(-RESCALE_LOG10, RESCALE_LOG10, len(dims)), 1)
        shifts = matrix @ k
        ok = all(
            lo_te + s > hi_tr + 0.05 or hi_te + s < lo_tr - 0.05
            for (lo_tr, hi_tr, lo_te, hi_te), s in zip(ranges.values(), shifts)
        )
        if ok and (best is None or np.abs(k).max() < np.abs(best).max()):
            best = k
    if best is None:
        return None, (
            "no change of scale of the base dimensions up to 10^6 moves every dimensional input "
            f"({', '.join(ranges)}) outside its training range (some scale together)"
        )
    scales = {dim: float(10.0**e) for dim, e in zip(dims, best)}
    said = ", ".join(f"{dim} x10^{e:g}" for dim, e in zip(dims, best) if e)
    return scales, f"base dimensions rescaled: {said}"


def testset_dataset(
    values: Mapping[str, np.ndarray],
    declaration: SystemDeclaration,
    split: str,
    source_index: np.ndarray,
    *,
    description: str,
    quantity_factors: Mapping[str, float] | None = None,
    matrices: np.ndarray | None = None,
    translations: np.ndarray | None = None,
    permutations: np.ndarray | None = None,
) -> xr.Dataset:
    """A test set as a model is given it: every quantity (numbers in the declared units, times
    ``quantity_factors`` for the units and rescaled splits), the sample each came from, and the
    transformation that made it (group elements or relabellings per sample, or the factors per quantity)."""
    out: dict[str, Any] = {}
    member_dim = declaration.permutation.dim if declaration.permutation is not None else None
    for name, v in values.items():
        q = declaration.quantity(name)
        leading = (SAMPLE, member_dim) if declaration.is_member(name) else (SAMPLE,)
        dims = (*leading, SPACE, SPACE_COL)[: v.ndim]
        out[name] = (
            dims,
            np.asarray(v, dtype=np.float64),
            {"units": q.units, "kind": q.kind.value, "role": q.role.value},
        )
    out["source_index"] = ((SAMPLE,), np.asarray(source_index, dtype=np.int64), {"units": "1"})
    if matrices is not None:
        out["group_matrix"] = ((SAMPLE, SPACE, SPACE_COL), matrices, {"units": "1"})
    if permutations is not None:
        out["permutation"] = ((SAMPLE, member_dim), np.asarray(permutations, dtype=np.int64), {"units": "1"})
    if translations is not None:
        out["group_translation"] = ((SAMPLE, SPACE), translations, {"units": declaration_position_units(declaration)})
    attrs = {
        "split": split,
        "description": description,
        "declaration": declaration.to_json(),
        "quantity_factors": json.dumps(dict(quantity_factors or {}), sort_keys=True),
    }
    return xr.Dataset(out, coords={SAMPLE: (SAMPLE, np.arange(len(source_index)), {"units": "1"})}, attrs=attrs)


def declaration_position_units(declaration: SystemDeclaration) -> str:
    positions = [q for q in declaration.quantities if q.kind is Kind.POSITION]
    return positions[0].units if positions else "1"
