"""Building the report: the engine that lays out every system's section, and the generic parts that
every system gets from its :class:`~pipeline.results.SummaryRow` s.

:func:`build_report` writes the header (title, preset, time, catalog), the summary list (one line per
system), one section per :class:`ReportSection` in the order given (a system that was not run is
named as such), then the results that have no section (generic parts only, titled by the system's
name), and closes with the published sources and the Provenance section of every catalog version
cited. The generic parts: :func:`default_headline` (the best in-distribution model per group and its
worst OOD ratio), :func:`results_table` (model x split, ours beside published) and :func:`ood_bars`
(in distribution against OOD), which a system's own ``render`` may call too.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from data_catalog import Catalog, read_file_attrs
from pipeline import report_figures as rf
from pipeline.report.document import Cell, Document, Fragment, anchor, figure_name, pm
from pipeline.report.section import ReportSection
from pipeline.report.storage import DEFAULT_TITLE, Report
from pipeline.results import SummaryRow, SystemResult

#: HTML ids the engine uses itself: no section may take them.
RESERVED_NAMES = ("published", "provenance")


def build_report(
    catalog: Catalog,
    results: Mapping[str, SystemResult],
    sections: Sequence[ReportSection],
    *,
    title: str = DEFAULT_TITLE,
    preset: str | None = None,
) -> Report:
    """The OOD evaluation report of ``results`` (system name -> what its flow returned).

    ``sections`` lists the registered systems in report order; a section whose system has no result
    is shown as not run. A result with no section still appears, after the sections, with the
    generic parts only. A result may also be given in its JSON form (:meth:`SystemResult.to_dict`).
    Every number is read from (and links to) the catalog versions it cites.
    """
    results = _checked_results(results)
    sections = _checked_sections(sections)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = Document(catalog)
    named = {s.name for s in sections}
    unsectioned = [name for name in results if name not in named]

    doc.heading(1, title)
    doc.para(f"Preset: {preset or 'n/a'}. Created {created} (UTC). Catalog: {catalog.root}.", css="meta")
    lines: list[list[Fragment]] = []
    for s in sections:
        if s.name not in results:
            lines.append([f"{s.title}: ", "not run for this report."])
        else:
            lines.append([f"{s.title}: "] + (s.headline or default_headline)(doc, results[s.name]))
    lines += [[f"{name}: "] + default_headline(doc, results[name]) for name in unsectioned]
    doc.bullets(lines)
    doc.para(
        "Every number in the tables links to the catalog versions it was read from (hover for the list; "
        "the link leads to the Provenance section at the end). Published numbers are grey.",
        css="meta",
    )
    for s in sections:
        doc.heading(2, s.title, anchor=s.name)
        if s.name not in results:
            doc.para(f"{s.title}: not run for this report.", css="missing")
            continue
        if s.reading:
            doc.para(f"How to read this: {s.reading}")
        (s.render or generic_parts)(doc, results[s.name])
    for name in unsectioned:
        doc.heading(2, name, anchor=name)
        generic_parts(doc, results[name])
    published = [line for s in sections for line in s.published]
    sourced = {s.name for s in sections if s.published}
    published += [
        f"{name}: the published numbers given with its results."
        for name, result in results.items()
        if name not in sourced and any(r.published is not None for r in result.rows)
    ]
    provenance(doc, published)

    page, markdown = doc.page(title)
    return Report(
        html=page,
        markdown=markdown,
        figures=dict(doc.figures),
        refs=list(doc.refs),
        title=title,
        created_utc=created,
        preset=preset,
    )


def _checked_results(results: Mapping[str, Any]) -> dict[str, SystemResult]:
    if not isinstance(results, Mapping):
        raise TypeError(
            f"build_report: results must map a system's name to its SystemResult, got {type(results).__name__}"
        )
    out = {}
    for name, result in results.items():
        if isinstance(result, Mapping):
            result = SystemResult.from_dict(result)
        if not isinstance(result, SystemResult):
            raise TypeError(
                f"build_report: results[{name!r}] must be a SystemResult (pipeline.results), "
                f"got {type(result).__name__}"
            )
        if result.system != name:
            raise ValueError(f"build_report: results[{name!r}] is the result of system {result.system!r}")
        out[name] = result
    _check_names(out, "result")
    return out


def _checked_sections(sections: Sequence[ReportSection]) -> list[ReportSection]:
    sections = list(sections)
    for s in sections:
        if not isinstance(s, ReportSection):
            raise TypeError(f"build_report: sections must be ReportSection objects, got {type(s).__name__}")
    names = [s.name for s in sections]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"build_report: more than one section for {twice}")
    _check_names(names, "section")
    return sections


def _check_names(names: Iterable[str], what: str) -> None:
    for name in names:
        if not isinstance(name, str) or not name or name in RESERVED_NAMES or name.startswith(("ref-", "fig-")):
            raise ValueError(
                f"build_report: {what} name {name!r} cannot name a section (empty, or an HTML id the report uses: "
                f"{', '.join(RESERVED_NAMES)}, ref-..., fig-...)"
            )


# -- the generic parts -------------------------------------------------------------------------------


def published_source(result: SystemResult) -> str:
    """The source named for a published number of a system that gives no source of its own."""
    return f"the published number given with the results of {result.system}"


def _ratio(row: SummaryRow, best: SummaryRow) -> float | None:
    """How many times worse ``row`` is than ``best`` (> 1: worse), where that is defined."""
    if not (math.isfinite(row.mean) and math.isfinite(best.mean)):
        return None
    top, bottom = (row.mean, best.mean) if best.lower_is_better else (best.mean, row.mean)
    return top / bottom if bottom > 0 and top >= 0 else None


def default_headline(doc: Document, result: SystemResult) -> list[Fragment]:
    """Per group: the best model on the in-distribution split (mean ± std, published beside it) and
    the worst ratio of its OOD scores to that one."""
    out: list[Fragment] = []
    for group in result.groups():
        out.append(("; " if out else "") + (f"{group}: " if group else ""))
        best = result.best(group)
        if best is None:
            out.append("no in-distribution result")
            continue
        out += [
            f"best in distribution {best.model} ({best.metric} on {best.split}, {best.seeds} seed(s)) ",
            doc.num(pm(best.mean, best.std, seeds=best.seeds), best.refs),
        ]
        if best.published is not None:
            out += [" (published ", Cell(pm(best.published, best.published_std), source=published_source(result)), ")"]
        ratios = [
            (ratio, r)
            for r in result.rows_of(group)
            if r.model == best.model and not r.in_distribution and (ratio := _ratio(r, best)) is not None
        ]
        if ratios:
            ratio, worst = max(ratios, key=lambda item: item[0])
            out += [", worst OOD ratio ", doc.num(f"{ratio:.3g}", best.refs + worst.refs), f" ({worst.split})"]
    out.append("." if out else "no summary rows.")
    return out


def _splits(rows: Sequence[SummaryRow]) -> list[str]:
    """The in-distribution splits first, then the others, each in order of first appearance."""
    splits = list(dict.fromkeys(r.split for r in rows))
    inside = {r.split for r in rows if r.in_distribution}
    return [s for s in splits if s in inside] + [s for s in splits if s not in inside]


def results_table(doc: Document, rows: Sequence[SummaryRow], *, caption: str = "", source: str = "published") -> None:
    """Model x split: our mean ± std over seeds, beside the published number on the splits that have one."""
    models = list(dict.fromkeys(r.model for r in rows))
    splits = _splits(rows)
    with_published = {r.split for r in rows if r.published is not None}
    by = {(r.model, r.split): r for r in rows}
    headers = ["model"]
    for s in splits:
        headers += [f"{s} (ours)"] + ([f"{s} (published)"] if s in with_published else [])
    table: list[list[Fragment]] = []
    for model in models:
        row: list[Fragment] = [model]
        for s in splits:
            r = by.get((model, s))
            row.append(doc.num(pm(r.mean, r.std, seeds=r.seeds), r.refs) if r else "-")
            if s in with_published:
                found = r is not None and r.published is not None
                row.append(Cell(pm(r.published, r.published_std), source=source) if found else "-")
        table.append(row)
    doc.table(headers, table, caption=caption)


def ood_bars(
    doc: Document,
    rows: Sequence[SummaryRow],
    *,
    name: str,
    title: str,
    ylabel: str,
    caption: str,
    models: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    log: bool = True,
    refs: Sequence[str] | None = None,
) -> None:
    """The in-distribution against OOD bars of ``rows`` (grey: the rows marked in distribution;
    crosses: published numbers), citing the rows' refs (or ``refs``)."""
    rows = list(rows)
    models = list(models) if models is not None else list(dict.fromkeys(r.model for r in rows))
    splits = list(splits) if splits is not None else _splits(rows)
    values = {(r.model, r.split): (r.mean, r.std) for r in rows}
    published = {(r.model, r.split): r.published for r in rows if r.published is not None}
    inside = [s for s in splits if any(r.in_distribution for r in rows if r.split == s)]
    doc.figure(
        name,
        lambda: rf.ood_bars_figure(
            models, splits, values, published=published, title=title, ylabel=ylabel, log=log, in_distribution=inside
        ),
        caption,
        [ref for r in rows for ref in r.refs] if refs is None else list(refs),
    )


