"""Dimensional analysis in exact integer arithmetic: dimension matrices, Pi groups, scaling monomials.

The dimensionless monomials prod_i x_i^a_i of quantities with unit-exponent columns u_i are the
integer vectors a with sum_i a_i u_i = 0: the integer null space (a lattice) of the dimension matrix
(Buckingham's Pi theorem: n quantities of rank r give n - r independent groups). The lattice basis
comes from a Hermite normal form computed with unimodular integer column operations; it is then
put in Hermite normal form once more, with columns ordered so that each group holds one
"non-repeating" quantity (its pivot) times a monomial of a few "repeating" quantities chosen to
keep exponents small. That is the classical textbook form (``alpha T``, ``Du alpha^-1 L^-2``),
and it is still an exact basis of every dimensionless integer monomial.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.units import check_declaration, dimension_vector, format_dimensions, parse
from sims.declaration import DeclarationError, Role, SystemDeclaration

_MAX_SUBSETS = 20000


class DimensionalAnalysisError(DeclarationError):
    """The requested dimensional construction does not exist (the message says why)."""


# --- exact integer linear algebra -------------------------------------------------------------


def _combine(target: list[int], source: list[int], factor: int) -> list[int]:
    return [a - factor * b for a, b in zip(target, source, strict=True)]


def _eliminate(vectors: list[list[int]], start: int, position: int) -> None:
    """Unimodular operations among ``vectors[start:]`` (swaps, and adding integer multiples of one
    to another, as in Euclid's algorithm) until ``vectors[start]`` is the only one of them with a
    nonzero entry at ``position`` (or none has one). Works in place on rows or columns alike."""
    while True:
        nonzero = [i for i in range(start, len(vectors)) if vectors[i][position] != 0]
        if not nonzero:
            return
        smallest = min(nonzero, key=lambda i: abs(vectors[i][position]))
        vectors[start], vectors[smallest] = vectors[smallest], vectors[start]
        clean = True
        for i in range(start + 1, len(vectors)):
            if vectors[i][position]:
                vectors[i] = _combine(vectors[i], vectors[start], vectors[i][position] // vectors[start][position])
                clean = clean and vectors[i][position] == 0
        if clean:
            return


def _column_echelon(matrix: Sequence[Sequence[int]]) -> tuple[int, list[list[int]], list[int]]:
    """Unimodular column operations on [matrix; identity] until ``matrix`` is in column echelon
    form. Returns the rank, the transformed columns (matrix part on top of the unimodular part)
    and the pivot row of each of the first ``rank`` columns."""
    m = len(matrix)
    n = len(matrix[0]) if m else 0
    columns = [[int(matrix[i][j]) for i in range(m)] + [int(j == k) for k in range(n)] for j in range(n)]
    pivot = 0
    pivot_rows: list[int] = []
    for row in range(m):
        _eliminate(columns, pivot, row)
        if pivot < n and columns[pivot][row] != 0:
            pivot_rows.append(row)
            pivot += 1
    return pivot, columns, pivot_rows


def integer_kernel(matrix: Sequence[Sequence[int]]) -> tuple[int, list[list[int]]]:
    """Rank and a lattice basis of {a in Z^n : matrix a = 0}.

    Unimodular column operations bring ``matrix`` to column echelon form while the same operations
    are applied to the identity; the identity's columns that end under zero columns of the echelon
    form span the integer kernel (every integer solution is an integer combination of them).
    """
    rank, columns, _ = _column_echelon(matrix)
    return rank, [column[len(matrix) :] for column in columns[rank:]]


def integer_solution(matrix: Sequence[Sequence[int]], rhs: Sequence[int]) -> list[int] | None:
    """An integer x with matrix x = rhs and small sum |x_i|, or None when no integer solution exists.

    Forward substitution through the column echelon form decides existence exactly; the solution
    is then shortened greedily by adding or subtracting kernel lattice vectors.
    """
    m = len(matrix)
    rank, columns, pivot_rows = _column_echelon(matrix)
    residual = [int(r) for r in rhs]
    x = [0] * (len(columns[0]) - m if columns else 0)
    for c in range(rank):
        row = pivot_rows[c]
        lead = columns[c][row]
        if residual[row] % lead:
            return None
        q = residual[row] // lead
        residual = [r - q * a for r, a in zip(residual, columns[c][:m], strict=True)]
        x = [xi + q * u for xi, u in zip(x, columns[c][m:], strict=True)]
    if any(residual):
        return None
    kernel = [column[m:] for column in columns[rank:]]
    improved = True
    while improved:
        improved = False
        for k in kernel:
            for sign in (1, -1):
                candidate = [xi + sign * ki for xi, ki in zip(x, k, strict=True)]
                if sum(map(abs, candidate)) < sum(map(abs, x)):
                    x, improved = candidate, True
    return x


def hermite_rows(rows: Sequence[Sequence[int]], column_order: Sequence[int]) -> tuple[list[list[int]], list[int]]:
    """Row-style Hermite normal form of an integer matrix of full row rank, pivots searched in
    ``column_order``; entries above a pivot p are reduced into [-p/2, p/2). Returns rows and pivots."""
    work = [list(map(int, row)) for row in rows]
    k = len(work)
    pivots: list[int] = []
    r = 0
    for col in column_order:
        if r == k:
            break
        _eliminate(work, r, col)
        if work[r][col] == 0:
            continue
        if work[r][col] < 0:
            work[r] = [-a for a in work[r]]
        p = work[r][col]
        for i in range(r):
            work[i] = _combine(work[i], work[r], (2 * work[i][col] + p) // (2 * p))
        pivots.append(col)
        r += 1
    if r < k:
        raise ValueError("hermite_rows needs a matrix of full row rank")
    return work, pivots


def _rational_solve(matrix: Sequence[Sequence[Fraction]], rhs: Sequence[Fraction]) -> list[Fraction] | None:
    """Exact solution x of matrix x = rhs for a matrix with independent columns, or None."""
    m, n = len(matrix), len(matrix[0]) if matrix else 0
    aug = [list(map(Fraction, matrix[i])) + [Fraction(rhs[i])] for i in range(m)]
    row = 0
    pivot_cols = []
    for col in range(n):
        pivot = next((i for i in range(row, m) if aug[i][col] != 0), None)
        if pivot is None:
            continue
        aug[row], aug[pivot] = aug[pivot], aug[row]
        lead = aug[row][col]
        aug[row] = [a / lead for a in aug[row]]
        for i in range(m):
            if i != row and aug[i][col] != 0:
                f = aug[i][col]
                aug[i] = [a - f * b for a, b in zip(aug[i], aug[row], strict=True)]
        pivot_cols.append(col)
        row += 1
    if any(aug[i][n] != 0 for i in range(row, m)):
        return None
    x = [Fraction(0)] * n
    for i, col in enumerate(pivot_cols):
        x[col] = aug[i][n]
    return x


# --- monomials ----------------------------------------------------------------------------------


def _format_exponent(power: Fraction) -> str:
    if power == 1:
        return ""
    if power.denominator == 1:
        return f"^{power.numerator}"
    return f"^({power.numerator}/{power.denominator})"


@dataclass(frozen=True)
class Monomial:
    """prod_i x_i^a_i over named quantities, with its units.

    ``evaluate`` works on numpy, dask and torch arrays alike (differentiably for torch).
    """

    exponents: tuple[tuple[str, Fraction], ...]
    units: str = "1"
    factor: float = 1.0  # makes the value coherent when the quantities' units differ in scale (cm and m)

    @property
    def name(self) -> str:
        return " ".join(f"{q}{_format_exponent(p)}" for q, p in self.exponents) or "1"

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(q for q, _ in self.exponents)

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The monomial of ``values`` (arrays broadcast together); quantities missing raise KeyError."""
        result: Any = None
        for quantity, power in self.exponents:
            x = values[quantity]
            term = x if power == 1 else (1 / x if power == -1 else x ** float(power))
            result = term if result is None else result * term
        if result is None:
            return self.factor
        return result if self.factor == 1.0 else result * self.factor

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "units": self.units,
            "exponents": {q: str(p) for q, p in self.exponents},
            "factor": self.factor,
        }


