"""Equation discovery for the Rietkerk model (ANCHORS section 3): learn the local reaction terms from
simulated fields, units-equivariantly, as a closed form (sparse regression) and as a scalar MLP.

**Units-equivariance by nondimensionalisation.** Every quantity is measured in scales made of the
system's own parameters: U = u/k1, W = w/k1 (water in units of the uptake half-saturation), V = v/k2
(biomass in units of the infiltration saturation constant), tau = alpha t (time in infiltration
times), lengths in units of the training patch side L (so lap_hat = L^2 lap). The model then reads

    dU/dtau = r - U V/(V+1) - W0 U/(V+1)                         + d_u lap_hat U
    dW/dtau = U V/(V+1) + W0 U/(V+1) - g V W/(W+1) - delta_w W   + d_w lap_hat W
    dV/dtau = gamma V W/(W+1) - nu V                             + d_v lap_hat V

with the Pi groups r = R/(alpha k1), g = gm k2/(alpha k1), delta_w = dw/alpha, gamma = c gm/alpha,
nu = dv/alpha, W0, and d_x = D_x/(alpha L^2). A model of the dimensionless rates (anything: a
regression, an MLP) turned back into dimensional rates with the same scales is exactly
units-equivariant: a change of units multiplies u, k1 (and v, k2, and alpha, R) by common factors
that cancel in U, W, V, r, and the rates come back multiplied by the factors of alpha k1 and alpha k2.

**Data.** Trajectories from seeded starts at several rainfalls (only R varies, so the other Pi groups
are the same in every system and appear as constant coefficients; r varies, which makes the terms
"r" and "1" distinguishable). Time derivatives need snapshots much closer together than the
trajectory's saving interval, so from every saved state a short *burst* is integrated with a small
step and saved at every ``spacing`` steps; the derivative at its centre comes from a Savitzky-Golay
(local quadratic) stencil over 2m+1 burst snapshots, which for m = 1 is the plain central difference.
The first snapshot used lies ``SETTLE_STEPS`` steps into the burst, because the solver restarts with
one first-order step whose parasitic BDF2 mode decays by a factor 3 per step. The Laplacian is the
5-point periodic stencil (``np.roll``), the operator the solver's ``fd5`` symbol diagonalises.

**Library.** The same dimensionless candidate terms for every equation (``TERMS``). Plain U is
left out: U = U V/(V+1) + U/(V+1), so with it the library would be linearly dependent and the
sparsest model not unique.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.patterns import pattern_statistics
from sims import rietkerk as rk
from sims.rietkerk_solver import Reaction, simulate
from surrogates.artifacts import register_model
from surrogates.mlp import MLP
from surrogates.sparse_regression import SparseFit, format_equation, sparse_fit
from surrogates.training import TrainConfig, TrainResult, seed_everything, train

EQUATIONS = ("U", "W", "V")
"""The dimensionless fields, in the solver's order (u, w, v)."""
PI_GROUPS = ("r", "W0", "g", "delta_w", "gamma", "nu", "d_u", "d_w", "d_v")
TRAIN_RAINFALLS = (0.8, 0.9, 1.1, 1.2)
"""l d^-1 m^-2: the training systems (2002 parameters); 1.0 is unseen inside the range, 0.75 and 1.25 outside."""
TEST_RAINFALLS = (0.75, 1.0, 1.25)
SETTLE_STEPS = 8
COVER_THRESHOLD_K2 = 0.1
"""Cover threshold in units of k2 (as ``pipeline.rietkerk_features``)."""


# -- nondimensionalisation ------------------------------------------------------------------------


def pi_groups(values: Mapping[str, Any], L: float) -> dict[str, Any]:
    """The dimensionless groups of the equations above for parameters ``values`` (``rk.UNITS``) and length
    unit ``L`` (m); numbers or arrays, as given."""
    p = {k: values[k] for k in rk.PHYSICAL}
    a = p["alpha"]
    return {
        "r": p["R"] / (a * p["k1"]),
        "W0": p["W0"] * (a / a),  # broadcast like the others
        "g": p["gm"] * p["k2"] / (a * p["k1"]),
        "delta_w": p["dw"] / a,
        "gamma": p["c"] * p["gm"] / a,
        "nu": p["dv"] / a,
        "d_u": p["Du"] / (a * L**2),
        "d_w": p["Dw"] / (a * L**2),
        "d_v": p["Dv"] / (a * L**2),
    }


# -- the library ----------------------------------------------------------------------------------

