"""System declarations: structure errors are caught where the system is declared."""

from __future__ import annotations

import json

import pytest

from sims.declaration import (
    DeclarationError,
    Kind,
    Quantity,
    Role,
    SystemDeclaration,
    find_system,
    load_builtin_systems,
)


def test_builtin_systems_are_registered_and_their_units_parse():
    from pipeline.units import check_declaration

    systems = {d.name: d for d in load_builtin_systems()}
    assert {"spring_pendulum", "rietkerk"} <= set(systems)
    for declaration in systems.values():
        check_declaration(declaration)
    assert find_system("rietkerk").independent_units == ("l",)
    with pytest.raises(DeclarationError, match="no system named 'nope'"):
        find_system("nope")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Quantity("2x", "m"), "identifier"),
        (lambda: Quantity("x", "m", kind="spinor"), "kind 'spinor'"),
        (lambda: Quantity("x", "m", role="input"), "role 'input'"),
        (lambda: Quantity("x", 3), "units must be a string"),
        (lambda: SystemDeclaration("s", ()), "declares no quantities"),
        (lambda: SystemDeclaration("s", (Quantity("x", "m"), Quantity("x", "s"))), "declared twice: x"),
        (lambda: SystemDeclaration("s", (Quantity("x", "m"),), symmetry="U(1)"), "symmetry 'U\\(1\\)'"),
        (lambda: SystemDeclaration("s", (Quantity("v", "m", Kind.VECTOR),)), "need a symmetry group"),
        (lambda: SystemDeclaration("s", (Quantity("v", "m", Kind.POSITION),), symmetry="O(3)"), "translate"),
    ],
)
def test_bad_declarations_say_what_is_wrong(build, message):
    with pytest.raises(DeclarationError, match=message):
        build()


def test_groups_and_dimensions():
    q = (Quantity("v", "m", Kind.VECTOR),)
    assert (SystemDeclaration("s", q, symmetry="O(3)").group, SystemDeclaration("s", q, symmetry="O(3)").space_dim) == (
        "O",
        3,
    )
    assert SystemDeclaration("s", q, symmetry="O(1,3)").space_dim == 4
    assert SystemDeclaration("s", q, symmetry="O(1,3)").group == "Lorentz"
    assert SystemDeclaration("s", q, symmetry="SE(2)").group == "SE"


def test_json_round_trip_and_errors():
    decl = find_system("spring_pendulum")
    again = SystemDeclaration.from_dict(json.loads(decl.to_json()))
    assert again == decl
    with pytest.raises(DeclarationError, match="mine.json: unknown fields colour"):
        SystemDeclaration.from_dict({"name": "x", "quantities": [], "colour": 1}, source="mine.json")
    with pytest.raises(DeclarationError, match=r"quantities\[0\] needs at least 'name' and 'units'"):
        SystemDeclaration.from_dict({"name": "x", "quantities": [{"name": "a"}]})
    with pytest.raises(DeclarationError, match="decl.json: system .x.: quantity names declared twice"):
        SystemDeclaration.from_dict(
            {"name": "x", "quantities": [{"name": "a", "units": "m"}, {"name": "a", "units": "m"}]}, source="decl.json"
        )


def test_select_by_role_and_kind():
    decl = find_system("spring_pendulum")
    assert [q.name for q in decl.select(roles=(Role.TARGET,))] == ["H"]
    assert len(decl.select(kinds=(Kind.VECTOR,))) == 5


def test_lists_must_be_lists():
    with pytest.raises(DeclarationError, match="independent_units must be a list"):
        SystemDeclaration.from_dict(
            {"name": "x", "quantities": [{"name": "a", "units": "ml"}], "independent_units": "ml"}
        )
    with pytest.raises(DeclarationError, match="'quantities' must be a list"):
        SystemDeclaration.from_dict({"name": "x", "quantities": 5})
    with pytest.raises(DeclarationError, match="system name must be a non-empty string"):
        SystemDeclaration.from_dict({"name": 5, "quantities": [{"name": "a", "units": "m"}]})
    with pytest.raises(DeclarationError, match=r"mine.json: quantities\[0\]: quantity name"):
        SystemDeclaration.from_dict({"name": "x", "quantities": [{"name": "1a", "units": "m"}]}, source="mine.json")
