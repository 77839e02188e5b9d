"""Invariant, dimensionless halo scalars (docs/protocols.md#halos, after Storey-Fisher et al.).

Per halo of a ``halos.catalog`` dataset (see :mod:`sims.halos.catalog`):

1. Particles within R200m of the centre (the catalog's ``position``): ``r < R200m``; positions
   ``x`` relative to the centre, velocities ``v`` relative to the mass-weighted mean velocity of
   those particles (the catalog's bulk ``velocity`` is not used, so the scalars are invariant to
   any boost of the particles). Particles beyond R200m are ignored.
2. Three radial shells, half-open in ``r / R200m``: [0, 0.1), [0.1, 0.4), [0.4, 1.0). Per shell n
   the moments, each divided by ``M R^l V^p`` (l, p the orders in x and v; M = M200m, R = R200m,
   V = sqrt(G M / R)) so that they are dimensionless and do not depend on the units of length,
   velocity or mass: the mass ``m_n = sum m``, the vectors ``x_n = sum m x`` and
   ``v_n = sum m v``, the symmetric tensors ``xx_n = sum m x(x)x``, ``vv_n = sum m v(x)v`` and
   ``xv+_n`` (the symmetric part of ``sum m x(x)v``), and the antisymmetric part ``xv-_n``.
3. The O(3)-invariant scalars of those moments (reflections included), 567 per halo:

   ======================  =====  ============================================================
   kind                    count  names
   ======================  =====  ============================================================
   single                  30     ``m_n``; ``eig{k}(T)_n``, k = 1, 2, 3 ascending, T in xx, vv, xv+
   vector-contraction      21     ``a.b`` for the vectors x_0, x_1, x_2, v_0, v_1, v_2, i <= j
   tensor-contraction      45     ``A:B`` = trace(A B) for the 9 symmetric tensors, i <= j
   antisymmetric-contr.    6      ``A:B`` = trace(A B^T) = -trace(A B) for xv-_0..2, i <= j
   product                 465    ``a*b`` for the singles a, b (list order, i <= j, squares too)
   ======================  =====  ============================================================

   ``A:B`` is the Frobenius (double) contraction sum_ij A_ij B_ij throughout, so an
   antisymmetric tensor contracted with itself is >= 0.

An empty shell has zero moments, so its scalars are zeros (not NaN). A halo with fewer than
``min_particles`` particles within R200m raises :class:`HaloScalarsError` naming its halo id,
unless ``too_few="mark"`` (its row is then NaN and ``valid`` is False).

:func:`halo_scalars` computes them across halos with dask: each task reads only the particle
rows of its chunk of halos (through the offsets), so a catalog opened lazily
(``xr.open_dataset(path, engine="h5netcdf", chunks=...)``) streams through in bounded memory.
``python -m pipeline.halos.benchmark --out FILE.json`` measures the throughput and the
workers' peak memory on synthetic catalogs of growing size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import numpy as np
import xarray as xr

from pipeline.cluster import dask_scheduler
from pipeline.invariants import is_torch, upper_pairs
from pipeline.units import scale_factor
from sims.halos.catalog import HALO_UNITS, PARTICLE_UNITS

G_KPC_KMS2_MSUN = 4.30091e-6  # G in kpc (km/s)^2 / Msun
SHELL_EDGES = (0.0, 0.1, 0.4, 1.0)  # in units of R200m
N_SHELLS = len(SHELL_EDGES) - 1
SHELLS = tuple(range(N_SHELLS))
SYMMETRIC = ("xx", "vv", "xv+")
VECTORS = ("x", "v")
ANTISYMMETRIC = "xv-"
SCALAR_DIM = "scalar"
HALO_DIM = "halo"
DEFAULT_CHUNK_HALOS = 64
DEFAULT_MIN_PARTICLES = 10
KINDS = ("single", "vector-contraction", "tensor-contraction", "antisymmetric-contraction", "product")


class HaloScalarsError(ValueError):
    """A halo or catalog the scalars cannot be computed for; the message names the halo id or field."""


def _names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    singles = [f"m_{n}" for n in SHELLS]
    singles += [f"eig{k}({t})_{n}" for t in SYMMETRIC for n in SHELLS for k in (1, 2, 3)]
    vectors = [f"{a}_{n}" for a in VECTORS for n in SHELLS]
    tensors = [f"{t}_{n}" for t in SYMMETRIC for n in SHELLS]
    antis = [f"{ANTISYMMETRIC}_{n}" for n in SHELLS]
    groups = [
        ("single", singles),
        ("vector-contraction", [f"{vectors[i]}.{vectors[j]}" for i, j in upper_pairs(len(vectors))]),
        ("tensor-contraction", [f"{tensors[i]}:{tensors[j]}" for i, j in upper_pairs(len(tensors))]),
        ("antisymmetric-contraction", [f"{antis[i]}:{antis[j]}" for i, j in upper_pairs(len(antis))]),
        ("product", [f"{singles[i]}*{singles[j]}" for i, j in upper_pairs(len(singles))]),
    ]
    names = tuple(name for _, group in groups for name in group)
    kinds = tuple(kind for kind, group in groups for _ in group)
    return names, kinds


SCALAR_NAMES, SCALAR_KINDS = _names()
N_SCALARS = len(SCALAR_NAMES)


def scalar_names(kind: str | None = None) -> list[str]:
    """The scalar names in output order (``kind``: only those of one of :data:`KINDS`)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown scalar kind {kind!r}; choose from {KINDS}")
    return [n for n, k in zip(SCALAR_NAMES, SCALAR_KINDS, strict=True) if kind is None or k == kind]


