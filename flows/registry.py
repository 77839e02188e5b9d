"""The registry of systems: the one place that names them.

The main job, ``eqs run --systems``, the ``eqs`` commands of each system (``eqs reproduce NAME``),
the schedules' flow table, the report and the tests iterate it. A system is its own modules plus
one :class:`System` entry; the entry names its code as ``"module:attribute"`` strings, imported
only when used, so that ``eqs --help`` does not import torch or Prefect.

Systems come from :data:`BUILTIN` and from installed packages that declare an entry point in the
group ``eqs.systems`` (a :class:`System`, or a function returning one); :func:`register` adds one
at run time (a test's toy system).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pipeline.results import SystemResult

#: The main job's presets, in the order ``eqs run --preset`` lists them.
MAIN_PRESETS = ("smoke", "demo", "paper")
ENTRY_POINT_GROUP = "eqs.systems"


class RegistryError(ValueError):
    """A system entry that cannot be used, or a name that is not registered."""


def load(target: str) -> Any:
    """The object named ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise RegistryError(f"{target!r}: expected 'package.module:attribute'")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@dataclass(frozen=True)
class SystemPreset:
    """What one main-job preset runs for a system: the system's own preset name (its sizes and
    recipes), the number of training seeds, and options of the system's runner."""

    preset: str
    seeds: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise RegistryError(f"preset {self.preset!r}: seeds must be an integer >= 1, got {self.seeds!r}")
        object.__setattr__(self, "options", dict(self.options))


@dataclass(frozen=True)
class System:
    """One system of the pipeline.

    - ``run``: ``"module:function"`` called as ``function(catalog=..., preset=SystemPreset,
      dask_address=...)``; it runs the system's flow(s) and returns a :class:`SystemResult`.
    - ``presets``: a :class:`SystemPreset` for each of :data:`MAIN_PRESETS`.
    - ``report_section``: ``"module:NAME"`` of its ``pipeline.report.ReportSection`` (None: the
      report's generic parts only).
    - ``flows``: the Prefect flows a schedule may name (deployment flow name -> ``"module:flow"``).
    - ``commands``: its ``eqs`` commands by path (``"reproduce pendulum"``, ``"sim halos"``,
      ``"predict-galaxies"``) -> ``"module:click_command"``.
    - ``expensive``: ``"module:function"`` entry points (simulation, training, evaluation) that a
      fully cached rerun of the main job must not call.
    - ``methods``: options added to every preset's ``options`` when the main job also runs the system's
      comparison of ways of building the symmetry in (``eqs run --methods``); empty: the system has none
      in the main job. ``methods_note`` says in a line what it adds, or why it adds nothing and where a
      comparison is instead.
    """

    name: str
    title: str
    run: str
    presets: Mapping[str, SystemPreset]
    report_section: str | None = None
    flows: Mapping[str, str] = field(default_factory=dict)
    commands: Mapping[str, str] = field(default_factory=dict)
    expensive: tuple[str, ...] = ()
    description: str = ""
    methods: Mapping[str, Any] = field(default_factory=dict)
    methods_note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("-", "").replace("_", "").isalnum():
            raise RegistryError(f"system name {self.name!r}: expected letters, digits, '-' and '_'")
        missing = [p for p in MAIN_PRESETS if p not in self.presets]
        if missing:
            raise RegistryError(f"system {self.name!r}: no preset for {missing}; every system has {list(MAIN_PRESETS)}")
        for text in (self.run, self.report_section, *self.flows.values(), *self.commands.values(), *self.expensive):
            if text is not None and ":" not in text:
                raise RegistryError(f"system {self.name!r}: {text!r} is not 'package.module:attribute'")
        object.__setattr__(self, "expensive", tuple(self.expensive))
        object.__setattr__(self, "methods", dict(self.methods))

    def preset(self, name: str, methods: bool = False) -> SystemPreset:
        """The main job's preset ``name`` for this system, with the method comparison's options if ``methods``."""
        chosen = self.presets[name]
        if not methods or not self.methods:
            return chosen
        return dataclasses.replace(chosen, options={**chosen.options, **self.methods})

    def runner(self) -> Callable[..., SystemResult]:
        return load(self.run)

    def section(self) -> Any:
        return None if self.report_section is None else load(self.report_section)


def _pendulum() -> System:
    both = ("emlp", "units")
    return System(
        name="pendulum",
        title="Springy double pendulum",
        run="flows.pendulum.flow:run_system",
        presets={
            "smoke": SystemPreset("smoke", 1, {"protocols": both, "dtype": "float64"}),
            "demo": SystemPreset("quick", 1, {"protocols": both, "dtype": "float32"}),
            "paper": SystemPreset("paper", 3, {"protocols": both, "dtype": "float64"}),
        },
        report_section="pipeline.pendulum.report:SECTION",
        flows={"pendulum": "flows.pendulum.flow:pendulum_flow"},
        commands={
            "reproduce pendulum": "flows.pendulum.cli:reproduce_pendulum",
            "bench pendulum": "flows.pendulum.cli:bench_pendulum",
        },
        expensive=(
            "sims.pendulum.protocols:generate",
            "surrogates.pendulum.runs:train_model",
            "surrogates.pendulum.runs:evaluate_model",
        ),
        description="Hamiltonian dynamics of a springy double pendulum in 3-D: the EMLP and units protocols.",
        methods={"methods": True},
        methods_note="every protocol's method comparison: the EMLP protocol's augmented, penalised, relaxed and "
        "EMLP HNNs (O(3), O(2), SO(2), D2, D6); the units protocol's MLP, units-augmented and relaxed HNNs",
    )


