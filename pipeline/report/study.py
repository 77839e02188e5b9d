"""A study's own report (a benchmark of methods, a relaxed-symmetry study): its tables and figures on one
self-contained page, with the command that made them.

The studies train and score their models in a temporary catalog of their own, so the page cites no
catalog version; it is written as the OOD report is (``report.html``, ``report.md``, ``figures/``,
each file atomically) by :func:`write_study`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.outputs import output_file_problem, write_atomic
from pipeline.report.document import Cell, Document, Fragment
from pipeline.report.storage import Report, write_report


@dataclass(frozen=True)
class StudyTable:
    """A Markdown pipe table as the study prints it (``**x**`` marks the best cell), and its caption."""

    markdown: str
    caption: str = ""
    labels: int = 1  # the leading columns that name the row


@dataclass(frozen=True)
class StudyFigure:
    """A PNG and its caption."""

    png: bytes
    caption: str


def markdown_table(text: str) -> tuple[list[str], list[list[Fragment]]]:
    """The header and rows of a Markdown pipe table (the separator row left out)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or not all(line.startswith("|") and line.endswith("|") for line in lines):
        raise ValueError(f"not a Markdown pipe table: {text[:80]!r}")

    def cells(line: str) -> list[str]:
        parts = line[1:-1].replace("\\|", "\0").split("|")
        return [part.strip().replace("\0", "|") for part in parts]

    def fragment(cell: str) -> Fragment:
        if len(cell) > 4 and cell.startswith("**") and cell.endswith("**"):
            return Cell(cell[2:-2], strong=True)
        return cell

    header = cells(lines[0])
    rows = [[fragment(c) for c in cells(line)] for line in lines[2:]]
    wrong = [i for i, row in enumerate(rows) if len(row) != len(header)]
    if wrong:
        raise ValueError(f"row {wrong[0] + 1} of the table has another number of cells than its header")
    return header, rows


def study_report(
    title: str,
    summary: str,
    tables: Sequence[StudyTable],
    figures: Sequence[StudyFigure] = (),
    *,
    command: Sequence[str],
) -> Report:
    """The page: title, summary, the command line and the time, the tables, then the figures."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = Document(None)
    doc.heading(1, title)
    doc.para(summary)
    doc.para(f"Created {created} (UTC) by: {shlex.join(command)}", css="meta")
    for table in tables:
        header, rows = markdown_table(table.markdown)
        doc.table(header, rows, caption=table.caption, labels=table.labels, sources=False)
    for i, figure in enumerate(figures, 1):
        doc.figure(f"figure-{i}", lambda png=figure.png: png, figure.caption, refs=())
    page, markdown = doc.page(title)
    return Report(page, markdown, dict(doc.figures), [], title, created)


def check_report_folder(folder: str | os.PathLike[str]) -> str | None:
    """Why ``folder`` cannot take a report (None when it can): checked before a study's hours of work."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        return f"{folder} is a file, not a folder"
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def write_study(
    result: object,
    out: str,
    tables: Sequence[StudyTable],
    *,
    report: str | None,
    title: str,
    summary: str,
    command: Sequence[str],
    figures: Sequence[StudyFigure] = (),
) -> None:
    """A study's numbers: the JSON (``--out``), its tables beside it (.md) and on the terminal, and with
    ``report`` (``--report``) its page."""
    text = "\n\n".join(t.markdown for t in tables)
    write_atomic(out, (json.dumps(result, indent=1) + "\n").encode())
    write_atomic(Path(out).with_suffix(".md"), (text + "\n").encode())
    print(text)
    if report:
        page = study_report(title, summary, tables, figures, command=command)
        print(f"wrote {write_report(page, report)['html']}")


def add_report_option(parser: argparse.ArgumentParser) -> None:
    """``--report DIR`` for a study's command line."""
    parser.add_argument(
        "--report", metavar="DIR", help="also a page of the tables and figures: DIR/report.html, report.md, figures/"
    )


def command_line(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> list[str]:
    """The command as the user typed it: the program's name and its arguments."""
    return [*parser.prog.split(), *(sys.argv[1:] if argv is None else argv)]


def check_study_outputs(
    parser: argparse.ArgumentParser, out: str, *, figure: str | None = None, report: str | None = None
) -> None:
    """Refuse an unusable ``--out``, ``--figure`` or ``--report`` before any work, in the options' words."""
    for option, path in (("--out", out), ("--figure", figure)):
        why = None if path is None else output_file_problem(path)
        if why:
            parser.error(f"{option} {path}: {why}")
    why = None if report is None else check_report_folder(report)
    if why:
        parser.error(f"--report {report}: {why}")


def figure_png(draw: Callable[[Any], None]) -> bytes:
    """The PNG that ``draw(file)`` saves (matplotlib's ``savefig`` takes a file object)."""
    buffer = io.BytesIO()
    draw(buffer)
    return buffer.getvalue()