# --------------------------------------------------------------------------------------------------
# the maths, vectorised over the particles of a batch of halos


def shell_moments(
    position: np.ndarray,
    velocity: np.ndarray,
    mass: np.ndarray,
    counts: np.ndarray,
    centre: np.ndarray,
    M200m: np.ndarray,
    R200m: np.ndarray,
    *,
    G: float = G_KPC_KMS2_MSUN,
) -> dict[str, np.ndarray]:
    """The normalised (dimensionless) shell moments of a batch of halos.

    ``position`` (N, 3) and ``velocity`` (N, 3) and ``mass`` (N,) are the particles of the halos
    one after the other, ``counts`` (H,) how many belong to each; ``centre`` (H, 3), ``M200m`` and
    ``R200m`` (H,). Any consistent units (kpc, km/s, Msun with the default ``G`` in kpc (km/s)^2 /
    Msun). Returns ``m`` (H, 3 shells), ``x`` and ``v`` (H, 3 shells, 3), ``xx``, ``vv``, ``xv+``
    and ``xv-`` (H, 3 shells, 3, 3), and ``particles_within`` (H,), the particles with r < R200m.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_halos = counts.size
    M = np.asarray(M200m, dtype=np.float64)
    R = np.asarray(R200m, dtype=np.float64)
    halo = np.repeat(np.arange(n_halos), counts)
    x = np.asarray(position, dtype=np.float64) - np.asarray(centre, dtype=np.float64)[halo]
    s = np.sqrt(np.einsum("ij,ij->i", x, x)) / R[halo]
    inside = s < SHELL_EDGES[-1]
    x, s, halo = x[inside], s[inside], halo[inside]
    v = np.asarray(velocity, dtype=np.float64)[inside]
    m = np.asarray(mass, dtype=np.float64)[inside]
    within = np.bincount(halo, minlength=n_halos)

    # velocities relative to the mass-weighted mean of the particles within R200m
    mass_in = np.bincount(halo, m, minlength=n_halos)
    safe = np.where(mass_in > 0, mass_in, 1.0)  # a halo with nothing inside keeps zeros
    mean_v = np.stack([np.bincount(halo, m * v[:, k], minlength=n_halos) for k in range(3)], -1) / safe[:, None]
    v = v - mean_v[halo]

    shell = np.searchsorted(np.asarray(SHELL_EDGES[1:-1]), s, side="right")  # half-open [a, b)
    group = halo * N_SHELLS + shell
    n_groups = n_halos * N_SHELLS

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights, minlength=n_groups).reshape(n_halos, N_SHELLS)

    mx, mv = m[:, None] * x, m[:, None] * v
    out_x = np.stack([total(mx[:, a]) for a in range(3)], -1)
    out_v = np.stack([total(mv[:, a]) for a in range(3)], -1)
    xx = np.empty((n_halos, N_SHELLS, 3, 3))
    vv = np.empty((n_halos, N_SHELLS, 3, 3))
    xv = np.empty((n_halos, N_SHELLS, 3, 3))
    for a in range(3):
        for b in range(3):
            xv[..., a, b] = total(mx[:, a] * v[:, b])
            if b >= a:  # exactly symmetric by construction
                xx[..., a, b] = xx[..., b, a] = total(mx[:, a] * x[:, b])
                vv[..., a, b] = vv[..., b, a] = total(mv[:, a] * v[:, b])

    V = np.sqrt(G * M / R)
    per = (slice(None), None)  # broadcast a per-halo factor over shells
    vec = (slice(None), None, None)
    ten = (slice(None), None, None, None)
    xv_t = np.swapaxes(xv, -1, -2)
    return {
        "m": total(m) / M[per],
        "x": out_x / (M * R)[vec],
        "v": out_v / (M * V)[vec],
        "xx": xx / (M * R**2)[ten],
        "vv": vv / (M * V**2)[ten],
        "xv+": 0.5 * (xv + xv_t) / (M * R * V)[ten],
        "xv-": 0.5 * (xv - xv_t) / (M * R * V)[ten],
        "particles_within": within,
    }


def _xp(x: Any) -> tuple[Any, Any, Any]:
    """(einsum, eigvalsh, concatenate) of x's array library: numpy, or torch (differentiable)."""
    if is_torch(x):
        import torch

        return torch.einsum, torch.linalg.eigvalsh, torch.cat
    return np.einsum, np.linalg.eigvalsh, np.concatenate