def _rietkerk() -> System:
    return System(
        name="rietkerk",
        title="Rietkerk vegetation model",
        run="flows.rietkerk.flow:run_system",
        presets={
            "smoke": SystemPreset("smoke", 1),
            "demo": SystemPreset("quick", 2),
            "paper": SystemPreset("paper", 3),
        },
        report_section="pipeline.rietkerk.report:SECTION",
        flows={"rietkerk": "flows.rietkerk.flow:rietkerk_flow"},
        commands={
            "reproduce rietkerk": "flows.rietkerk.cli:reproduce_rietkerk",
            "bench rietkerk": "flows.rietkerk.cli:bench_rietkerk",
        },
        expensive=(
            "sims.rietkerk.protocols:generate_split",
            "surrogates.rietkerk.runs:train_emulator",
            "surrogates.rietkerk.runs:evaluate_emulator",
        ),
        description="Vegetation patterns of a reaction-diffusion PDE: emulators of pattern statistics.",
        methods_note="its emulators read translation- and rotation-invariant pattern statistics only",
    )


def _halos() -> System:
    return System(
        name="halos",
        title="Halos",
        run="flows.halos.flow:run_system",
        presets={
            "smoke": SystemPreset("smoke", 1),
            "demo": SystemPreset("quick", 2),
            "paper": SystemPreset("paper", 3),
        },
        report_section="pipeline.halos.report:SECTION",
        flows={"halos": "flows.halos.flow:halos_flow", "halo-watch": "flows.halos.watch:halo_watch"},
        commands={
            "sim halos": "flows.halos.cli:sim_halos",
            "ingest halos": "flows.halos.cli:ingest_halos_command",
            "predict-galaxies": "flows.halos.cli:predict_galaxies_command",
            "reproduce halos": "flows.halos.cli:reproduce_halos",
            "bench halos": "flows.halos.cli:bench_halos",
        },
        expensive=(
            "sims.halos.population:iter_population",
            "surrogates.halos.runs:train_halo_model",
            "surrogates.halos.runs:evaluate_halo_model",
        ),
        description="Galaxy properties from dark-matter halos: invariant scalars of particles.",
        methods_note="compare methods on a halo table with 'eqs fit --method' or 'eqs bench methods' "
        "(docs/fit.md#other-methods)",
    )


#: The built-in systems, in the pipeline's order.
BUILTIN: tuple[Callable[[], System], ...] = (_pendulum, _rietkerk, _halos)

_registered: dict[str, System] | None = None


def _registry() -> dict[str, System]:
    global _registered
    if _registered is None:
        found: dict[str, System] = {}
        for make in BUILTIN:
            system = make()
            found[system.name] = system
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            value = entry.load()
            system = value() if callable(value) and not isinstance(value, System) else value
            if not isinstance(system, System):
                raise RegistryError(f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP!r} is not a System")
            found.setdefault(system.name, system)
        _registered = found
    return _registered


def register(system: System, *, replace: bool = False) -> System:
    """Add ``system`` to the registry (after the others); ``replace`` swaps an entry of that name."""
    registry = _registry()
    if system.name in registry and not replace:
        raise RegistryError(f"a system named {system.name!r} is registered already")
    registry[system.name] = system
    return system


def unregister(name: str) -> None:
    _registry().pop(name, None)


def systems() -> list[System]:
    """Every registered system, in the pipeline's order."""
    return list(_registry().values())


def names() -> tuple[str, ...]:
    return tuple(_registry())


def get(name: str) -> System:
    try:
        return _registry()[name]
    except KeyError:
        raise RegistryError(f"no system named {name!r}; registered: {', '.join(names())}") from None


def choose(chosen: Sequence[str] | str | None) -> list[System]:
    """The systems named (a list, or comma-separated), in the registry's order; all when None."""
    if chosen is None:
        return systems()
    wanted = [s.strip() for s in (chosen.split(",") if isinstance(chosen, str) else chosen) if s.strip()]
    unknown = sorted(set(wanted) - set(names()))
    if unknown or not wanted:
        raise RegistryError(f"systems must be a non-empty subset of {list(names())}, got {wanted or chosen!r}")
    return [s for s in systems() if s.name in wanted]


def commands(prefix: str) -> dict[str, str]:
    """The systems' commands under ``prefix`` ("" for top-level, "reproduce", "sim" ...): the next
    word of each command path -> its ``"module:command"``."""
    depth = len(prefix.split()) if prefix else 0
    found: dict[str, str] = {}
    for system in systems():
        for path, target in system.commands.items():
            words = path.split()
            if words[:depth] == (prefix.split() if prefix else []) and len(words) == depth + 1:
                found[words[-1]] = target
    return found


def flows() -> dict[str, str]:
    """Every system's schedulable flows: deployment flow name -> ``"module:flow"``."""
    return {name: target for system in systems() for name, target in system.flows.items()}


def iter_expensive() -> Iterator[tuple[str, str]]:
    """(system, ``"module:function"``) of every entry point a cached rerun must not call."""
    for system in systems():
        for target in system.expensive:
            yield system.name, target