def generic_parts(doc: Document, result: SystemResult) -> None:
    """What a system without its own renderer gets: per group of its summary rows, the table and the bars."""
    if not result.rows:
        doc.para("No summary rows were given.", css="missing")
        return
    for group in result.groups():
        rows = result.rows_of(group)
        if group:
            doc.heading(3, group, anchor=f"{result.system}-{figure_name(group)}")
        metric = ", ".join(dict.fromkeys(r.metric for r in rows))
        better = "lower" if all(r.lower_is_better for r in rows) else "higher"
        inside = ", ".join(s for s in _splits(rows) if any(r.in_distribution for r in rows if r.split == s))
        results_table(
            doc,
            rows,
            caption=f"{metric} per model and split ({better} is better; ours: mean ± std over seeds; in distribution: "
            f"{inside or 'none marked'})",
            source=published_source(result),
        )
        means = [r.mean for r in rows if math.isfinite(r.mean)]
        log = bool(means) and min(means) > 0 and max(means) / min(means) >= 20
        ood_bars(
            doc,
            rows,
            name=figure_name(result.system, group, "ood_bars"),
            title=f"{result.system}{': ' + group if group else ''}: in distribution against OOD",
            ylabel=metric,
            log=log,
            caption=f"{metric} per model and split, mean over seeds with the std as error bar; grey: in distribution; "
            "crosses: published." + (" Log scale." if log else ""),
        )


