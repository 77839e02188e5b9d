"""A synthetic dark-matter halo population with galaxies (docs/protocols.md#halos), written as ``halos.catalog``.

The embedded default when no simulation catalog is given. Everything is physical, without little h:
masses in Msun, lengths in kpc, velocities in km s^-1 (colossus works in Msun/h and kpc/h; the
conversion happens at that boundary only).

Halos
    M200m sampled from the Tinker et al. (2008) mass function dn/dlnM (colossus, planck15, z = 0) by
    inverse CDF on a log-mass grid; R200m from 200 times the mean matter density; concentration from
    the Diemer & Joyce (2019) median c200m(M) with 0.14 dex lognormal scatter driven by a formation
    latent ``formation`` (earlier formation, larger value, higher c); minor-to-major axis ratio
    c/a = 0.54 (M/M*)^-0.05 + 0.1 ``shape`` (Allgood et al. 2006) with M* the nonlinear mass of the
    cosmology (sigma(M*) = 1.686, 10^12.63 Msun/h = 10^12.80 Msun for planck15 at z = 0), b/a uniform
    between c/a and 1; uniformly random orientations.
Particles
    NFW radii by the exact inverse of the enclosed mass (Lambert W), truncated at R200m; directions
    isotropic, then stretched by the axis ratios at fixed volume and rotated; velocities Gaussian and
    isotropic with the Jeans dispersion sigma_r(r) of an isotropic NFW halo, plus a small rotation
    about an axis near the minor axis with a lognormal Bullock spin (median 0.035, 0.23 dex);
    subhalos with dN/dln m ~ m^-0.9 hold 8-20 % of the mass (more for late formers; fewer in halos of
    under ~1000 particles, where few clumps are resolved), each an NFW clump at a radius drawn from
    the host profile, stripped to its Jacobi radius (so few survive near the centre), with a bulk
    velocity drawn from the host dispersion. The angular distribution is lopsided, density
    proportional to 1 + A(r) cos(theta) with A(r) = A0 exp(-(r / 0.7 R200m)^2) and
    A0 = 0.8 Phi(``offset``), uniform on [0, 0.8]: the centres of mass of the shells move off the
    centre (the potential minimum, kept at the catalog ``position``), most in the inner halo, while
    the radial profile stays exactly NFW. The whole-halo offset |x_cm| / R200m then spans 0 to 0.06
    (median 0.03), the range measured in simulated halos (Neto et al. 2007, who call halos with
    x_off < 0.07 relaxed); substructure adds its own offsets on top. Triaxial stretching moves a few
    per cent of the particles beyond R200m, as in real halos; M200m stays the drawn mass, which the
    particle masses sum to.
Catalog properties
    What a halo finder would record, measured from each halo's particles within R200m by
    :func:`sims.halos.properties.measure_halos` with Rockstar's definitions (stated there):
    ``concentration`` (the NFW maximum-likelihood fit, not the drawn c), Bullock ``spin``,
    ``sigma_v``, the iterative Allgood et al. (2006) ``b_to_a`` and ``c_to_a``, ``x_offset``,
    ``v_offset`` (against the catalog ``velocity``, the frame the particle velocities were drawn
    in), ``vmax``, ``virial_ratio`` (T/|U|, U by direct summation over pairs drawn from
    ``SeedSequence([seed, 2, halo_id])``) and ``r_half``. The drawn values (concentration, axis ratios,
    spin target) stay in :class:`HaloProperties` only.
Galaxies
    log10 M* = Behroozi et al. (2013) mean relation at log10 M200m
    + s_f ``formation`` - s_o u + s_s ``shape`` + s_n ``noise``, with u = sqrt(12) (A0 / 0.8 - 1/2) the
    standardised dipole amplitude (:func:`offset_score`); the latents are standard normal and
    independent, u has mean 0 and variance 1, and the pure-noise part s_n is irreducible. Defaults
    (0.12, 0.10, 0.05, 0.10) dex give 0.19 dex total at fixed mass.

Random streams: halo properties come from ``SeedSequence([seed, 0])``, the particles of halo i from
``SeedSequence([seed, 1, i])`` and the pairs drawn for its potential energy from
``SeedSequence([seed, 2, i])``, so a population can be generated in chunks of any size with an
identical result.

colossus writes caches under the home directory unless told not to: the cosmology is set with
``persistence=''`` and the concentration module's table cache is replaced by an in-memory one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal, overload

import numpy as np
import xarray as xr
from scipy.special import lambertw, ndtr

from sims.halos.catalog import HALOS_KIND, catalog_dataset
from sims.halos.properties import G_NEWTON, PROPERTIES, measure_halos, measured_properties

#: Behroozi, Wechsler & Conroy (2013, ApJ 770, 57) eqs. 3-4: (value at z = 0, a-term, z-term[, a-term 2]).
#: The z = 0 values (11.514, -1.777, -1.412, 3.508, 0.316) and the evolution terms (used only at
#: z > 0) agree with two independent public implementations; the paper's masses are Msun for h = 0.7,
#: its halo mass Mvir (Bryan & Norman 1998), its IMF Chabrier.
B13_PARAMETERS = {
    "log_m1": (11.514, -1.793, -0.251),
    "log_eps": (-1.777, -0.006, 0.000, -0.119),
    "alpha": (-1.412, 0.731, 0.0),
    "delta": (3.508, 2.608, -0.043),
    "gamma": (0.316, 1.319, 0.279),
}
LATENTS = ("formation", "offset", "shape", "noise")
#: Most halos a population may have: every per-halo property is held in memory, about 400 bytes a
#: halo (4 GB here), and the particles written some 100 kB a halo at the defaults (1 TB here).
MAX_HALOS = 10_000_000
#: Largest seed: the catalog stores seeds as int64 (numpy's SeedSequence would take more).
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class PopulationConfig:
    """Parameters of the synthetic population; every mass in Msun and length in kpc (physical, no h).

    ``log_mass_range`` is log10(M200m / Msun): the default (10.42, 13.67) is the TNG100 selection
    10.25 <= log10(M200m h / Msun) of docs/protocols.md#halos (up to 13.5) converted with h = 0.6774.
    Halos heavier than ``max_particles * particle_mass`` get heavier particles (``max_particles``
    each). The ``scatter_*`` values (dex) split the scatter of log10 M* at fixed halo mass into the
    parts driven by formation time (hence concentration), by the centre-of-mass offset, by
    shape, and pure noise; they add in quadrature.

    Other fields: ``particle_mass`` (Msun); ``concentration_scatter``, ``spin_scatter`` (dex);
    ``shape_norm``, ``shape_slope``, ``shape_scatter``, ``shape_min`` (c/a relation, its scatter and
    floor); ``offset_amplitude`` (largest dipole A0, 0..1) and ``offset_radius`` (its e-folding radius
    in R200m); ``sub_fraction_*`` (subhalo mass fraction: mean, change per unit formation latent,
    scatter, clip range); ``sub_slope`` (dN/dln m ~ m^-slope), ``sub_max_fraction`` (largest infall
    mass over M200m), ``sub_min_particles``; ``spin_median`` (Bullock lambda'), ``spin_misalignment``
    (tilt of the spin axis off the minor axis, median ~30 degrees at 0.5); ``bulk_velocity_dispersion``
    (km s^-1 per component); ``box_size_kpc`` (halo centres uniform in this box; the default is
    75 Mpc/h, TNG100).
    """

    n_halos: int = 20_000
    seed: int = 42
    log_mass_range: tuple[float, float] = (10.42, 13.67)
    cosmology: str = "planck15"
    redshift: float = 0.0
    mass_function_model: str = "tinker08"
    particle_mass: float = 1.0e8
    max_particles: int = 20_000
    concentration_model: str = "diemer19"
    concentration_scatter: float = 0.14
    shape_norm: float = 0.54
    shape_slope: float = -0.05
    shape_scatter: float = 0.1
    shape_min: float = 0.2
    offset_amplitude: float = 0.8
    offset_radius: float = 0.7
    sub_fraction_mean: float = 0.14
    sub_fraction_formation: float = 0.02
    sub_fraction_scatter: float = 0.02
    sub_fraction_range: tuple[float, float] = (0.08, 0.20)
    sub_slope: float = 0.9
    sub_max_fraction: float = 0.1
    sub_min_particles: int = 20
    spin_median: float = 0.035
    spin_scatter: float = 0.23
    spin_misalignment: float = 0.5
    bulk_velocity_dispersion: float = 250.0
    box_size_kpc: float = 110_717.0
    scatter_formation: float = 0.12
    scatter_offset: float = 0.10
    scatter_shape: float = 0.05
    scatter_noise: float = 0.10

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.n_halos <= MAX_HALOS:
            problems.append(f"n_halos must be between 1 and {MAX_HALOS:,}, got {self.n_halos}")
        if not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be an integer from 0 to 2**63 - 1 (stored as int64), got {self.seed}")
        lo, hi = self.log_mass_range
        if not lo < hi:
            problems.append(f"log_mass_range must be increasing (log10 Msun), got {self.log_mass_range}")
        if self.particle_mass <= 0 or self.max_particles < 1:
            problems.append("particle_mass must be positive and max_particles >= 1")
        if not 0 <= self.offset_amplitude <= 1:
            problems.append(f"offset_amplitude must lie in [0, 1] (a density dipole), got {self.offset_amplitude}")
        f_lo, f_hi = self.sub_fraction_range
        if not 0 <= f_lo <= f_hi < 1:
            problems.append(f"sub_fraction_range must satisfy 0 <= low <= high < 1, got {self.sub_fraction_range}")
        scatters = ("scatter_formation", "scatter_offset", "scatter_shape", "scatter_noise")
        scatters += ("concentration_scatter", "shape_scatter", "spin_scatter", "sub_fraction_scatter")
        negative = [n for n in scatters if getattr(self, n) < 0]
        if negative:
            problems.append(f"scatters must be non-negative: {negative}")
        if problems:
            raise ValueError("PopulationConfig: " + "; ".join(problems))

    @property
    def scatter_total(self) -> float:
        """Total scatter of log10 M* at fixed halo mass (dex): the parts in quadrature."""
        parts = (self.scatter_formation, self.scatter_offset, self.scatter_shape, self.scatter_noise)
        return float(np.sqrt(np.sum(np.square(parts))))

    def to_json(self) -> str:
        """The configuration as canonical JSON (for attributes and cache keys)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class HaloProperties:
    """Per-halo properties of a population, everything except the particles.

    Arrays are indexed by halo: ``M200m`` (Msun), ``R200m`` (kpc), ``concentration``, ``c_over_a``,
    ``b_over_a``, ``rotation`` (halo, 3, 3; columns are the major, intermediate and minor axes),
    ``position`` (kpc), ``velocity`` (km s^-1), ``particle_count``, ``particle_mass`` (Msun),
    ``sub_fraction`` (target subhalo mass fraction), ``offset_amplitude`` (A0 of the dipole),
    ``offset_direction`` (unit vectors), ``spin_target`` (Bullock lambda'), ``spin_axis`` (unit
    vectors), ``log_mstar`` and ``log_mstar_mean`` (log10 Msun). ``latents`` holds the standard
    normal latents ``formation``, ``offset``, ``shape``, ``noise`` (those that set M*) and the
    nuisances ``substructure`` and ``spin``.
    """

    halo_id: np.ndarray
    M200m: np.ndarray
    R200m: np.ndarray
    concentration: np.ndarray
    c_over_a: np.ndarray
    b_over_a: np.ndarray
    rotation: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    particle_count: np.ndarray
    particle_mass: np.ndarray
    sub_fraction: np.ndarray
    offset_amplitude: np.ndarray
    offset_direction: np.ndarray
    spin_target: np.ndarray
    spin_axis: np.ndarray
    log_mstar: np.ndarray
    log_mstar_mean: np.ndarray
    latents: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.M200m.size)


