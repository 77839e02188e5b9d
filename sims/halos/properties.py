"""Halo properties as halo finders measure them, from any halo's particles (docs/protocols.md#halos).

The definitions follow Rockstar (Behroozi, Wechsler & Wu 2013, ApJ 762, 109; its ``properties.c``
and ``nfw.c``) where it has one, applied to the particles within R200m of the halo's centre
(``r < R200m``, the convention of :mod:`pipeline.halos.scalars`). Rockstar uses the bound particles
within its halo radius only (``BOUND_PROPS``, after unbinding against a tree potential); here
every particle within R200m counts, since the synthetic population has no unbinding step. M, R
and V below are M200m, R200m and V200m = sqrt(G M200m / R200m); "mean" is mass-weighted.

``concentration``
    R200m / Rs, Rs the scale radius of the NFW profile fitted to the particles by maximum
    likelihood: the radii s = r / R200m are drawn from the truncated NFW density
    p(s) = c^2 s / ((1 + c s)^2 mu(c)), mu(c) = ln(1 + c) - c / (1 + c), each particle weighted by
    its mass; the likelihood is maximised in c by safeguarded Newton steps from the c whose
    half-mass radius is the measured one, within [1, 1000] (Rockstar keeps Rs within the fitted
    radii). Rockstar fits the same profile to up to 50 equal-mass radial bins; the unbinned fit is
    its limit of narrow bins. With fewer than :data:`MIN_FIT_PARTICLES` (100, Rockstar's
    ``MIN_SCALE_PART``) particles, Rockstar's ``rs_klypin``: the c of the NFW halo with the
    measured Vmax / V200m, c / mu(c) = Vmax^2 R / (0.216 G M) (Klypin et al. 2011) on the branch
    c > 2.163, or Rs = R_vmax / 2.163 where that ratio is below its minimum 4.625.
``spin``
    Bullock lambda' = |J| / (sqrt(2) M V R), J = sum m (x - centre) x (v - bulk velocity): about
    the halo's centre and in the frame of the halo's velocity, as Rockstar's ``Spin_Bullock`` (its
    halo velocity is the core velocity).
``sigma_v``
    1-D velocity dispersion: sqrt(sum m |v - mean v|^2 / (3 sum m)); Rockstar's ``vrms`` is the
    3-D one, sqrt(3) times this.
``b_to_a``, ``c_to_a``
    The iterative shape of Allgood et al. (2006) as Rockstar computes it (``WEIGHTED_SHAPES`` = 1,
    its default): the reduced shape tensor sum w d d^T / sum w, w = 1 / r_ell^2, of the particles
    inside the ellipsoid r_ell <= 1, r_ell^2 = sum_k (d . e_k)^2 / a_k^2, starting from the sphere
    of radius R200m; after each iteration the axes e_k are the tensor's eigenvectors and the
    semi-axes a_k = R200m sqrt(lambda_k / lambda_max) (the major one kept at R200m). At most
    :data:`SHAPE_ITERATIONS` (10) iterations; it stops once b/a and c/a both change by less than
    1 % (relative) from one iteration to the next. A halo with fewer than
    :data:`SHAPE_MIN_PARTICLES` (10) particles within R200m gets 0 for both, as Rockstar writes 0
    when it cannot measure a shape (it needs 3); should a later ellipsoid hold fewer, or the
    tensor be singular, the last ratios are kept.
``x_offset``
    |mean particle position - centre| (Rockstar's ``Xoff``: density peak against mean position).
``v_offset``
    |bulk velocity - mean particle velocity| (Rockstar's ``Voff``: its halo (core) velocity
    against the mean particle velocity). For the synthetic population the bulk velocity is the
    catalog's ``velocity``, the frame the particles' velocities were drawn in.
``vmax``
    max over particle radii r_k of sqrt(G M(<= r_k) / r_k), M(<= r_k) the mass of the particles at
    radius <= r_k, taken over the particles from the :data:`VMAX_MIN_PARTICLES`-th (10th) outward
    (all when there are fewer), so that the few innermost particles do not make a spike;
    Rockstar's equivalent guard is its force resolution.
``virial_ratio``
    T / |U|: T = sum m |v - mean v|^2 / 2, and U = -G sum_{i<j} m_i m_j / d_ij by direct summation
    (pair distances floored at 1e-6 R200m). Where a halo has more than :data:`VIRIAL_PAIRS` pairs
    (1024: from 46 particles), U is estimated from that many pairs drawn uniformly with replacement
    (i != j) from ``SeedSequence([seed, 2, key])``, with the spherical (shell-theorem) energy
    U_sph = -G sum_{i<j} m_i m_j / max(r_i, r_j), exact in O(N log N), as control variate:
    U = U_sph - G (pairs / draws) sum_drawn m_i m_j (1 / d_ij - 1 / max(r_i, r_j)). Unbiased, its
    cost bounded per halo; its relative error is about 3 % on the synthetic population's halos
    (their T/|U| spreads by 9 %), the spherical energy alone misses 1-8 % of |U| there (mostly
    substructure). Rockstar reports T/|U| with U_sph of its bound particles. 0 (not measured)
    below two particles.
``r_half``
    The smallest particle radius enclosing at least half the mass within R200m (Rockstar's
    ``Halfmass_Radius``).

Every property is invariant under rotations and reflections of the particles about the centre, to
round-off (the drawn pairs are chosen by index, not position). :func:`measure_halos` measures many
halos at once (flat arrays with per-halo counts, the catalog layout), vectorised across halos;
:func:`measured_properties` measures one. Units: any consistent set, given G in it (defaults: kpc,
km s^-1, Msun).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

#: Newton's constant in kpc (km s^-1)^2 Msun^-1.
G_NEWTON = 4.300917270e-6
#: The catalog properties :func:`measure_halos` returns (those of ``sims.halos.catalog.CATALOG_PROPERTIES``).
PROPERTIES = (
    "concentration",
    "spin",
    "sigma_v",
    "b_to_a",
    "c_to_a",
    "x_offset",
    "v_offset",
    "vmax",
    "virial_ratio",
    "r_half",
)
MIN_FIT_PARTICLES = 100
VMAX_MIN_PARTICLES = 10
SHAPE_ITERATIONS = 10
SHAPE_TOLERANCE = 0.01
SHAPE_MIN_PARTICLES = 10
VIRIAL_PAIRS = 1024
CONCENTRATION_RANGE = (1.0, 1000.0)
PAIR_STREAM = 2  # the pairs of halo ``key`` come from SeedSequence([seed, PAIR_STREAM, key])
SOFTENING = 1e-6  # in R200m: pair distances and radii are floored at this
X_MAX = 2.1625815870646098  # r_max / r_s of the NFW circular velocity
KLYPIN = 0.216  # Vmax^2 / V200^2 = 0.216 c / mu(c) (Klypin, Trujillo-Gomez & Primack 2011)
_FIT_ITERATIONS = 60
_FIT_TOLERANCE = 1e-10


def _mu(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.log1p(c) - c / (1.0 + c)


@lru_cache(maxsize=1)
def _half_mass_table() -> tuple[np.ndarray, np.ndarray]:
    """s_half(c), the half-mass radius over R of a truncated NFW halo, on a grid of c (decreasing s)."""
    c = np.geomspace(*CONCENTRATION_RANGE, 601)
    lo, hi = np.zeros_like(c), np.ones_like(c)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = _mu(c * mid) / _mu(c) > 0.5
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return c, 0.5 * (lo + hi)


@lru_cache(maxsize=1)
def _klypin_table() -> tuple[np.ndarray, np.ndarray]:
    """c / mu(c) on the branch c > X_MAX (increasing), and c."""
    c = np.geomspace(X_MAX, 1e5, 4001)
    return c / _mu(c), c


def _segment_sum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of the contiguous segments ``values[starts[h] : starts[h] + counts[h]]`` (0 for empty ones)."""
    out = np.zeros((counts.size, *values.shape[1:]), dtype=np.float64)
    full = counts > 0
    if full.any():
        out[full] = np.add.reduceat(values, starts[full], axis=0)
    return out


