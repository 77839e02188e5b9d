"""How a system declares its quantities: plain, typed data with no maths attached.

A declaration lives here, in the layer that holds the systems, so that a simulator module can
declare itself without importing ``pipeline``. ``pipeline`` reads declarations: it parses the unit
strings with pint, builds invariant scalars for the declared symmetry and the Pi groups of the
dimensional analysis (``pipeline.units``, ``pipeline.dimensions``, ``pipeline.features``).

Only structure is checked here (names, kinds, roles, symmetry spelling), and the limits on size
and nesting that keep every later step fast (``MAX_QUANTITIES``, ``MAX_DECLARATION_BYTES``,
``MAX_NESTING``); unit strings are checked by ``pipeline.units.check_declaration``, which every
pipeline entry point calls.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import json
import os
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any, Mapping

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SYMMETRY = re.compile(r"^(?:none|(?P<group>O|SO|E|SE)\((?P<d>[1-9])\)|O\(1,(?P<dl>[1-9])\))$")

# Limits on what a declaration may be, checked before any work that grows with it. The built-in
# systems declare 12 and 19 quantities; feature extraction's dimensional analysis grows with the
# cube of the number of scalars, so a few hundred quantities is already minutes of work.
MAX_QUANTITIES = 256
MAX_DECLARATION_BYTES = 2**20  # 1 MiB: 256 quantities with long descriptions fit many times over
MAX_NESTING = 32  # a declaration nests 3 deep; Python's json and tomllib recurse once per level

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = 6
_SHORT.maxlevel = 3


class DeclarationError(ValueError):
    """A system declaration that cannot be used; the message names the system and the quantity."""


def short_repr(value: Any) -> str:
    """``repr`` bounded in length and depth, for quoting untrusted input in an error message."""
    return _SHORT.repr(value)


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """How deeply lists, tuples and dicts nest in ``value`` (a scalar is 0; ``[[1]]`` is 2).

    Counted without recursion, so that parsed input of any depth can be measured; stops once the
    depth exceeds ``limit`` and returns ``limit + 1``.
    """
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return limit + 1
        stack.extend((child, depth + 1) for child in children)
    return deepest


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
                f"quantity name {short_repr(self.name)}: expected an identifier (a letter, then letters, digits or _)"
            )
        if not isinstance(self.units, str):
            raise DeclarationError(
                f"quantity {self.name!r}: units must be a string pint parses, got {short_repr(self.units)}"
            )
        if not isinstance(self.description, str):
            raise DeclarationError(
                f"quantity {self.name!r}: description must be a string, got {short_repr(self.description)}"
            )
        for attr, enum_type in (("kind", Kind), ("role", Role)):
            value = getattr(self, attr)
            try:
                object.__setattr__(self, attr, enum_type(value))
            except (ValueError, TypeError):  # TypeError: an unhashable value such as a list
                allowed = ", ".join(member.value for member in enum_type)
                raise DeclarationError(
                    f"quantity {self.name!r}: {attr} {short_repr(value)} is not one of {allowed}"
                ) from None

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


FIT_FIELDS = ("shift_by", "split", "noisy")
RESERVED_DIMS = ("sample", "space", "space_col")  # the dimensions of eqs fit's canonical data
SPLIT_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class FitOptions:
    """How ``eqs fit`` splits and models a declared system (the declaration's optional ``fit`` object).

    - ``shift_by``: the quantity of the range-shift split (train on the lower part, test on the top):
      a declared scalar, or an invariant scalar's name such as ``p1.p2`` ("" : no range-shift split);
    - ``split``: the fractions (train, val, test) of the random split, each > 0, summing to 1;
    - ``noisy``: targets with noise, which get a Gaussian output (a mean and an uncertainty).
    """

    shift_by: str = ""
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    noisy: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.shift_by, str):
            raise DeclarationError(f"fit.shift_by must be a quantity name, got {short_repr(self.shift_by)}")
        split = self.split
        if isinstance(split, (str, bytes)) or not isinstance(split, (list, tuple)) or len(split) != 3:
            raise DeclarationError(f"fit.split must give train, val and test fractions, got {short_repr(split)}")
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in split):
            raise DeclarationError(f"fit.split: every fraction must be a number in (0, 1), got {short_repr(split)}")
        if abs(sum(split) - 1) > 1e-9:
            raise DeclarationError(
                f"fit.split: the fractions must add up to 1, got {short_repr(split)} (sum {sum(split):g})"
            )
        object.__setattr__(self, "split", tuple(float(f) for f in split))
        noisy = self.noisy
        if isinstance(noisy, (str, bytes)) or not isinstance(noisy, (list, tuple)):
            raise DeclarationError(f"fit.noisy must be a list of target names, got {short_repr(noisy)}")
        if not all(isinstance(n, str) for n in noisy):
            raise DeclarationError(f"fit.noisy must be a list of target names, got {short_repr(noisy)}")
        object.__setattr__(self, "noisy", tuple(noisy))

    @property
    def is_default(self) -> bool:
        return self == FitOptions()

    def to_dict(self) -> dict[str, Any]:
        return {
            "shift_by": self.shift_by,
            "split": dict(zip(SPLIT_PARTS, self.split)),
            "noisy": list(self.noisy),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> "FitOptions":
        if not isinstance(data, Mapping):
            raise DeclarationError(f"{source}: 'fit' must be an object, got {type(data).__name__}")
        unknown = sorted(map(str, set(data) - set(FIT_FIELDS)))
        if unknown:
            raise DeclarationError(
                f"{source}: fit has unknown fields {short_repr(unknown)}; expected some of {list(FIT_FIELDS)}"
            )
        split = data.get("split", dict(zip(SPLIT_PARTS, cls.split)))
        if not isinstance(split, Mapping) or set(split) != set(SPLIT_PARTS):
            raise DeclarationError(
                f"{source}: fit.split must be an object with exactly the fractions train, val and test, "
                f"got {short_repr(split)}"
            )
        try:
            return cls(
                shift_by=data.get("shift_by", ""),
                split=tuple(split[p] for p in SPLIT_PARTS),
                noisy=data.get("noisy", ()),
            )
        except DeclarationError as exc:
            raise DeclarationError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class PermutationSet:
    """Quantities of a set of members (particles) that may be relabelled together.

    In the data, each of ``quantities`` has the dimension ``dim`` after ``sample`` (one entry per
    member, the same number for every quantity of the set); a permutation of the members along
    ``dim``, the same for all of them, leaves a global target unchanged and permutes a member target.
    """

    dim: str
    quantities: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.dim, str) or not IDENTIFIER.match(self.dim) or self.dim in RESERVED_DIMS:
            raise DeclarationError(
                f"permutation.dim {short_repr(self.dim)}: expected an identifier other than {', '.join(RESERVED_DIMS)} "
                "(the data's dimension that indexes the members, such as 'particle')"
            )
        q = self.quantities
        if isinstance(q, (str, bytes)) or not isinstance(q, (list, tuple)) or not q:
            raise DeclarationError(f"permutation.quantities must be a non-empty list of names, got {short_repr(q)}")
        if not all(isinstance(n, str) for n in q):
            raise DeclarationError(f"permutation.quantities must be names, got {short_repr(q)}")
        object.__setattr__(self, "quantities", tuple(dict.fromkeys(q)))

    def to_dict(self) -> dict[str, Any]:
        return {"dim": self.dim, "quantities": list(self.quantities)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> "PermutationSet":
        if not isinstance(data, Mapping) or set(data) != {"dim", "quantities"}:
            raise DeclarationError(
                f"{source}: 'permutation' must be an object with exactly 'dim' and 'quantities', got {short_repr(data)}"
            )
        try:
            return cls(data["dim"], data["quantities"])
        except DeclarationError as exc:
            raise DeclarationError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class SystemDeclaration:
    """A system: its quantities, its symmetry group and the units it treats as independent.

    ``symmetry`` is one of ``none``, ``O(d)``, ``SO(d)``, ``E(d)`` (rotations, reflections and
    translations), ``SE(d)`` (rotations and translations) or ``O(1,d)`` (Lorentz).
    ``independent_units`` names units that the model treats as base units of their own, beyond
    pint's dimensions (litres of water in the Rietkerk model, which is then not a cubic metre).
    ``raw_kind`` is the catalog kind of the system's raw datasets, which lets ``eqs features``
    find the declaration of a dataset. ``source`` says where the declaration was read from (a
    file, a dataset's attribute) for error messages; it is not part of the declaration's identity.
    ``fit``: how ``eqs fit`` splits and models the system (:class:`FitOptions`); ``permutation``: a
    set of members that may be relabelled (:class:`PermutationSet`), which ``eqs fit`` models.
    """

    name: str
    quantities: tuple[Quantity, ...]
    symmetry: str = "none"
    independent_units: tuple[str, ...] = ()
    raw_kind: str = ""
    description: str = ""
    fit: FitOptions = field(default_factory=FitOptions)
    permutation: PermutationSet | None = None
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DeclarationError(f"system name must be a non-empty string, got {short_repr(self.name)}")
        where = f"system {self.name!r}"
        for attr in ("quantities", "independent_units"):
            value = getattr(self, attr)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise DeclarationError(f"{where}: {attr} must be a list, got {short_repr(value)}")
            object.__setattr__(self, attr, tuple(value))
        if len(self.quantities) > MAX_QUANTITIES:
            raise DeclarationError(
                f"{where}: declares {len(self.quantities)} quantities; at most {MAX_QUANTITIES} are allowed"
            )
        bad_units = [u for u in self.independent_units if not isinstance(u, str)]
        if bad_units:
            raise DeclarationError(
                f"{where}: independent_units must be unit strings such as 'l', got {short_repr(bad_units)}"
            )
        for attr in ("raw_kind", "description"):
            if not isinstance(getattr(self, attr), str):
                raise DeclarationError(f"{where}: {attr} must be a string, got {short_repr(getattr(self, attr))}")
        if not self.quantities:
            raise DeclarationError(f"{where}: declares no quantities")
        for q in self.quantities:
            if not isinstance(q, Quantity):
                raise DeclarationError(f"{where}: {short_repr(q)} is not a Quantity")
        counts = collections.Counter(q.name for q in self.quantities)  # one pass: names.count is quadratic
        repeated = sorted(n for n, c in counts.items() if c > 1)
        if repeated:
            raise DeclarationError(f"{where}: quantity names declared twice: {', '.join(repeated)}")
        if not isinstance(self.symmetry, str) or not SYMMETRY.match(self.symmetry.replace(" ", "")):
            raise DeclarationError(
                f"{where}: symmetry {short_repr(self.symmetry)} is not one of none, O(d), SO(d), E(d), SE(d), O(1,d)"
            )
        object.__setattr__(self, "symmetry", self.symmetry.replace(" ", ""))
        directional = [q.name for q in self.quantities if q.kind in (Kind.VECTOR, Kind.POSITION, Kind.TENSOR)]
        if directional and self.symmetry == "none":
            raise DeclarationError(
                f"{where}: vector or tensor quantities ({', '.join(directional)}) need a symmetry group; "
                "declare symmetry='O(d)' or similar"
            )
        if not isinstance(self.fit, FitOptions):
            raise DeclarationError(f"{where}: fit must be FitOptions, got {short_repr(self.fit)}")
        targets = {q.name for q in self.quantities if q.role is Role.TARGET}
        not_targets = [n for n in self.fit.noisy if n not in targets]
        if not_targets:
            raise DeclarationError(
                f"{where}: fit.noisy names {', '.join(not_targets)}, which are not declared targets "
                f"(targets: {', '.join(sorted(targets)) or 'none'})"
            )
        if self.permutation is not None:
            self._check_permutation(where)
        by = next((q for q in self.quantities if q.name == self.fit.shift_by), None)
        if by is not None and (by.kind is not Kind.SCALAR or by.role is Role.TARGET):
            raise DeclarationError(
                f"{where}: fit.shift_by {by.name!r} is a {by.kind.value} {by.role.value}; the range shift needs a "
                "scalar input (a declared scalar parameter or state, or an invariant such as 'v.v')"
            )
        positions = [q.name for q in self.quantities if q.kind is Kind.POSITION]
        if positions and self.group not in ("E", "SE"):
            raise DeclarationError(
                f"{where}: position quantities ({', '.join(positions)}) translate, which only E(d) and SE(d) "
                f"include; declare them as vectors for {self.symmetry}"
            )

    def _check_permutation(self, where: str) -> None:
        perm = self.permutation
        if not isinstance(perm, PermutationSet):
            raise DeclarationError(f"{where}: permutation must be a PermutationSet, got {short_repr(perm)}")
        names = {q.name: q for q in self.quantities}
        unknown = [n for n in perm.quantities if n not in names]
        if unknown:
            raise DeclarationError(
                f"{where}: permutation names {', '.join(unknown)}, which are not declared quantities"
            )
        if all(names[n].role is Role.TARGET for n in perm.quantities):
            raise DeclarationError(
                f"{where}: permutation needs at least one input (parameter or state) among its quantities"
            )
        unsupported = [n for n in perm.quantities if names[n].kind in (Kind.TENSOR, Kind.FIELD)]
        unsupported += [n for n in perm.quantities if names[n].kind is Kind.POSITION and names[n].role is Role.TARGET]
        if unsupported:
            raise DeclarationError(
                f"{where}: permutation members {', '.join(unsupported)} are tensors, fields or position targets, which "
                "a relabelled set does not support (declare a member's displacement as a vector target)"
            )
        noisy = [n for n in self.fit.noisy if n in perm.quantities]
        if noisy:
            raise DeclarationError(
                f"{where}: fit.noisy names member targets ({', '.join(noisy)}); only global targets may be noisy"
            )
        if self.fit.shift_by in perm.quantities:
            raise DeclarationError(
                f"{where}: fit.shift_by {self.fit.shift_by!r} is a member quantity; shift by a global one"
            )

    def is_member(self, name: str) -> bool:
        """Whether quantity ``name`` belongs to the relabelled set."""
        return self.permutation is not None and name in self.permutation.quantities

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
        out = {
            "name": self.name,
            "quantities": [q.to_dict() for q in self.quantities],
            "symmetry": self.symmetry,
            "independent_units": list(self.independent_units),
            "raw_kind": self.raw_kind,
            "description": self.description,
        }
        if not self.fit.is_default:  # declarations without fit options keep their identity
            out["fit"] = self.fit.to_dict()
        if self.permutation is not None:
            out["permutation"] = self.permutation.to_dict()
        return out

    def inputs_only(self) -> "SystemDeclaration":
        """The same system without its targets (what a model reads)."""
        inputs = tuple(q for q in self.quantities if q.role is not Role.TARGET)
        permutation = self.permutation
        if permutation is not None:
            members = tuple(n for n in permutation.quantities if n in {q.name for q in inputs})
            permutation = PermutationSet(permutation.dim, members)
        return dataclasses.replace(
            self,
            quantities=inputs,
            fit=FitOptions(shift_by=self.fit.shift_by, split=self.fit.split),
            permutation=permutation,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "declaration") -> "SystemDeclaration":
        """Build a declaration from its JSON form, naming ``source`` in every error."""
        if not isinstance(data, Mapping):
            raise DeclarationError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {"name", "quantities", "symmetry", "independent_units", "raw_kind", "description", "fit", "permutation"}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise DeclarationError(
                f"{source}: unknown fields {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}; "
                f"expected some of {sorted(known)}"
            )
        for required in ("name", "quantities"):
            if required not in data:
                raise DeclarationError(f"{source}: missing field {required!r}")
        if not isinstance(data["quantities"], list):
            raise DeclarationError(
                f"{source}: 'quantities' must be a list of objects, got {type(data['quantities']).__name__}"
            )
        if len(data["quantities"]) > MAX_QUANTITIES:  # refused before any per-quantity work
            raise DeclarationError(
                f"{source}: declares {len(data['quantities'])} quantities; at most {MAX_QUANTITIES} are allowed"
            )
        quantities = []
        for index, item in enumerate(data["quantities"]):
            if not isinstance(item, Mapping) or not {"name", "units"} <= set(item):
                raise DeclarationError(f"{source}: quantities[{index}] needs at least 'name' and 'units'")
            extra = sorted(map(str, set(item) - {"name", "units", "kind", "role", "description"}))
            if extra:
                raise DeclarationError(f"{source}: quantities[{index}] has unknown fields {short_repr(extra)}")
            try:
                quantities.append(Quantity(**item))
            except DeclarationError as exc:
                raise DeclarationError(f"{source}: quantities[{index}]: {exc}") from None
        fit = FitOptions.from_dict(data["fit"], source=source) if "fit" in data else FitOptions()
        permutation = PermutationSet.from_dict(data["permutation"], source=source) if "permutation" in data else None
        try:
            return cls(
                name=data["name"],
                quantities=tuple(quantities),
                symmetry=data.get("symmetry", "none"),
                independent_units=data.get("independent_units", []),
                raw_kind=data.get("raw_kind", ""),
                description=data.get("description", ""),
                fit=fit,
                permutation=permutation,
                source=source,
            )
        except DeclarationError as exc:
            raise DeclarationError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "declaration") -> "SystemDeclaration":
        """Parse a declaration's JSON text (see :func:`parse_json` for the limits)."""
        return cls.from_dict(parse_json(text, source=source), source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "SystemDeclaration":
        """Read a UTF-8 declaration file of at most ``MAX_DECLARATION_BYTES``: TOML when its name ends
        in ``.toml``, else JSON (the same fields either way)."""
        try:
            with open(path, "rb") as handle:
                # read one byte past the limit rather than trusting a size that may change
                raw = handle.read(MAX_DECLARATION_BYTES + 1)
        except OSError as exc:
            raise DeclarationError(f"{path}: cannot read the declaration file ({exc.strerror or exc})") from None
        if len(raw) > MAX_DECLARATION_BYTES:
            raise DeclarationError(
                f"{path}: declaration file is larger than the limit of {MAX_DECLARATION_BYTES} bytes"
            )
        toml = str(path).lower().endswith(".toml")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DeclarationError(f"{path}: not a UTF-8 {'TOML' if toml else 'JSON'} file ({exc})") from None
        if toml:
            return cls.from_dict(parse_toml(text, source=str(path)), source=str(path))
        return cls.from_json(text, source=str(path))


def parse_json(
    text: str, *, source: str, max_chars: int = MAX_DECLARATION_BYTES, max_nesting: int = MAX_NESTING
) -> Any:
    """``json.loads`` for untrusted text: text over ``max_chars`` characters, or nested more than
    ``max_nesting`` levels (json recurses once per level), is refused with a DeclarationError that
    names ``source`` and the limit, never a RecursionError."""
    if len(text) > max_chars:
        raise DeclarationError(f"{source}: {len(text)} characters of JSON, over the limit of {max_chars}")
    too_deep = DeclarationError(f"{source}: JSON nested more than {max_nesting} levels deep (the limit)")
    try:
        data = json.loads(text)
    except RecursionError:  # deeper than the interpreter allows, so deeper than the limit
        raise too_deep from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise DeclarationError(f"{source}: not valid JSON ({exc})") from None
    if nesting_depth(data, max_nesting) > max_nesting:
        raise too_deep
    return data


def parse_toml(text: str, *, source: str, max_nesting: int = MAX_NESTING) -> Any:
    """``tomllib.loads`` for untrusted text, with the limits of :func:`parse_json`."""
    import tomllib

    too_deep = DeclarationError(f"{source}: TOML nested more than {max_nesting} levels deep (the limit)")
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise too_deep from None
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"{source}: not valid TOML ({exc})") from None
    if nesting_depth(data, max_nesting) > max_nesting:
        raise too_deep
    return data


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


BUILTIN_SYSTEMS = ("sims.pendulum.system", "sims.rietkerk.system")


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