# -- the closing sections ---------------------------------------------------------------------------


class _Header:
    """The provenance of one version from its file's attributes (no variable is read)."""

    def __init__(self, attrs: Mapping[str, Any]) -> None:
        self.kind = str(attrs["kind"])
        self.version = int(attrs["version"])
        self.content_sha256 = str(attrs["content_sha256"])
        self.created_utc = str(attrs["created_utc"])
        self.params = json.loads(attrs["params"])
        self.parents = [str(p) for p in json.loads(attrs["parents"])]
        self.seed = None if attrs["seed"] == "none" else attrs["seed"]


def provenance(doc: Document, published: Sequence[str]) -> None:
    """The sources of the published numbers, the Markdown's numbered sources, and every cited version:
    its kind, content hash, creation time, parameters and parents."""
    doc.heading(2, "Published numbers", anchor="published")
    if published:
        doc.bullets([[line] for line in published])
    else:
        doc.para("No published numbers are compared in this report.")
    if doc.sources:
        listed = "\n".join(f"- [{n}] {', '.join(refs)}" for refs, n in doc.sources.items())
        doc.raw("", "### Sources\n\nThe catalog versions behind each numbered row, line or figure above.\n\n" + listed)
    doc.heading(2, "Provenance", anchor="provenance")
    doc.para("Every catalog version cited above: its kind, content hash, creation time, parameters and parents.")
    cited = set(doc.refs)
    md = []
    for ref in doc.refs:
        info = _Header(read_file_attrs(doc.catalog.path_of(ref)))
        params = json.dumps(info.params, indent=1, sort_keys=True)
        parents = ", ".join(
            f'<a href="#{anchor(p)}">{html.escape(p)}</a>' if p in cited else f"<code>{html.escape(p)}</code>"
            for p in info.parents
        )
        doc.raw(
            f'<div class="prov" id="{html.escape(anchor(ref))}"><strong>{html.escape(ref)}</strong><dl>'
            f"<dt>kind</dt><dd>{html.escape(info.kind)}</dd>"
            f"<dt>version</dt><dd>{info.version}</dd>"
            f'<dt>sha256</dt><dd><code title="{info.content_sha256}">{info.content_sha256[:12]}</code></dd>'
            f"<dt>created</dt><dd>{html.escape(info.created_utc)}</dd>"
            f"<dt>seed</dt><dd>{'-' if info.seed is None else info.seed}</dd>"
            f"<dt>parents</dt><dd>{parents or '-'}</dd>"
            f"<dt>params</dt><dd><details><summary>JSON</summary><pre>{html.escape(params)}</pre></details></dd>"
            "</dl></div>"
        )
        md.append(
            f"- **{ref}**: kind {info.kind}, version {info.version}, sha256 {info.content_sha256[:12]}, "
            f"created {info.created_utc}, seed {'-' if info.seed is None else info.seed}, "
            f"parents {', '.join(info.parents) or '-'}, params `{json.dumps(info.params, sort_keys=True)}`"
        )
    doc.md.append("\n".join(md) if md else "No catalog version was cited.")
