"""What a system adds to the report: its section (title, "how to read this", its own tables and
figures, its line in the summary list, the sources of its published numbers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.report.document import Document, Fragment
from pipeline.results import SystemResult


@dataclass(frozen=True)
class ReportSection:
    """One system's section of the report, in the registry's order.

    ``name`` is the system's name (the key of its result and the HTML anchor of its section);
    ``title`` heads the section and its line in the summary list. ``render`` writes the system's own
    tables and figures (without it the section gets the generic table and bars of its summary rows);
    ``headline`` returns its line in the summary list (without it, the best in-distribution model per
    group and the worst OOD ratio); ``reading`` is the "How to read this" paragraph (without its
    prefix). ``published`` lists the sources of the published numbers it compares with, one line
    each, under "Published numbers".
    """

    name: str
    title: str
    render: Callable[[Document, SystemResult], None] | None = None
    headline: Callable[[Document, SystemResult], list[Fragment]] | None = None
    reading: str = ""
    published: tuple[str, ...] = ()
