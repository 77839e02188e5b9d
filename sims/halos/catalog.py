"""Dark-matter halos (docs/protocols.md#halos): the canonical halo catalog every reader and generator writes.

A catalog (kind ``halos.catalog``) holds, per halo, its catalog properties and, optionally, as flat
arrays with per-halo offsets and counts (the layout of simulation catalogs), its dark-matter particles:

- per halo (dim ``halo``): ``halo_id`` (int64), ``M200m`` (Msun), ``R200m`` (kpc), ``position``
  (halo, space) the centre in kpc, ``velocity`` (halo, space) the bulk velocity in km s^-1;
  optional catalog properties (:data:`CATALOG_PROPERTIES`: concentration, Bullock spin, velocity
  dispersion, axis ratios, centre and velocity offsets, Vmax, T/|U|, half-mass radius) and
  optional targets, e.g. ``log_mstar`` (log10 of the stellar mass in Msun, units "1"), named in
  :data:`TARGETS`.
- the particles, all of :data:`PARTICLE_FIELDS` or none of them (a catalog without particles, as
  halo finders publish them): ``particle_offset`` and ``particle_count`` (int64, per halo);
  per particle (dim ``particle``): ``particle_position`` (particle, space) in kpc, physical and
  unwrapped around its halo's centre (no periodic jumps inside a halo), ``particle_velocity``
  (particle, space) in km s^-1 (peculiar, physical), ``particle_mass`` in Msun. With particles,
  every halo has at least one.
- attributes: ``source_format`` (tng, rockstar, ctrees, hdf5, synthetic ...), ``redshift``,
  ``hubble`` (h); optional ``box_size_kpc`` and ``particle_mass_msun`` (the simulation's particle
  mass, for catalogs that give it).

Units are physical, without little h; readers convert (comoving kpc/h, 1e10 Msun/h, sqrt(a) km/s)
and say so in ``units`` attributes. The particles of halo i are rows
``particle_offset[i] : particle_offset[i] + particle_count[i]``, offsets contiguous and increasing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import dask
import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, check_dataset, register_schema

HALOS_KIND = "halos.catalog"
SPACE = ("x", "y", "z")
HALO_UNITS = {
    "halo_id": "1",
    "M200m": "Msun",
    "R200m": "kpc",
    "position": "kpc",
    "velocity": "km s^-1",
    "particle_offset": "1",
    "particle_count": "1",
    "concentration": "1",
    "spin": "1",
    "sigma_v": "km s^-1",
    "b_to_a": "1",
    "c_to_a": "1",
    "x_offset": "kpc",
    "v_offset": "km s^-1",
    "vmax": "km s^-1",
    "virial_ratio": "1",
    "r_half": "kpc",
}
PARTICLE_UNITS = {"particle_position": "kpc", "particle_velocity": "km s^-1", "particle_mass": "Msun"}
REQUIRED = ("halo_id", "M200m", "R200m", "position", "velocity")
#: The particles: a catalog holds all of these or none.
PARTICLE_FIELDS = ("particle_offset", "particle_count", *PARTICLE_UNITS)
#: What halo finders measure besides mass, radius, position and velocity, with the definitions the
#: canonical catalog uses (readers convert theirs to these).
CATALOG_PROPERTIES = {
    "concentration": "R200m / Rs, Rs the NFW scale radius",
    "spin": "Bullock lambda' = |J| / (sqrt(2) M V R) within the halo radius",
    "sigma_v": "1-D velocity dispersion (3-D rms speed / sqrt(3))",
    "b_to_a": "second over first axis of the shape ellipsoid (0: not measured)",
    "c_to_a": "third over first axis of the shape ellipsoid (0: not measured)",
    "x_offset": "distance from the centre to the mean position of the halo's particles",
    "v_offset": "speed of the halo's bulk velocity relative to the mean velocity of its particles",
    "vmax": "maximum circular velocity sqrt(G M(<r) / r)",
    "virial_ratio": "T / |U|, kinetic over potential energy of the bound particles",
    "r_half": "radius enclosing half of the halo mass",
}
OPTIONAL = tuple(CATALOG_PROPERTIES)
#: Catalog properties that may be 0 (a halo finder writes 0 for a quantity it could not measure).
NON_NEGATIVE = ("spin", "sigma_v", "b_to_a", "c_to_a", "x_offset", "v_offset", "vmax", "virial_ratio", "r_half")
TARGETS = {
    "log_mstar": "log10 stellar mass / Msun",
    "log_ssfr": "log10 specific star formation rate / yr^-1",
    "log_rhalf": "log10 stellar half-mass radius / kpc",
    "color_gr": "g - r colour (mag)",
    "log_mbh": "log10 black-hole mass / Msun",
}
VECTORS = ("position", "velocity", "particle_position", "particle_velocity")


class HaloCatalogError(ValueError):
    """A halo catalog that cannot be used; the message names the file, the field and the expectation."""


class HaloOptionError(HaloCatalogError):
    """An option that does not apply to the chosen format, or is out of range: a usage error (the
    command line exits with status 2 and names the option), not a problem of the file."""


class HaloInputWarning(UserWarning):
    """Something of an input catalog that is used as it is, or left out, and said (the command line
    prints it as a 'warning:' line)."""


class NegativeRedshiftWarning(HaloInputWarning):
    """A snapshot slightly after a = 1 (an integrator stepping past z = 0): accepted, but said."""


#: Redshifts below this (scale factors above 2) are refused; between it and 0 they are warned about.
MIN_REDSHIFT = -0.5
#: Largest h = H0 / (100 km/s/Mpc) accepted: H0 given in place of h (67.74 for 0.6774) is refused.
MAX_HUBBLE = 2.0
_INT64 = (-(2**63), 2**63 - 1)


def _expectation(integer: bool, low: float | None, high: float | None, low_open: bool) -> str:
    what = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low:g}"
    return f"{what} <= {high:g}" if high is not None else what


def scalar_value(value: Any, where: str) -> Any:
    """A scalar attribute as a Python value: numpy scalars and 1-element arrays (how netCDF writers,
    xarray's included, store numbers) unwrapped; bytes decoded as UTF-8. Raises naming ``where``."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise HaloCatalogError(f"{where} holds {value.size} values {value.ravel()[:5].tolist()}; expected one")
        value = value.ravel()[0]
    if isinstance(value, np.void):
        value = bytes(value)
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise HaloCatalogError(
                f"{where} holds binary data {bytes(value)[:16]!r}, not UTF-8 text; expected text or a number"
            ) from None
    return value.item() if isinstance(value, np.generic) else value


def checked_number(
    value: Any,
    where: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    text: bool = False,
    error: type[HaloCatalogError] = HaloCatalogError,
) -> Any:
    """``value`` (a header field, an attribute, an option) as a float, or an int with ``integer``.

    Refused with ``error`` naming ``where`` (file and field, or the option) and the expectation unless
    it is a real number (``text``: also a string that parses as one), finite, integer-valued with
    ``integer``, and within ``[low, high]`` (``(low, high]`` with ``low_open``). 1-element arrays and
    numpy scalars are unwrapped (:func:`scalar_value`).
    """
    expected = _expectation(integer, low, high, low_open)
    raw = scalar_value(value, where)
    shown = raw if text and isinstance(raw, str) else repr(raw)
    number = raw
    if text and isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            raise error(f"{where} = {shown}: not a number; expected {expected}") from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise error(f"{where} = {shown} (a {type(raw).__name__}): expected {expected}")
    if not math.isfinite(number):
        raise error(f"{where} = {shown}: expected {expected}")
    if integer:
        if number != int(number) or not _INT64[0] <= number <= _INT64[1]:
            raise error(f"{where} = {shown}: expected {expected} (integer-valued, 64-bit)")
        number = int(number)
    if (low is not None and (number < low or (low_open and number == low))) or (high is not None and number > high):
        raise error(f"{where} = {shown}: expected {expected}")
    return number if integer else float(number)


def checked_values(
    values: Any,
    where: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    ids: np.ndarray | None = None,
) -> np.ndarray:
    """An array field (a column, a dataset) checked as :func:`checked_number` checks one value; the
    error names ``where``, how many values are bad and the first of them (by ``ids`` when given, e.g.
    halo IDs, else by index). Returns int64 values with ``integer``, else float64."""
    array = np.asarray(values)
    expected = _expectation(integer, low, high, low_open)
    if array.dtype.kind not in "iuf":
        raise HaloCatalogError(f"{where} has dtype {array.dtype}; expected {expected}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(array) if array.dtype.kind == "f" else np.zeros(array.shape, bool)
        if integer and array.dtype.kind == "f":
            bad |= (array != np.round(array)) | (array < _INT64[0]) | (array >= 2.0**63)
        if array.dtype.kind == "u" and array.dtype.itemsize == 8:
            bad |= array > _INT64[1]  # would wrap to negative as int64
        if low is not None:
            bad |= (array <= low) if low_open else (array < low)
        if high is not None:
            bad |= array > high
    if bad.ndim > 1:
        bad = bad.reshape(len(bad), -1).any(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5]
        label = "ID" if ids is not None else "index"
        found = np.asarray(array)[rows].tolist()
        at = (np.asarray(ids)[rows] if ids is not None else rows).tolist()
        raise HaloCatalogError(f"{where}: {int(bad.sum())} value(s) not {expected} (first {found} at {label} {at})")
    return array.astype(np.int64 if integer else np.float64)


def checked_redshift(value: Any, where: str, *, scale_factor: bool = False, text: bool = False) -> float:
    """A snapshot's redshift (with ``scale_factor``: its a = 1 / (1 + z)), returned as read.

    Refused when not finite, when a <= 0, and below :data:`MIN_REDSHIFT` (a > 2: no simulation gets
    there). A small negative redshift is real data (an integrator stepping past a = 1, as gevolution
    does) and is accepted with a :class:`NegativeRedshiftWarning` naming ``where`` and the value.
    """
    if scale_factor:
        a = checked_number(value, where, low=0.0, high=1.0 / (1.0 + MIN_REDSHIFT), low_open=True, text=text)
        z = 1.0 / a - 1.0
    else:
        a = z = checked_number(value, where, low=MIN_REDSHIFT, text=text)
    if z < 0:
        warnings.warn(
            f"{where} = {a:g}: a negative redshift z = {z:.4g} (a snapshot after a = 1); accepted as it is",
            NegativeRedshiftWarning,
            stacklevel=2,
        )
    return a


def _dims(name: str) -> tuple[str, ...]:
    base = (
        ("particle",)
        if name.startswith("particle_") and name not in ("particle_offset", "particle_count")
        else ("halo",)
    )
    return (*base, "space") if name in VECTORS else base


def has_particles(ds: xr.Dataset) -> bool:
    """Whether a catalog holds its particles (all of :data:`PARTICLE_FIELDS`), not halo properties only."""
    return all(name in ds for name in PARTICLE_FIELDS)


def check_catalog(ds: xr.Dataset) -> list[str]:
    """Problems of a halo catalog, each a sentence naming the variable (empty list: fine)."""
    problems = [f"{name}: missing (required)" for name in REQUIRED if name not in ds]
    present = [name for name in PARTICLE_FIELDS if name in ds]
    if present and len(present) < len(PARTICLE_FIELDS):
        missing = [name for name in PARTICLE_FIELDS if name not in ds]
        problems.append(
            f"{', '.join(missing)}: missing; a catalog holds all of {', '.join(PARTICLE_FIELDS)} (its particles) "
            f"or none of them, this one has {', '.join(present)}"
        )
    if problems:
        return problems
    particles = bool(present)
    # reductions, not .values: on a lazily opened catalog they run chunk by chunk in bounded memory, all
    # in one pass of the scheduler (one compute per reduction costs more than the reductions on small files)
    floats = [n for n in (*REQUIRED, *OPTIONAL, *PARTICLE_FIELDS, *TARGETS) if n in ds and ds[n].dtype.kind == "f"]
    positive = [n for n in ("M200m", "R200m", "particle_mass", *OPTIONAL) if n in ds and ds.sizes.get(ds[n].dims[0], 0)]
    ratios = [n for n in ("b_to_a", "c_to_a") if n in ds and ds.sizes.get("halo", 0)]
    reductions = [(~np.isfinite(ds[n])).sum() for n in floats] + [ds[n].min() for n in positive]
    reductions += [ds[n].max() for n in ratios]
    computed = iter(dask.compute(*reductions))
    nonfinite = {n: int(next(computed)) for n in floats}
    smallest = {n: float(next(computed)) for n in positive}
    largest = {n: float(next(computed)) for n in ratios}
    problems += [f"{n}: {count} NaN or infinite value(s)" for n, count in nonfinite.items() if count]
    for name in ("M200m", "R200m", "particle_mass", *OPTIONAL):
        if name not in ds:  # the particles and the catalog properties are optional
            continue
        low = smallest.get(name, np.inf)
        # a halo finder writes 0 for what it could not measure (Rockstar: Vrms, spins, shapes of small halos)
        non_negative = name in NON_NEGATIVE
        if not nonfinite.get(name) and (low < 0 if non_negative else low <= 0):
            problems.append(f"{name}: values must be {'>= 0' if non_negative else 'positive'}, found {low:.6g}")
    for name in ratios:
        if not nonfinite.get(name) and largest[name] > 1.0:
            problems.append(f"{name}: an axis ratio is at most 1, found {largest[name]:.6g}")
    for name in ("halo_id", "particle_offset", "particle_count") if particles else ("halo_id",):
        try:  # the casts below would truncate 30.4 to 30
            checked_values(ds[name].values, name, integer=True)
        except HaloCatalogError as exc:
            problems.append(str(exc))
    if problems:
        return problems
    ids = ds["halo_id"].values
    if np.unique(ids).size != ids.size:
        problems.append("halo_id: ids must be unique")
    if not particles:
        if ds.sizes.get("particle", 0):
            problems.append(f"particle: {ds.sizes['particle']} particle rows but no particle fields")
        return problems
    counts = ds["particle_count"].values.astype(np.int64)
    offsets = ds["particle_offset"].values.astype(np.int64)
    if (counts <= 0).any():
        empty = ds["halo_id"].values[counts <= 0][:5].tolist()
        problems.append(
            f"particle_count: {int((counts <= 0).sum())} empty halo(s) (halo_id {empty}); every halo needs particles"
        )
    expected = np.concatenate([[0], np.cumsum(counts)[:-1]]) if counts.size else counts
    if not np.array_equal(offsets, expected):
        problems.append("particle_offset: offsets must be contiguous (offset[i + 1] = offset[i] + count[i], from 0)")
    if int(counts.sum()) != ds.sizes.get("particle", 0):
        problems.append(
            f"particle_count: counts sum to {int(counts.sum())} but there are {ds.sizes.get('particle', 0)} particles"
        )
    return problems


register_schema(
    DatasetSchema(
        kind=HALOS_KIND,
        description="halo catalog: per-halo properties and, optionally, DM particles as flat arrays with offsets "
        "and counts",
        variables={
            **{n: VariableSpec(dims=_dims(n), units=HALO_UNITS[n]) for n in REQUIRED},
            **{n: VariableSpec(dims=_dims(n), units=HALO_UNITS[n], required=False) for n in OPTIONAL},
            **{
                n: VariableSpec(dims=_dims(n), units=HALO_UNITS.get(n) or PARTICLE_UNITS[n], required=False)
                for n in PARTICLE_FIELDS
            },
            **{n: VariableSpec(dims=("halo",), units="1", required=False) for n in TARGETS},
        },
        attrs=("source_format",),
        check=check_catalog,
    )
)


def catalog_dataset(
    halos: Mapping[str, Any],
    particles: Mapping[str, Any] | None,
    *,
    source_format: str,
    redshift: float = 0.0,
    hubble: float = 0.6774,
    box_size_kpc: float | None = None,
    attrs: Mapping[str, Any] = (),
    source: str = "catalog",
) -> xr.Dataset:
    """A checked ``halos.catalog`` dataset from arrays in the canonical units.

    ``halos`` maps REQUIRED (and any OPTIONAL or TARGETS) names to arrays, and ``particle_count``
    when there are particles (``particle_offset`` may be left out: computed from the counts).
    ``particles`` maps the PARTICLE_UNITS names to arrays, or is None (or empty) for a catalog
    without particles.
    Raises :class:`HaloCatalogError` naming ``source`` and every problem.
    """
    halos = dict(halos)
    particles = dict(particles or {})
    if "particle_offset" not in halos and "particle_count" in halos:
        counts = np.asarray(halos["particle_count"], dtype=np.int64)
        halos["particle_offset"] = (
            np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if counts.size else counts
        )
    unknown = sorted(set(halos) - set(HALO_UNITS) - set(TARGETS)) + sorted(set(particles) - set(PARTICLE_UNITS))
    if unknown:
        raise HaloCatalogError(f"{source}: unknown field(s) {unknown}")
    missing = [n for n in REQUIRED if n not in halos]
    if particles or "particle_count" in halos:
        missing += [n for n in PARTICLE_FIELDS if n not in halos and n not in particles]
    if missing:
        raise HaloCatalogError(f"{source}: missing field(s) {missing}")
    data = {}
    for name, values in (*halos.items(), *particles.items()):
        array = np.asarray(values)
        dims = _dims(name)
        if array.ndim != len(dims) or (len(dims) == 2 and array.shape[1] != 3):
            raise HaloCatalogError(f"{source}: {name} must be shaped ({', '.join(dims)}), got {array.shape}")
        integer = name in ("halo_id", "particle_offset", "particle_count")
        # a cast would truncate 30.4 to 30 and wrap NaN: integer fields must hold integers
        array = checked_values(array, f"{source}: {name}", integer=True) if integer else array.astype(np.float64)
        units = TARGETS.get(name) and "1" or HALO_UNITS.get(name) or PARTICLE_UNITS[name]
        extra = {"long_name": TARGETS[name]} if name in TARGETS else {}
        data[name] = (dims, array, {"units": units, **extra})
    info = {"source_format": source_format, "redshift": float(redshift), "hubble": float(hubble), **dict(attrs)}
    if box_size_kpc is not None:
        info["box_size_kpc"] = float(box_size_kpc)
    ds = xr.Dataset(data, coords={"space": list(SPACE)}, attrs=info)
    # the whole schema (attributes too), so a bad chunk is named by its source, not by the file it goes to
    problems = check_dataset(ds, HALOS_KIND)
    if problems:
        raise HaloCatalogError(f"{source}: " + "; ".join(problems))
    return ds


def chunk_bounds(counts: np.ndarray, chunk_halos: int, chunk_particles: int) -> Iterator[tuple[int, int, int, int]]:
    """(first halo, end halo, first particle, end particle) of each chunk of contiguous halos: at most
    ``chunk_halos`` halos and ``chunk_particles`` particles (a heavier halo makes a chunk of its own)."""
    ends = np.cumsum(counts, dtype=np.int64)
    starts = ends - counts
    i0 = 0
    while i0 < counts.size:
        fits = int(np.searchsorted(ends, starts[i0] + chunk_particles, side="right"))
        i1 = min(i0 + chunk_halos, max(fits, i0 + 1), counts.size)
        yield i0, i1, int(starts[i0]), int(ends[i1 - 1])
        i0 = i1


def halo_particles(ds: xr.Dataset, i: int) -> dict[str, np.ndarray]:
    """Positions relative to the centre (kpc), velocities (km s^-1) and masses (Msun) of halo ``i``."""
    start = int(ds["particle_offset"].values[i])
    stop = start + int(ds["particle_count"].values[i])
    rows = slice(start, stop)
    return {
        "x": ds["particle_position"].values[rows] - ds["position"].values[i],
        "v": ds["particle_velocity"].values[rows],
        "m": ds["particle_mass"].values[rows],
    }


def subsample_catalog(
    ds: xr.Dataset, factor: float, seed: int, *, halos: np.ndarray | None = None, min_particles: int = 10
) -> xr.Dataset:
    """The catalog at lower resolution: each halo keeps ``round(count / factor)`` of its particles.

    ``halos``: positions (not ids) of the halos to take, in that order (default: all of them).

    Particles are drawn without replacement, independently per halo (``SeedSequence([seed, halo_id])``,
    so the draw of a halo does not depend on the others), each kept particle's mass multiplied by
    ``count / kept`` so a halo's particle mass is unchanged (exactly for equal-mass particles, on
    average otherwise), as in a simulation run with heavier particles. Halos left with fewer than ``min_particles`` kept particles within R200m of their
    centre are dropped (the scalars need that many); the attribute ``subsample_dropped`` counts them.
    Kept particles stay in their original order. ``ds`` may be opened lazily: only the taken halos'
    particles are read. Returns a checked ``halos.catalog`` in memory.
    """
    if not factor >= 1:
        raise ValueError(f"subsample_catalog: factor must be >= 1, got {factor!r}")
    # per-halo rows are read one halo at a time, so a lazily opened catalog stays on disk
    counts = ds["particle_count"].values.astype(np.int64)
    offsets = ds["particle_offset"].values.astype(np.int64)
    ids = ds["halo_id"].values.astype(np.int64)
    centres, radii = ds["position"].values, ds["R200m"].values
    taken = np.arange(counts.size) if halos is None else np.asarray(halos, dtype=np.int64)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in PARTICLE_UNITS}
    kept_halos: list[int] = []
    kept_counts: list[int] = []
    for i in taken:
        start, count = int(offsets[i]), int(counts[i])
        n_keep = max(1, round(count / factor))
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(ids[i]) % 2**63]))
        rows = np.sort(rng.choice(count, size=n_keep, replace=False))
        halo = {n: np.asarray(ds[n][start : start + count].values)[rows] for n in PARTICLE_UNITS}
        d = halo["particle_position"] - centres[i]
        if int((np.einsum("ij,ij->i", d, d) < radii[i] ** 2).sum()) < min_particles:
            continue
        halo["particle_mass"] = halo["particle_mass"] * (count / n_keep)
        for n in PARTICLE_UNITS:
            parts[n].append(halo[n])
        kept_halos.append(int(i))
        kept_counts.append(n_keep)
    if not kept_halos:
        raise HaloCatalogError(
            f"subsample_catalog: no halo keeps {min_particles} particles within R200m at factor {factor}"
        )
    index = np.asarray(kept_halos)
    per_halo = {n: ds[n].values[index] for n in ds.data_vars if ds[n].dims[0] == "halo" and n != "particle_offset"}
    per_halo["particle_count"] = np.asarray(kept_counts, dtype=np.int64)
    particles = {n: np.concatenate(v) for n, v in parts.items()}
    info = {k: v for k, v in ds.attrs.items() if k not in ("source_format", "redshift", "hubble", "box_size_kpc")}
    info.update(
        subsample_factor=float(factor),
        subsample_seed=int(seed),
        subsample_dropped=int(taken.size - index.size),
    )
    return catalog_dataset(
        per_halo,
        particles,
        source_format=str(ds.attrs.get("source_format", "hdf5")),
        redshift=float(ds.attrs.get("redshift", 0.0)),
        hubble=float(ds.attrs.get("hubble", 0.6774)),
        box_size_kpc=ds.attrs.get("box_size_kpc"),
        attrs=info,
        source="subsampled catalog",
    )