# -- colossus, without files ------------------------------------------------------------------


@contextmanager
def _colossus(cosmology_name: str) -> Iterator[Any]:
    """The named colossus cosmology, with every cache kept in memory; the previous one is restored."""
    from colossus.cosmology import cosmology
    from colossus.halo import concentration as conc
    from colossus.utils import storage

    previous = cosmology.current_cosmo
    cosmo = cosmology.setCosmology(cosmology_name, persistence="")
    # The diemer19 model caches its G(c) table through a module-level storage user that always
    # reads and writes ~/.colossus; an in-memory one computes the same table without touching disk.
    user = conc.storageUser
    if user is None or user.persistence_read or user.persistence_write:
        conc.storageUser = storage.StorageUser("halo.concentration", "", conc._getName, conc._getHash, None)
    try:
        yield cosmo
    finally:
        cosmology.current_cosmo = previous


@dataclass(frozen=True)
class _Tables:
    hubble: float
    rho_m: float  # mean matter density, Msun kpc^-3 (physical)
    log_mstar_nonlinear: float  # log10(M* / Msun)
    mf_log_m: np.ndarray
    mf_cdf: np.ndarray
    c_log_m: np.ndarray
    c_log_c: np.ndarray


@lru_cache(maxsize=8)
def _tables(
    cosmology_name: str, redshift: float, mf_model: str, c_model: str, log_lo: float, log_hi: float, log_c_lo: float
) -> _Tables:
    from colossus.halo import concentration
    from colossus.lss import mass_function, peaks

    with _colossus(cosmology_name) as cosmo:
        h = float(cosmo.h)
        rho_m = float(cosmo.rho_m(redshift)) * h**2  # Msun h^2 kpc^-3 -> Msun kpc^-3
        log_mstar = float(np.log10(peaks.nonLinearMass(redshift))) - np.log10(h)
        mf_log_m = np.linspace(log_lo, log_hi, 2049)
        dndlnm = mass_function.massFunction(10**mf_log_m * h, redshift, mdef="200m", model=mf_model, q_out="dndlnM")
        # dn/dlnM is the same density per unit ln M whatever the mass unit; trapezoid CDF.
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dndlnm[1:] + dndlnm[:-1]) * np.diff(mf_log_m))])
        c_log_m = np.linspace(min(log_c_lo, log_lo) - 0.5, log_hi + 0.5, 97)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # outside the model's calibrated range at small M
            c = concentration.concentration(10**c_log_m * h, "200m", redshift, model=c_model)
    return _Tables(
        hubble=h,
        rho_m=rho_m,
        log_mstar_nonlinear=log_mstar,
        mf_log_m=mf_log_m,
        mf_cdf=cdf / cdf[-1],
        c_log_m=c_log_m,
        c_log_c=np.log10(np.asarray(c, dtype=float)),
    )


