"""Scheduled deployments: a TOML file of cron (or interval) schedules, served by ``eqs serve``.

A config holds one ``[[deployment]]`` table per schedule::

    [[deployment]]
    name = "nightly-catalog-check"      # unique; the deployment is <flow>/<name> on the server
    flow = "catalog-check"              # one of FLOWS
    cron = "0 3 * * *"                  # or: interval_seconds = 3600
    timezone = "UTC"                    # optional (IANA name), cron only
    description = "..."                 # optional
    tags = ["nightly"]                  # optional
    paused = false                      # optional
    [deployment.parameters]             # the flow's parameters; required ones must be given
    catalog = "/data/eqs-catalog"

Everything is checked before anything is served; every problem is reported at once with the file
and the deployment it belongs to. Flow parameters are checked against the flow's own signature:
its type hints, ``Choices`` and ``annotated_types`` bounds (``Annotated[int, Ge(1)]``), which Prefect
also enforces when the flow runs. Serving needs a real Prefect server (``prefect server start``)
named by ``PREFECT_API_URL``: the temporary server of ``eqs run`` would vanish with the process.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import annotated_types

from sims.declaration import MAX_NESTING, nesting_depth, short_repr

ENTRY_KEYS = {"name", "flow", "cron", "interval_seconds", "timezone", "description", "tags", "paused", "parameters"}
# A config holds a few deployments; bounding its size bounds every check below.
MAX_CONFIG_BYTES = 256 * 1024
MIN_INTERVAL_S = 1  # Prefect schedules in whole seconds at best
MAX_INTERVAL_S = 366 * 86400  # a longer period is a cron schedule ("0 0 1 1 *")
MAX_PROBLEMS_SHOWN = 50
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# A dotted key (a.b.c = 1, [a.b.c]) with more parts than the nesting limit, at the start of a line.
# tomllib spends time quadratic in the parts of a dotted key, so these are refused before parsing.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_DEEP_KEY = re.compile(
    rf"^[ \t]*+\[{{0,2}}[ \t]*+{_KEY_PART}(?:[ \t]*+\.[ \t]*+{_KEY_PART}){{{MAX_NESTING},}}", re.M
)


class ScheduleConfigError(ValueError):
    """A schedule config that cannot be served; the message names the file and the deployment."""


@dataclass(frozen=True)
class Choices:
    """``Annotated`` metadata for a flow parameter: the values it may take, checked by
    ``eqs serve --check`` (Prefect ignores it; the flow still checks at run time).

    ``Choices(PRESETS)`` takes a collection (a dict's keys); ``Choices(ref="module:NAME")`` names
    a collection, or a function returning one, to import when a schedule is checked: for lists
    that live behind slow imports.
    """

    values: Any = ()
    ref: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))  # hashable, and a dict gives its keys

    def resolve(self) -> tuple[Any, ...]:
        if self.ref is None:
            return self.values
        module, _, name = self.ref.partition(":")
        found = getattr(importlib.import_module(module), name)
        return tuple(found() if callable(found) else found)


def flows_by_name() -> dict[str, Any]:
    """The flows a schedule may name: the main job, the generic ones, and every registered system's
    (imported here: Prefect takes seconds to import)."""
    from . import registry
    from .catalog_check import catalog_check
    from .declared.flow import fit_flow
    from .features import features_flow
    from .main import main_job

    flows = {f.name: f for f in (main_job, catalog_check, features_flow, fit_flow)}
    for name, target in registry.flows().items():
        flows[name] = registry.load(target)
    return flows


@dataclass(frozen=True)
class DeploymentSpec:
    """One validated ``[[deployment]]`` entry."""

    name: str
    flow: str
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    paused: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def schedule(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")
        return f"every {self.interval_seconds:g} s"

    def to_deployment(self, flow: Any) -> Any:
        """The Prefect RunnerDeployment for this entry."""
        options: dict[str, Any] = {
            "name": self.name,
            "parameters": self.parameters,
            "tags": list(self.tags),
            "paused": self.paused,
            "description": self.description,
        }
        if self.cron is not None:
            from prefect.client.schemas.schedules import CronSchedule

            options["schedule"] = CronSchedule(cron=self.cron, timezone=self.timezone)
        else:
            options["interval"] = self.interval_seconds
        return flow.to_deployment(**options)


def _flow_parameters(flow: Any) -> tuple[dict[str, Any], set[str]]:
    """Each parameter of a flow with its type hint (``Any`` where it has none), and those without
    defaults."""
    signature = inspect.signature(flow.fn)
    hints = typing.get_type_hints(flow.fn, include_extras=True)
    types_ = {n: hints.get(n, Any) for n in signature.parameters}
    required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
    return types_, required


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "nothing"}


def _describe(hint: Any) -> str:
    """What a type hint accepts, in words ("an integer >= 1", "one of 'quick', 'paper'")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        for meta in args[1:]:
            if isinstance(meta, Choices):
                return "one of " + ", ".join(map(repr, meta.resolve()))
        bounds = [f"{op} {limit}" for meta in args[1:] for op, limit in _bounds(meta)]
        return " ".join([_describe(args[0]), " and ".join(bounds)]) if bounds else _describe(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))  # TOML has no null
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is list:
        return f"a list, each item {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a table"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _bounds(meta: Any) -> list[tuple[str, Any]]:
    ops = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    if not isinstance(meta, annotated_types.BaseMetadata):
        return []
    return [(op, getattr(meta, attr)) for attr, op in ops if getattr(meta, attr, None) is not None]


