"""The report's document model: each block is rendered to HTML and to Markdown at once.

A :class:`Document` collects headings, paragraphs, bullet lists, tables and figures. A number read
from the catalog is a :class:`Cell` made by :meth:`Document.num`, which resolves its refs to
``name@vN`` and records them as cited: in the HTML it links to their provenance entry, in the
Markdown it names a numbered source. A published number is a :class:`Cell` with a ``source``.
The formatting helpers (:func:`fmt`, :func:`pm`, :func:`f3`, :func:`g4`) write numbers the way every
table of the report does.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import Catalog, read_dataset_file

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1150px;margin:1.5em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.results{border-collapse:collapse;margin:.8em 0 1.2em;font-size:.88em}
table.results caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.3em}
table.results th,table.results td{border:1px solid #ccc;padding:.25em .55em}
table.results th{background:#f3f3f3}td.num,td.pub{text-align:right;white-space:nowrap}
td.pub{color:#555;background:#fafafa}a.num{color:#0b4f8a;text-decoration:none}
a.num:hover,a.pub:hover{text-decoration:underline}a.pub{color:#555;text-decoration:none}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}p.missing{color:#8a4b00}p.meta{color:#444;font-size:.9em}
.prov{border-top:1px solid #eee;padding:.4em 0;font-size:.85em}.prov dt{font-weight:600;float:left;width:7em}
.prov dd{margin-left:7.5em}.prov pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;padding:.4em}
code{font-size:.92em}
"""


@dataclass(frozen=True)
class Cell:
    """A piece of text; with ``refs`` a number read from those catalog versions, with ``source`` a
    published number (the paper)."""

    text: str
    refs: tuple[str, ...] = ()
    source: str | None = None
    strong: bool = False  # the best of its row or column


Fragment = str | Cell


