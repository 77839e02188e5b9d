"""Units: one pint registry for the project, and the dimension vectors of declared quantities.

Conventions of the registry, beyond pint's defaults:

- ``h`` is the dimensionless-in-practice Hubble parameter *little h*, kept as a base dimension of
  its own (``[little_h]``) so that quantities in ``ckpc/h`` or ``Msun/h`` cannot be mixed with
  physical ones without an explicit factor of h. Hours are ``hr`` or ``hour`` (as in yt/unyt).
- Comoving lengths ``cpc``, ``ckpc`` and ``cMpc`` carry the scale factor as a base dimension
  (``[scale_factor]``): one comoving kpc is ``a`` physical kpc.
- ``Msun`` (``M_sun``, ``solar_mass``) is the nominal solar mass.
- Offset units (degC, degF) are refused: units equivariance needs purely multiplicative units.

A system may also declare *independent units* (litres of water in the Rietkerk model): those count
as base dimensions of their own instead of being reduced to pint's dimensions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

import pint

from sims.declaration import DeclarationError, SystemDeclaration

_LITTLE_H = re.compile(r"(?<![\w.])h(?![\w])")
_MAX_DENOMINATOR = 1000


class UnitsError(DeclarationError):
    """A unit string that cannot be used; the message says where it came from."""


@functools.lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """The project's pint registry (created once; no cache written to disk)."""
    ureg = pint.UnitRegistry(preprocessors=[lambda s: _LITTLE_H.sub("little_h", s)], cache_folder=None)
    ureg.define("little_h = [little_h]")
    ureg.define("scale_factor = [scale_factor]")
    ureg.define("comoving_parsec = parsec * scale_factor = cpc")
    ureg.define("ckpc = 1e3 * comoving_parsec")
    ureg.define("cMpc = 1e6 * comoving_parsec")
    ureg.define("solar_mass = 1.98841e30 * kilogram = Msun = M_sun")
    return ureg


def parse(units: str, *, where: str = "units") -> pint.Quantity:
    """Parse a unit string (an optional numeric factor is allowed: ``1e10 Msun/h``)."""
    if not isinstance(units, str):
        raise UnitsError(f"{where}: units must be a string, got {type(units).__name__}")
    ureg = registry()
    try:
        value = ureg.parse_expression(units.strip() or "1")
    except Exception as exc:  # pint's parser raises many types (AssertionError, TokenError, ...) on garbage
        reason = f" ({exc})" if str(exc) else ""
        raise UnitsError(f"{where}: pint cannot parse units {units!r}{reason}") from None
    if not isinstance(value, pint.Quantity):
        value = ureg.Quantity(value, "")
    if any(not ureg.Quantity(1, name)._ok_for_muldiv() for name in value.units._units):  # degC, degF
        raise UnitsError(
            f"{where}: units {units!r} have an offset (like degC); use an absolute unit (kelvin) so "
            "that changes of units stay multiplicative"
        )
    return value


def _root_unit(name: str) -> str:
    """``milliliter`` -> ``liter``: the unit without its prefix."""
    ureg = registry()
    candidates = ureg.parse_unit_name(name)
    if not candidates:
        return name
    _, unit, _ = candidates[0]
    return unit


def _exact(exponent: float | Fraction, where: str) -> Fraction:
    value = Fraction(exponent).limit_denominator(_MAX_DENOMINATOR)
    if abs(float(value) - float(exponent)) > 1e-12:
        raise UnitsError(f"{where}: unit exponent {exponent} is not a simple fraction")
    return value


@functools.lru_cache(maxsize=4096)
def _independent_roots(independent: tuple[str, ...]) -> dict[str, str]:
    roots = {}
    for spelling in independent:
        unit = parse(spelling, where=f"independent unit {spelling!r}").units
        items = list(unit._units.items())
        if len(items) != 1 or items[0][1] != 1:
            raise UnitsError(f"independent unit {spelling!r}: expected a single unit such as 'l', got {unit}")
        roots[_root_unit(items[0][0])] = spelling
    return roots


