"""Random group elements and the shared symmetry check: is a function invariant or equivariant?

In the spirit of e3nn's ``assert_equivariant``: draw random elements of O(d) (with reflections),
SO(d), E(d), Lorentz O(1,d), permutations or changes of units, apply them to the inputs according
to how each input transforms, and compare f(g x) with g f(x) to float64 round-off. Every issue's
tests use these helpers; user code can too.

Input and output *types* say how an array transforms (vectors along the last axis):

    scalar        unchanged                      pseudoscalar  times det(g)
    vector        g v                            pseudovector  det(g) g v
    position      g v + t (t only under E(d), SE(d))
    tensor        g T g^T (last two axes)

Models are checked from what they declare: ``assert_equivariant(model)`` and
``assert_units_equivariant(model)`` read the model's :class:`~pipeline.model_io.ModelIO` (its
``io``, or ``io=``), draw inputs, group elements of the system's group and changes of every base
unit, transform every input as its declared kind and units say, and compare the outputs with
theirs transformed the same way (float64, relative tolerance 1e-10). The report they return holds
the largest relative error measured; ``measure_equivariance`` and ``measure_units_equivariance``
return it without raising (for baselines, which must fail). The array forms
``assert_equivariant(fn, inputs, input_types, output_types)`` and
``assert_units_equivariant(fn, inputs, input_units, output_units)`` remain for plain functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pipeline.invariants import is_torch
from pipeline.model_io import ModelIO
from pipeline.units import dimension_vector

TYPES = ("scalar", "pseudoscalar", "vector", "pseudovector", "position", "tensor")
_GROUP = re.compile(r"^(?P<group>O|SO|E|SE)\((?P<d>[1-9])\)$|^O\(1,(?P<dl>[1-9])\)$")


def random_orthogonal(d: int, rng: np.random.Generator, reflection: bool | None = None) -> np.ndarray:
    """A Haar-random d x d orthogonal matrix; ``reflection`` forces det = -1 (True) or +1 (False)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))  # makes the distribution Haar (Mezzadri 2007)
    want_reflection = bool(rng.integers(2)) if reflection is None else reflection
    if (np.linalg.det(q) < 0) != want_reflection:
        q[:, 0] = -q[:, 0]
    return q


def random_lorentz(
    d_space: int,
    rng: np.random.Generator,
    max_rapidity: float = 1.0,
    parity: bool | None = None,
    time_reversal: bool | None = None,
) -> np.ndarray:
    """A random element of O(1,d): a rotation (with a reflection if ``parity``), then a boost of
    rapidity up to ``max_rapidity`` along a random direction, then another rotation, then time
    reversal if ``time_reversal`` (None: each drawn at random). Time is the first coordinate."""
    direction = rng.standard_normal(d_space)
    direction /= np.linalg.norm(direction)
    rapidity = rng.uniform(-max_rapidity, max_rapidity)
    boost = np.eye(d_space + 1)
    boost[0, 0] = np.cosh(rapidity)
    boost[0, 1:] = boost[1:, 0] = np.sinh(rapidity) * direction
    boost[1:, 1:] += (np.cosh(rapidity) - 1) * np.outer(direction, direction)

    def rotation(reflect: bool | None) -> np.ndarray:
        r = np.eye(d_space + 1)
        r[1:, 1:] = random_orthogonal(d_space, rng, reflect)
        return r

    reverse = bool(rng.integers(2)) if time_reversal is None else time_reversal
    flip = np.diag([-1.0 if reverse else 1.0] + [1.0] * d_space)
    return flip @ rotation(False) @ boost @ rotation(parity)


def random_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(n)


def random_unit_scales(
    base_dimensions: Sequence[str], rng: np.random.Generator, low: float = 0.1, high: float = 10.0
) -> dict[str, float]:
    """One random positive factor per base dimension (log-uniform in [low, high])."""
    return {dim: float(np.exp(rng.uniform(np.log(low), np.log(high)))) for dim in base_dimensions}


@dataclass(frozen=True)
class GroupElement:
    """A matrix acting on vectors (last axis), and a translation for E(d) and SE(d)."""

    matrix: np.ndarray
    translation: np.ndarray | None = None
    description: str = ""

    @property
    def det(self) -> float:
        return float(np.round(np.linalg.det(self.matrix)))

    def act(self, x: Any, kind: str) -> Any:
        """Apply the element to an array of the given transformation type."""
        if kind not in TYPES:
            raise ValueError(f"unknown transformation type {kind!r}; choose from {TYPES}")
        if kind == "scalar":
            return x
        if kind == "pseudoscalar":
            return self.det * x
        g = _like(self.matrix, x)
        if kind == "tensor":
            return g @ x @ g.T  # matmul broadcasts over leading axes
        out = x @ g.T  # g acting on the last axis
        if kind == "pseudovector":
            out = self.det * out
        if kind == "position" and self.translation is not None:
            out = out + _like(self.translation, x)
        return out


