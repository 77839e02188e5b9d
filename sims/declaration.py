"""How a system declares its quantities: plain, typed data with no maths attached.

A declaration lives here, in the layer that holds the systems, so that a simulator module can
declare itself without importing ``pipeline``. ``pipeline`` reads declarations: it parses the unit
strings with pint, builds invariant scalars for the declared symmetry and the Pi groups of the
dimensional analysis (``pipeline.units``, ``pipeline.dimensions``, ``pipeline.features``).

Only structure is checked here (names, kinds, roles, symmetry spelling); unit strings are checked
by ``pipeline.units.check_declaration``, which every pipeline entry point calls.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SYMMETRY = re.compile(r"^(?:none|(?P<group>O|SO|E|SE)\((?P<d>[1-9])\)|O\(1,(?P<dl>[1-9])\))$")


class DeclarationError(ValueError):
    """A system declaration that cannot be used; the message names the system and the quantity."""


class Kind(str, enum.Enum):
    """How a quantity transforms under the system's symmetry group."""

    SCALAR = "scalar"  # invariant under the group (it still carries units)
    VECTOR = "vector"  # g v; components on the dimension named space (else the last one)
    POSITION = "position"  # a vector that also translates under E(d): g v + t
    TENSOR = "tensor"  # a symmetric rank-2 tensor: g T g^T; components on the last two dimensions
    FIELD = "field"  # a scalar field on a grid: dimensions x and y (else the last two)


class Role(str, enum.Enum):
    """What a quantity is for a surrogate."""

    PARAMETER = "parameter"  # fixed per system (masses, rates, lengths)
    STATE = "state"  # evolves or varies within a system (positions, momenta, fields)
    TARGET = "target"  # what a surrogate predicts


@dataclass(frozen=True)
class Quantity:
    """One declared quantity.

    ``units`` is any string pint parses (``l d^-1 m^-2``, ``kg m s^-1``, ``ckpc/h``); in eqs ``h``
    is the Hubble parameter little h and hours are ``hr``.
    """

    name: str
    units: str
    kind: Kind = Kind.SCALAR
    role: Role = Role.PARAMETER
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not IDENTIFIER.match(self.name):
            raise DeclarationError(
                f"quantity name {self.name!r}: expected an identifier (a letter, then letters, digits or _)"
            )
        if not isinstance(self.units, str):
            raise DeclarationError(f"quantity {self.name!r}: units must be a string pint parses, got {self.units!r}")
        for attr, enum_type in (("kind", Kind), ("role", Role)):
            value = getattr(self, attr)
            try:
                object.__setattr__(self, attr, enum_type(value))
            except ValueError:
                allowed = ", ".join(member.value for member in enum_type)
                raise DeclarationError(f"quantity {self.name!r}: {attr} {value!r} is not one of {allowed}") from None

    @property
    def is_vector(self) -> bool:
        return self.kind in (Kind.VECTOR, Kind.POSITION)

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "units": self.units,
            "kind": self.kind.value,
            "role": self.role.value,
            "description": self.description,
        }