# --- the analysis -------------------------------------------------------------------------------


class DimensionalAnalysis:
    """Dimension matrix, rank, Pi groups and scaling monomials of a set of named quantities.

    ``quantities`` is a sequence of (name, unit string) pairs; the order is kept in group names.

    ``integer_groups`` is an exact basis of the integer lattice of dimensionless monomials (Hermite
    normal form). ``pi_groups`` (the features) are, by default, the same space written with each
    non-repeating quantity to the power one and exact rational powers of the repeating ones
    (``p1 m1^(-1/2) k1^(-1/2) l1^-1``): a state never ends up dividing another state's group, signs
    are kept, and where the lattice allows it the two bases are identical (Rietkerk).
    ``exponents="integer"`` makes ``pi_groups`` the integer basis instead.
    ``independent_units`` count as base dimensions of their own (litres of water). ``repeating``
    optionally fixes the quantities that may appear in several groups; by default a set of
    ``rank`` quantities (parameters first when ``preferred`` is given) is chosen that gives the
    smallest exponents. Quantities named in ``signed`` may be negative or zero (inner products of
    two different vectors, determinants, Minkowski products): they are used as repeating quantities
    or in scaling monomials only when nothing else spans the dimensions, since fractional or
    negative powers of them are NaN or infinite.

    Values are taken in each quantity's own units; every monomial carries the constant ``factor``
    that makes it coherent, so a group stays exactly dimensionless when lengths come in cm and m.
    """

    def __init__(
        self,
        quantities: Sequence[tuple[str, str]],
        *,
        independent_units: Iterable[str] = (),
        repeating: Sequence[str] | None = None,
        preferred: Sequence[str] | None = None,
        exponents: str = "rational",
        signed: Sequence[str] = (),
    ) -> None:
        if exponents not in ("rational", "integer"):
            raise DimensionalAnalysisError(f"exponents must be 'rational' or 'integer', got {exponents!r}")
        self.names = tuple(name for name, _ in quantities)
        if len(set(self.names)) != len(self.names):
            raise DimensionalAnalysisError(f"quantity names repeat: {self.names}")
        if not self.names:
            raise DimensionalAnalysisError("dimensional analysis needs at least one quantity")
        self.units = dict(quantities)
        self.independent_units = tuple(independent_units)
        vectors = {
            name: dict(dimension_vector(units, self.independent_units, f"quantity {name!r}"))
            for name, units in quantities
        }
        self.base_dimensions = tuple(sorted({dim for vector in vectors.values() for dim in vector}))
        self.matrix = tuple(
            tuple(vectors[name].get(dim, Fraction(0)) for name in self.names) for dim in self.base_dimensions
        )
        self.integer_matrix = tuple(
            tuple(int(x * math.lcm(*(y.denominator for y in row))) for x in row) for row in self.matrix
        )
        if self.base_dimensions:
            self.rank, self.lattice_basis = integer_kernel(self.integer_matrix)
        else:
            self.rank, self.lattice_basis = (
                0,
                [[int(i == j) for j in range(len(self.names))] for i in range(len(self.names))],
            )
        self.preferred = tuple(n for n in (preferred or ()) if n in self.names)
        self.signed = frozenset(n for n in signed if n in self.names)
        # one unit of each quantity in coherent base units; pint's conversion is multiplicative, so
        # a monomial that is dimensionless (even with independent units) gets the right constant
        self._coherent = {name: float(parse(units).to_base_units().magnitude) for name, units in quantities}
        self.repeating = self._choose_repeating(repeating, preferred)
        self.integer_groups = self._integer_groups()
        self.pi_groups = self._echelon_groups() if exponents == "rational" else self.integer_groups

    # dimension columns as exact fractions
    def _column(self, name: str) -> list[Fraction]:
        j = self.names.index(name)
        return [row[j] for row in self.matrix]

    def dimensions_of(self, name: str) -> str:
        return format_dimensions(zip(self.base_dimensions, self._column(name), strict=True))

    def _rank_of(self, names: Sequence[str]) -> int:
        if not names or not self.base_dimensions:
            return 0
        cols = [self.names.index(n) for n in names]
        sub = [[row[j] for j in cols] for row in self.integer_matrix]
        rank, _ = integer_kernel(sub)
        return rank

    def _choose_repeating(self, repeating: Sequence[str] | None, preferred: Sequence[str] | None) -> tuple[str, ...]:
        if repeating is not None:
            repeating = tuple(repeating)
            unknown = [n for n in repeating if n not in self.names]
            if unknown:
                raise DimensionalAnalysisError(f"repeating quantities {unknown} are not among {list(self.names)}")
            if len(repeating) != self.rank or self._rank_of(repeating) != self.rank:
                raise DimensionalAnalysisError(
                    f"repeating quantities {list(repeating)} must be {self.rank} quantities with independent "
                    f"dimensions (rank {self._rank_of(repeating)} of {self.rank})"
                )
            return repeating
        if self.rank == 0:
            return ()
        for candidates in self._tiers():
            if self._rank_of(candidates) == self.rank:
                return self._best_subset(candidates)
        raise AssertionError("all quantities together span the rank")

    def _tiers(self, names: Sequence[str] | None = None) -> list[list[str]]:
        """Candidate sets, best first: preferred unsigned, unsigned, all (within ``names``)."""
        names = list(self.names if names is None else names)
        unsigned = [n for n in names if n not in self.signed]
        return [[n for n in unsigned if n in self.preferred], unsigned, names]

    def _best_subset(self, candidates: Sequence[str]) -> tuple[str, ...]:
        """The independent subset of ``rank`` candidates whose groups have the smallest exponents."""
        a = np.array([[float(x) for x in row] for row in self.matrix])
        index = {n: self.names.index(n) for n in self.names}
        if math.comb(len(candidates), self.rank) > _MAX_SUBSETS:
            chosen: list[str] = []
            for name in candidates:  # greedy, in the given order
                if self._rank_of([*chosen, name]) > len(chosen):
                    chosen.append(name)
                if len(chosen) == self.rank:
                    break
            return tuple(chosen)
        best: tuple[Any, ...] | None = None
        best_subset: tuple[str, ...] = ()
        for subset in itertools.combinations(candidates, self.rank):
            sub = a[:, [index[n] for n in subset]]
            if np.linalg.matrix_rank(sub) < self.rank:
                continue
            others = [j for j, n in enumerate(self.names) if n not in subset]
            solution, *_ = np.linalg.lstsq(sub, -a[:, others], rcond=None)
            cost = _readability_cost(solution)
            complexity = sum(int(np.count_nonzero(a[:, index[n]])) for n in subset)
            key = (float(cost), complexity, [self.names.index(n) for n in subset])
            if best is None or key < best:
                best, best_subset = key, subset
        return best_subset

    def _integer_groups(self) -> tuple[Monomial, ...]:
        """The lattice basis in Hermite normal form, pivots on the non-repeating quantities."""
        if not self.lattice_basis:
            return ()
        repeating = [self.names.index(n) for n in self.repeating]
        order = [j for j in range(len(self.names)) if j not in repeating] + repeating
        rows, _ = hermite_rows(self.lattice_basis, order)
        groups = []
        for row in rows:
            pivot = next(j for j in order if row[j] != 0)
            terms = [(self.names[pivot], Fraction(row[pivot]))]
            terms += [(self.names[j], Fraction(row[j])) for j in range(len(self.names)) if j != pivot and row[j] != 0]
            groups.append(self._monomial(terms, "1"))
        return tuple(groups)

    def _echelon_groups(self) -> tuple[Monomial, ...]:
        """One group per non-repeating quantity x: x times exact (possibly fractional) powers of the
        repeating quantities. Equal to the integer groups whenever the lattice allows exponent 1."""
        columns = [self._column(n) for n in self.repeating]
        matrix = [[col[i] for col in columns] for i in range(len(self.base_dimensions))]
        groups = []
        for name in self.names:
            if name in self.repeating:
                continue
            if columns:
                solution = _rational_solve(matrix, [-x for x in self._column(name)])
                assert solution is not None, "repeating quantities span every column"
            else:
                solution = []
            powers = dict(zip(self.repeating, solution, strict=True))
            terms = [(name, Fraction(1))] + [(n, powers[n]) for n in self.names if powers.get(n, 0) != 0]
            groups.append(self._monomial(terms, "1"))
        return tuple(groups)

    def _monomial(self, terms: Sequence[tuple[str, Fraction]], units: str) -> Monomial:
        factor = math.prod(self._coherent[n] ** float(p) for n, p in terms) / float(
            parse(units).to_base_units().magnitude
        )
        if abs(factor - 1.0) < 1e-15:
            factor = 1.0
        return Monomial(tuple(terms), units, factor)

    @property
    def pi_group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.pi_groups)

    def scaling(self, target_units: str, *, using: Sequence[str] | None = None) -> Monomial:
        """A monomial of the quantities (of ``using``) with exactly ``target_units``.

        By default the preferred quantities (the parameters of a declaration) that are not signed
        are used when they reach the target, then all unsigned quantities, then all. Prefers
        integer exponents (found exactly, with as many quantities as needed) and, among those, the
        smallest ones. Raises
        ``DimensionalAnalysisError`` when the target's dimensions lie outside what the quantities
        span, naming the dimensions.
        """
        if using is None:
            for tier in self._tiers()[:2]:
                if tier:
                    try:
                        return self.scaling(target_units, using=tier)
                    except DimensionalAnalysisError:
                        pass
        names = tuple(using) if using is not None else self.names
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise DimensionalAnalysisError(f"scaling: quantities {unknown} are not among {list(self.names)}")
        target = dict(dimension_vector(target_units, self.independent_units, "target units"))
        missing = sorted(set(target) - set(self.base_dimensions))
        if missing:
            raise DimensionalAnalysisError(
                f"no monomial of {list(names)} has units {target_units!r}: none of them carries {', '.join(missing)}"
            )
        rhs = [target.get(dim, Fraction(0)) for dim in self.base_dimensions]
        sub_rank = self._rank_of(names)
        best: tuple[Any, ...] | None = None
        best_monomial = None
        subsets: Iterable[tuple[str, ...]]
        if math.comb(len(names), sub_rank) <= _MAX_SUBSETS:
            subsets = itertools.combinations(names, sub_rank)
        else:
            subsets = [self.repeating] if set(self.repeating) <= set(names) else []
        for subset in subsets:
            if self._rank_of(subset) < sub_rank:
                continue
            columns = [self._column(n) for n in subset]
            matrix = [[columns[c][i] for c in range(len(subset))] for i in range(len(self.base_dimensions))]
            x = _rational_solve(matrix, rhs)
            if x is None:
                break  # any basis of the same span fails the same way
            key = (max(e.denominator for e in x), sum(abs(e) for e in x), sum(1 for e in x if e), subset)
            if best is None or key < best:
                best = key
                ordered = [(n, e) for n in self.names for s, e in zip(subset, x, strict=True) if s == n and e != 0]
                best_monomial = self._monomial(ordered, target_units)
        if best is not None and best[0] > 1:  # an integer monomial may need more than rank-many quantities
            integral = self._integer_scaling(names, rhs)
            if integral is not None:
                best_monomial = self._monomial(integral, target_units)
        if best_monomial is None:
            spanned = ", ".join(f"{n} [{self.dimensions_of(n)}]" for n in names)
            raise DimensionalAnalysisError(
                f"no monomial of the quantities has units {target_units!r} "
                f"[{format_dimensions(sorted(target.items()))}]: they span only combinations of {spanned}"
            )
        return best_monomial

    def _integer_scaling(self, names: Sequence[str], rhs: Sequence[Fraction]) -> list[tuple[str, Fraction]] | None:
        columns = [self._column(n) for n in names]
        rows = []
        target = []
        for i in range(len(self.base_dimensions)):
            entries = [col[i] for col in columns] + [rhs[i]]
            scale = math.lcm(*(e.denominator for e in entries))
            rows.append([int(col[i] * scale) for col in columns])
            target.append(int(rhs[i] * scale))
        x = integer_solution(rows, target)
        if x is None:
            return None
        powers = dict(zip(names, x, strict=True))
        return [(n, Fraction(powers[n])) for n in self.names if powers.get(n, 0)]

    def describe(self) -> dict[str, Any]:
        return {
            "quantities": {n: self.units[n] for n in self.names},
            "independent_units": list(self.independent_units),
            "base_dimensions": list(self.base_dimensions),
            "matrix": [[str(x) for x in row] for row in self.matrix],
            "rank": self.rank,
            "repeating": list(self.repeating),
            "pi_groups": [g.to_dict() for g in self.pi_groups],
            "integer_groups": [g.to_dict() for g in self.integer_groups],
        }

    @classmethod
    def of_declaration(
        cls,
        declaration: SystemDeclaration,
        *,
        roles: Sequence[Role] = (Role.PARAMETER, Role.STATE),
        repeating: Sequence[str] | None = None,
        exponents: str = "rational",
    ) -> "DimensionalAnalysis":
        """The analysis of a declaration's quantities of the given roles (vectors and tensors enter
        through their magnitudes, which carry the same units); parameters are preferred as repeating
        quantities so that state and target quantities each sit in a group of their own."""
        check_declaration(declaration)
        chosen = [q for q in declaration.quantities if q.role in tuple(roles)]
        if not chosen:
            raise DimensionalAnalysisError(
                f"system {declaration.name!r} has no quantities with roles {[Role(r).value for r in roles]}"
            )
        preferred = [q.name for q in chosen if q.role is Role.PARAMETER]
        return cls(
            [(q.name, q.units) for q in chosen],
            independent_units=declaration.independent_units,
            repeating=repeating,
            preferred=preferred,
            exponents=exponents,
        )


def _readability_cost(solution: np.ndarray) -> float:
    """How hard groups are to read: each column holds the exponents of the repeating quantities in
    one group (its pivot has exponent 1). Cleared to integers, a group costs the sum of its
    absolute exponents, plus 2 per extra unit of denominator (a square root reads worse than
    one more factor)."""
    cost = 0.0
    for column in solution.T:
        for denominator in range(1, 13):
            scaled = column * denominator
            if np.all(np.abs(scaled - np.round(scaled)) < 1e-9):
                break
        else:
            denominator = 1000
        cost += denominator + float(np.abs(np.round(column * denominator)).sum()) + 2 * (denominator - 1)
    return cost