LibraryFn = Callable[..., Any]
_REACTION_TERMS: dict[str, LibraryFn] = {
    "1": lambda U, W, V, r: U * 0 + 1,
    "r": lambda U, W, V, r: U * 0 + r,
    "W": lambda U, W, V, r: W,
    "V": lambda U, W, V, r: V,
    "U V/(V+1)": lambda U, W, V, r: U * V / (V + 1),
    "U/(V+1)": lambda U, W, V, r: U / (V + 1),
    "V W/(W+1)": lambda U, W, V, r: V * W / (W + 1),
    "W/(W+1)": lambda U, W, V, r: W / (W + 1),
    "U V": lambda U, W, V, r: U * V,
    "U W": lambda U, W, V, r: U * W,
    "V W": lambda U, W, V, r: V * W,
    "U^2": lambda U, W, V, r: U * U,
    "W^2": lambda U, W, V, r: W * W,
    "V^2": lambda U, W, V, r: V * V,
    "r U": lambda U, W, V, r: r * U,
    "r W": lambda U, W, V, r: r * W,
    "r V": lambda U, W, V, r: r * V,
}
DIFFUSION_TERMS = ("lap U", "lap W", "lap V")
TERMS = (*_REACTION_TERMS, *DIFFUSION_TERMS)
"""The candidate terms, the same for every equation: written with + - * / only, so that they evaluate
on numpy arrays and torch tensors alike."""


def reaction_library(U: Any, W: Any, V: Any, r: Any) -> list[Any]:
    """The local candidate terms (all of ``TERMS`` but the Laplacians), arrays shaped like U."""
    return [fn(U, W, V, r) for fn in _REACTION_TERMS.values()]


def library(states: np.ndarray, laplacians: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(n, len(TERMS)) library matrix from (n, 3) states (U, W, V), (n, 3) lap_hat and (n,) r."""
    U, W, V = states.T
    return np.stack([*reaction_library(U, W, V, r), *laplacians.T], axis=1)


def true_coefficients(values: Mapping[str, float], L: float) -> dict[tuple[str, str], float]:
    """The coefficients of the Rietkerk equations in ``TERMS``, keyed (equation, term), for one system
    with parameters ``values`` and length unit ``L`` (m)."""
    p = {k: float(v) for k, v in pi_groups({k: float(values[k]) for k in rk.PHYSICAL}, L).items()}
    return {
        ("U", "r"): 1.0,
        ("U", "U V/(V+1)"): -1.0,
        ("U", "U/(V+1)"): -p["W0"],
        ("U", "lap U"): p["d_u"],
        ("W", "U V/(V+1)"): 1.0,
        ("W", "U/(V+1)"): p["W0"],
        ("W", "V W/(W+1)"): -p["g"],
        ("W", "W"): -p["delta_w"],
        ("W", "lap W"): p["d_w"],
        ("V", "V W/(W+1)"): p["gamma"],
        ("V", "V"): -p["nu"],
        ("V", "lap V"): p["d_v"],
    }


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoveryData:
    """Samples of the dimensionless fields and their rates, pooled over systems.

    ``states`` (n, 3): U, W, V; ``laplacians`` (n, 3): lap_hat U, W, V (= L^2 lap); ``rates`` (n, 3):
    dU/dtau, dW/dtau, dV/dtau; ``groups``: each Pi group per sample (n,); ``system`` (n,): index of the
    system in ``values``; ``L`` (m): the length unit.
    """

    states: np.ndarray
    laplacians: np.ndarray
    rates: np.ndarray
    groups: dict[str, np.ndarray]
    system: np.ndarray
    L: float
    values: tuple[dict[str, float], ...]

    def __len__(self) -> int:
        return self.states.shape[0]

    def library(self) -> np.ndarray:
        return library(self.states, self.laplacians, self.groups["r"])

    def reaction_targets(self) -> np.ndarray:
        """(n, 3) the dimensionless reaction rates: d/dtau minus the diffusion terms with the known d_x."""
        d = np.stack([self.groups[k] for k in ("d_u", "d_w", "d_v")], axis=1)
        return self.rates - d * self.laplacians

    def inputs(self) -> np.ndarray:
        """(n, 4) MLP inputs U, W, V, r."""
        return np.concatenate([self.states, self.groups["r"][:, None]], axis=1)


def savgol_weights(half_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights over 2m+1 equally spaced samples of a local quadratic fit: (value at the centre, first
    derivative per sample spacing). For m = 1: the centre sample and the central difference."""
    m = int(half_width)
    if m < 1:
        raise ValueError(f"the stencil half-width must be >= 1, got {half_width!r}")
    j = np.arange(-m, m + 1, dtype=np.float64)
    value = (3 * (3 * m * m + 3 * m - 1) - 15 * j**2) / ((2 * m - 1) * (2 * m + 1) * (2 * m + 3))
    slope = j / (j**2).sum()
    return value, slope


def laplacian_5pt(a: np.ndarray, dl: float) -> np.ndarray:
    """Periodic 5-point Laplacian over the last two axes (units of ``a`` per m^2)."""
    return (np.roll(a, 1, -1) + np.roll(a, -1, -1) + np.roll(a, 1, -2) + np.roll(a, -1, -2) - 4 * a) / dl**2


