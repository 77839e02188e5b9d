"""Statistics of 2D fields on a periodic (torus) grid: the summaries of Rietkerk vegetation patterns.

docs/protocols.md#rietkerk compares patterns by mean biomass, cover fraction, the numbers of vegetated and
bare connected patches, and the dominant wavelength of the radially averaged power spectrum; the
regime (bare, spots, labyrinth, gaps, uniform) is read off those. The grid is periodic, so patches
are connected across opposite edges: a stripe that wraps around the domain is one patch.

A single field has shape (ny, nx); a batch has shape (..., ny, nx) and every result then carries
the leading shape. Every statistic except ``mean`` and ``dominant_wavelength`` is unchanged when the
field and ``cover_threshold`` are converted to other units together; the wavelength is in the units
of the grid step ``dl``.
"""

from __future__ import annotations

import math
from typing import TypedDict

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

REGIMES: tuple[str, ...] = ("bare", "spots", "labyrinth", "gaps", "uniform")
REGIME_CODES: dict[str, int] = {name: code for code, name in enumerate(REGIMES)}

# A phase is fragmented when its largest patch holds less than this share of its cells, and
# connected when its largest patch holds at least CONNECTED_SHARE of them.
FRAGMENTED_SHARE = 0.5
CONNECTED_SHARE = 0.9
COMPACT_SHAPE = 0.3
"""Spots and gaps are compact patches (compactness 0.4-0.6 in simulated fields), the broken bands of a
labyrinth are not (0.1-0.2)."""


class PatternStatistics(TypedDict):
    """The result of :func:`pattern_statistics`: arrays with the leading (batch) shape of the input."""

    mean: np.ndarray  # field units
    cover_fraction: np.ndarray  # 1
    vegetated_patches: np.ndarray  # count
    bare_patches: np.ndarray  # count
    dominant_wavelength: np.ndarray  # units of dl
    coefficient_of_variation: np.ndarray  # 1
    regime: np.ndarray  # one of REGIMES