@functools.lru_cache(maxsize=4096)
def dimension_vector(
    units: str, independent: tuple[str, ...] = (), where: str = "units"
) -> tuple[tuple[str, Fraction], ...]:
    """Exponents of base dimensions, e.g. ``(('[length]', 1), ('[time]', -1))``, sorted by name.

    Units in ``independent`` (and their prefixed forms: ml for l) count as base dimensions of their
    own, named ``[liter]`` and so on.
    """
    roots = _independent_roots(tuple(independent))
    ureg = registry()
    total: dict[str, Fraction] = {}
    for name, exponent in parse(units, where=where).units._units.items():
        exponent = _exact(exponent, where)
        root = _root_unit(name)
        if root in roots:
            parts: Mapping[str, float] = {f"[{root}]": 1}
        else:
            parts = ureg.get_dimensionality(name)
        for dim, power in parts.items():
            total[dim] = total.get(dim, Fraction(0)) + exponent * _exact(power, where)
    return tuple(sorted((dim, power) for dim, power in total.items() if power != 0))


def scale_factor(from_units: str, to_units: str, independent: Iterable[str] = (), *, where: str = "units") -> float:
    """The number that converts values in ``from_units`` into ``to_units``.

    Both must have the same dimensions, with the independent units counted separately (a
    litre of water is then not convertible to cubic metres).
    """
    independent = tuple(independent)
    source = dimension_vector(from_units, independent, where)
    target = dimension_vector(to_units, independent, where)
    if source != target:
        raise UnitsError(
            f"{where}: units {from_units!r} ({format_dimensions(source)}) cannot be converted to "
            f"{to_units!r} ({format_dimensions(target)})"
        )
    # both numeric factors count: 'Msun/h' -> '1e10 Msun/h' is 1e-10
    return float((parse(from_units, where=where) / parse(to_units, where=where)).to("dimensionless").magnitude)


def format_dimensions(vector: Iterable[tuple[str, Fraction]]) -> str:
    parts = [dim if power == 1 else f"{dim}^{power}" for dim, power in vector]
    return " ".join(parts) or "dimensionless"


@dataclass(frozen=True)
class CheckedDeclaration:
    """A declaration whose unit strings all parse, with each quantity's dimension vector."""

    declaration: SystemDeclaration
    dimensions: Mapping[str, tuple[tuple[str, Fraction], ...]]


def check_declaration(declaration: SystemDeclaration) -> CheckedDeclaration:
    """Parse every unit string of a declaration; raise one error listing every problem."""
    problems = []
    dimensions = {}
    independent = declaration.independent_units
    try:
        _independent_roots(independent)
    except UnitsError as exc:
        problems.append(str(exc))
        independent = ()  # still check every quantity's own units
    for q in declaration.quantities:
        try:
            dimensions[q.name] = dimension_vector(q.units, independent, f"quantity {q.name!r}")
        except UnitsError as exc:
            problems.append(str(exc))
    if problems:
        raise UnitsError(f"system {declaration.name!r}: " + "; ".join(problems))
    return CheckedDeclaration(declaration, dimensions)


def substitute_units(units: str, replacements: Mapping[str, str]) -> str:
    """``units`` with each unit symbol replaced (exponents kept): 'l d^-1 m^-2' with {'d': 'hour',
    'm': 'cm', 'l': 'ml'} gives 'ml hour^-1 cm^-2'. Works on space-separated products, the form
    declarations use."""
    out = []
    for token in units.split():
        base, caret, power = token.partition("^")
        out.append(replacements.get(base, base) + caret + power)
    return " ".join(out)


def change_units(dataset, replacements: Mapping[str, str], independent: Iterable[str] = ()):
    """A copy of an xarray dataset with every variable and coordinate that has a ``units`` attribute
    converted by :func:`substitute_units` (values multiplied by the conversion factor)."""
    independent = tuple(independent)
    out = dataset.copy()
    for name, var in dataset.variables.items():
        units = var.attrs.get("units")
        if not isinstance(units, str) or units.strip() in ("", "1"):
            continue
        target = substitute_units(units, replacements)
        if target == units:
            continue
        factor = scale_factor(units, target, independent, where=f"variable {name!r}")
        converted = var.copy(data=var.values * factor)
        converted.attrs = {**var.attrs, "units": target}
        if name in dataset.coords:
            out = out.assign_coords({name: converted})
        else:
            out[name] = converted
    return out