def anchor(ref: str) -> str:
    """The HTML id of a version's provenance entry."""
    return "ref-" + ref  # names are A-Za-z0-9._- and a ref adds @vN: valid, unique HTML ids


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def figure_name(*parts: str) -> str:
    """A figure name (an HTML id and a file name under ``figures/``) from free text."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(p for p in parts if p)).strip("._") or "figure"


class Document:
    """The report being built: HTML and Markdown blocks, the figures, the cited refs (in order) and the
    numbered sources of the Markdown."""

    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog  # None: a page that cites no catalog version (a study's own report)
        self.html: list[str] = []
        self.md: list[str] = []
        self.figures: dict[str, bytes] = {}
        self.refs: dict[str, None] = {}
        self.sources: dict[tuple[str, ...], int] = {}

    def open(self, ref: str) -> xr.Dataset:
        """A stored version, indexed lazily without dask (reads only what is used); use as a context."""
        return read_dataset_file(self.catalog.path_of(ref), lazy=False)

    # citations
    def num(self, text: str, refs: Iterable[str]) -> Cell:
        """A number read from ``refs`` (resolved to name@vN and recorded as cited)."""
        resolved = tuple(dict.fromkeys(self.catalog.resolve(r) for r in refs))
        for r in resolved:
            self.refs.setdefault(r)
        return Cell(text, resolved)

    def source_number(self, refs: Sequence[str]) -> int:
        key = tuple(refs)
        if key not in self.sources:
            self.sources[key] = len(self.sources) + 1
        return self.sources[key]

    # rendering of fragments
    def frag_html(self, frag: Fragment) -> str:
        if isinstance(frag, str):
            return html.escape(frag)
        text = f"<strong>{html.escape(frag.text)}</strong>" if frag.strong else html.escape(frag.text)
        if frag.refs:
            title = html.escape(", ".join(frag.refs))
            return f'<a class="num" href="#{anchor(frag.refs[0])}" title="{title}">{text}</a>'
        if frag.source:
            return f'<a class="pub" href="#published" title="published: {html.escape(frag.source)}">{text}</a>'
        return text

    def frag_md(self, frag: Fragment, *, footnote: bool = True) -> str:
        if isinstance(frag, str):
            return frag
        text = f"**{frag.text}**" if frag.strong else frag.text
        if frag.refs and footnote:
            return f"{text} [{self.source_number(frag.refs)}]"
        return text

    # blocks
    def raw(self, html_text: str, md_text: str | None = None) -> None:
        self.html.append(html_text)
        if md_text is not None:
            self.md.append(md_text)

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}")

    def para(self, *fragments: Fragment, css: str | None = None) -> None:
        cls = f' class="{css}"' if css else ""
        self.html.append(f"<p{cls}>" + "".join(self.frag_html(f) for f in fragments) + "</p>")
        self.md.append("".join(self.frag_md(f) for f in fragments))

    def bullets(self, items: Sequence[Sequence[Fragment]]) -> None:
        self.html.append("<ul>" + "".join("<li>" + "".join(map(self.frag_html, i)) + "</li>" for i in items) + "</ul>")
        self.md.append("\n".join("- " + "".join(self.frag_md(f) for f in i) for i in items))

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Fragment]],
        *,
        caption: str = "",
        labels: int = 1,
        sources: bool = True,
    ) -> None:
        """A table whose first ``labels`` columns label the row; Markdown gets a ``sources`` column
        (unless ``sources`` is False: a table of no catalog numbers)."""
        out = ['<table class="results">']
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead><tbody>")
        extra = " sources |" if sources else ""
        md = [f"| {' | '.join(md_cell(h) for h in headers)} |{extra}", "|" + "---|" * (len(headers) + bool(sources))]
        for row in rows:
            cells = []
            for i, frag in enumerate(row):
                if i < labels:
                    cls = "label"
                elif isinstance(frag, Cell) and frag.refs:
                    cls = "num"
                elif isinstance(frag, Cell) and frag.source:
                    cls = "pub"
                else:
                    cls = "text"
                cells.append(f'<td class="{cls}">{self.frag_html(frag)}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
            refs = tuple(dict.fromkeys(r for f in row if isinstance(f, Cell) for r in f.refs))
            cited = (f" [{self.source_number(refs)}] |" if refs else "  |") if sources else ""
            md.append("| " + " | ".join(md_cell(self.frag_md(f, footnote=False)) for f in row) + f" |{cited}")
        out.append("</tbody></table>")
        self.html.append("".join(out))
        self.md.append(("*" + caption + "*\n\n" if caption else "") + "\n".join(md))

    def figure(self, name: str, draw: Callable[[], bytes], caption: str, refs: Sequence[str]) -> None:
        """Draw a figure and embed it; if drawing fails, say so in the report instead.

        ``name`` names the figure's HTML id and its file ``figures/<name>.png``; one already taken
        gets a numbered suffix.
        """
        base, n = name, 1
        while name in self.figures:
            n += 1
            name = f"{base}-{n}"
        try:
            png = draw()
        except Exception as exc:  # a report with a stated gap beats no report
            log.warning("report figure %s not drawn: %s", name, exc, exc_info=True)
            self.para(f"Figure {name} could not be drawn: {type(exc).__name__}: {exc}", css="missing")
            return
        cited = self.num("", refs).refs
        self.figures[name] = png
        data = base64.b64encode(png).decode("ascii")
        links = ""
        if cited:
            title = html.escape(", ".join(cited))
            links = f' <a class="num" href="#{anchor(cited[0])}" title="{title}">[data: {len(cited)} version(s)]</a>'
        self.html.append(
            f'<figure id="fig-{html.escape(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}{links}</figcaption></figure>'
        )
        note = f" [{self.source_number(cited)}]" if cited else ""
        alt = caption.replace("[", "(").replace("]", ")")
        self.md.append(f"![{alt}](figures/{name}.png)\n\n*{caption}*{note}")

    # the whole page
    def page(self, title: str) -> tuple[str, str]:
        """The self-contained HTML page (inline style, no scripts) and its Markdown twin."""
        body = "\n".join(part for part in self.html if part)
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
        )
        return page, "\n\n".join(part for part in self.md if part) + "\n"


# -- numbers as the tables write them ------------------------------------------------------------------


def fmt(x: float | None) -> str:
    """Errors of very different sizes: 4 decimals from 0.001 to 100, else 3 significant digits."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 100 else f"{x:.3g}"


def pm(mean: float, std: float | None, fmt: Callable[[float], str] | None = None, seeds: int = 2) -> str:
    """mean ± std (by default both with the decimals :func:`fmt` picks for the mean); the mean alone
    for a single seed, where there is no spread to show."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if fmt is not None:
        return fmt(mean) if seeds < 2 or std is None else f"{fmt(mean)} ± {fmt(std)}"
    fixed = mean == 0 or 1e-3 <= abs(mean) < 100
    if seeds < 2 or std is None:
        return f"{mean:.4f}" if fixed else f"{mean:.3g}"
    return f"{mean:.4f} ± {std:.4f}" if fixed else f"{mean:.3g} ± {std:.2g}"


def f3(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def g4(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


def rows_by(rows: Sequence[Mapping[str, Any]], *keys: str) -> dict[tuple, Mapping[str, Any]]:
    """Dict rows keyed by the tuple of their ``keys``."""
    return {tuple(r[k] for k in keys): r for r in rows}


def seeds_text(counts: Iterable[int]) -> str:
    """The seed counts of a table: "3", or "2 to 3" where they differ ("0" for none)."""
    found = sorted({int(c) for c in counts}) or [0]
    return str(found[0]) if len(found) == 1 else f"{found[0]} to {found[-1]}"