def _config_tables(config: PopulationConfig) -> _Tables:
    log_c_lo = float(np.log10(config.sub_min_particles * config.particle_mass))
    lo, hi = config.log_mass_range
    return _tables(
        config.cosmology,
        float(config.redshift),
        config.mass_function_model,
        config.concentration_model,
        float(lo),
        float(hi),
        log_c_lo,
    )


def mass_function_cdf(config: PopulationConfig, log_m: np.ndarray) -> np.ndarray:
    """Cumulative distribution of log10(M200m / Msun) that the population samples (dimensionless)."""
    t = _config_tables(config)
    return np.interp(np.asarray(log_m, dtype=float), t.mf_log_m, t.mf_cdf)


def mean_log_concentration(config: PopulationConfig, log_m: np.ndarray) -> np.ndarray:
    """Median log10 c200m of the configured c(M) relation at log10(M200m / Msun) (interpolated table)."""
    t = _config_tables(config)
    return np.interp(np.asarray(log_m, dtype=float), t.c_log_m, t.c_log_c)


def nonlinear_mass(config: PopulationConfig) -> float:
    """The nonlinear mass M* (Msun), sigma(M*) = 1.686, of the configured cosmology and redshift."""
    return float(10 ** _config_tables(config).log_mstar_nonlinear)