def _segment_first(mask: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per segment, the position of the first True of ``mask`` (the segment's last position if none)."""
    index = np.where(mask, np.arange(mask.size), np.iinfo(np.int64).max)
    out = starts + np.maximum(counts, 1) - 1
    full = counts > 0
    if full.any():
        out[full] = np.minimum(np.minimum.reduceat(index, starts[full]), out[full])
    return out


def _starts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _fit_concentration(s: np.ndarray, w: np.ndarray, counts: np.ndarray, s_half: np.ndarray) -> np.ndarray:
    """Maximum-likelihood NFW concentration per segment from radii ``s`` (in R) with weights ``w``
    summing to 1 per segment: safeguarded Newton on the score from the half-mass guess."""
    lo_c, hi_c = CONCENTRATION_RANGE
    table_c, table_s = _half_mass_table()
    c = np.clip(np.interp(s_half, table_s[::-1], table_c[::-1]), lo_c, hi_c)
    lo, hi = np.full_like(c, lo_c), np.full_like(c, hi_c)
    active = np.arange(c.size)
    ws, ss, sub_counts = w, s, counts
    starts = _starts(sub_counts)  # every segment has particles
    for _ in range(_FIT_ITERATIONS):
        ca = c[active]
        t = ss / (1.0 + np.repeat(ca, sub_counts) * ss)
        wt = ws * t
        s1 = np.add.reduceat(wt, starts)
        s2 = np.add.reduceat(wt * t, starts)
        mu = _mu(ca)
        dmu = ca / (1.0 + ca) ** 2
        d2mu = (1.0 - ca) / (1.0 + ca) ** 3
        score = 2.0 / ca - 2.0 * s1 - dmu / mu
        curvature = -2.0 / ca**2 + 2.0 * s2 - (d2mu / mu - (dmu / mu) ** 2)
        lo[active] = np.where(score > 0, ca, lo[active])
        hi[active] = np.where(score > 0, hi[active], ca)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = ca - score / curvature
        bad = ~(curvature < 0) | ~(step > lo[active]) | ~(step < hi[active])
        new = np.where(bad, np.sqrt(lo[active] * hi[active]), step)
        c[active] = new
        going = np.abs(np.log(new / ca)) >= _FIT_TOLERANCE
        if not going.any():
            break
        if not going.all():
            rows = np.repeat(going, sub_counts)
            ws, ss, sub_counts, active = ws[rows], ss[rows], sub_counts[going], active[going]
            starts = _starts(sub_counts)
    return np.clip(c, lo_c, hi_c)


def _klypin_concentration(vmax: np.ndarray, rvmax: np.ndarray, radius: np.ndarray, v200: np.ndarray) -> np.ndarray:
    """Rockstar's rs_klypin as a concentration: c / mu(c) = Vmax^2 / (0.216 V200^2), else R / (R_vmax / 2.163)."""
    ratio = (vmax / v200) ** 2 / KLYPIN
    table_f, table_c = _klypin_table()
    c = np.where(
        ratio >= table_f[0],
        np.interp(ratio, table_f, table_c),
        radius * X_MAX / np.maximum(rvmax, SOFTENING * radius),
    )
    return np.clip(c, *CONCENTRATION_RANGE)


_SYMMETRIC = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
_DONE = np.array([np.inf, np.inf, np.inf, 0.0, 0.0, 0.0])  # a quadratic form no particle is inside


def _shapes(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, counts: np.ndarray, radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """b/a and c/a per segment by the iterative reduced shape tensor (Allgood et al. 2006, Rockstar).

    The particles are the rows of a sparse (particles, 6 halos) matrix holding x^2, y^2, z^2, xy,
    xz, yz in their halo's 6 columns: its product with the halos' quadratic forms gives every
    r_ell^2, its transpose's product with the weights every shape tensor. Halos that are done get
    a form no particle is inside; their rows are dropped once they are half of the matrix.
    """
    h = counts.size
    b_to_a, c_to_a = np.zeros(h), np.zeros(h)
    going = counts >= SHAPE_MIN_PARTICLES
    if not going.any():
        return b_to_a, c_to_a
    rows = np.repeat(going, counts)
    row_halo = np.repeat(np.arange(h, dtype=np.int64), counts)[rows]
    x, y, z = x[rows], y[rows], z[rows]
    d6 = np.empty((x.size, 6))
    for k, (a, b) in enumerate(((x, x), (y, y), (z, z), (x, y), (x, z), (y, z))):
        np.multiply(a, b, out=d6[:, k])
    index = np.int32 if 6 * max(h, x.size) < 2**31 else np.int64
    columns = (6 * row_halo.astype(index)[:, None] + np.arange(6, dtype=index)).ravel()
    pointers = np.arange(0, 6 * x.size + 1, 6, dtype=index)
    matrix = sparse.csr_matrix((d6.ravel(), columns, pointers), shape=(x.size, 6 * h))
    row_counts = np.where(going, counts, 0)
    # r_ell^2 = d^T Q d with Q as 6 numbers (off-diagonal ones doubled); first the sphere of radius R200m
    q6 = np.tile(_DONE, (h, 1))
    q6[going] = 0.0
    q6[going, :3] = (1.0 / radius[going] ** 2)[:, None]
    floor = SOFTENING**2
    for _ in range(SHAPE_ITERATIONS):
        r_ell2 = matrix @ q6.ravel()
        inside = r_ell2 <= 1.0
        weight = inside / np.maximum(r_ell2, floor)
        tensor6 = (matrix.T @ weight).reshape(h, 6)[going]
        n_inside = np.zeros(h, dtype=np.int64)
        present = row_counts > 0
        n_inside[present] = np.add.reduceat(inside, _starts(row_counts)[present], dtype=np.int64)
        n_inside = n_inside[going]
        tensor = np.empty((tensor6.shape[0], 3, 3))
        for k, (i, j) in enumerate(_SYMMETRIC):
            tensor[:, i, j] = tensor[:, j, i] = tensor6[:, k]
        values, vectors = np.linalg.eigh(tensor)  # ascending: minor, intermediate, major
        ok = (n_inside >= SHAPE_MIN_PARTICLES) & (values[:, 0] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ba = np.sqrt(values[:, 1] / values[:, 2])
            ca = np.sqrt(values[:, 0] / values[:, 2])
        index = np.flatnonzero(going)
        previous_ba, previous_ca = b_to_a[index], c_to_a[index]
        converged = (np.abs(ba - previous_ba) < SHAPE_TOLERANCE * previous_ba) & (
            np.abs(ca - previous_ca) < SHAPE_TOLERANCE * previous_ca
        )
        b_to_a[index] = np.where(ok, ba, previous_ba)
        c_to_a[index] = np.where(ok, ca, previous_ca)
        still = ok & ~converged
        # the next ellipsoid: axes along the eigenvectors, semi-axes R (c/a, b/a, 1)
        semi2 = radius[index, None] ** 2 * np.column_stack([ca**2, ba**2, np.ones_like(ba)])
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.einsum("hik,hk,hjk->hij", vectors, 1.0 / semi2, vectors)
        q6[index] = np.where(
            still[:, None],
            np.column_stack([q[:, 0, 0], q[:, 1, 1], q[:, 2, 2], 2 * q[:, 0, 1], 2 * q[:, 0, 2], 2 * q[:, 1, 2]]),
            _DONE,
        )
        going[index] = still
        if not going.any():
            break
        if np.sum(row_counts[going]) < 0.5 * matrix.shape[0]:  # the halos still going, in a smaller matrix
            keep = going[row_halo]
            matrix, row_halo = matrix[keep], row_halo[keep]
            row_counts = np.where(going, row_counts, 0)
    return b_to_a, c_to_a


def _pair_correction(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    m: np.ndarray,
    r: np.ndarray,
    counts: np.ndarray,
    eps: np.ndarray,
    seed: int,
    keys: np.ndarray,
) -> np.ndarray:
    """Per segment, sum_{i<j} m_i m_j (1 / d_ij - 1 / max(r_i, r_j)): exact up to :data:`VIRIAL_PAIRS`
    pairs, else estimated (unbiased) from that many pairs drawn uniformly, with replacement."""
    starts = _starts(counts)
    first, second = [], []
    scale = np.zeros(counts.size)
    sizes = np.zeros(counts.size, dtype=np.int64)
    for k in np.flatnonzero(counts >= 2):
        n = int(counts[k])
        pairs = n * (n - 1) // 2
        if pairs <= VIRIAL_PAIRS:
            i, j = _all_pairs(n)
            scale[k] = 1.0
        else:
            stream = np.random.SeedSequence([int(seed), PAIR_STREAM, int(keys[k])])
            generator = np.random.Generator(np.random.PCG64(stream))
            uniform = generator.random((2, VIRIAL_PAIRS))
            i = np.minimum((uniform[0] * n).astype(np.int64), n - 1)
            j = np.minimum((uniform[1] * (n - 1)).astype(np.int64), n - 2)
            j += j >= i
            scale[k] = pairs / VIRIAL_PAIRS
        first.append(starts[k] + i)
        second.append(starts[k] + j)
        sizes[k] = i.size
    if not first:
        return np.zeros(counts.size)
    i, j = np.concatenate(first), np.concatenate(second)
    dx = np.take(x, i) - np.take(x, j)
    dy = np.take(y, i) - np.take(y, j)
    dz = np.take(z, i) - np.take(z, j)
    floor = np.repeat(eps, sizes)
    distance = np.maximum(np.sqrt(dx * dx + dy * dy + dz * dz), floor)
    outer = np.maximum(np.maximum(np.take(r, i), np.take(r, j)), floor)
    terms = np.take(m, i) * np.take(m, j) * (1.0 / distance - 1.0 / outer)
    return _segment_sum(terms, _starts(sizes), sizes) * scale


@lru_cache(maxsize=128)
def _all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def measure_halos(
    positions: np.ndarray,
    velocities: np.ndarray,
    masses: np.ndarray,
    counts: np.ndarray,
    centres: np.ndarray,
    bulk_velocities: np.ndarray,
    R200m: np.ndarray,
    M200m: np.ndarray,
    *,
    G: float = G_NEWTON,
    seed: int = 0,
    keys: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The catalog properties (:data:`PROPERTIES`, defined in the module docstring) of many halos.

    ``positions`` (N, 3), ``velocities`` (N, 3) and ``masses`` (N,) are the particles of the halos
    one after the other, ``counts[h]`` of them for halo h; ``centres``, ``bulk_velocities`` (H, 3),
    ``R200m`` and ``M200m`` (H,) are the halos'. ``seed`` and ``keys`` (per halo, default its
    position) seed the pairs drawn for U, so a halo's values depend on its own particles, ``seed``
    and its key only (not on the other halos measured with it). A halo without particles within
    R200m gets NaN throughout. Returns arrays (H,) by name.
    """
    counts = np.asarray(counts, dtype=np.int64)
    h = counts.size
    radius = np.asarray(R200m, dtype=np.float64).reshape(h)
    mass = np.asarray(M200m, dtype=np.float64).reshape(h)
    centres = np.asarray(centres, dtype=np.float64).reshape(h, 3)
    bulk = np.asarray(bulk_velocities, dtype=np.float64).reshape(h, 3)
    keys = np.arange(h, dtype=np.int64) if keys is None else np.asarray(keys, dtype=np.int64).reshape(h)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    velocities = np.asarray(velocities, dtype=np.float64).reshape(-1, 3)
    m = np.asarray(masses, dtype=np.float64).reshape(-1)
    # positions about the centre and velocities in the halo's frame, one contiguous array per component
    x, y, z = (positions[:, k] - np.repeat(centres[:, k], counts) for k in range(3))
    r2 = x * x + y * y + z * z
    inside = r2 < np.repeat(radius**2, counts)
    ux, uy, uz = (velocities[:, k] - np.repeat(bulk[:, k], counts) for k in range(3))
    n = np.rint(_segment_sum(inside.astype(np.float64), _starts(counts), counts)).astype(np.int64)
    if not inside.all():
        x, y, z, r2, ux, uy, uz, m = (a[inside] for a in (x, y, z, r2, ux, uy, uz, m))
    starts = _starts(n)
    full = n > 0
    r = np.sqrt(r2)

    # mass, mean position, mean velocity, kinetic energy and angular momentum, in one pass
    columns = np.empty((11, m.size))
    columns[0] = m
    for k, a in enumerate((x, y, z, ux, uy, uz)):
        np.multiply(m, a, out=columns[1 + k])
    columns[7] = columns[4] * ux + columns[5] * uy + columns[6] * uz
    columns[8] = columns[2] * uz - columns[3] * uy
    columns[9] = columns[3] * ux - columns[1] * uz
    columns[10] = columns[1] * uy - columns[2] * ux
    sums = np.zeros((h, 11))
    if full.any():
        sums[full] = np.add.reduceat(columns, starts[full], axis=1).T
    m_in = sums[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x = sums[:, 1:4] / m_in[:, None]
        mean_u = sums[:, 4:7] / m_in[:, None]  # mean velocity in the halo's frame
        twice_t = np.maximum(sums[:, 7] - m_in * np.einsum("hk,hk->h", mean_u, mean_u), 0.0)
    v200 = np.sqrt(G * mass / radius)

    # each halo's particles by radius, and the mass enclosed at each (the particle itself included),
    # halo by halo so that a halo's values do not depend on the halos measured with it
    order = np.arange(r.size)
    for k in np.flatnonzero(n > 1):
        order[starts[k] : starts[k] + n[k]] = starts[k] + np.argsort(r[starts[k] : starts[k] + n[k]])
    r_sorted, m_sorted = r[order], m[order]
    cumulative = np.empty_like(m_sorted)
    for k in np.flatnonzero(full):
        np.cumsum(m_sorted[starts[k] : starts[k] + n[k]], out=cumulative[starts[k] : starts[k] + n[k]])
    eps = SOFTENING * radius
    eps_rows = np.repeat(eps, n)
    rank = np.arange(r.size) - np.repeat(starts, n) + 1
    eligible = rank >= np.repeat(np.minimum(VMAX_MIN_PARTICLES, n), n)
    circular2 = np.where(eligible, G * cumulative / np.maximum(r_sorted, eps_rows), 0.0)
    vmax2 = np.zeros(h)
    if full.any():
        vmax2[full] = np.maximum.reduceat(circular2, starts[full])
    last = max(r.size - 1, 0)
    at_vmax = np.minimum(_segment_first(circular2 >= np.repeat(vmax2, n), starts, n), last)
    at_half = np.minimum(_segment_first(2.0 * cumulative >= np.repeat(m_in, n), starts, n), last)
    r_half = np.where(full, r_sorted[at_half] if r.size else 0.0, np.nan)
    rvmax = np.where(full, r_sorted[at_vmax] if r.size else 0.0, np.nan)
    vmax = np.sqrt(vmax2)

    # U: the shells' energy (exact) plus the pairs' correction to it
    shells = _segment_sum(m_sorted * (cumulative - m_sorted) / np.maximum(r_sorted, eps_rows), starts, n)
    potential = G * (shells + _pair_correction(x, y, z, m, r, n, eps, seed, keys))

    concentration = np.full(h, np.nan)
    fit = n >= MIN_FIT_PARTICLES
    if fit.any():
        rows = np.repeat(fit, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            concentration[fit] = _fit_concentration(
                r[rows] / np.repeat(radius[fit], n[fit]),
                m[rows] / np.repeat(m_in[fit], n[fit]),
                n[fit],
                r_half[fit] / radius[fit],
            )
    small = full & ~fit
    concentration[small] = _klypin_concentration(vmax[small], rvmax[small], radius[small], v200[small])
    b_to_a, c_to_a = _shapes(x, y, z, n, radius)

    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "concentration": concentration,
            "spin": np.linalg.norm(sums[:, 8:11], axis=1) / (np.sqrt(2.0) * mass * v200 * radius),
            "sigma_v": np.sqrt(twice_t / (3.0 * m_in)),
            "b_to_a": b_to_a,
            "c_to_a": c_to_a,
            "x_offset": np.linalg.norm(mean_x, axis=1),
            "v_offset": np.linalg.norm(mean_u, axis=1),
            "vmax": vmax,
            "virial_ratio": np.where(potential > 0, 0.5 * twice_t / np.where(potential > 0, potential, 1.0), 0.0),
            "r_half": r_half,
        }
    for name in PROPERTIES:
        out[name] = np.where(full, out[name], np.nan).astype(np.float64)
    return out


def measured_properties(
    x: np.ndarray,
    v: np.ndarray,
    m: np.ndarray,
    centre: np.ndarray,
    bulk_velocity: np.ndarray,
    R200m: float,
    M200m: float,
    *,
    G: float = G_NEWTON,
    seed: int = 0,
    key: int = 0,
) -> dict[str, float]:
    """The catalog properties (:data:`PROPERTIES`) of one halo: particle positions ``x`` (N, 3),
    velocities ``v`` (N, 3) and masses ``m`` (N,), its ``centre``, ``bulk_velocity``, ``R200m`` and
    ``M200m``, in units consistent with ``G`` (default kpc, km s^-1, Msun). See :func:`measure_halos`."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
    values = measure_halos(
        x,
        np.asarray(v, dtype=np.float64).reshape(-1, 3),
        np.asarray(m, dtype=np.float64).reshape(-1),
        np.array([x.shape[0]]),
        np.asarray(centre, dtype=np.float64).reshape(1, 3),
        np.asarray(bulk_velocity, dtype=np.float64).reshape(1, 3),
        np.array([float(R200m)]),
        np.array([float(M200m)]),
        G=G,
        seed=seed,
        keys=np.array([key]),
    )
    return {name: float(values[name][0]) for name in PROPERTIES}
