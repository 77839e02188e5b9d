"""The unit registry and dimension vectors of declared quantities."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipeline.units import UnitsError, check_declaration, dimension_vector, parse, scale_factor
from sims.declaration import Kind, Quantity, Role, SystemDeclaration


def dims(units: str, independent: tuple[str, ...] = ()) -> dict[str, Fraction]:
    return dict(dimension_vector(units, independent))


def test_common_unit_strings_parse_to_their_dimensions():
    assert dims("l d^-1 m^-2") == {"[length]": 1, "[time]": -1}
    assert dims("kg m s^-1") == {"[mass]": 1, "[length]": 1, "[time]": -1}
    assert dims("1") == {} and dims("") == {}


def test_litres_can_be_an_independent_base_unit_with_prefixes():
    assert dims("l d^-1 m^-2", ("l",)) == {"[liter]": 1, "[time]": -1, "[length]": -2}
    assert dims("ml", ("l",)) == {"[liter]": 1}
    assert dims("g l^-1", ("l",)) == {"[mass]": 1, "[liter]": -1}


def test_cosmology_units_keep_little_h_and_the_scale_factor_apart():
    assert dims("ckpc/h") == {"[length]": 1, "[scale_factor]": 1, "[little_h]": -1}
    assert dims("1e10 Msun/h") == {"[mass]": 1, "[little_h]": -1}
    assert dims("km/s") == {"[length]": 1, "[time]": -1}
    assert dims("hr") == {"[time]": 1}  # hours are hr: h is little h
    assert scale_factor("ckpc", "cMpc") == pytest.approx(1e-3)
    with pytest.raises(UnitsError, match="cannot be converted"):
        scale_factor("ckpc/h", "kpc")


def test_conversion_factors_and_independent_units():
    assert scale_factor("g", "kg") == pytest.approx(1e-3)
    assert scale_factor("ml", "l", ("l",)) == pytest.approx(1e-3)
    assert scale_factor("l", "m^3") == pytest.approx(1e-3)
    with pytest.raises(UnitsError, match=r"'l'.*cannot be converted to 'm\^3'"):
        scale_factor("l", "m^3", ("l",))


def test_fractional_exponents_are_exact():
    assert dims("m^0.5 s^-1.5") == {"[length]": Fraction(1, 2), "[time]": Fraction(-3, 2)}


@pytest.mark.parametrize(
    "units, message",
    [("furlongs_per_blorp", "pint cannot parse"), ("degC", "offset"), ("m ** ", "pint cannot parse")],
)
def test_bad_units_are_refused_with_the_quantity_named(units, message):
    decl = SystemDeclaration("toy", (Quantity("x", "m"), Quantity("y", units)))
    with pytest.raises(UnitsError, match=message) as info:
        check_declaration(decl)
    assert "quantity 'y'" in str(info.value) and "system 'toy'" in str(info.value)


def test_check_declaration_lists_every_problem():
    decl = SystemDeclaration(
        "toy", (Quantity("x", "blorp"), Quantity("y", "zorp", Kind.SCALAR, Role.STATE)), independent_units=("m s",)
    )
    with pytest.raises(UnitsError) as info:
        check_declaration(decl)
    text = str(info.value)
    assert "'x'" in text and "'y'" in text and "independent unit" in text


def test_parse_returns_factor_and_units():
    value = parse("1e10 Msun/h")
    assert value.magnitude == pytest.approx(1e10)


def test_numeric_factors_count_on_both_sides():
    assert scale_factor("Msun/h", "1e10 Msun/h") == pytest.approx(1e-10)
    assert scale_factor("1e10 Msun/h", "1e10 Msun/h") == 1.0
    assert scale_factor("1e10 Msun/h", "Msun/h") == pytest.approx(1e10)
