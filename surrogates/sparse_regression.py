"""Sparse regression over a fixed library of candidate terms: sequentially thresholded least squares.

``stlsq`` is the algorithm of SINDy (Brunton, Proctor & Kutz, PNAS 2016): solve least squares, zero the
coefficients below a threshold, solve again on the surviving terms, repeat until the active set stops
changing. It is implemented here rather than taken from PySINDy or scikit-learn because it is a dozen
lines of numpy, the project would otherwise gain a dependency for it, and the equation-discovery code
needs exactly this variant: a fixed library of dimensionless terms built by the caller (not polynomial
features), a threshold per equation, and thresholds that compare like with like. For that the columns
are normalised to unit RMS and the target to unit RMS before thresholding, so a normalised coefficient
is the share of the target's RMS a term carries, whatever the scales of the terms; the final
coefficients come from an unregularised least-squares refit on the active set, in the original scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseFit:
    """A sparse model y_k = sum_j coefficients[j, k] theta_j for each target column k.

    ``coefficients`` (p, k) in the units of the target over those of each term; ``active`` (p, k) the
    selected terms; ``residual_rms`` (k,) the RMS of y - theta @ coefficients (units of the target);
    ``term_names`` (p,) and ``target_names`` (k,) name the library columns and the targets.
    """

    coefficients: np.ndarray
    active: np.ndarray
    residual_rms: np.ndarray
    term_names: tuple[str, ...]
    target_names: tuple[str, ...]
    threshold: tuple[float, ...]

    def equation(self, target: int | str) -> str:
        """The fitted right-hand side of one target as text (see :func:`format_equation`)."""
        k = self.target_names.index(target) if isinstance(target, str) else int(target)
        return format_equation(self.term_names, self.coefficients[:, k])

    def to_dict(self) -> dict:
        """Plain JSON-able values: per target, the active terms and their coefficients."""
        return {
            name: {
                "terms": {
                    t: float(c) for t, c, a in zip(self.term_names, self.coefficients[:, k], self.active[:, k]) if a
                },
                "residual_rms": float(self.residual_rms[k]),
                "threshold": self.threshold[k],
                "equation": self.equation(k),
            }
            for k, name in enumerate(self.target_names)
        }


def _checked(theta: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    theta = np.asarray(theta, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"stlsq: theta must be a 2-D library (samples, terms), got shape {theta.shape}")
    single = y.ndim == 1
    if single:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"stlsq: y must be (samples,) or (samples, targets), got shape {y.shape}")
    if y.shape[0] != theta.shape[0]:
        raise ValueError(f"stlsq: theta has {theta.shape[0]} samples but y has {y.shape[0]}; they must match")
    if theta.shape[0] < theta.shape[1]:
        raise ValueError(f"stlsq: {theta.shape[0]} samples cannot determine {theta.shape[1]} coefficients")
    for name, arr in (("theta", theta), ("y", y)):
        bad = int((~np.isfinite(arr)).sum())
        if bad:
            raise ValueError(f"stlsq: {name} holds {bad} non-finite value(s) (NaN or inf); drop or fix those samples")
    return theta, y, single


def _lstsq(a: np.ndarray, b: np.ndarray, ridge: float) -> np.ndarray:
    if ridge > 0:
        return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)
    return np.linalg.lstsq(a, b, rcond=None)[0]


def stlsq(
    theta: np.ndarray,
    y: np.ndarray,
    threshold: float | Sequence[float],
    *,
    ridge: float = 0.0,
    max_iter: int = 20,
    normalize: bool = True,
) -> np.ndarray:
    """Sequentially thresholded least squares: sparse ``xi`` with ``y ~= theta @ xi``.

    ``theta`` (n, p) holds the library terms evaluated at n samples, ``y`` (n,) or (n, k) the targets.
    ``threshold`` (one number, or one per target column) applies to normalised coefficients
    xi_j rms(theta_j) / rms(y) when ``normalize`` is true (the share of the target's RMS carried by term
    j), to the raw coefficients otherwise. ``ridge`` (>= 0) regularises the thresholding iterations (in
    normalised units); the returned coefficients are an unregularised least-squares refit on the active
    set. Returns (p,) for a 1-D ``y``, (p, k) otherwise, in the original units.
    """
    theta, y, single = _checked(theta, y)
    k = y.shape[1]
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (k,))
    if not (np.isfinite(thresholds).all() and (thresholds >= 0).all()):
        raise ValueError(f"stlsq: thresholds must be finite and >= 0, got {threshold!r}")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"stlsq: ridge must be a finite number >= 0, got {ridge!r}")
    if int(max_iter) < 1:
        raise ValueError(f"stlsq: max_iter must be >= 1, got {max_iter!r}")
    if normalize:
        col = np.sqrt(np.mean(theta**2, axis=0))
        if (col == 0).any():
            raise ValueError(f"stlsq: library column(s) {np.flatnonzero(col == 0).tolist()} are zero at every sample")
        scale_y = np.sqrt(np.mean(y**2, axis=0))
        scale_y = np.where(scale_y > 0, scale_y, 1.0)
    else:
        col, scale_y = np.ones(theta.shape[1]), np.ones(k)
    a = theta / col
    b = y / scale_y
    xi = np.zeros((theta.shape[1], k))
    for j in range(k):
        active = np.ones(theta.shape[1], dtype=bool)
        coef = _lstsq(a, b[:, j], ridge)
        for _ in range(int(max_iter)):
            keep = active & (np.abs(coef) >= thresholds[j])
            if not keep.any():
                active = keep
                break
            coef = np.zeros_like(coef)
            coef[keep] = _lstsq(a[:, keep], b[:, j], ridge)
            if np.array_equal(keep, active):
                break
            active = keep
        if active.any():
            xi[active, j] = _lstsq(a[:, active], b[:, j], 0.0)
    xi = xi * scale_y / col[:, None]
    return xi[:, 0] if single else xi


def sparse_fit(
    theta: np.ndarray,
    y: np.ndarray,
    threshold: float | Sequence[float],
    term_names: Sequence[str],
    target_names: Sequence[str] | None = None,
    **options,
) -> SparseFit:
    """:func:`stlsq` with named terms and targets, returned as a :class:`SparseFit`."""
    theta_arr, y_arr, _ = _checked(theta, y)
    if len(term_names) != theta_arr.shape[1]:
        raise ValueError(f"sparse_fit: {len(term_names)} term names for {theta_arr.shape[1]} library columns")
    names = tuple(target_names) if target_names is not None else tuple(f"y{k}" for k in range(y_arr.shape[1]))
    if len(names) != y_arr.shape[1]:
        raise ValueError(f"sparse_fit: {len(names)} target names for {y_arr.shape[1]} targets")
    xi = stlsq(theta_arr, y_arr, threshold, **options)
    residual = np.sqrt(np.mean((y_arr - theta_arr @ xi) ** 2, axis=0))
    thresholds = tuple(float(t) for t in np.broadcast_to(np.asarray(threshold, dtype=np.float64), (y_arr.shape[1],)))
    return SparseFit(xi, xi != 0, residual, tuple(term_names), names, thresholds)


def format_equation(names: Sequence[str], coefs: Sequence[float] | np.ndarray, digits: int = 6) -> str:
    """``'1 r - 1 U V/(V+1) - 0.2 U/(V+1)'``: the non-zero terms with their coefficients ('0' when none)."""
    coefs = np.asarray(coefs, dtype=np.float64)
    if len(names) != coefs.shape[0] or coefs.ndim != 1:
        raise ValueError(f"format_equation: {len(names)} names for coefficients of shape {coefs.shape}")
    parts = []
    for name, c in zip(names, coefs, strict=True):
        if c == 0:
            continue
        text = f"{abs(c):.{digits}g}" + ("" if name == "1" else f" {name}")
        parts.append(("- " if c < 0 else "+ ") + text)
    if not parts:
        return "0"
    first = parts[0]
    return " ".join([first[2:] if first.startswith("+") else "-" + first[2:], *parts[1:]])