def r200m(config: PopulationConfig, mass: np.ndarray) -> np.ndarray:
    """R200m (kpc, physical) of halos of mass M200m (Msun): 200 times the mean matter density inside."""
    rho_m = _config_tables(config).rho_m
    return np.cbrt(3.0 * np.asarray(mass, dtype=float) / (4.0 * np.pi * 200.0 * rho_m))


# -- galaxy-halo connection -------------------------------------------------------------------


def behroozi13_log_mstar(log_mhalo: np.ndarray, redshift: float = 0.0) -> np.ndarray:
    """Mean log10(M* / Msun) at halo mass log10(Mh / Msun), Behroozi et al. (2013) eqs. 3-4.

    log10 M* = log10(eps M1) + f(log10(Mh / M1)) - f(0),
    f(x) = -log10(10^(alpha x) + 1) + delta (log10(1 + e^x))^gamma / (1 + exp(10^-x)).
    Used here with Mh = M200m in physical Msun, although the paper's Mh is Mvir at h = 0.7: at z = 0
    M200m exceeds Mvir by 10-20 % and h = 0.6774 moves masses by 0.014 dex, together up to ~0.1 dex in
    M* where the relation is steep. Neglected: here it is the mean of a model population, not a fit.
    """
    a = 1.0 / (1.0 + redshift)
    nu = np.exp(-4.0 * a**2)
    p = B13_PARAMETERS

    def evolve(name: str) -> float:
        v0, va, vz = p[name][:3]
        return v0 + (va * (a - 1.0) + vz * redshift) * nu

    log_m1 = evolve("log_m1")
    log_eps = evolve("log_eps") + p["log_eps"][3] * (a - 1.0)
    alpha, delta, gamma = evolve("alpha"), evolve("delta"), evolve("gamma")

    def f(x: np.ndarray) -> np.ndarray:
        return -np.log10(10.0 ** (alpha * x) + 1.0) + delta * np.log10(1.0 + np.exp(x)) ** gamma / (
            1.0 + np.exp(10.0 ** (-x))
        )

    x = np.asarray(log_mhalo, dtype=float) - log_m1
    return log_eps + log_m1 + f(x) - f(np.zeros(()))


# -- NFW profiles -----------------------------------------------------------------------------


def nfw_mu(x: np.ndarray) -> np.ndarray:
    """Dimensionless NFW enclosed mass m(x) = ln(1 + x) - x / (1 + x), x = r / r_s."""
    x = np.asarray(x, dtype=float)
    return np.log1p(x) - x / (1.0 + x)


def nfw_inverse_mu(p: np.ndarray) -> np.ndarray:
    """The x with m(x) = p (exact: x = -1 / W0(-exp(-1 - p)) - 1, Lambert W principal branch)."""
    w = lambertw(-np.exp(-1.0 - np.asarray(p, dtype=float)), 0).real
    return np.maximum(-1.0 / w - 1.0, 0.0)


def _jeans_table() -> tuple[np.ndarray, np.ndarray]:
    """log x and log F(x), F(x) = x (1 + x)^2 int_x^inf m(y) / (y^3 (1 + y)^2) dy (isotropic NFW)."""
    ln_y = np.linspace(np.log(1e-7), np.log(1e5), 8001)
    y = np.exp(ln_y)
    integrand = nfw_mu(y) / (y**2 * (1.0 + y) ** 2)  # m / (y^3 (1+y)^2) times dy/dln y = y
    step = np.diff(ln_y)
    tail = np.concatenate([np.cumsum((0.5 * (integrand[1:] + integrand[:-1]) * step)[::-1])[::-1], [0.0]])
    tail[-1] = tail[-2] * 1e-3  # keeps the logarithm finite; the end of the table is dropped below
    f = y * (1.0 + y) ** 2 * tail
    keep = slice(0, -200)  # drop the end where the finite upper limit matters
    return ln_y[keep], np.log(f[keep])


