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
and the deployment it belongs to. Serving needs a real Prefect server (``prefect server start``)
named by ``PREFECT_API_URL``: the temporary server of ``eqs run`` would vanish with the process.
"""

from __future__ import annotations

import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ENTRY_KEYS = {"name", "flow", "cron", "interval_seconds", "timezone", "description", "tags", "paused", "parameters"}


class ScheduleConfigError(ValueError):
    """A schedule config that cannot be served; the message names the file and the deployment."""


def flows_by_name() -> dict[str, Any]:
    """The flows a schedule may name (imported here: Prefect takes seconds to import)."""
    from .catalog_check import catalog_check
    from .features import features_flow
    from .halo_watch import halo_watch
    from .halos import halos_flow
    from .main import main_job
    from .pendulum import pendulum_flow
    from .rietkerk import rietkerk_flow

    flows = (main_job, catalog_check, features_flow, pendulum_flow, rietkerk_flow, halos_flow, halo_watch)
    return {f.name: f for f in flows}


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


def _flow_parameters(flow: Any) -> tuple[set[str], set[str]]:
    """All parameter names of a flow, and those without defaults."""
    signature = inspect.signature(flow.fn)
    names = set(signature.parameters)
    required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
    return names, required


def _entry_problems(
    entry: Any, flows: dict[str, Any], check_cron: Callable[[str, str | None], str | None]
) -> list[str]:
    if not isinstance(entry, dict):
        return [f"is a {type(entry).__name__}, expected a table"]
    problems = []
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown}; allowed: {sorted(ENTRY_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        problems.append(f"'name' must be a non-empty string without '/', got {name!r}")
    flow_name = entry.get("flow")
    if flow_name not in flows:
        problems.append(f"'flow' {flow_name!r} is not one of {sorted(flows)}")
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
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            problems.append(f"'interval_seconds' must be a positive number, got {interval!r}")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(f"'tags' must be a list of strings, got {tags!r}")
    if not isinstance(entry.get("paused", False), bool):
        problems.append(f"'paused' must be true or false, got {entry.get('paused')!r}")
    if "description" in entry and not isinstance(entry["description"], str):
        problems.append("'description' must be a string")
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        problems.append(f"'parameters' must be a table, got {parameters!r}")
    elif flow_name in flows:
        names, required = _flow_parameters(flows[flow_name])
        unknown_params = sorted(set(parameters) - names)
        if unknown_params:
            problems.append(f"flow {flow_name!r} has no parameters {unknown_params}; it takes {sorted(names)}")
        missing = sorted(required - set(parameters))
        if missing:
            problems.append(f"flow {flow_name!r} needs parameters {missing}")
    return problems


def _check_cron(cron: str, timezone: str | None) -> str | None:
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        reasons = "; ".join(str(e.get("msg", e)) for e in exc.errors())
        return f"cron {cron!r} (timezone {timezone!r}) is not valid: {reasons}"
    return None


def load_schedule_config(path: str | Path) -> list[DeploymentSpec]:
    """Read and check a schedule config; raises ScheduleConfigError listing every problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ScheduleConfigError(f"{path}: no such schedule config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleConfigError(f"{path}: not valid TOML ({exc})") from None
    extra = sorted(set(data) - {"deployment"})
    entries = data.get("deployment", [])
    problems = [f"unknown top-level keys {extra}; expected only [[deployment]] tables"] if extra else []
    if not isinstance(entries, list) or not entries:
        problems.append("no [[deployment]] tables")
        entries = []
    flows = flows_by_name()
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    for repeated in sorted({n for n in names if isinstance(n, str) and names.count(n) > 1}):
        problems.append(f"deployment name {repeated!r} is used more than once")
    for index, entry in enumerate(entries):
        label = f"deployment[{index}]" + (f" ({entry.get('name')!r})" if isinstance(entry, dict) else "")
        problems += [f"{label}: {p}" for p in _entry_problems(entry, flows, _check_cron)]
    if problems:
        raise ScheduleConfigError(f"{path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
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