def scalars_from_moments(moments: Mapping[str, Any]) -> Any:
    """The 567 invariant scalars (..., 567) in :data:`SCALAR_NAMES` order from normalised moments.

    ``moments`` as returned by :func:`shell_moments` (numpy arrays, or torch tensors with the same
    leading batch shape, through which gradients flow). Eigenvalues are ascending; contractions of
    tensors are Frobenius, ``A:B = sum_ij A_ij B_ij`` (= trace(A B) for symmetric tensors and
    trace(A B^T) = -trace(A B) for antisymmetric ones).
    """
    einsum, eigvalsh, concatenate = _xp(moments["m"])
    m = moments["m"]
    sym = concatenate([moments[t] for t in SYMMETRIC], -3)  # (..., 9, 3, 3): xx_0..2, vv_0..2, xv+_0..2
    eig = eigvalsh(sym)  # ascending
    singles = concatenate([m, eig.reshape(*eig.shape[:-2], -1)], -1)  # (..., 30)
    vectors = concatenate([moments[a] for a in VECTORS], -2)  # (..., 6, 3)
    anti = moments[ANTISYMMETRIC]
    parts = [singles]
    for values, pattern in (
        (vectors, "...ia,...ja->...ij"),
        (sym, "...iab,...jab->...ij"),
        (anti, "...iab,...jab->...ij"),
    ):
        gram = einsum(pattern, values, values)
        i, j = zip(*upper_pairs(gram.shape[-1]), strict=True)
        parts.append(gram[..., list(i), list(j)])
    i, j = zip(*upper_pairs(singles.shape[-1]), strict=True)
    parts.append(singles[..., list(i)] * singles[..., list(j)])
    return concatenate(parts, -1)


