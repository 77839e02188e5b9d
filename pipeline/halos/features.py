"""Per-halo model inputs and targets (kind ``halos.features``) and the splits of docs/protocols.md#halos.

A features dataset holds, per halo of a ``halos.catalog`` (same order):

- ``log_m200m``: log10(M200m / Msun);
- ``global`` (halo, global_property): the global halo properties log10 concentration, log10 spin
  (Bullock lambda') and log10(sigma_v / V200m), V200m = sqrt(G M200m / R200m), all dimensionless.
  Taken from the catalog when it has all three (the halo finder's values, as in the paper); the
  attribute ``global_source`` says ``"catalog"`` or ``"particles"`` (``"none"``: neither, a
  catalog without particles or those three properties; no ``global`` then);
- ``global_particles`` (halo, global_property): the same three measured from the particles within
  R200m, present whenever the catalog has particles, so a catalog without them (IllustrisTNG has no
  concentration) still feeds a global model trained on particle-derived values. They follow
  exactly from the invariant scalars:
  sigma_v^2 / V^2 = sum_n tr(vv_n) / (3 sum_n m_n); lambda' = |J| / (sqrt(2) M V R) = ||sum_n xv-_n||_F,
  since (x v^T - v x^T)_ij = eps_ijk (x cross v)_k; the concentration inverts the NFW enclosed-mass
  ratio mu(0.1 c) / mu(c) = m_0 / (m_0 + m_1 + m_2) (an estimate: triaxiality and subhalos bias it);
- ``scalars`` (halo, scalar): the 567 invariant scalars of :mod:`pipeline.halos.scalars`, and
  ``particles_within`` (with particles only);
- ``catalog`` (halo, catalog_property), when the catalog has every one of
  :data:`CATALOG_MODEL_FIELDS` (the halo finder's properties, ``sims.halos.catalog.CATALOG_PROPERTIES``):
  their dimensionless forms :data:`CATALOG_FEATURES`, log10 c, log10 lambda', log10(sigma_v / V200m),
  b/a, c/a, x_offset / R200m, v_offset / V200m, Vmax / V200m, T/|U| and r_half / R200m; and
  ``catalog_valid`` (halo), whether every one of them was measured (:func:`catalog_inputs_valid`);
- the targets the catalog has (``log_mstar`` ...), and the coordinate ``halo_id``.

Every input is dimensionless and invariant, so rotations, reflections, permutations of particles and
changes of units of the catalog leave the features unchanged to round-off. :func:`halo_features`
also takes a catalog without particles (``scalars=None``): it then holds ``log_m200m``, ``global``
when the catalog has those properties, ``catalog`` and the targets.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.halos.scalars import G_KPC_KMS2_MSUN, SCALAR_NAMES, SHELL_EDGES
from sims.halos.catalog import CATALOG_PROPERTIES, TARGETS

FEATURES_KIND = "halos.features"
GLOBAL_PROPERTIES = ("log_concentration", "log_spin", "log_sigma_v_over_v200m")
#: The catalog fields the global properties are made of.
GLOBAL_FIELDS = ("concentration", "spin", "sigma_v")
GLOBAL_DIM = "global_property"
#: The catalog fields the ``catalog`` model reads besides M200m and R200m, and their features.
CATALOG_MODEL_FIELDS = tuple(CATALOG_PROPERTIES)
CATALOG_FEATURES = (
    "log_concentration",
    "log_spin",
    "log_sigma_v_over_v200m",
    "b_to_a",
    "c_to_a",
    "x_offset_over_r200m",
    "v_offset_over_v200m",
    "vmax_over_v200m",
    "virial_ratio",
    "r_half_over_r200m",
)
CATALOG_DIM = "catalog_property"
SPLIT_SEED = 42
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
#: Splits a model is trained on: ``random`` (70/15/15) and ``mass_threshold`` (trained below a mass quantile).
TRAINING_SPLITS = ("random", "mass_threshold")
MASS_QUANTILE = 0.8
FLOOR = 1e-8  # floor of spin and sigma ratios before the log: a zero spin would give -inf
_C_RANGE = (1e-2, 1e4)  # concentrations searched by the NFW inversion

register_schema(
    DatasetSchema(
        kind=FEATURES_KIND,
        description="per-halo inputs (log mass, global and catalog properties, invariant scalars) and targets",
        variables={
            "log_m200m": VariableSpec(dims=("halo",), units="1", dtype="float"),
            # a catalog without particles has no scalars, and perhaps no global properties either
            "global": VariableSpec(dims=("halo", GLOBAL_DIM), units="1", dtype="float", required=False),
            "global_particles": VariableSpec(dims=("halo", GLOBAL_DIM), units="1", dtype="float", required=False),
            "scalars": VariableSpec(dims=("halo", "scalar"), units="1", dtype="float", required=False),
            "catalog": VariableSpec(dims=("halo", CATALOG_DIM), units="1", dtype="float", required=False),
            "catalog_valid": VariableSpec(dims=("halo",), units="1", dtype="bool", required=False),
            **{t: VariableSpec(dims=("halo",), units="1", dtype="float", required=False) for t in TARGETS},
        },
        attrs=("global_source",),
    )
)


def _nfw_mu(y: np.ndarray) -> np.ndarray:
    return np.log1p(y) - y / (1.0 + y)


def concentration_from_inner_fraction(fraction: np.ndarray, x: float = SHELL_EDGES[1]) -> np.ndarray:
    """NFW concentration c with mu(x c) / mu(c) = ``fraction`` (mass within x R200m over mass within R200m).

    Bisection in log c over [1e-2, 1e4] (60 halvings: float64 round-off); fractions outside the range
    those concentrations give are clipped to its ends.
    """
    f = np.asarray(fraction, dtype=np.float64)
    lo = np.full(f.shape, np.log(_C_RANGE[0]))
    hi = np.full(f.shape, np.log(_C_RANGE[1]))
    for _ in range(60):  # the ratio increases with c
        mid = 0.5 * (lo + hi)
        c = np.exp(mid)
        above = _nfw_mu(x * c) / _nfw_mu(c) > f
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.exp(0.5 * (lo + hi))


def particle_globals(scalars: np.ndarray) -> np.ndarray:
    """(halo, 3) log10 concentration, log10 spin and log10(sigma_v / V200m) from the 567 scalars.

    Exact consequences of the normalised moments (see the module docstring); the concentration is
    the NFW inversion of the inner mass fraction.
    """
    s = np.asarray(scalars, dtype=np.float64)
    col = {name: i for i, name in enumerate(SCALAR_NAMES)}
    m = s[:, [col[f"m_{n}"] for n in range(3)]]
    inside = m.sum(axis=1)
    trace_vv = sum(s[:, col[f"eig{k}(vv)_{n}"]] for k in (1, 2, 3) for n in range(3))
    sigma_ratio = np.sqrt(np.maximum(trace_vv, 0.0) / (3.0 * np.where(inside > 0, inside, 1.0)))
    # ||sum_n A_n||^2 = sum_n A_n:A_n + 2 sum_{n<k} A_n:A_k
    spin_sq = sum((1.0 if n == k else 2.0) * s[:, col[f"xv-_{n}:xv-_{k}"]] for n in range(3) for k in range(n, 3))
    spin = np.sqrt(np.maximum(spin_sq, 0.0))
    conc = concentration_from_inner_fraction(m[:, 0] / np.where(inside > 0, inside, 1.0))
    return np.column_stack(
        [np.log10(conc), np.log10(np.maximum(spin, FLOOR)), np.log10(np.maximum(sigma_ratio, FLOOR))]
    )


def catalog_globals(catalog: xr.Dataset, G: float = G_KPC_KMS2_MSUN) -> np.ndarray | None:
    """(halo, 3) the catalog's own global properties as in :data:`GLOBAL_PROPERTIES`, or None when
    the catalog lacks any of ``concentration``, ``spin``, ``sigma_v``. Units: the catalog's canonical
    ones (``G`` in kpc (km/s)^2 per unit of its M200m)."""
    if any(name not in catalog for name in GLOBAL_FIELDS):
        return None
    mass, radius = catalog["M200m"].values, catalog["R200m"].values
    v200 = np.sqrt(G * mass / radius)  # km/s, from Msun and kpc
    return np.column_stack(
        [
            np.log10(np.maximum(catalog["concentration"].values, FLOOR)),
            np.log10(np.maximum(catalog["spin"].values, FLOOR)),
            np.log10(np.maximum(catalog["sigma_v"].values / v200, FLOOR)),
        ]
    )


def catalog_properties(catalog: xr.Dataset, G: float = G_KPC_KMS2_MSUN) -> np.ndarray | None:
    """(halo, 10) the dimensionless catalog properties :data:`CATALOG_FEATURES` of a catalog, or None
    when it lacks any of :data:`CATALOG_MODEL_FIELDS` (``G`` as in :func:`catalog_globals`).
    Logarithms of unmeasured (0) values are floored at log10(1e-8); :func:`catalog_inputs_valid`
    says which halos have them all."""
    if any(name not in catalog for name in CATALOG_MODEL_FIELDS):
        return None
    mass, radius = catalog["M200m"].values, catalog["R200m"].values
    v200 = np.sqrt(G * mass / radius)  # km/s, from Msun and kpc
    value = {name: np.asarray(catalog[name].values, dtype=np.float64) for name in CATALOG_MODEL_FIELDS}
    return np.column_stack(
        [
            np.log10(np.maximum(value["concentration"], FLOOR)),
            np.log10(np.maximum(value["spin"], FLOOR)),
            np.log10(np.maximum(value["sigma_v"] / v200, FLOOR)),
            value["b_to_a"],
            value["c_to_a"],
            value["x_offset"] / radius,
            value["v_offset"] / v200,
            value["vmax"] / v200,
            value["virial_ratio"],
            value["r_half"] / radius,
        ]
    )


def catalog_inputs_valid(catalog: xr.Dataset) -> np.ndarray:
    """Per halo, whether the catalog model can read it: every one of :data:`CATALOG_MODEL_FIELDS`
    present, finite and measured (above 0: real halo finders write 0 for what they could not
    measure, e.g. Rockstar's shapes and spins of small halos), axis ratios at most 1, M200m and
    R200m positive. All False when the catalog lacks a field. Callers fall back to the mass-only
    model for the other halos."""
    n = catalog.sizes.get("halo", 0)
    if any(name not in catalog for name in CATALOG_MODEL_FIELDS):
        return np.zeros(n, dtype=bool)
    valid = np.ones(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        for name in ("M200m", "R200m", *CATALOG_MODEL_FIELDS):
            value = np.asarray(catalog[name].values, dtype=np.float64)
            valid &= np.isfinite(value) & (value > 0)
        for name in ("b_to_a", "c_to_a"):
            valid &= np.asarray(catalog[name].values, dtype=np.float64) <= 1.0
    return valid


def halo_features(
    catalog: xr.Dataset, scalars: xr.Dataset | None = None, *, source: str = "", G: float = G_KPC_KMS2_MSUN
) -> xr.Dataset:
    """The ``halos.features`` dataset of a ``halos.catalog`` and its :func:`~pipeline.halos.scalars.halo_scalars`.

    Halos whose scalars are marked invalid (too few particles within R200m) are left out; the
    attribute ``dropped_invalid`` counts them. ``source`` names the catalog in the attributes.
    ``scalars=None``: a catalog without particles (or whose particles are not to be read); no
    ``scalars``, ``global_particles`` or ``particles_within`` then, and every halo is kept. ``G``:
    Newton's constant in kpc (km/s)^2 per unit of the catalog's M200m (V200m of the catalog's
    properties; the scalars carry their own).
    """
    ids = np.asarray(catalog["halo_id"].values, dtype=np.int64)
    from_catalog = catalog_globals(catalog, G)
    data: dict[str, Any] = {
        "log_m200m": ("halo", np.log10(catalog["M200m"].values), {"units": "1", "long_name": "log10 M200m / Msun"}),
    }
    coords: dict[str, Any] = {"halo_id": ("halo", ids, {"units": "1"})}
    valid = np.ones(ids.size, dtype=bool)
    if scalars is not None:
        if not np.array_equal(ids, np.asarray(scalars["halo_id"].values, dtype=np.int64)):
            raise ValueError("halo_features: the scalars are not those of this catalog (halo ids differ)")
        valid = np.asarray(scalars["valid"].values, dtype=bool) if "valid" in scalars else valid
        values = np.asarray(scalars["scalars"].values, dtype=np.float64)
        measured = particle_globals(np.where(valid[:, None], values, 0.0))
        data["global_particles"] = (
            ("halo", GLOBAL_DIM),
            measured,
            {"units": "1", "long_name": "global properties measured from the particles within R200m"},
        )
        data["scalars"] = (("halo", "scalar"), values, {"units": "1", "long_name": "invariant halo scalars"})
        data["particles_within"] = ("halo", np.asarray(scalars["particles_within"].values), {"units": "1"})
        coords["scalar"] = list(SCALAR_NAMES)
        global_source, globals_ = ("catalog", from_catalog) if from_catalog is not None else ("particles", measured)
    else:
        global_source, globals_ = ("catalog", from_catalog) if from_catalog is not None else ("none", None)
    if globals_ is not None:
        data["global"] = (("halo", GLOBAL_DIM), globals_, {"units": "1"})
    if "global" in data or "global_particles" in data:
        coords[GLOBAL_DIM] = list(GLOBAL_PROPERTIES)
    properties = catalog_properties(catalog, G)
    if properties is not None:
        data["catalog"] = (
            ("halo", CATALOG_DIM),
            properties,
            {"units": "1", "long_name": "the halo finder's properties, dimensionless"},
        )
        data["catalog_valid"] = (
            "halo",
            catalog_inputs_valid(catalog),
            {"units": "1", "long_name": "every catalog property present and measured"},
        )
        coords[CATALOG_DIM] = list(CATALOG_FEATURES)
    for target, description in TARGETS.items():
        if target in catalog:
            data[target] = (
                "halo",
                np.asarray(catalog[target].values, np.float64),
                {"units": "1", "long_name": description},
            )
    ds = xr.Dataset(
        data,
        coords=coords,
        attrs={
            "global_source": global_source,
            "source": source,
            "dropped_invalid": int((~valid).sum()),
            "targets": json.dumps([t for t in TARGETS if t in catalog]),  # a one-item list would come back a string
        },
    )
    return ds.isel(halo=np.flatnonzero(valid)) if not valid.all() else ds


# -- splits ------------------------------------------------------------------------------------


def random_split(
    n: int, seed: int = SPLIT_SEED, fractions: tuple[float, ...] = SPLIT_FRACTIONS
) -> dict[str, np.ndarray]:
    """Sorted positions of train / val / test: a permutation by ``default_rng(seed)`` cut at the fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def mass_threshold_split(
    log_mass: np.ndarray, quantile: float = MASS_QUANTILE, seed: int = SPLIT_SEED, val_fraction: float = 0.15
) -> tuple[dict[str, np.ndarray], float]:
    """Train and val below the ``quantile`` of log10 M200m, test above it; and that threshold (log10 Msun)."""
    log_mass = np.asarray(log_mass, dtype=np.float64)
    threshold = float(np.quantile(log_mass, quantile))
    below = np.flatnonzero(log_mass < threshold)
    order = np.random.default_rng(seed).permutation(below.size)
    n_val = round(val_fraction * below.size)
    return {
        "train": np.sort(below[order[n_val:]]),
        "val": np.sort(below[order[:n_val]]),
        "test": np.flatnonzero(log_mass >= threshold),
    }, threshold


def feature_targets(features: xr.Dataset) -> list[str]:
    """The targets a features dataset holds."""
    return [t for t in json.loads(features.attrs.get("targets", "[]")) if t in features]


def split_indices(features: xr.Dataset, split: str, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """The train / val / test positions of one of :data:`TRAINING_SPLITS` for a features dataset."""
    if split == "random":
        return random_split(features.sizes["halo"], seed)
    if split == "mass_threshold":
        return mass_threshold_split(features["log_m200m"].values, seed=seed)[0]
    raise ValueError(f"unknown split {split!r}; choose from {TRAINING_SPLITS}")
