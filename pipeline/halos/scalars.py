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
rows of its chunk of halos (through the offsets), block by block, so a catalog opened lazily
(``xr.open_dataset(path, engine="h5netcdf")``, with or without dask ``chunks=...``) streams through
in bounded memory. Rows stored as plain HDF5 datasets are read by the tasks themselves with h5py
(:mod:`pipeline.halos.rows`).
``python -m pipeline.halos.benchmark --out FILE.json`` measures the throughput and the
workers' peak memory on synthetic catalogs of growing size.
"""

from __future__ import annotations

import collections
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import dask
import numba
import numpy as np
import xarray as xr

from pipeline.cluster import dask_scheduler
from pipeline.halos.rows import FileRows, block_readers, stored_dataset
from pipeline.invariants import is_torch, upper_pairs
from pipeline.units import scale_factor
from sims.halos.catalog import HALO_UNITS, PARTICLE_UNITS, chunk_bounds

G_KPC_KMS2_MSUN = 4.30091e-6  # G in kpc (km/s)^2 / Msun
SHELL_EDGES = (0.0, 0.1, 0.4, 1.0)  # in units of R200m
N_SHELLS = len(SHELL_EDGES) - 1
SHELLS = tuple(range(N_SHELLS))
SYMMETRIC = ("xx", "vv", "xv+")
VECTORS = ("x", "v")
ANTISYMMETRIC = "xv-"
SCALAR_DIM = "scalar"
HALO_DIM = "halo"
DEFAULT_CHUNK_HALOS = 256  # halos per dask task: 1 M particles at 4,000 a halo (docs/RESULTS.md, 2026-12-06)
# particle rows a task reads and reduces at once (15 MB in float64): memory the allocator reuses from
# block to block, instead of a task's whole rows in fresh pages that the kernel must fault in
BLOCK_PARTICLES = 2**18
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
# the maths: one fused pass over the particles of a batch of halos (numba), then per-halo algebra

N_SUMS = 28  # per shell: m; x (3); v (3); xx, vv (6 each, upper triangle); xv (9)
_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
_INNER, _MIDDLE, _OUTER = SHELL_EDGES[1:]  # compile-time constants of the kernel (3 shells)


@numba.njit(cache=True, nogil=True)
def _moment_sums(position, velocity, mass, counts, centre, R, sums, within):  # pragma: no cover - compiled
    """Raw (unnormalised) shell sums of each halo, accumulated in float64 in particle order.

    ``sums`` (H, 3, N_SUMS) and ``within`` (H,) are filled. Per halo: pass 1 finds each particle's
    shell (r / R against SHELL_EDGES; r >= R or NaN: ignored), the mass within R and the
    mass-weighted velocity sum; pass 2 accumulates, shell by shell, the moments of x relative to the
    centre and v relative to the mean velocity. The arithmetic is that of the former bincount version
    (same products, same summation order per shell), so the sums agree with it to round-off.
    """
    n_halos = counts.shape[0]
    longest = 0
    for h in range(n_halos):
        longest = max(longest, counts[h])
    order = np.empty((3, max(longest, 1)), dtype=np.int64)  # particle indices, per shell
    filled = np.zeros(3, dtype=np.int64)
    start = 0
    for h in range(n_halos):
        stop = start + counts[h]
        c0 = np.float64(centre[h, 0])
        c1 = np.float64(centre[h, 1])
        c2 = np.float64(centre[h, 2])
        radius = np.float64(R[h])
        filled[:] = 0
        m_in = 0.0
        p0 = 0.0
        p1 = 0.0
        p2 = 0.0
        for i in range(start, stop):
            x0 = np.float64(position[i, 0]) - c0
            x1 = np.float64(position[i, 1]) - c1
            x2 = np.float64(position[i, 2]) - c2
            # in the order numpy's einsum("ij,ij->i") adds them, so that a particle on a shell edge
            # falls in the same shell as in the former bincount version
            s = np.sqrt((x0 * x0 + x2 * x2) + x1 * x1) / radius
            if s < _OUTER:
                m = np.float64(mass[i])
                m_in += m
                p0 += m * np.float64(velocity[i, 0])
                p1 += m * np.float64(velocity[i, 1])
                p2 += m * np.float64(velocity[i, 2])
                shell = np.int64(s >= _INNER) + np.int64(s >= _MIDDLE)
                order[shell, filled[shell]] = i
                filled[shell] += 1
        within[h] = filled[0] + filled[1] + filled[2]
        safe = m_in if m_in > 0.0 else 1.0
        u0 = p0 / safe
        u1 = p1 / safe
        u2 = p2 / safe
        for shell in range(3):
            sm = 0.0
            sx0 = sx1 = sx2 = 0.0
            sv0 = sv1 = sv2 = 0.0
            xx00 = xx01 = xx02 = xx11 = xx12 = xx22 = 0.0
            vv00 = vv01 = vv02 = vv11 = vv12 = vv22 = 0.0
            xv00 = xv01 = xv02 = xv10 = xv11 = xv12 = xv20 = xv21 = xv22 = 0.0
            for k in range(filled[shell]):
                i = order[shell, k]
                x0 = np.float64(position[i, 0]) - c0
                x1 = np.float64(position[i, 1]) - c1
                x2 = np.float64(position[i, 2]) - c2
                v0 = np.float64(velocity[i, 0]) - u0
                v1 = np.float64(velocity[i, 1]) - u1
                v2 = np.float64(velocity[i, 2]) - u2
                m = np.float64(mass[i])
                mx0 = m * x0
                mx1 = m * x1
                mx2 = m * x2
                mv0 = m * v0
                mv1 = m * v1
                mv2 = m * v2
                sm += m
                sx0 += mx0
                sx1 += mx1
                sx2 += mx2
                sv0 += mv0
                sv1 += mv1
                sv2 += mv2
                xx00 += mx0 * x0
                xx01 += mx0 * x1
                xx02 += mx0 * x2
                xx11 += mx1 * x1
                xx12 += mx1 * x2
                xx22 += mx2 * x2
                vv00 += mv0 * v0
                vv01 += mv0 * v1
                vv02 += mv0 * v2
                vv11 += mv1 * v1
                vv12 += mv1 * v2
                vv22 += mv2 * v2
                xv00 += mx0 * v0
                xv01 += mx0 * v1
                xv02 += mx0 * v2
                xv10 += mx1 * v0
                xv11 += mx1 * v1
                xv12 += mx1 * v2
                xv20 += mx2 * v0
                xv21 += mx2 * v1
                xv22 += mx2 * v2
            out = sums[h, shell]
            out[0] = sm
            out[1] = sx0
            out[2] = sx1
            out[3] = sx2
            out[4] = sv0
            out[5] = sv1
            out[6] = sv2
            out[7] = xx00
            out[8] = xx01
            out[9] = xx02
            out[10] = xx11
            out[11] = xx12
            out[12] = xx22
            out[13] = vv00
            out[14] = vv01
            out[15] = vv02
            out[16] = vv11
            out[17] = vv12
            out[18] = vv22
            out[19] = xv00
            out[20] = xv01
            out[21] = xv02
            out[22] = xv10
            out[23] = xv11
            out[24] = xv12
            out[25] = xv20
            out[26] = xv21
            out[27] = xv22
        start = stop


def _particles(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A particle array as the kernel reads it: float32 or float64 as stored (no copy), else float64."""
    array = np.asarray(values)
    if array.dtype not in (np.float32, np.float64) or not array.dtype.isnative:
        array = array.astype(np.float64)
    if array.shape != shape:
        raise ValueError(f"shell_moments: {name} must be shaped {shape}, got {array.shape}")
    return array


