"""The typed contract between a system's flow and the report: what a run produced and its summary.

A flow returns a :class:`SystemResult`: the catalog refs of its data, models and evaluations, and
:class:`SummaryRow` s (per model and split: mean and std over seeds of the system's metric, beside
the published number, with the refs each number came from). The report's generic parts (headline
line, in-distribution vs out-of-distribution bars, tables, provenance) read only this; a system's
own report section may also read ``details`` (tables in the shape of the published ones) and
``artifacts`` (refs of regime maps, rankings ...).

Prefect persists flow results as JSON, so both round-trip exactly through :meth:`SystemResult.to_dict`
and :meth:`SystemResult.from_dict` (tuples come back as tuples, None stays None).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The version of the JSON form; :meth:`SystemResult.from_dict` refuses a newer one.
RESULT_FORMAT = 1


class ResultFormatError(ValueError):
    """A stored result that does not follow this contract; the message names the field."""


@dataclass(frozen=True)
class SummaryRow:
    """One model on one split: the system's metric as mean and sample std over ``seeds`` seeds.

    ``group`` separates a system's tables (one per protocol or per target; "" when it has one table).
    ``in_distribution`` marks the split drawn like the training data (the others are the OOD tests).
    ``lower_is_better`` says which way the metric points. ``published`` is the paper's number for
    the same row, if any. ``refs`` are the evaluation versions the mean was read from. ``extra``
    holds the system's further columns (plain JSON values).
    """

    model: str
    split: str
    metric: str
    mean: float
    std: float
    seeds: int
    refs: tuple[str, ...]
    group: str = ""
    in_distribution: bool = False
    lower_is_better: bool = True
    published: float | None = None
    published_std: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("model", "split", "metric", "group"):
            if not isinstance(getattr(self, name), str):
                raise ResultFormatError(f"summary row: {name} must be a string, got {getattr(self, name)!r}")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ResultFormatError(f"summary row {self.model}/{self.split}: seeds must be an integer >= 1")
        object.__setattr__(self, "refs", tuple(str(r) for r in self.refs))
        object.__setattr__(self, "mean", _number(self.mean, "mean", self))
        object.__setattr__(self, "std", _number(self.std, "std", self))
        for name in ("published", "published_std"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else _number(value, name, self))
        object.__setattr__(self, "extra", dict(self.extra))


def _number(value: Any, name: str, row: SummaryRow) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultFormatError(f"summary row {row.model}/{row.split}: {name} must be a number, got {value!r}")
    return float(value)  # NaN allowed: a metric that could not be computed is reported as n/a


@dataclass(frozen=True)
class SystemResult:
    """What one run of a system's flow produced (refs only: the data lives in the catalog).

    ``data``: name -> ref (or a mapping of refs) of the raw and derived datasets; ``models``: model ->
    refs (one per seed, or per split and seed); ``evaluations``: model -> split -> refs (one per seed); ``rows``: the summary; ``details``: the
    system's summary in its own shape (JSON values); ``artifacts``: other refs by name.
    """

    system: str
    data: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, Any] = field(default_factory=dict)
    evaluations: Mapping[str, Any] = field(default_factory=dict)
    rows: tuple[SummaryRow, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.system, str) or not self.system:
            raise ResultFormatError(f"result: system must be a non-empty string, got {self.system!r}")
        rows = tuple(self.rows)
        if not all(isinstance(r, SummaryRow) for r in rows):
            raise ResultFormatError(f"result of {self.system}: rows must be SummaryRow objects")
        object.__setattr__(self, "rows", rows)

    # -- what the generic report parts ask ---------------------------------------------------------

    def groups(self) -> list[str]:
        """The row groups in order of first appearance."""
        return list(dict.fromkeys(r.group for r in self.rows))

    def rows_of(self, group: str | None = None) -> list[SummaryRow]:
        return [r for r in self.rows if group is None or r.group == group]

    def refs(self) -> list[str]:
        """Every evaluation ref the summary cites, in order."""
        return list(dict.fromkeys(ref for r in self.rows for ref in r.refs))

    def best(self, group: str | None = None, *, in_distribution: bool = True) -> SummaryRow | None:
        """The best model on the in-distribution split (or the best on any OOD split) of ``group``."""
        found = [r for r in self.rows_of(group) if r.in_distribution == in_distribution and math.isfinite(r.mean)]
        if not found:
            return None
        return min(found, key=lambda r: r.mean if r.lower_is_better else -r.mean)

    # -- JSON round trip (Prefect persists flow results as JSON) ------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [asdict(r) for r in self.rows]
        out["format"] = RESULT_FORMAT
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SystemResult:
        if not isinstance(data, Mapping):
            raise ResultFormatError(f"a result must be a JSON object, got {type(data).__name__}")
        found = data.get("format", RESULT_FORMAT)
        if found != RESULT_FORMAT:
            raise ResultFormatError(f"result format {found!r} is not {RESULT_FORMAT}; rerun the flow with this eqs")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"format"})
        if unknown:
            raise ResultFormatError(f"result of {data.get('system')!r}: unknown fields {unknown}")
        row_fields = {f.name for f in fields(SummaryRow)}
        rows = []
        for i, row in enumerate(data.get("rows", ())):
            if not isinstance(row, Mapping) or set(row) - row_fields:
                raise ResultFormatError(f"result of {data.get('system')!r}: row {i} is not a summary row ({row!r})")
            rows.append(SummaryRow(**row))
        return cls(**{**{k: v for k, v in data.items() if k in known}, "rows": tuple(rows)})

    @classmethod
    def from_json(cls, text: str) -> SystemResult:
        return cls.from_dict(json.loads(text))


def rows_from(records: Iterable[Mapping[str, Any]], **common: Any) -> tuple[SummaryRow, ...]:
    """Summary rows from plain dicts (``common`` fills fields every row shares)."""
    return tuple(SummaryRow(**{**common, **r}) for r in records)