_JEANS_LN_X, _JEANS_LN_F = _jeans_table()


def nfw_jeans_f(x: np.ndarray) -> np.ndarray:
    """F(x) of the isotropic NFW Jeans equation: sigma_r^2 = G M(<x_t) / (r_s m(x_t)) F(x)."""
    ln_x = np.log(np.clip(np.asarray(x, dtype=float), 1e-7, None))
    return np.exp(np.interp(ln_x, _JEANS_LN_X, _JEANS_LN_F))


def nfw_sigma_r(r: np.ndarray, mass: float, r_s: float, x_norm: float) -> np.ndarray:
    """Radial velocity dispersion (km s^-1) at radius r (kpc) of an isotropic NFW halo.

    ``mass`` (Msun) is the mass inside x_norm r_s (M200m and c for a host); the Jeans integral runs
    over the untruncated profile.
    """
    return np.sqrt(G_NEWTON * mass / (r_s * nfw_mu(x_norm)) * nfw_jeans_f(np.asarray(r) / r_s))


def _lopsided_directions(amplitude: np.ndarray, axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors with density (1 + A cos(theta)) / 4 pi about ``axis`` (A in [0, 1] per vector)."""
    n = amplitude.size
    u, phi = rng.random(n), rng.uniform(0.0, 2.0 * np.pi, n)
    # inverse CDF of (1 + A mu) / 2 on [-1, 1], written to stay exact at A = 0
    mu = (4.0 * u + amplitude - 2.0) / (1.0 + np.sqrt(1.0 - amplitude * (2.0 - amplitude - 4.0 * u)))
    mu = np.clip(mu, -1.0, 1.0)
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    sin = np.sqrt(1.0 - mu**2)
    return mu[:, None] * axis + (sin * np.cos(phi))[:, None] * e1 + (sin * np.sin(phi))[:, None] * e2


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _axes(c_over_a: float, b_over_a: float) -> np.ndarray:
    """Semi-axis stretches (a, b, c) with a b c = 1 (volume preserved)."""
    a = (1.0 / (b_over_a * c_over_a)) ** (1.0 / 3.0)
    return np.array([a, b_over_a * a, c_over_a * a])


def nfw_particles(
    n: int,
    mass: float,
    r200: float,
    concentration: float,
    rng: np.random.Generator,
    *,
    c_over_a: float = 1.0,
    b_over_a: float = 1.0,
    rotation: np.ndarray | None = None,
    dipole: float = 0.0,
    dipole_radius: float = 0.1,
    dipole_axis: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (kpc, about the centre) and velocities (km s^-1) of n particles of an NFW halo.

    Radii follow the NFW enclosed mass truncated at ``r200`` (kpc); directions are isotropic, lopsided
    by a density dipole of amplitude ``dipole * exp(-(r / (dipole_radius r200))^2)`` along
    ``dipole_axis``, then stretched at fixed volume to axis ratios (c/a, b/a) and rotated by
    ``rotation`` (columns: major, intermediate, minor axis). Velocities are isotropic Gaussians with
    the Jeans sigma_r at the unstretched radius. Also returns that unstretched radius (kpc).
    """
    r_s = r200 / concentration
    x = nfw_inverse_mu(rng.random(n) * nfw_mu(concentration))
    r = x * r_s
    if dipole > 0:
        axis = np.asarray(dipole_axis, dtype=float)
        directions = _lopsided_directions(dipole * np.exp(-((r / (dipole_radius * r200)) ** 2)), axis, rng)
    else:
        directions = _isotropic(n, rng)
    pos = directions * r[:, None] * _axes(c_over_a, b_over_a)
    if rotation is not None:
        pos = pos @ np.asarray(rotation).T
    sigma = nfw_sigma_r(r, mass, r_s, concentration)
    vel = rng.standard_normal((n, 3)) * sigma[:, None]
    return pos, vel, r


# -- halo properties --------------------------------------------------------------------------


def _rotations(q: np.ndarray) -> np.ndarray:
    """Rotation matrices from quaternions (normalised Gaussian 4-vectors: uniform on SO(3))."""
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def offset_score(latent: np.ndarray) -> np.ndarray:
    """The standardised dipole amplitude: A0 / A_max = Phi(latent) is uniform on [0, 1], so
    sqrt(12) (Phi(latent) - 1/2) has mean 0 and variance 1.

    The galaxy responds to this measurable amplitude rather than to the Gaussian latent behind it:
    Phi saturates in the tails, so no finite-particle estimate of A0 could recover the latent there,
    and a galaxy tied to the latent would carry scatter that no halo property explains.
    """
    return np.sqrt(12.0) * (ndtr(latent) - 0.5)


def sample_halo_properties(config: PopulationConfig) -> HaloProperties:
    """Every per-halo property and galaxy of the population, without particles (fast, vectorised)."""
    t = _config_tables(config)
    n = config.n_halos
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    # one draw per quantity in a fixed order; new quantities go last so existing populations replay
    u_mass = rng.random(n)
    lat = {name: rng.standard_normal(n) for name in LATENTS}
    lat["substructure"] = rng.standard_normal(n)
    lat["spin"] = rng.standard_normal(n)
    u_axis = rng.random(n)
    rotation = _rotations(rng.standard_normal((n, 4)))
    offset_direction = _isotropic(n, rng)
    spin_tilt = rng.standard_normal((n, 3))
    position = rng.random((n, 3)) * config.box_size_kpc
    velocity = rng.standard_normal((n, 3)) * config.bulk_velocity_dispersion

    log_m = np.interp(u_mass, t.mf_cdf, t.mf_log_m)
    mass = 10**log_m
    conc = 10 ** (mean_log_concentration(config, log_m) + config.concentration_scatter * lat["formation"])
    # Allgood et al. (2006): mass in units of the nonlinear mass (the ratio is h-independent)
    s_mean = config.shape_norm * (mass / 10**t.log_mstar_nonlinear) ** config.shape_slope
    c_over_a = np.clip(s_mean + config.shape_scatter * lat["shape"], config.shape_min, 0.99)
    b_over_a = c_over_a + (1.0 - c_over_a) * u_axis

    f_lo, f_hi = config.sub_fraction_range
    # late formers (negative formation latent) keep more of their accreted substructure
    sub_fraction = np.clip(
        config.sub_fraction_mean
        - config.sub_fraction_formation * lat["formation"]
        + config.sub_fraction_scatter * lat["substructure"],
        f_lo,
        f_hi,
    )
    spin_target = config.spin_median * 10 ** (config.spin_scatter * lat["spin"])
    spin_axis = rotation[:, :, 2] + config.spin_misalignment * spin_tilt
    spin_axis /= np.linalg.norm(spin_axis, axis=1, keepdims=True)

    count = np.clip(np.rint(mass / config.particle_mass), 1, config.max_particles).astype(np.int64)
    log_mstar_mean = behroozi13_log_mstar(log_m, config.redshift)
    log_mstar = (
        log_mstar_mean
        + config.scatter_formation * lat["formation"]
        - config.scatter_offset * offset_score(lat["offset"])
        + config.scatter_shape * lat["shape"]
        + config.scatter_noise * lat["noise"]
    )
    return HaloProperties(
        halo_id=np.arange(n, dtype=np.int64),
        M200m=mass,
        R200m=r200m(config, mass),
        concentration=conc,
        c_over_a=c_over_a,
        b_over_a=b_over_a,
        rotation=rotation,
        position=position,
        velocity=velocity,
        particle_count=count,
        particle_mass=mass / count,
        sub_fraction=sub_fraction,
        offset_amplitude=config.offset_amplitude * ndtr(lat["offset"]),
        offset_direction=offset_direction,
        spin_target=spin_target,
        spin_axis=spin_axis,
        log_mstar=log_mstar,
        log_mstar_mean=log_mstar_mean,
        latents=lat,
    )


# -- particles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Subhalos:
    mass: np.ndarray  # bound mass, Msun
    x_host: np.ndarray  # radius of the centre in host scale radii (unstretched)
    r_s: np.ndarray  # scale radius, kpc
    x_t: np.ndarray  # tidal radius in scale radii


def _subhalos(
    config: PopulationConfig, target: float, m_lo: float, host: tuple[float, float, float], rng: np.random.Generator
) -> _Subhalos:
    """Tidally stripped subhalos whose bound masses add up to ``target`` (Msun).

    Infall masses follow dN/dln m ~ m^-slope on [m_lo, sub_max_fraction M], centres the host NFW
    profile; each keeps the mass of its own NFW profile inside its Jacobi radius
    r_t = r (m(<r_t) / 3 M_host(<r))^(1/3), so clumps near the centre are stripped (the stripped mass
    stays in the smooth host). Clumps left below m_lo are dropped; the last one is trimmed to the
    remainder. Drawn in doubling batches (at most 65536 draws each, 24 batches) until the target is
    reached; none when no clump survives in the first 8176 draws.
    """
    mass, radius, conc = host
    m_hi = config.sub_max_fraction * mass
    empty = _Subhalos(*(np.empty(0),) * 4)
    if target < m_lo or m_hi < m_lo:
        return empty
    a, b = m_lo**-config.sub_slope, m_hi**-config.sub_slope
    kept: list[tuple[np.ndarray, ...]] = []
    total, batch = 0.0, 16
    for _ in range(24):
        m_inf = (a + rng.random(batch) * (b - a)) ** (-1.0 / config.sub_slope)
        x_sub = nfw_inverse_mu(rng.random(batch) * nfw_mu(conc))
        log_c = mean_log_concentration(config, np.log10(m_inf))
        c_sub = 10 ** (log_c + config.concentration_scatter * rng.standard_normal(batch))
        r_sub200 = r200m(config, m_inf)
        rs = r_sub200 / c_sub
        r_host = x_sub * radius / conc
        host_inside = mass * nfw_mu(x_sub) / nfw_mu(conc)
        r_t = r_sub200.copy()
        # loop invariants hoisted and nfw_mu inlined (the same float operations, so the same result)
        mu_sub, three_host = nfw_mu(c_sub), 3.0 * host_inside
        for _ in range(60):  # fixed point from above: converges to the outermost solution
            x_t = r_t / rs
            inside = m_inf * (np.log1p(x_t) - x_t / (1.0 + x_t)) / mu_sub
            r_t = np.minimum(r_host * np.cbrt(inside / three_host), r_sub200)
        bound = m_inf * nfw_mu(r_t / rs) / mu_sub
        ok = bound >= m_lo
        kept.append((bound[ok], x_sub[ok], rs[ok], r_t[ok] / rs[ok]))
        total += bound[ok].sum()
        if total == 0 and batch >= 4096:
            break  # clumps this close to the resolution limit never survive stripping (few-particle halos)
        batch = min(2 * batch, 2**16)  # bounded memory when survivors are rare
        if total >= target:
            break
    bound, x_sub, rs, x_t = (np.concatenate(parts) for parts in zip(*kept))
    if bound.size == 0:
        return empty
    cum = np.cumsum(bound)
    k = min(int(np.searchsorted(cum, target)), bound.size - 1)
    bound = bound[: k + 1].copy()
    bound[k] = min(bound[k], target - (cum[k - 1] if k > 0 else 0.0))
    n = k + 1 if bound[k] >= m_lo else k
    return _Subhalos(bound[:n], x_sub[:n], rs[:n], x_t[:n])


def halo_particles(
    config: PopulationConfig, props: HaloProperties, i: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Particles of halo ``i``: positions (kpc), velocities (km s^-1), masses (Msun), Bullock spin, sigma_v.

    Deterministic given (config.seed, i). The spin lambda' = |J| / (sqrt(2) M V200 R200) and the 1D
    velocity dispersion (km s^-1) are measured from the particles within R200m as the catalog's are
    (:func:`sims.halos.properties.measured_properties`).
    """
    pos, vel, masses = _particles(config, props, i)
    measured = measured_properties(
        pos, vel, masses, props.position[i], props.velocity[i], props.R200m[i], props.M200m[i],
        seed=config.seed, key=int(props.halo_id[i]),
    )  # fmt: skip
    return pos, vel, masses, measured["spin"], measured["sigma_v"]


def _particles(config: PopulationConfig, props: HaloProperties, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (kpc), velocities (km s^-1) and masses (Msun) of the particles of halo ``i``."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1, int(i)]))
    mass, radius, conc = float(props.M200m[i]), float(props.R200m[i]), float(props.concentration[i])
    count, m_p = int(props.particle_count[i]), float(props.particle_mass[i])
    rotation = props.rotation[i]
    axes = _axes(float(props.c_over_a[i]), float(props.b_over_a[i]))
    r_s = radius / conc

    subs = _subhalos(
        config, float(props.sub_fraction[i]) * mass, config.sub_min_particles * m_p, (mass, radius, conc), rng
    )
    sub_counts = np.rint(subs.mass / m_p).astype(np.int64)
    n_smooth = count - int(sub_counts.sum())

    pos, vel, _ = nfw_particles(
        n_smooth,
        mass,
        radius,
        conc,
        rng,
        c_over_a=float(props.c_over_a[i]),
        b_over_a=float(props.b_over_a[i]),
        rotation=rotation,
        dipole=float(props.offset_amplitude[i]),
        dipole_radius=config.offset_radius,
        dipole_axis=props.offset_direction[i],
    )
    # rotation about the spin axis, v_phi = kappa v_c(r) sin(theta), kappa set to the target spin
    axis = props.spin_axis[i]
    r_now = np.linalg.norm(pos, axis=1)
    x_c = np.minimum(r_now, radius) / r_s
    v_c = np.sqrt(G_NEWTON * mass * nfw_mu(x_c) / nfw_mu(conc) / np.maximum(r_now, 1e-12 * radius))
    lever = np.cross(axis, pos)
    weight = v_c / np.maximum(r_now, 1e-12 * radius)
    v200 = np.sqrt(G_NEWTON * mass / radius)
    j_unit = m_p * np.sum(weight * np.einsum("ij,ij->i", lever, lever))
    kappa = float(props.spin_target[i]) * np.sqrt(2.0) * mass * v200 * radius / j_unit if j_unit > 0 else 0.0
    vel = vel + kappa * weight[:, None] * lever

    if subs.mass.size:
        # centres follow the host's shape and orientation; bulk velocities the host's dispersion
        n_sub = subs.mass.size
        centres = (_isotropic(n_sub, rng) * (subs.x_host * r_s)[:, None] * axes) @ rotation.T
        bulk = rng.standard_normal((n_sub, 3)) * nfw_sigma_r(subs.x_host * r_s, mass, r_s, conc)[:, None]
        rep = np.repeat(np.arange(n_sub), sub_counts)
        x_t, rs_sub = subs.x_t[rep], subs.r_s[rep]
        x = nfw_inverse_mu(rng.random(rep.size) * nfw_mu(x_t))
        sub_pos = centres[rep] + _isotropic(rep.size, rng) * (x * rs_sub)[:, None]
        sigma = np.sqrt(G_NEWTON * subs.mass[rep] / (rs_sub * nfw_mu(x_t)) * nfw_jeans_f(x))
        sub_vel = bulk[rep] + rng.standard_normal((rep.size, 3)) * sigma[:, None]
        pos, vel = np.concatenate([pos, sub_pos]), np.concatenate([vel, sub_vel])

    return pos + props.position[i], vel + props.velocity[i], np.full(count, m_p)


# -- catalogs ---------------------------------------------------------------------------------


def _population_attrs(config: PopulationConfig, props: HaloProperties) -> dict[str, Any]:
    return {
        "kind": HALOS_KIND,
        "generator": "sims.halos.population",
        "population_config": config.to_json(),
        "population_seed": int(config.seed),
        "n_halos_total": int(config.n_halos),
        "cosmology": config.cosmology,
        "mass_function": f"{config.mass_function_model} dn/dlnM, M200m",
        "concentration_relation": f"{config.concentration_model} median c200m, {config.concentration_scatter} dex",
        "shmr": "Behroozi et al. 2013 eqs. 3-4, applied to M200m / Msun",
        "nonlinear_mass_msun": nonlinear_mass(config),
        "scatter_total_dex": config.scatter_total,
        "scatter_irreducible_dex": float(config.scatter_noise),
        "scatter_formation_dex": float(config.scatter_formation),
        "scatter_offset_dex": float(config.scatter_offset),
        "scatter_shape_dex": float(config.scatter_shape),
        "latent_names": list(LATENTS),
        "latent_std_realised": [float(np.std(props.latents[n])) for n in LATENTS],
        "log_mstar_residual_std_realised": float(np.std(props.log_mstar - props.log_mstar_mean)),
    }


def _chunk(config: PopulationConfig, props: HaloProperties, rows: range, attrs: dict[str, Any]) -> xr.Dataset:
    parts = [_particles(config, props, i) for i in rows]
    index = np.asarray(rows, dtype=np.int64)
    particles = {
        "particle_position": np.concatenate([p[0] for p in parts]),
        "particle_velocity": np.concatenate([p[1] for p in parts]),
        "particle_mass": np.concatenate([p[2] for p in parts]),
    }
    counts = np.array([p[2].size for p in parts], dtype=np.int64)
    measured = measure_halos(
        *particles.values(), counts, props.position[index], props.velocity[index], props.R200m[index],
        props.M200m[index], seed=config.seed, keys=props.halo_id[index],
    )  # fmt: skip
    halos = {
        "halo_id": props.halo_id[index],
        "M200m": props.M200m[index],
        "R200m": props.R200m[index],
        "position": props.position[index],
        "velocity": props.velocity[index],
        "particle_count": counts,
        **{name: measured[name] for name in PROPERTIES},
        "log_mstar": props.log_mstar[index],
    }
    info = {**attrs, "chunk_first_halo": int(rows.start), "chunk_n_halos": len(rows)}
    return catalog_dataset(
        halos,
        particles,
        source_format="synthetic",
        redshift=config.redshift,
        hubble=_config_tables(config).hubble,
        box_size_kpc=config.box_size_kpc,
        attrs=info,
        source="synthetic halo population",
    )


def iter_population(config: PopulationConfig, chunk_halos: int = 1000) -> Iterator[xr.Dataset]:
    """Canonical ``halos.catalog`` chunks of at most ``chunk_halos`` halos, in halo order.

    Only one chunk's particles are in memory at a time; each chunk is a complete catalog (offsets
    from 0) and the concatenation does not depend on ``chunk_halos``.
    """
    if chunk_halos < 1:
        raise ValueError(f"iter_population: chunk_halos must be >= 1, got {chunk_halos}")
    props = sample_halo_properties(config)
    attrs = _population_attrs(config, props)
    for start in range(0, len(props), chunk_halos):
        yield _chunk(config, props, range(start, min(start + chunk_halos, len(props))), attrs)


@overload
def generate_population(config: PopulationConfig, *, return_latents: Literal[False] = ...) -> xr.Dataset: ...
@overload
def generate_population(
    config: PopulationConfig, *, return_latents: Literal[True]
) -> tuple[xr.Dataset, dict[str, np.ndarray]]: ...
def generate_population(
    config: PopulationConfig, *, return_latents: bool = False
) -> xr.Dataset | tuple[xr.Dataset, dict[str, np.ndarray]]:
    """The whole population as one canonical ``halos.catalog`` (target ``log_mstar``).

    With ``return_latents`` also the per-halo latents (dict of arrays indexed by halo; the catalog
    kind has no place for them, its attributes only summarise them). For large populations use
    :func:`iter_population`.
    """
    props = sample_halo_properties(config)
    ds = _chunk(config, props, range(len(props)), _population_attrs(config, props))
    return (ds, dict(props.latents)) if return_latents else ds