def _value_problem(value: Any, hint: Any, *, types_only: bool = False) -> str | None:
    """Why ``value`` (from TOML) does not fit ``hint``, or None; ``types_only`` skips choices and
    bounds. Hints it does not know pass: Prefect validates them when the flow runs."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin is Annotated:
        problem = _value_problem(value, args[0], types_only=types_only)
        if problem or types_only:
            # "expected one of 'quick', 'paper'" says more than "expected a string"
            return problem and f"expected {_describe(hint)}, got {short_repr(value)}"
        for meta in args[1:]:
            if isinstance(meta, Choices) and value not in meta.resolve():
                return f"expected {_describe(hint)}, got {short_repr(value)}"
            for op, limit in _bounds(meta):
                if not {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]:
                    return f"expected {_describe(hint)}, got {short_repr(value)}"
        return None
    if origin in (Union, types.UnionType):
        if any(_value_problem(value, arm) is None for arm in args):
            return None
        for arm in args:  # the right type with a wrong value says what the value should be
            if _value_problem(value, arm, types_only=True) is None:
                return _value_problem(value, arm)
        return f"expected {_describe(hint)}, got {short_repr(value)}"
    if origin is Literal:
        # `type(...) is` keeps true from matching 1
        if any(value == a and type(value) is type(a) for a in args):
            return None
        return f"expected {_describe(hint)}, got {short_repr(value)}"
    if origin is list or hint is list:
        if not isinstance(value, list):
            return f"expected {_describe(hint)}, got {short_repr(value)}"
        for index, item in enumerate(value if args else ()):
            problem = _value_problem(item, args[0], types_only=types_only)
            if problem:
                return f"item {index}: {problem}"
        return None
    if origin is dict or hint is dict:
        return None if isinstance(value, dict) else f"expected a table, got {short_repr(value)}"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"expected a finite number, got {short_repr(value)}"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected an integer, got {short_repr(value)}"
    if isinstance(hint, type):
        return None if isinstance(value, hint) else f"expected {_describe(hint)}, got {short_repr(value)}"
    return None


def _parameter_problems(flow_name: str, flow: Any, parameters: dict[str, Any]) -> list[str]:
    hints, required = _flow_parameters(flow)
    problems = []
    unknown = sorted(map(str, set(parameters) - set(hints)))
    if unknown:
        problems.append(f"flow {flow_name!r} has no parameters {short_repr(unknown)}; it takes {sorted(hints)}")
    missing = sorted(required - set(parameters))
    if missing:
        problems.append(f"flow {flow_name!r} needs parameters {missing}")
    for name, value in parameters.items():
        if name in hints:
            problem = _value_problem(value, hints[name])
            if problem:
                problems.append(f"parameter {name!r} of flow {flow_name!r}: {problem}")
    return problems


def _entry_problems(
    entry: Any, flows: dict[str, Any], check_cron: Callable[[str, str | None], str | None]
) -> list[str]:
    if not isinstance(entry, dict):
        return [f"is a {type(entry).__name__}, expected a table"]
    problems = []
    unknown = sorted(map(str, set(entry) - ENTRY_KEYS))
    if unknown:
        problems.append(f"unknown keys {short_repr(unknown)}; allowed: {sorted(ENTRY_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        problems.append(f"'name' must be a non-empty string without '/', got {short_repr(name)}")
    flow_name = entry.get("flow")
    if not isinstance(flow_name, str) or flow_name not in flows:
        problems.append(f"'flow' {short_repr(flow_name)} is not one of {sorted(flows)}")
    has_cron, has_interval = "cron" in entry, "interval_seconds" in entry
    if has_cron == has_interval:
        problems.append("give exactly one of 'cron' and 'interval_seconds'")
    if has_cron:
        timezone = entry.get("timezone")
        if not isinstance(entry["cron"], str) or (timezone is not None and not isinstance(timezone, str)):
            problems.append("'cron' and 'timezone' must be strings")
        else:
            problem = check_cron(entry["cron"], timezone)
            if problem:
                problems.append(problem)
    elif "timezone" in entry:
        problems.append("'timezone' applies to 'cron' schedules only")
    if has_interval:
        interval = entry["interval_seconds"]
        # TOML has nan and inf, which compare false with everything: test for what is wanted
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S
        ):
            problems.append(
                f"'interval_seconds' must be a positive number of seconds from {MIN_INTERVAL_S} to "
                f"{MAX_INTERVAL_S} (366 days), got {short_repr(interval)}"
            )
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(f"'tags' must be a list of strings, got {short_repr(tags)}")
    if not isinstance(entry.get("paused", False), bool):
        problems.append(f"'paused' must be true or false, got {short_repr(entry.get('paused'))}")
    if "description" in entry and not isinstance(entry["description"], str):
        problems.append("'description' must be a string")
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        problems.append(f"'parameters' must be a table, got {short_repr(parameters)}")
    elif isinstance(flow_name, str) and flow_name in flows:
        problems += _parameter_problems(flow_name, flows[flow_name], parameters)
    return problems


def _check_cron(cron: str, timezone: str | None) -> str | None:
    """Five fields or an alias such as @daily (Prefect's parser also takes seconds and years, which
    its scheduler does not use), a timezone Prefect knows, and a next date to run at."""
    import datetime

    from prefect._vendor.croniter import CroniterBadDateError, croniter
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    where = f"cron {short_repr(cron)} (timezone {short_repr(timezone)})"
    fields = cron.split()
    if len(fields) != 5 and not (len(fields) == 1 and fields[0].lower() in CRON_ALIASES):
        return f"{where} is not valid: expected 5 fields (minute hour day month weekday) or one of {CRON_ALIASES}"
    if timezone is not None and not timezone.strip():
        return f"{where} is not valid: give an IANA timezone such as 'UTC', or leave 'timezone' out"
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("msg", e)) for e in exc.errors())
        return f"{where} is not valid: {reasons}"
    try:  # 0 0 31 2 * parses but never comes due
        croniter(cron, datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)).get_next(datetime.datetime)
    except (CroniterBadDateError, ValueError, KeyError) as exc:
        return f"{where} never comes due ({exc})"
    return None


def _read_config(path: Path) -> dict[str, Any]:
    """The TOML table of a config, or a ScheduleConfigError naming the file and the limit it breaks."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)  # never more than the limit, whatever the file's size
    except FileNotFoundError:
        raise ScheduleConfigError(f"{path}: no such schedule config") from None
    except OSError as exc:
        raise ScheduleConfigError(f"{path}: cannot read the schedule config ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ScheduleConfigError(f"{path}: larger than the limit of {MAX_CONFIG_BYTES} bytes for a schedule config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScheduleConfigError(f"{path}: not a UTF-8 text file ({exc})") from None
    too_deep = f"{path}: nested more than {MAX_NESTING} levels deep (the limit)"
    deep_key = _DEEP_KEY.search(text)
    if deep_key:
        line = text.count("\n", 0, deep_key.start()) + 1
        raise ScheduleConfigError(f"{too_deep}: line {line} has a dotted key of more than {MAX_NESTING} parts")
    try:
        data = tomllib.loads(text)
    except RecursionError:  # tomllib recurses once per level of inline arrays and tables
        raise ScheduleConfigError(too_deep) from None
    except ValueError as exc:  # TOMLDecodeError, and numbers too long to convert
        raise ScheduleConfigError(f"{path}: not valid TOML ({exc})") from None
    if nesting_depth(data, MAX_NESTING) > MAX_NESTING:
        raise ScheduleConfigError(too_deep)
    return data


def load_schedule_config(path: str | Path) -> list[DeploymentSpec]:
    """Read and check a schedule config; raises ScheduleConfigError listing every problem."""
    path = Path(path)
    data = _read_config(path)
    extra = sorted(set(data) - {"deployment"})
    entries = data.get("deployment", [])
    problems = [f"unknown top-level keys {short_repr(extra)}; expected only [[deployment]] tables"] if extra else []
    if not isinstance(entries, list) or not entries:
        problems.append("no [[deployment]] tables")
        entries = []
    flows = flows_by_name()
    # counted in one pass (a list.count per name is quadratic in the number of deployments)
    names = collections.Counter(e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str))
    for repeated in sorted(n for n, count in names.items() if count > 1):
        problems.append(f"deployment name {short_repr(repeated)} is used more than once")
    for index, entry in enumerate(entries):
        label = f"deployment[{index}]" + (f" ({short_repr(entry.get('name'))})" if isinstance(entry, dict) else "")
        problems += [f"{label}: {p}" for p in _entry_problems(entry, flows, _check_cron)]
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise ScheduleConfigError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(shown))
    return [
        DeploymentSpec(
            name=e["name"],
            flow=e["flow"],
            cron=e.get("cron"),
            interval_seconds=e.get("interval_seconds"),
            timezone=e.get("timezone"),
            description=e.get("description"),
            tags=tuple(e.get("tags", [])),
            paused=e.get("paused", False),
            parameters=dict(e.get("parameters", {})),
        )
        for e in entries
    ]


def require_server() -> str:
    """The API URL of the Prefect server to serve against, or a clear error when none is set."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ScheduleConfigError(
            "eqs serve needs a running Prefect server: start one with `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (schedules would vanish with a temporary server)"
        )
    return url


def serve(specs: list[DeploymentSpec]) -> None:
    """Register the deployments with the server and run their flows as they come due (blocks)."""
    from prefect import serve as prefect_serve

    flows = flows_by_name()
    prefect_serve(*(spec.to_deployment(flows[spec.flow]) for spec in specs))