def _fields(v: np.ndarray, name: str) -> np.ndarray:
    """``v`` as float64 of shape (..., ny, nx), checked to be finite and non-empty."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{name}: expected a field of shape (ny, nx) or a batch (..., ny, nx), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty field, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, found {int((~np.isfinite(arr)).sum())} NaN or inf")
    return arr


def _mask(mask: np.ndarray, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"mask: expected a boolean (or integer 0/1) array, got dtype {arr.dtype}")
    if (ndim is not None and arr.ndim != ndim) or arr.ndim < 2 or arr.size == 0:
        expected = "(ny, nx)" if ndim == 2 else "(ny, nx) or (..., ny, nx)"
        raise ValueError(f"mask: expected a non-empty array of shape {expected}, got shape {arr.shape}")
    return arr.astype(bool)


def _positive(value: float, name: str) -> float:
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return x


def _batched(arr: np.ndarray) -> np.ndarray:
    return arr.reshape((-1,) + arr.shape[-2:])


def _scalar_or_array(values: np.ndarray, lead: tuple[int, ...]) -> np.ndarray | int | float | str:
    out = values.reshape(lead)
    return out.item() if out.ndim == 0 else out


def periodic_label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean (ny, nx) mask on a torus.

    Cells on opposite edges (column 0 and nx-1, row 0 and ny-1) are neighbours. Returns the labels
    (0 outside the mask, 1..n inside, numbered in raster order of each component's first cell)
    and the number n of components.
    """
    mask = _mask(mask, ndim=2)
    labels, n = ndimage.label(mask)  # default structure: 4-connectivity
    if n == 0:
        return labels, 0
    # Planar components that touch across an edge are one component on the torus.
    a = np.concatenate([labels[:, 0], labels[0, :]])
    b = np.concatenate([labels[:, -1], labels[-1, :]])
    touching = (a > 0) & (b > 0)
    graph = coo_matrix((np.ones(int(touching.sum())), (a[touching], b[touching])), shape=(n + 1, n + 1))
    _, component = connected_components(graph, directed=False)
    # Planar labels already follow raster order, so rank the merged ones by their smallest label.
    _, first, inverse = np.unique(component[1:], return_index=True, return_inverse=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    lookup = np.concatenate([[0], rank[inverse] + 1]).astype(labels.dtype)
    return lookup[labels], int(first.size)


def count_patches(mask: np.ndarray) -> np.ndarray | int:
    """Number of periodic 4-connected components of a mask (ny, nx) or batch (..., ny, nx)."""
    mask = _mask(mask)
    counts = np.array([periodic_label(m)[1] for m in _batched(mask)], dtype=np.int64)
    return _scalar_or_array(counts, mask.shape[:-2])


def radial_power_spectrum(field: np.ndarray, dl: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a square periodic field (or batch) with grid step ``dl``.

    The mean is removed; mode k = (kx, ky) (integers, in cycles per side L = n dl) falls in shell
    round(|k|). Returns the wavelength L / s of each shell s = 1, 2, ... (units of ``dl``) and the
    power per shell averaged over its modes (field units squared; the powers of all modes sum to
    the field's variance). Shells with no mode (possible only in the corners) have NaN power.
    """
    arr = _fields(field, "field")
    dl = _positive(dl, "dl")
    ny, nx = arr.shape[-2:]
    if ny != nx:
        raise ValueError(f"field: the radial spectrum needs a square grid, got shape {arr.shape} (ny={ny}, nx={nx})")
    n = nx
    modes = np.fft.fft2(arr - arr.mean(axis=(-2, -1), keepdims=True), axes=(-2, -1))
    power = _batched(np.abs(modes) ** 2 / float(n * n) ** 2)
    k = np.fft.fftfreq(n, d=1.0 / n)
    shell = np.rint(np.hypot(k[:, None], k[None, :])).astype(np.int64).ravel()
    n_shells = int(shell.max()) + 1
    # One bincount over (field, shell) pairs sums every field's shells at once.
    index = (np.arange(power.shape[0])[:, None] * n_shells + shell[None, :]).ravel()
    sums = np.bincount(index, weights=power.ravel(), minlength=power.shape[0] * n_shells)
    counts = np.bincount(shell, minlength=n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_power = sums.reshape(-1, n_shells) / counts
    wavelength = n * dl / np.arange(1, n_shells)
    return wavelength, mean_power[:, 1:].reshape(arr.shape[:-2] + (n_shells - 1,))


def _flat(arr: np.ndarray, rel_tol: float) -> np.ndarray:
    """True for fields whose spread is round-off: std <= rel_tol * |mean| (all-zero fields included)."""
    return arr.std(axis=(-2, -1)) <= rel_tol * np.abs(arr.mean(axis=(-2, -1)))


def dominant_wavelength(field: np.ndarray, dl: float, rel_tol: float = 1e-6) -> np.ndarray | float:
    """Wavelength (units of ``dl``) of the shell of maximum power in :func:`radial_power_spectrum`.

    NaN for a uniform field: std <= rel_tol * |mean|, or all zero.
    """
    arr = _fields(field, "field")
    wavelength, power = radial_power_spectrum(arr, dl)
    best = np.nanargmax(power.reshape(-1, power.shape[-1]), axis=-1)
    result = np.where(_flat(_batched(arr), rel_tol), np.nan, wavelength[best])
    return _scalar_or_array(result, arr.shape[:-2])


def _phase(mask: np.ndarray) -> tuple[int, float, float]:
    """Patches of a phase: their number, the share of the phase's cells held by the largest, and their
    area-weighted compactness 4 pi A / P^2 (P counts cell edges facing other patches, periodic): about
    0.6 for a digital disc, 0.785 for a square, small for a band of length >> width."""
    labels, n = periodic_label(mask)
    if n == 0:
        return 0, 0.0, 0.0
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    perimeter = np.zeros(n + 1)
    for axis in (0, 1):
        for shift in (1, -1):
            edge = (labels != np.roll(labels, shift, axis)) & (labels > 0)
            perimeter += np.bincount(labels[edge], minlength=n + 1)
    compactness = 4 * np.pi * area / np.maximum(perimeter[1:], 1) ** 2
    return n, float(area.max() / area.sum()), float((compactness * area).sum() / area.sum())


def _one_field(field: np.ndarray, cover_threshold: float, uniform_cv: float, rel_tol: float) -> dict:
    mean, std = float(field.mean()), float(field.std())
    vmin, vmax = float(field.min()), float(field.max())
    flat = std <= rel_tol * abs(mean)
    cv = 0.0 if std == 0 else (std / abs(mean) if mean != 0 else math.inf)
    veg_n = bare_n = 0
    veg_share = bare_share = veg_shape = bare_shape = 0.0
    if not flat:
        # The midpoint follows any change of units, unlike a fixed threshold.
        vegetated = field > 0.5 * (vmin + vmax)
        veg_n, veg_share, veg_shape = _phase(vegetated)
        bare_n, bare_share, bare_shape = _phase(~vegetated)
    if vmax <= cover_threshold:
        regime = "bare"
    elif flat or cv < uniform_cv:
        regime = "uniform"
    elif veg_share < FRAGMENTED_SHARE and veg_shape >= COMPACT_SHAPE and bare_share >= CONNECTED_SHARE:
        regime = "spots"
    elif bare_share < FRAGMENTED_SHARE and bare_shape >= COMPACT_SHAPE and veg_share >= CONNECTED_SHARE:
        regime = "gaps"
    else:
        regime = "labyrinth"
    return {
        "mean": mean,
        "cover_fraction": float((field > cover_threshold).mean()),
        "vegetated_patches": veg_n,
        "bare_patches": bare_n,
        "coefficient_of_variation": cv,
        "regime": regime,
    }


def _check_thresholds(cover_threshold: float, uniform_cv: float, rel_tol: float) -> tuple[float, float, float]:
    threshold = float(cover_threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"cover_threshold: expected a finite number in the field's units, got {cover_threshold!r}")
    if not (math.isfinite(float(uniform_cv)) and uniform_cv >= 0):
        raise ValueError(f"uniform_cv: expected a non-negative finite number, got {uniform_cv!r}")
    if not (math.isfinite(float(rel_tol)) and rel_tol >= 0):
        raise ValueError(f"rel_tol: expected a non-negative finite number, got {rel_tol!r}")
    return threshold, float(uniform_cv), float(rel_tol)


def classify_regime(
    v: np.ndarray, cover_threshold: float, uniform_cv: float = 0.05, rel_tol: float = 1e-6
) -> np.ndarray | str:
    """The pattern regime of a field (ny, nx) or batch (..., ny, nx): one of :data:`REGIMES`.

    Rules, first match wins (``cover_threshold`` in the field's units):

    - "bare": max(v) <= cover_threshold (no vegetation anywhere);
    - "uniform": std/|mean| < uniform_cv, or std <= rel_tol * |mean| (round-off only);
    - otherwise split the field at its midpoint (min + max) / 2 into a vegetated phase (above) and
      a bare phase, take the periodic 4-connected patches of each, and the share of each phase's
      cells held by its largest patch:
      - "spots": vegetated share < 0.5 (many isolated patches), vegetated patches compact
        (area-weighted 4 pi A / P^2 >= 0.3) and bare share >= 0.9 (one sea);
      - "gaps": the mirror image: bare share < 0.5, compact bare patches, vegetated share >= 0.9;
      - "labyrinth": anything else (stripes, mazes, both phases connected or both fragmented).

    A domain holding only one or two spots is too small to resolve the pattern and reads as
    "labyrinth".
    """
    arr = _fields(v, "v")
    threshold, uniform_cv, rel_tol = _check_thresholds(cover_threshold, uniform_cv, rel_tol)
    regimes = np.array([_one_field(f, threshold, uniform_cv, rel_tol)["regime"] for f in _batched(arr)])
    return _scalar_or_array(regimes, arr.shape[:-2])


def pattern_statistics(
    v: np.ndarray, dl: float, cover_threshold: float, uniform_cv: float = 0.05, rel_tol: float = 1e-6
) -> PatternStatistics:
    """Summary statistics of a field (ny, nx) or batch (..., ny, nx) on a periodic grid of step ``dl``.

    Returns arrays with the leading shape of ``v`` (0-d for a single field):

    - ``mean``: the mean of v (field units);
    - ``cover_fraction``: the fraction of cells with v > cover_threshold (threshold in field units);
    - ``vegetated_patches`` / ``bare_patches``: the numbers of periodic 4-connected patches above /
      at or below the midpoint (min + max) / 2; both 0 for a uniform field (std <= rel_tol |mean|);
    - ``dominant_wavelength``: see :func:`dominant_wavelength` (units of ``dl``, NaN when uniform);
    - ``coefficient_of_variation``: std / |mean| (0 for a constant field);
    - ``regime``: see :func:`classify_regime`.
    """
    arr = _fields(v, "v")
    dl = _positive(dl, "dl")
    threshold, uniform_cv, rel_tol = _check_thresholds(cover_threshold, uniform_cv, rel_tol)
    lead = arr.shape[:-2]
    rows = [_one_field(f, threshold, uniform_cv, rel_tol) for f in _batched(arr)]
    out = {key: np.array([row[key] for row in rows]).reshape(lead) for key in rows[0]}
    out["dominant_wavelength"] = np.asarray(dominant_wavelength(arr, dl, rel_tol), dtype=np.float64).reshape(lead)
    return PatternStatistics(**out)


def encode_regimes(regimes: np.ndarray | str) -> np.ndarray:
    """Regime names as int8 codes (the index in :data:`REGIMES`), for HDF5/xarray storage."""
    names = np.asarray(regimes)
    unknown = sorted(set(names.ravel().tolist()) - set(REGIMES))
    if unknown:
        raise ValueError(f"regimes: unknown regime name(s) {unknown}; expected one of {REGIMES}")
    lookup = np.vectorize(REGIME_CODES.__getitem__, otypes=[np.int8])
    return lookup(names) if names.size else np.zeros(names.shape, dtype=np.int8)


def decode_regimes(codes: np.ndarray) -> np.ndarray:
    """Int8 codes back to regime names (the inverse of :func:`encode_regimes`)."""
    arr = np.asarray(codes)
    if not np.issubdtype(arr.dtype, np.integer) or ((arr < 0) | (arr >= len(REGIMES))).any():
        raise ValueError(f"codes: expected integers in 0..{len(REGIMES) - 1} (indices into {REGIMES})")
    return np.asarray(REGIMES)[arr]


def regime_attrs() -> dict[str, object]:
    """Attributes of an int8 regime variable, in the CF flag convention (names stored alongside codes)."""
    return {
        "units": "1",
        "flag_values": np.arange(len(REGIMES), dtype=np.int8),
        "flag_meanings": " ".join(REGIMES),
    }