def _like(a: np.ndarray, x: Any) -> Any:
    if is_torch(x):
        import torch

        return torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return a.astype(x.dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else a


def random_element(
    group: str, rng: np.random.Generator, reflection: bool | None = None, time_reversal: bool | None = None
) -> GroupElement:
    """A random element of ``O(d)``, ``SO(d)``, ``E(d)``, ``SE(d)`` or ``O(1,d)``.

    For the groups with reflections (O(d), E(d), O(1,d)) ``reflection`` chooses the component
    (None: at random); it is ignored for SO(d) and SE(d). ``time_reversal`` does the same for the
    time-reversing components of O(1,d).
    """
    match = _GROUP.match(group.replace(" ", ""))
    if not match:
        raise ValueError(f"unknown group {group!r}: use O(d), SO(d), E(d), SE(d) or O(1,d)")
    if match["dl"]:
        d = int(match["dl"])
        parity = bool(rng.integers(2)) if reflection is None else reflection
        reverse = bool(rng.integers(2)) if time_reversal is None else time_reversal
        return GroupElement(
            random_lorentz(d, rng, parity=parity, time_reversal=reverse),
            description=f"Lorentz O(1,{d}) element, parity {parity}, time reversal {reverse}",
        )
    name, d = match["group"], int(match["d"])
    proper = name in ("SO", "SE")
    matrix = random_orthogonal(d, rng, reflection=False if proper else reflection)
    translation = rng.normal(scale=3.0, size=d) if name in ("E", "SE") else None
    return GroupElement(matrix, translation, f"{name}({d}) element with det {np.linalg.det(matrix):+.0f}")


def _finite_parts(actual: Any, expected: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Both arrays in float64 without the infinities they share (same places, same signs); None where
    the comparison is an infinite error: NaN anywhere, or infinities that differ."""
    a = _numpy(actual).astype(np.float64, copy=False)
    b = _numpy(expected).astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} versus {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        return None
    infinite = np.isinf(a) | np.isinf(b)
    if infinite.any():
        if not np.array_equal(a[infinite], b[infinite]):
            return None
        a, b = a[~infinite], b[~infinite]
    return a, b


def relative_error(actual: Any, expected: Any) -> float:
    """max |actual - expected| / max(|expected|, |actual|): a norm-wise relative error.

    NaN anywhere is an infinite error (a check must not pass on outputs that are all NaN);
    infinities must sit at the same places with the same signs.
    """
    finite = _finite_parts(actual, expected)
    if finite is None:
        return float("inf")
    a, b = finite
    scale = max(float(np.abs(b).max(initial=0.0)), float(np.abs(a).max(initial=0.0)))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max(initial=0.0) / scale)


def elementwise_relative_error(actual: Any, expected: Any) -> float:
    """max_i |actual_i - expected_i| / |expected_i|: every element to its own precision (0 where both
    are 0, infinite where only ``expected`` is); NaN anywhere is an infinite error."""
    finite = _finite_parts(actual, expected)
    if finite is None:
        return float("inf")
    a, b = finite
    diff = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / np.abs(b))
    return float(ratio.max(initial=0.0))


def _numpy(x: Any) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@dataclass
class SymmetryReport:
    """The worst relative error seen over all trials, and the element that produced it."""

    worst: float = 0.0
    trials: int = 0
    worst_element: str = ""
    errors: list[float] = field(default_factory=list)

    @property
    def max_relative_error(self) -> float:
        return self.worst


class SymmetryError(AssertionError):
    """A symmetry check that failed; ``report`` holds what was measured."""

    def __init__(self, message: str, report: SymmetryReport) -> None:
        super().__init__(message)
        self.report = report


def _check(errors: SymmetryReport, error: float, description: str) -> None:
    errors.trials += 1
    errors.errors.append(error)
    if error > errors.worst or errors.trials == 1:
        errors.worst = max(error, errors.worst)
        errors.worst_element = description


def _fail(what: str, report: SymmetryReport, rtol: float) -> None:
    if not report.worst <= rtol:  # NaN fails too
        raise SymmetryError(
            f"{what}: relative error {report.worst:.3e} exceeds {rtol:.1e} "
            f"(worst of {report.trials} trials, for {report.worst_element})",
            report,
        )


MODEL_RTOL = 1e-10
"""The default relative tolerance of the model checks (float64 round-off through a network)."""


def assert_equivariant(
    fn: Callable[..., Any],
    inputs: Sequence[Any] | ModelIO | None = None,
    input_types: Sequence[str] | None = None,
    output_types: str | Sequence[str] | None = None,
    *,
    group: str | None = None,
    trials: int = 8,
    rtol: float | None = None,
    seed: int = 0,
    io: ModelIO | None = None,
    data: Sequence[Any] | None = None,
    n: int = 4,
    elementwise: bool = False,
) -> SymmetryReport:
    """Check fn(g . x) == g . fn(x) for random elements g of ``group``.

    **Models**: ``assert_equivariant(model)`` or ``assert_equivariant(model, io)`` reads the model's
    :class:`~pipeline.model_io.ModelIO` (see :func:`measure_equivariance` for ``data``, ``n`` and
    ``group``, which default to random inputs and the system's group); ``rtol`` defaults to 1e-10.

    **Arrays**: ``inputs`` are passed positionally; ``input_types`` and ``output_types`` give how each
    transforms (see the module docstring). A single output may be given as a bare type. ``group``
    defaults to O(3) and ``rtol`` to 1e-12.

    For groups with reflections, odd-numbered trials draw from the reflecting component (and for
    O(1,d) trials 2 and 3 modulo 4 reverse time), so that every component is tested (``trials`` >= 4).
    Returns the report; raises :class:`SymmetryError` (an AssertionError) naming the worst element
    when an error exceeds rtol.
    """
    if inputs is None or isinstance(inputs, ModelIO):
        if input_types is not None or output_types is not None:
            raise TypeError("a model's check takes its ModelIO, not input and output types")
        from pipeline.model_symmetry import group_name, measure_equivariance

        report = measure_equivariance(
            fn, io or inputs, data=data, group=group, trials=trials, seed=seed, n=n, elementwise=elementwise
        )
        _fail(f"{group_name(fn, io or inputs, group)} equivariance", report, MODEL_RTOL if rtol is None else rtol)
        return report
    if input_types is None or output_types is None:
        raise TypeError("assert_equivariant(fn, inputs, input_types, output_types): types are missing")
    group = "O(3)" if group is None else group
    rtol = 1e-12 if rtol is None else rtol
    if len(inputs) != len(input_types):
        raise ValueError(f"{len(inputs)} inputs but {len(input_types)} input types")
    out_types = (output_types,) if isinstance(output_types, str) else tuple(output_types)
    rng = np.random.default_rng(seed)
    reference = _as_tuple(fn(*inputs))
    if len(reference) != len(out_types):
        raise ValueError(f"fn returned {len(reference)} outputs but {len(out_types)} output types were given")
    report = SymmetryReport()
    for trial in range(trials):
        # every component of the group, whatever the seed
        g = random_element(group, rng, reflection=trial % 2 == 1, time_reversal=trial % 4 >= 2)
        moved = _as_tuple(fn(*(g.act(x, t) for x, t in zip(inputs, input_types, strict=True))))
        for index, (out, expected, t) in enumerate(zip(moved, reference, out_types, strict=True)):
            _check(report, relative_error(out, g.act(expected, t)), f"output {index}, {g.description}")
    _fail(f"{group} equivariance", report, rtol)
    return report


def assert_invariant(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    input_types: Sequence[str],
    *,
    group: str = "O(3)",
    trials: int = 8,
    rtol: float = 1e-12,
    seed: int = 0,
) -> SymmetryReport:
    """Check fn(g . x) == fn(x) for every output (all outputs are scalars)."""
    n_out = len(_as_tuple(fn(*inputs)))
    return assert_equivariant(
        fn, inputs, input_types, ("scalar",) * n_out, group=group, trials=trials, rtol=rtol, seed=seed
    )


def assert_permutation_equivariant(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    axes: Sequence[int | None],
    output_axes: int | None | Sequence[int | None],
    *,
    trials: int = 8,
    rtol: float = 1e-12,
    seed: int = 0,
) -> SymmetryReport:
    """Check fn(P x) == P fn(x) for random permutations P of the set axis of each input.

    ``axes`` gives, per input, the axis holding the set (None: the input is not permuted); all
    set axes must have the same length. ``output_axes`` is the permuted axis of each output, or
    None for an invariant output.
    """
    if len(inputs) != len(axes):
        raise ValueError(f"{len(inputs)} inputs but {len(axes)} axes")
    sizes = {x.shape[a] for x, a in zip(inputs, axes, strict=True) if a is not None}
    if len(sizes) != 1:
        raise ValueError(f"the permuted axes must all have one length, got {sorted(sizes)}")
    n = sizes.pop()
    rng = np.random.default_rng(seed)
    reference = _as_tuple(fn(*inputs))
    out_axes = (output_axes,) * len(reference) if not isinstance(output_axes, (list, tuple)) else tuple(output_axes)
    report = SymmetryReport()
    for _ in range(trials):
        perm = random_permutation(n, rng)
        while n > 1 and np.array_equal(perm, np.arange(n)):  # the identity tests nothing
            perm = random_permutation(n, rng)
        moved = _as_tuple(fn(*(_permute(x, perm, a) for x, a in zip(inputs, axes, strict=True))))
        for index, (out, expected, a) in enumerate(zip(moved, reference, out_axes, strict=True)):
            _check(
                report, relative_error(out, _permute(expected, perm, a)), f"output {index}, permutation {perm.tolist()}"
            )
    _fail("permutation equivariance", report, rtol)
    return report


def _permute(x: Any, perm: np.ndarray, axis: int | None) -> Any:
    if axis is None:
        return x
    index: list[Any] = [slice(None)] * x.ndim
    if is_torch(x):
        import torch

        index[axis] = torch.as_tensor(perm, device=x.device)
    else:
        index[axis] = perm
    return x[tuple(index)]


def unit_factor(units: str, scales: Mapping[str, float], independent_units: Sequence[str] = ()) -> float:
    """How a value with ``units`` changes when each base dimension's unit shrinks by ``scales``:
    prod_b s_b^(e_b). Base dimensions absent from ``scales`` are left alone."""
    factor = 1.0
    for dim, power in dimension_vector(units, tuple(independent_units), "units"):
        factor *= scales.get(dim, 1.0) ** float(power)
    return factor


def assert_units_equivariant(
    fn: Callable[..., Any],
    inputs: Mapping[str, Any] | ModelIO | None = None,
    input_units: Mapping[str, str] | None = None,
    output_units: str | Sequence[str] | None = None,
    *,
    independent_units: Sequence[str] = (),
    trials: int = 8,
    rtol: float | None = None,
    seed: int = 0,
    io: ModelIO | None = None,
    data: Sequence[Any] | None = None,
    n: int = 4,
    dimensions: Sequence[str] | None = None,
    per_sample: bool = False,
    substitutions: Mapping[str, str] | None = None,
    elementwise: bool = False,
) -> SymmetryReport:
    """Check fn(rescaled inputs) == rescaled fn(inputs) under random changes of units.

    **Models**: ``assert_units_equivariant(model)`` or ``assert_units_equivariant(model, io)`` reads
    the model's :class:`~pipeline.model_io.ModelIO` (see :func:`measure_units_equivariance` for the
    options); ``rtol`` defaults to 1e-10.

    **Functions of named arrays**: each trial draws a factor per base dimension (``[mass]``,
    ``[length]``, ``[liter]`` ...), multiplies every input by the factor its units imply, and expects
    each output multiplied by the factor of its ``output_units`` (``'1'``: invariant). ``fn`` is
    called with keyword inputs; ``rtol`` defaults to 1e-12.
    """
    if inputs is None or isinstance(inputs, ModelIO):
        if input_units is not None or output_units is not None:
            raise TypeError("a model's check takes its ModelIO, not input and output units")
        from pipeline.model_symmetry import measure_units_equivariance

        report = measure_units_equivariance(
            fn,
            io or inputs,
            data=data,
            trials=trials,
            seed=seed,
            n=n,
            dimensions=dimensions,
            per_sample=per_sample,
            substitutions=substitutions,
            elementwise=elementwise,
        )
        _fail("units equivariance", report, MODEL_RTOL if rtol is None else rtol)
        return report
    if input_units is None or output_units is None:
        raise TypeError("assert_units_equivariant(fn, inputs, input_units, output_units): units are missing")
    rtol = 1e-12 if rtol is None else rtol
    missing = sorted(set(inputs) - set(input_units))
    if missing:
        raise ValueError(f"no units given for inputs {missing}")
    out_units = (output_units,) if isinstance(output_units, str) else tuple(output_units)
    dims = sorted(
        {
            d
            for u in [*input_units.values(), *out_units]
            for d, _ in dimension_vector(u, tuple(independent_units), "units")
        }
    )
    rng = np.random.default_rng(seed)
    reference = _as_tuple(fn(**inputs))
    if len(reference) != len(out_units):
        raise ValueError(f"fn returned {len(reference)} outputs but {len(out_units)} output units were given")
    report = SymmetryReport()
    for _ in range(trials):
        scales = random_unit_scales(dims, rng)
        moved_inputs = {k: v * unit_factor(input_units[k], scales, independent_units) for k, v in inputs.items()}
        moved = _as_tuple(fn(**moved_inputs))
        for index, (out, expected, u) in enumerate(zip(moved, reference, out_units, strict=True)):
            desc = "units rescaled by " + ", ".join(f"{d} x{s:.3g}" for d, s in scales.items())
            _check(
                report,
                relative_error(out, expected * unit_factor(u, scales, independent_units)),
                f"output {index}, {desc}",
            )
    _fail("units equivariance", report, rtol)
    return report