def _symmetric(upper: np.ndarray) -> np.ndarray:
    """(..., 3, 3) from the (..., 6) upper triangle in _UPPER order."""
    out = np.empty((*upper.shape[:-1], 3, 3))
    for k, (a, b) in enumerate(_UPPER):
        out[..., a, b] = out[..., b, a] = upper[..., k]
    return out


def shell_moment_arrays(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """A ``halos.catalog`` held in memory as the keyword arguments of :func:`shell_moments`."""
    return {
        "position": ds["particle_position"].values,
        "velocity": ds["particle_velocity"].values,
        "mass": ds["particle_mass"].values,
        "counts": ds["particle_count"].values,
        "centre": ds["position"].values,
        "M200m": ds["M200m"].values,
        "R200m": ds["R200m"].values,
    }


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

    The particle arrays are read in their stored dtype (float32 or float64; others are converted)
    and everything is accumulated in float64, in one compiled pass per halo (:func:`_moment_sums`).
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError("shell_moments: counts must be a 1-D array of non-negative integers")
    sums = np.zeros((counts.size, N_SHELLS, N_SUMS))
    within = np.zeros(counts.size, dtype=np.int64)
    _accumulate(position, velocity, mass, counts, centre, R200m, sums, within)
    return _normalised(sums, within, M200m, R200m, G)


def _accumulate(position, velocity, mass, counts, centre, R200m, sums: np.ndarray, within: np.ndarray) -> None:
    """The raw shell sums of a batch of halos into ``sums`` (H, 3, N_SUMS) and ``within`` (H,)."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    n_halos, n_particles = counts.size, int(counts.sum())
    R = np.ascontiguousarray(R200m, dtype=np.float64).reshape(n_halos)
    centre = np.ascontiguousarray(centre, dtype=np.float64).reshape(n_halos, 3)
    pos = _particles(position, "position", (n_particles, 3))
    vel = _particles(velocity, "velocity", (n_particles, 3))
    m = _particles(mass, "mass", (n_particles,))
    _moment_sums(pos, vel, m, counts, centre, R, sums, within)


def _normalised(sums: np.ndarray, within: np.ndarray, M200m: Any, R200m: Any, G: float) -> dict[str, np.ndarray]:
    """:func:`shell_moments`' dictionary from the raw sums."""
    n_halos = sums.shape[0]
    M = np.asarray(M200m, dtype=np.float64)
    R = np.ascontiguousarray(R200m, dtype=np.float64).reshape(n_halos)
    xx, vv = _symmetric(sums[..., 7:13]), _symmetric(sums[..., 13:19])
    xv = sums[..., 19:28].reshape(n_halos, N_SHELLS, 3, 3)

    V = np.sqrt(G * M / R)
    per = (slice(None), None)  # broadcast a per-halo factor over shells
    vec = (slice(None), None, None)
    ten = (slice(None), None, None, None)
    xv_t = np.swapaxes(xv, -1, -2)
    return {
        "m": sums[..., 0] / M[per],
        "x": sums[..., 1:4] / (M * R)[vec],
        "v": sums[..., 4:7] / (M * V)[vec],
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
    return _scalars_of(moments, halo_id, min_particles, too_few)


def _scalars_of(
    moments: dict[str, np.ndarray], halo_id: Any, min_particles: int, too_few: str
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`halo_scalar_array`'s result from :func:`shell_moments`' dictionary."""
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


# zero-row slices of the lazily opened particle variables the last tasks read: they keep xarray's
# file manager referenced in this worker, so the HDF5 file stays open for the next task (reopening it
# costs about 50 ms a task); the oldest are dropped, and with them the file once nothing else holds it
_KEEP_OPEN: collections.deque[xr.Variable] = collections.deque(maxlen=3 * len(PARTICLE_UNITS))


def _chunk_task(
    position: FileRows | xr.Variable | np.ndarray,
    velocity: FileRows | xr.Variable | np.ndarray,
    mass: FileRows | xr.Variable | np.ndarray,
    halos: dict[str, np.ndarray],
    factors: dict[str, float],
    min_particles: int,
    too_few: str,
) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of halos. Its particle rows arrive as arrays, or as rows of a file to read here; they are
    read and reduced to shell sums block by block (:data:`BLOCK_PARTICLES`, :mod:`pipeline.halos.rows`)."""
    sources = (position, velocity, mass)
    for rows in sources:
        if isinstance(rows, xr.Variable):
            _KEEP_OPEN.append(rows[:0])
    counts = np.asarray(halos["particle_count"], dtype=np.int64)
    centre = halos["position"] * factors["position"]
    R = halos["R200m"] * factors["R200m"]
    sums = np.zeros((counts.size, N_SHELLS, N_SUMS))
    within = np.zeros(counts.size, dtype=np.int64)
    with block_readers(sources, [factors[n] for n in PARTICLE_UNITS]) as (read_x, read_v, read_m):
        for h0, h1, p0, p1 in chunk_bounds(counts, counts.size, BLOCK_PARTICLES):
            _accumulate(
                read_x(p0, p1), read_v(p0, p1), read_m(p0, p1), counts[h0:h1], centre[h0:h1], R[h0:h1],
                sums[h0:h1], within[h0:h1],
            )  # fmt: skip
    moments = _normalised(sums, within, halos["M200m"] * factors["M200m"], R, G_KPC_KMS2_MSUN)
    return _scalars_of(moments, halos["halo_id"], min_particles, too_few)


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
    (``particle_offset`` / ``particle_count``); ``ds`` may be in memory or opened lazily, with or
    without dask chunks (without, each task reads its rows itself: the fastest from a file).
    Variables whose ``units`` differ from the canonical ones (kpc, km s^-1, Msun) are converted with
    pint first. ``dask_address``: ``"threads"`` or ``"synchronous"`` (in process),
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
    per_halo = ("halo_id", "M200m", "R200m", "position", "particle_count", "particle_offset")
    # one compute for all the per-halo arrays (each .values of a lazy variable would be a round trip)
    values = dask.compute(*[ds[n].data for n in per_halo])
    halos = {n: np.asarray(v) for n, v in zip(per_halo, values, strict=True)}
    offsets = np.asarray(halos.pop("particle_offset"), dtype=np.int64)
    counts = np.asarray(halos["particle_count"], dtype=np.int64)
    n_halos = counts.size
    if n_halos and not np.array_equal(offsets[1:], offsets[:-1] + counts[:-1]):
        raise HaloScalarsError(
            "particle_offset: each halo's particles must follow the previous halo's "
            "(offset[i + 1] = offset[i] + count[i]); rewrite the catalog with sims.halos.catalog_dataset"
        )
    factors = {n: _factor(ds, n, u) for n, u in {**HALO_UNITS, **PARTICLE_UNITS}.items() if n in _SCALED}
    particles = {n: ds[n].variable for n in PARTICLE_UNITS}
    stored = {n: stored_dataset(v, n) for n, v in particles.items()}
    token = uuid.uuid4().hex  # keys unique per call: a shared scheduler may hold another catalog's
    tasks = []
    for start in range(0, n_halos, chunk_halos):
        stop = min(start + chunk_halos, n_halos)
        first = int(offsets[start])
        last = int(offsets[stop - 1] + counts[stop - 1])
        rows = [_rows(particles[n], first, last, n, stored[n]) for n in PARTICLE_UNITS]
        part = {n: v[start:stop] for n, v in halos.items()}
        tasks.append(
            dask.delayed(_chunk_task, nout=2)(
                *rows, part, factors, min_particles, too_few, dask_key_name=f"halo-scalars-{token}-{start}"
            )
        )
    return tasks, np.asarray(halos["halo_id"], dtype=np.int64)


def _rows(variable: xr.Variable, first: int, last: int, name: str, stored: str | None) -> Any:
    """Particle rows ``first:last`` as a task reads them, without reading anything here.

    Stored as a plain dataset of the HDF5 file ``stored`` (opened with or without dask chunks): a
    :class:`FileRows` the task reads itself (no other task, no transfer between workers: the
    fastest way from a file). Another dask-backed variable: a dask slice (the rows reach the task
    as a separate input). Another lazily opened one: a lazily indexed Variable, pickled with the
    task and read in it. In memory: a view.
    """
    if stored is not None:
        return FileRows(stored, name, first, last)
    if variable.chunks is not None:
        return variable.data[first:last]
    if not getattr(variable, "_in_memory", True):
        return variable[first:last]
    return variable.values[first:last]


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