@dataclass(frozen=True)
class SystemDeclaration:
    """A system: its quantities, its symmetry group and the units it treats as independent.

    ``symmetry`` is one of ``none``, ``O(d)``, ``SO(d)``, ``E(d)`` (rotations, reflections and
    translations), ``SE(d)`` (rotations and translations) or ``O(1,d)`` (Lorentz).
    ``independent_units`` names units that the model treats as base units of their own, beyond
    pint's dimensions (litres of water in the Rietkerk model, which is then not a cubic metre).
    ``raw_kind`` is the catalog kind of the system's raw datasets, which lets ``eqs features``
    find the declaration of a dataset.
    """

    name: str
    quantities: tuple[Quantity, ...]
    symmetry: str = "none"
    independent_units: tuple[str, ...] = ()
    raw_kind: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DeclarationError(f"system name must be a non-empty string, got {self.name!r}")
        where = f"system {self.name!r}"
        for attr in ("quantities", "independent_units"):
            value = getattr(self, attr)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise DeclarationError(f"{where}: {attr} must be a list, got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        bad_units = [u for u in self.independent_units if not isinstance(u, str)]
        if bad_units:
            raise DeclarationError(f"{where}: independent_units must be unit strings such as 'l', got {bad_units}")
        if not self.quantities:
            raise DeclarationError(f"{where}: declares no quantities")
        for q in self.quantities:
            if not isinstance(q, Quantity):
                raise DeclarationError(f"{where}: {q!r} is not a Quantity")
        names = [q.name for q in self.quantities]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DeclarationError(f"{where}: quantity names declared twice: {', '.join(repeated)}")
        if not isinstance(self.symmetry, str) or not SYMMETRY.match(self.symmetry.replace(" ", "")):
            raise DeclarationError(
                f"{where}: symmetry {self.symmetry!r} is not one of none, O(d), SO(d), E(d), SE(d), O(1,d)"
            )
        object.__setattr__(self, "symmetry", self.symmetry.replace(" ", ""))
        directional = [q.name for q in self.quantities if q.kind in (Kind.VECTOR, Kind.POSITION, Kind.TENSOR)]
        if directional and self.symmetry == "none":
            raise DeclarationError(
                f"{where}: vector or tensor quantities ({', '.join(directional)}) need a symmetry group; "
                "declare symmetry='O(d)' or similar"
            )
        positions = [q.name for q in self.quantities if q.kind is Kind.POSITION]
        if positions and self.group not in ("E", "SE"):
            raise DeclarationError(
                f"{where}: position quantities ({', '.join(positions)}) translate, which only E(d) and SE(d) "
                f"include; declare them as vectors for {self.symmetry}"
            )

    @property
    def group(self) -> str:
        """``O``, ``SO``, ``E``, ``SE``, ``Lorentz`` or ``none``."""
        match = SYMMETRY.match(self.symmetry)
        assert match is not None
        if match["dl"]:
            return "Lorentz"
        return match["group"] or "none"

    @property
    def space_dim(self) -> int:
        """Dimension of the vectors: d for O(d), SO(d), E(d); 1 + d for O(1,d); 0 for none."""
        match = SYMMETRY.match(self.symmetry)
        assert match is not None
        if match["dl"]:
            return 1 + int(match["dl"])
        return int(match["d"]) if match["d"] else 0

    def quantity(self, name: str) -> Quantity:
        for q in self.quantities:
            if q.name == name:
                return q
        raise DeclarationError(f"system {self.name!r} declares no quantity {name!r}")

    def select(
        self, *, roles: tuple[Role, ...] | None = None, kinds: tuple[Kind, ...] | None = None
    ) -> tuple[Quantity, ...]:
        return tuple(
            q for q in self.quantities if (roles is None or q.role in roles) and (kinds is None or q.kind in kinds)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quantities": [q.to_dict() for q in self.quantities],
            "symmetry": self.symmetry,
            "independent_units": list(self.independent_units),
            "raw_kind": self.raw_kind,
            "description": self.description,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "declaration") -> "SystemDeclaration":
        """Build a declaration from its JSON form, naming ``source`` in every error."""
        if not isinstance(data, Mapping):
            raise DeclarationError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {"name", "quantities", "symmetry", "independent_units", "raw_kind", "description"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DeclarationError(f"{source}: unknown fields {', '.join(unknown)}; expected some of {sorted(known)}")
        for required in ("name", "quantities"):
            if required not in data:
                raise DeclarationError(f"{source}: missing field {required!r}")
        if not isinstance(data["quantities"], list):
            raise DeclarationError(
                f"{source}: 'quantities' must be a list of objects, got {type(data['quantities']).__name__}"
            )
        quantities = []
        for index, item in enumerate(data["quantities"]):
            if not isinstance(item, Mapping) or not {"name", "units"} <= set(item):
                raise DeclarationError(f"{source}: quantities[{index}] needs at least 'name' and 'units'")
            extra = sorted(set(item) - {"name", "units", "kind", "role", "description"})
            if extra:
                raise DeclarationError(f"{source}: quantities[{index}] has unknown fields {', '.join(extra)}")
            try:
                quantities.append(Quantity(**item))
            except DeclarationError as exc:
                raise DeclarationError(f"{source}: quantities[{index}]: {exc}") from None
        try:
            return cls(
                name=data["name"],
                quantities=tuple(quantities),
                symmetry=data.get("symmetry", "none"),
                independent_units=data.get("independent_units", []),
                raw_kind=data.get("raw_kind", ""),
                description=data.get("description", ""),
            )
        except DeclarationError as exc:
            raise DeclarationError(f"{source}: {exc}") from None


_REGISTRY: dict[str, SystemDeclaration] = {}


def register_system(declaration: SystemDeclaration, *, replace: bool = False) -> SystemDeclaration:
    """Make a declaration findable by its name and by the kind of its raw datasets."""
    existing = _REGISTRY.get(declaration.name)
    if existing is not None and existing != declaration and not replace:
        raise DeclarationError(f"a different system named {declaration.name!r} is already registered")
    _REGISTRY[declaration.name] = declaration
    return declaration


def registered_systems() -> tuple[SystemDeclaration, ...]:
    return tuple(_REGISTRY[name] for name in sorted(_REGISTRY))


def system_for_kind(kind: str) -> SystemDeclaration | None:
    """The registered system whose raw datasets have this catalog kind, if any."""
    for declaration in _REGISTRY.values():
        if declaration.raw_kind and declaration.raw_kind == kind:
            return declaration
    return None


BUILTIN_SYSTEMS = ("sims.spring_pendulum", "sims.rietkerk")


def load_builtin_systems() -> tuple[SystemDeclaration, ...]:
    """Import the project's system modules, which register their declarations."""
    import importlib

    for module in BUILTIN_SYSTEMS:
        importlib.import_module(module)
    return registered_systems()


def find_system(name: str) -> SystemDeclaration:
    """A registered system by name (the built-in ones are loaded first)."""
    load_builtin_systems()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise DeclarationError(f"no system named {name!r}; registered systems: {known}")
    return _REGISTRY[name]