def halo_scalar_array(
    position: np.ndarray,
    velocity: np.ndarray,
    mass: np.ndarray,
    counts: np.ndarray,
    centre: np.ndarray,
    M200m: np.ndarray,
    R200m: np.ndarray,
    *,
    G: float = G_KPC_KMS2_MSUN,
    halo_id: Sequence[int] | np.ndarray | None = None,
    min_particles: int = DEFAULT_MIN_PARTICLES,
    too_few: Literal["raise", "mark"] = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """The (H, 567) scalars of a batch of halos (arguments as for :func:`shell_moments`) and the
    (H,) number of particles within R200m of each.

    A halo with fewer than ``min_particles`` particles within R200m raises
    :class:`HaloScalarsError` naming its ``halo_id`` (default: its index), or with
    ``too_few="mark"`` gets a row of NaN.
    """
    if too_few not in ("raise", "mark"):
        raise ValueError(f"too_few must be 'raise' or 'mark', got {too_few!r}")
    moments = shell_moments(position, velocity, mass, counts, centre, M200m, R200m, G=G)
    within = moments.pop("particles_within")
    sparse = within < min_particles
    if sparse.any() and too_few == "raise":
        ids = np.arange(within.size) if halo_id is None else np.asarray(halo_id)
        bad = [f"halo_id {int(ids[i])} ({int(within[i])})" for i in np.flatnonzero(sparse)[:5]]
        more = f" and {int(sparse.sum()) - 5} more" if sparse.sum() > 5 else ""
        raise HaloScalarsError(
            f"fewer than {min_particles} particles within R200m: {', '.join(bad)}{more}; drop those halos, "
            "lower min_particles, or pass too_few='mark' to get NaN rows flagged valid=False"
        )
    scalars = scalars_from_moments(moments)
    scalars[sparse] = np.nan
    return scalars, within


# --------------------------------------------------------------------------------------------------
# across a catalog, with dask


def _factor(ds: xr.Dataset, name: str, canonical: str) -> float:
    units = ds[name].attrs.get("units", canonical)
    return 1.0 if units == canonical else scale_factor(units, canonical, where=f"halo catalog variable {name}")


def _chunk_task(
    position: np.ndarray,
    velocity: np.ndarray,
    mass: np.ndarray,
    halos: dict[str, np.ndarray],
    factors: dict[str, float],
    min_particles: int,
    too_few: str,
) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of halos: its particle rows arrive as arrays (read here, from a lazy file if so)."""

    def scaled(values: Any, name: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return values * factors[name] if factors[name] != 1.0 else values

    return halo_scalar_array(
        scaled(position, "particle_position"),
        scaled(velocity, "particle_velocity"),
        scaled(mass, "particle_mass"),
        halos["particle_count"],
        halos["position"] * factors["position"],
        halos["M200m"] * factors["M200m"],
        halos["R200m"] * factors["R200m"],
        halo_id=halos["halo_id"],
        min_particles=min_particles,
        too_few=too_few,  # type: ignore[arg-type]
    )


def halo_scalars(
    ds: xr.Dataset,
    *,
    chunk_halos: int = DEFAULT_CHUNK_HALOS,
    dask_address: str | None = None,
    n_workers: int | None = None,
    min_particles: int = DEFAULT_MIN_PARTICLES,
    too_few: Literal["raise", "mark"] = "raise",
) -> xr.Dataset:
    """The 567 invariant, dimensionless scalars of every halo of a ``halos.catalog`` dataset.

    Each dask task handles ``chunk_halos`` consecutive halos and reads only their particle rows
    (``particle_offset`` / ``particle_count``); ``ds`` may be in memory or opened lazily with dask
    chunks. Variables whose ``units`` differ from the canonical ones (kpc, km s^-1, Msun) are
    converted with pint first. ``dask_address``: ``"threads"`` or ``"synchronous"`` (in process),
    ``"local"`` (a local cluster of ``n_workers`` processes), a scheduler address, or None
    (``$EQS_DASK_ADDRESS``, else local); see :func:`pipeline.cluster.dask_scheduler`.

    Returns a Dataset with ``scalars`` (halo, scalar) float64, units "1"; ``particles_within``
    (halo) and ``valid`` (halo) (False only for halos marked with ``too_few="mark"``); coordinates
    ``halo_id`` (halo), ``scalar`` (the names) and ``scalar_kind`` (scalar); attributes describing
    shells, normalisation and conventions.
    """
    tasks, halo_id = _tasks(ds, chunk_halos, min_particles, too_few)
    if tasks:
        with dask_scheduler(dask_address, n_workers=n_workers):
            results = dask.compute(*tasks)
    else:
        results = ()
    return _assemble(results, halo_id, min_particles)


def _tasks(ds: xr.Dataset, chunk_halos: int, min_particles: int, too_few: str) -> tuple[list[Any], np.ndarray]:
    """One delayed task per chunk of halos, and the halo ids in order."""
    if chunk_halos < 1:
        raise ValueError(f"chunk_halos must be at least 1, got {chunk_halos}")
    if too_few not in ("raise", "mark"):
        raise ValueError(f"too_few must be 'raise' or 'mark', got {too_few!r}")
    missing = [n for n in _NEEDED if n not in ds]
    if missing:
        raise HaloScalarsError(f"halo catalog {ds.attrs.get('name', '')!r}: missing variable(s) {missing}")
    halos = {n: np.asarray(ds[n].values) for n in ("halo_id", "M200m", "R200m", "position", "particle_count")}
    offsets = np.asarray(ds["particle_offset"].values, dtype=np.int64)
    counts = np.asarray(halos["particle_count"], dtype=np.int64)
    n_halos = counts.size
    if n_halos and not np.array_equal(offsets[1:], offsets[:-1] + counts[:-1]):
        raise HaloScalarsError(
            "particle_offset: each halo's particles must follow the previous halo's "
            "(offset[i + 1] = offset[i] + count[i]); rewrite the catalog with sims.halos.catalog_dataset"
        )
    factors = {n: _factor(ds, n, u) for n, u in {**HALO_UNITS, **PARTICLE_UNITS}.items() if n in _SCALED}
    particles = {n: ds[n].data for n in PARTICLE_UNITS}
    token = uuid.uuid4().hex  # keys unique per call: a shared scheduler may hold another catalog's
    tasks = []
    for start in range(0, n_halos, chunk_halos):
        stop = min(start + chunk_halos, n_halos)
        first = int(offsets[start])
        last = int(offsets[stop - 1] + counts[stop - 1])
        # slicing a lazy (dask) array here adds a getitem that dask fuses into the file read, so a
        # task reads only these rows; in-memory arrays are sliced as views
        rows = [particles[n][first:last] for n in PARTICLE_UNITS]
        part = {n: v[start:stop] for n, v in halos.items()}
        tasks.append(
            dask.delayed(_chunk_task, nout=2)(
                *rows, part, factors, min_particles, too_few, dask_key_name=f"halo-scalars-{token}-{start}"
            )
        )
    return tasks, np.asarray(halos["halo_id"], dtype=np.int64)


def _assemble(results: Sequence[tuple[np.ndarray, np.ndarray]], halo_id: np.ndarray, min_particles: int) -> xr.Dataset:
    if results:
        scalars = np.concatenate([r[0] for r in results], 0)
        within = np.concatenate([r[1] for r in results], 0)
    else:
        scalars, within = np.zeros((0, N_SCALARS)), np.zeros(0, dtype=np.int64)
    valid = within >= min_particles
    return xr.Dataset(
        {
            "scalars": ((HALO_DIM, SCALAR_DIM), scalars, {"units": "1", "long_name": "invariant halo scalars"}),
            "particles_within": (HALO_DIM, within.astype(np.int64), {"units": "1"}),
            "valid": (HALO_DIM, valid, {"units": "1", "long_name": f"at least {min_particles} particles within R200m"}),
        },
        coords={
            "halo_id": (HALO_DIM, halo_id, {"units": "1"}),
            SCALAR_DIM: (SCALAR_DIM, list(SCALAR_NAMES)),
            "scalar_kind": (SCALAR_DIM, list(SCALAR_KINDS)),
        },
        attrs=scalar_attrs(min_particles),
    )


_NEEDED = ("halo_id", "M200m", "R200m", "position", "particle_offset", "particle_count", *PARTICLE_UNITS)
_SCALED = ("M200m", "R200m", "position", *PARTICLE_UNITS)


def scalar_attrs(min_particles: int = DEFAULT_MIN_PARTICLES) -> dict[str, Any]:
    """The attributes :func:`halo_scalars` writes: shells, normalisation and conventions."""
    return {
        "description": "O(3)-invariant dimensionless scalars of halo particle moments (Storey-Fisher et al.)",
        "shell_edges_R200m": json.dumps(list(SHELL_EDGES)),
        "shells": "half-open in r / R200m: [0, 0.1), [0.1, 0.4), [0.4, 1.0); particles at r >= R200m ignored",
        "centre": "catalog position (potential minimum); velocities relative to the mass-weighted mean "
        "velocity of the particles within R200m",
        "normalisation": "each moment sum m x^l v^p divided by M R^l V^p, M = M200m, R = R200m, V = sqrt(G M / R)",
        "G_kpc_kms2_Msun": G_KPC_KMS2_MSUN,
        "eigenvalues": "eig1 <= eig2 <= eig3 of each symmetric tensor",
        "contractions": "A:B = sum_ij A_ij B_ij (trace(A B) for symmetric, trace(A B^T) for antisymmetric tensors)",
        "empty_shells": "zero moments, so zero scalars (never NaN)",
        "min_particles": int(min_particles),
        "n_scalars": N_SCALARS,
    }
