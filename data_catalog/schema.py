"""Dataset kinds: what each kind of dataset must contain, and the checker every writer calls.

Generic rules apply to every dataset (units on every variable, storable dtypes and attributes);
a kind's :class:`DatasetSchema` adds required variables, dims, units, dtypes, attributes and params.
Modules that produce a kind register its schema at import time with :func:`register_schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import xarray as xr

from .errors import CatalogError, SchemaError

#: Attributes the catalog sets itself; values a caller puts in ``ds.attrs`` under these keys are
#: replaced (``kind`` is read from ``ds.attrs`` when not passed explicitly).
RESERVED_ATTRS = (
    "schema_version",
    "kind",
    "name",
    "version",
    "content_sha256",
    "created_utc",
    "code_version",
    "params",
    "seed",
    "parents",
)

DTYPE_CLASSES = ("float", "integer", "bool", "str", "number")


@dataclass(frozen=True)
class VariableSpec:
    """Expectations for one variable or coordinate; ``None`` means 'any'."""

    dims: tuple[str, ...] | None = None
    units: str | None = None
    dtype: str | None = None  # one of DTYPE_CLASSES
    required: bool = True

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPE_CLASSES:
            raise ValueError(f"VariableSpec.dtype must be one of {DTYPE_CLASSES}, got {self.dtype!r}")


@dataclass(frozen=True)
class DatasetSchema:
    """The contract of a dataset kind.

    ``check`` is an optional callable for kind-specific rules (shapes that must agree, value
    ranges); it returns a list of problems, each a sentence naming the variable.
    """

    kind: str
    description: str
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)
    coords: Mapping[str, VariableSpec] = field(default_factory=dict)
    attrs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    check: Callable[[xr.Dataset], list[str]] | None = None


_REGISTRY: dict[str, DatasetSchema] = {}


def register_schema(schema: DatasetSchema, *, replace: bool = False) -> DatasetSchema:
    """Register ``schema`` for its kind; registering a different schema twice is an error."""
    existing = _REGISTRY.get(schema.kind)
    if existing is not None and existing is not schema and not replace:
        raise CatalogError(f"a schema for kind {schema.kind!r} is already registered")
    _REGISTRY[schema.kind] = schema
    return schema


def get_schema(kind: str) -> DatasetSchema:
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise CatalogError(
            f"unknown dataset kind {kind!r} (registered kinds: {known}); import the module that "
            "defines the kind, or register a DatasetSchema for it"
        ) from None


def registered_kinds() -> Mapping[str, DatasetSchema]:
    return MappingProxyType(_REGISTRY)


def dtype_class(dtype: np.dtype, sample: Any = None) -> str | None:
    """The storable class of a dtype ('float', 'integer', 'bool', 'str'), or None if not storable."""
    if dtype.kind == "f":
        return "float"
    if dtype.kind in "iu":
        return "integer"
    if dtype.kind == "b":
        return "bool"
    if dtype.kind == "U":
        return "str"
    if dtype.kind == "O" and (sample is None or isinstance(sample, str)):
        return "str"
    return None


#: Attribute names that the netCDF format or xarray's encoding give a meaning of their own; a user
#: value under them would be reinterpreted on reading (``dtype='bool'`` turns floats into booleans).
FORMAT_ATTRS = frozenset(
    {"dtype", "coordinates", "scale_factor", "add_offset", "missing_value", "NAME", "CLASS",
     "DIMENSION_LIST", "REFERENCE_LIST"}
)
_INT64 = (-(2**63), 2**63 - 1)


def _scalar_problem(key: str, value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return f"attribute {key!r} is a boolean, which netCDF cannot store: use 0/1 or a string"
    if isinstance(value, str):
        return _text_problem(f"attribute {key!r}", value)
    if isinstance(value, (int, np.integer)):
        ok = _INT64[0] <= int(value) <= _INT64[1] or (isinstance(value, np.uint64))
        return None if ok else f"attribute {key!r} = {value} does not fit in 64 bits: store it as a string"
    if isinstance(value, (float, np.floating)):
        return None
    return (
        f"attribute {key!r} has type {type(value).__name__}; store str, int, float or lists of them "
        "(encode structured values as JSON strings)"
    )


def _text_problem(where: str, text: str) -> str | None:
    if "\x00" in text:
        return f"{where} contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where} is not valid Unicode text (it holds a lone surrogate)"
    return None


def _number_kind(value: Any) -> str | None:
    """'str', 'float', 'int' or 'uint' for list items: netCDF stores a list with one type."""
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, np.unsignedinteger):
        return "uint"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    return None


def _attr_problem(key: str, value: Any) -> str | None:
    """Why an attribute cannot be stored faithfully, or None when it can."""
    if key.startswith("_") or key in FORMAT_ATTRS:
        return f"attribute name {key!r} is reserved by the netCDF format: choose another name"
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if not items:
            return f"attribute {key!r} is an empty sequence, which does not round-trip: omit it"
        kinds = {_number_kind(v) for v in items}
        if len(kinds) != 1 or None in kinds:
            return (
                f"attribute {key!r} mixes types or holds non-scalars ({sorted(map(str, kinds))}): use a list of "
                "strings, of floats or of integers (signed or unsigned, not both)"
            )
        return next((p for p in (_scalar_problem(key, v) for v in items) if p), None)
    return _scalar_problem(key, value)


def storable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes in the types netCDF writers accept (numpy strings become str)."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.str_):
            return str(value)
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        if isinstance(value, np.ndarray) and value.dtype.kind == "U":
            return [str(v) for v in value.ravel()]
        return value

    return {k: convert(v) for k, v in attrs.items()}


def _string_problem(where: str, var: xr.Variable) -> str | None:
    """Object arrays must hold only str; no string may contain NUL (HDF5 cuts it there)."""
    values = np.asarray(var.values)
    if values.dtype.kind == "O":
        if values.size == 0:
            return f"{where} is an empty object array: give it dtype str"
        bad = [v for v in values.ravel() if not isinstance(v, str)]
        if bad:
            return f"{where} holds {bad[0]!r} ({type(bad[0]).__name__}) among strings: every element must be a str"
    return next((p for p in (_text_problem(f"{where}: a string", t) for t in values.ravel().tolist()) if p), None)


def _first_element(var: xr.Variable) -> Any:
    """The first element of an object-dtype variable (to tell strings from other objects)."""
    if var.dtype.kind != "O" or var.size == 0:
        return None
    return var[(0,) * var.ndim].values.item()


def check_generic(ds: xr.Dataset) -> list[str]:
    """Rules every catalog dataset obeys, whatever its kind."""
    problems: list[str] = []
    names = [(f"variable name {n!r}", n) for n in ds.variables] + [(f"dimension name {d!r}", d) for d in ds.dims]
    names += [(f"attribute name {k!r}", k) for k in ds.attrs]
    names += [(f"attribute name {k!r} of {n!r}", k) for n, v in ds.variables.items() for k in v.attrs]
    for where, name in names:
        problem = _text_problem(where, str(name)) if isinstance(name, str) else f"{where} is not a string"
        if problem:
            problems.append(problem)
    for key, value in ds.attrs.items():
        if key in RESERVED_ATTRS:
            continue
        problem = _attr_problem(key, value)
        if problem:
            problems.append(f"global {problem}")
    for name, var in ds.variables.items():
        where = f"coordinate {name!r}" if name in ds.coords else f"variable {name!r}"
        cls = dtype_class(var.dtype, _first_element(var))
        if cls is None:
            problems.append(
                f"{where} has dtype {var.dtype}, which cannot be stored: use float, integer, bool or "
                "str (store times as numbers with a units attribute)"
            )
        elif cls == "str":
            problem = _string_problem(where, var)
            if problem:
                problems.append(problem)
        units = var.attrs.get("units")
        if cls != "str" and (not isinstance(units, str) or not units.strip()):
            problems.append(f"{where} has no 'units' attribute: add one as a string (use '1' for dimensionless)")
        for key, value in var.attrs.items():
            problem = _attr_problem(key, value)
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def _check_spec(where: str, var: xr.Variable | None, spec: VariableSpec) -> list[str]:
    if var is None:
        return [f"{where} is missing"] if spec.required else []
    problems = []
    if spec.dims is not None and tuple(var.dims) != tuple(spec.dims):
        problems.append(f"{where} has dims {tuple(var.dims)}, expected {tuple(spec.dims)}")
    if spec.units is not None and var.attrs.get("units") != spec.units:
        problems.append(f"{where} has units {var.attrs.get('units')!r}, expected {spec.units!r}")
    if spec.dtype is not None:
        cls = dtype_class(var.dtype, _first_element(var))
        ok = cls in ("float", "integer") if spec.dtype == "number" else cls == spec.dtype
        if not ok:
            problems.append(f"{where} has dtype {var.dtype}, expected {spec.dtype}")
    return problems


def check_dataset(ds: xr.Dataset, kind: str, params: Mapping[str, Any] | None = None) -> list[str]:
    """All problems of ``ds`` as a dataset of ``kind`` (generic rules first); empty when valid."""
    schema = get_schema(kind)
    problems = check_generic(ds)
    for name, spec in schema.variables.items():
        var = ds.data_vars[name].variable if name in ds.data_vars else None
        problems += _check_spec(f"variable {name!r}", var, spec)
    for name, spec in schema.coords.items():
        var = ds.coords[name].variable if name in ds.coords else None
        problems += _check_spec(f"coordinate {name!r}", var, spec)
    for key in schema.attrs:
        if key not in ds.attrs:
            problems.append(f"global attribute {key!r} is missing")
    for key in schema.params:
        if not params or key not in params:
            problems.append(f"parameter {key!r} is missing from params")
    if schema.check is not None and not problems:
        problems += list(schema.check(ds))
    return problems


def validate_dataset(
    ds: xr.Dataset, kind: str, *, subject: str, params: Mapping[str, Any] | None = None
) -> None:
    """Raise :class:`SchemaError` listing every problem of ``ds`` as a dataset of ``kind``."""
    problems = check_dataset(ds, kind, params)
    if problems:
        raise SchemaError(f"{subject} (kind {kind!r})", problems)
