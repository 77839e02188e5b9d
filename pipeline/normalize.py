"""Multiplicative normalisation of features: x -> x / s with one fixed positive s per feature.

Why only multiplicative: a units-equivariant model predicts y = E(x) * f(pi), with E a monomial of
the inputs carrying y's units and pi dimensionless. Rescaling pi by constants keeps f(pi) exactly
unchanged under any change of units, while shifting a dimensional quantity by a constant fitted in
the training units (the reference code of Villar et al. shifts energies by their training minimum)
breaks exact equivariance: the shift does not follow the units. This module therefore offers no
additive step at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pipeline.invariants import is_torch


@dataclass(frozen=True)
class MultiplicativeScaler:
    """Per-feature scales s_j (the geometric mean of |x_j| over the fitting data, ignoring zeros).

    ``transform`` divides by s and ``inverse`` multiplies by it; both work on numpy and torch
    arrays with features on the last axis, and torch stays differentiable.
    """

    scales: np.ndarray

    @classmethod
    def fit(cls, x: Any) -> "MultiplicativeScaler":
        data = x.detach().cpu().numpy() if is_torch(x) else np.asarray(x, dtype=np.float64)
        if data.ndim == 0:
            raise ValueError("MultiplicativeScaler.fit: expected features on the last axis, got a scalar")
        flat = np.abs(data.reshape(-1, data.shape[-1]))
        if not np.isfinite(flat).all():
            bad = sorted(set(np.nonzero(~np.isfinite(flat))[1].tolist()))
            raise ValueError(f"MultiplicativeScaler.fit: non-finite values in feature column(s) {bad}")
        scales = np.ones(flat.shape[-1])
        for j in range(flat.shape[-1]):
            positive = flat[:, j][flat[:, j] > 0]
            if positive.size:
                scales[j] = float(np.exp(np.log(positive).mean()))
        return cls(scales)

    def _scales_like(self, x: Any) -> Any:
        if x.shape[-1] != self.scales.shape[0]:
            raise ValueError(f"MultiplicativeScaler: {x.shape[-1]} features, fitted on {self.scales.shape[0]}")
        if is_torch(x):
            import torch

            return torch.as_tensor(self.scales, dtype=x.dtype, device=x.device)
        return self.scales

    def transform(self, x: Any) -> Any:
        return x / self._scales_like(x)

    def inverse(self, x: Any) -> Any:
        return x * self._scales_like(x)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "multiplicative", "scales": self.scales.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MultiplicativeScaler":
        if data.get("kind") != "multiplicative":
            raise ValueError(f"not a multiplicative scaler: kind {data.get('kind')!r}")
        scales = np.asarray(data["scales"], dtype=np.float64)
        if scales.ndim != 1 or not (np.isfinite(scales).all() and (scales > 0).all()):
            raise ValueError("MultiplicativeScaler: scales must be a list of positive finite numbers")
        return cls(scales)
