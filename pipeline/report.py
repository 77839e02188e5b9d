"""The out-of-distribution evaluation report: one self-contained HTML page and its Markdown twin.

:func:`build_report` reads the evaluation datasets that the pendulum, Rietkerk and halo flows stored
in the catalog and lays out, per system, the tables in the shape of the published ones (our mean
+- std over seeds beside the published numbers of ANCHORS.md), the plots (rollouts, errors against
time, in-distribution against OOD bars, regime maps and pattern snapshots, predicted against true
stellar masses and the stellar-to-halo relation) and a closing Provenance section with every
catalog version cited. In the HTML every number links to the versions it came from; in the Markdown
every table row names them through a numbered source. The tables come from :mod:`pipeline.summaries`.

The page has no scripts and no external resources: figures are embedded as base64 PNG data URIs and
the style sheet is inline. :func:`write_report` writes ``report.html``, ``report.md`` and
``figures/<name>.png`` atomically; :func:`report_dataset` and :func:`report_from_dataset` turn a
report into a catalog dataset of kind ``report`` and back, exactly.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_catalog import Catalog, DatasetSchema, VariableSpec, read_dataset_file, read_file_attrs, register_schema
from pipeline import report_figures as rf
from pipeline.outputs import write_atomic
from pipeline.published import HALOS, PENDULUM
from pipeline.summaries import discovery_lines, halos_summary, pendulum_summary, rietkerk_summary
from sims.halos import TARGETS as HALO_TARGETS
from sims.pendulum_protocols import TEST_SPLITS as PENDULUM_SPLITS
from sims.rietkerk_protocols import OOD_SPLITS as RIETKERK_OOD_SPLITS

log = logging.getLogger(__name__)

REPORT_KIND = "report"
DEFAULT_TITLE = "Out-of-distribution evaluation report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SYSTEMS = ("pendulum", "rietkerk", "halos")
SYSTEM_TITLES = {"pendulum": "Springy double pendulum", "rietkerk": "Rietkerk vegetation model", "halos": "Halos"}
PROTOCOL_TITLES = {"emlp": "EMLP protocol", "units": "Units-equivariance protocol"}
PROTOCOL_NAMES = {"emlp": "the EMLP protocol", "units": "the units-equivariance protocol"}  # within a sentence
#: The state components drawn in the pendulum rollouts: (state vector, axis, label).
PENDULUM_COMPONENTS = (("q1", 2, "q1 z (m)"), ("q2", 0, "q2 x (m)"), ("p2", 2, "p2 z (kg m s^-1)"))
PENDULUM_FAMILIES = {"scalar": "Scalars O(3)", "mlp": "MLP"}
PENDULUM_KINDS = {"node": "N-ODE", "hnn": "HNN"}
UNITS_LABELS = {"dimensional-hnn": "Baseline", "dimensionless-hnn": "Dimensionless"}
SPLIT_LABELS = {"exp1": "Exp 1", "exp2": "Exp 2", "exp3": "Exp 3"}
RIETKERK_SPLITS = ("test", *RIETKERK_OOD_SPLITS)
HALO_SPLITS = ("random", "mass_threshold", "subsampled")
HALO_MODELS = ("mass-only", "global", "scalars")
PUBLISHED_SOURCES = {
    "emlp": "Finzi, Welling, Wilson, ICML 2021 (scalars row: Yao et al. 2021, same protocol)",
    "units": "Villar, Yao, Hogg, Blum-Smith, Dumitrascu, JMLR 2023",
    "halos": "Storey-Fisher, Hogg, Genel, Villar et al. (IllustrisTNG TNG100-1-Dark halos matched to TNG100-1)",
}


def _check_report(ds: xr.Dataset) -> list[str]:
    problems = []
    offsets, counts = ds["figure_offset"].values, ds["figure_count"].values
    size = ds.sizes["byte"]
    for name, start, count in zip(ds["figure"].values, offsets, counts, strict=True):
        if start < 0 or count < 0 or start + count > size:
            problems.append(f"figure {name!r}: bytes [{start}, {start + count}) lie outside figure_bytes (0..{size})")
        elif bytes(ds["figure_bytes"].values[start : start + 8]) != PNG_SIGNATURE:
            problems.append(f"figure {name!r} is not a PNG (its first bytes are not the PNG signature)")
    return problems


register_schema(
    DatasetSchema(
        kind=REPORT_KIND,
        description="an OOD evaluation report: HTML and Markdown text, the PNG figures, the cited refs",
        variables={
            "html": VariableSpec(dims=(), dtype="str"),
            "markdown": VariableSpec(dims=(), dtype="str"),
            "figure_bytes": VariableSpec(dims=("byte",), units="1", dtype="integer"),
            "figure_offset": VariableSpec(dims=("figure",), units="1", dtype="integer"),
            "figure_count": VariableSpec(dims=("figure",), units="1", dtype="integer"),
            "cited": VariableSpec(dims=("ref",), dtype="str"),
        },
        coords={"figure": VariableSpec(dims=("figure",), dtype="str")},
        attrs=("title", "report_created_utc"),
        check=_check_report,
    )
)


@dataclass
class Report:
    """A built report: the page, its Markdown twin, the figures (PNG bytes by name) and every cited ref."""

    html: str
    markdown: str
    figures: dict[str, bytes] = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)
    title: str = DEFAULT_TITLE
    created_utc: str = ""
    preset: str | None = None


# -- a small document model: each block is rendered to HTML and to Markdown at once ---------------


@dataclass(frozen=True)
class Cell:
    """A piece of text; with ``refs`` a number read from those catalog versions, with ``source`` a
    published number (the paper)."""

    text: str
    refs: tuple[str, ...] = ()
    source: str | None = None


Fragment = str | Cell


class _Document:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
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
        text = html.escape(frag.text)
        if frag.refs:
            title = html.escape(", ".join(frag.refs))
            return f'<a class="num" href="#{_anchor(frag.refs[0])}" title="{title}">{text}</a>'
        if frag.source:
            return f'<a class="pub" href="#published" title="published: {html.escape(frag.source)}">{text}</a>'
        return text

    def frag_md(self, frag: Fragment, *, footnote: bool = True) -> str:
        if isinstance(frag, str):
            return frag
        if frag.refs and footnote:
            return f"{frag.text} [{self.source_number(frag.refs)}]"
        return frag.text

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
        self, headers: Sequence[str], rows: Sequence[Sequence[Fragment]], *, caption: str = "", labels: int = 1
    ) -> None:
        """A table whose first ``labels`` columns label the row; Markdown gets a ``sources`` column."""
        out = ['<table class="results">']
        if caption:
            out.append(f"<caption>{html.escape(caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead><tbody>")
        md = [f"| {' | '.join(_md_cell(h) for h in headers)} | sources |", "|" + "---|" * (len(headers) + 1)]
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
            sources = f"[{self.source_number(refs)}]" if refs else ""
            md.append("| " + " | ".join(_md_cell(self.frag_md(f, footnote=False)) for f in row) + f" | {sources} |")
        out.append("</tbody></table>")
        self.html.append("".join(out))
        self.md.append(("*" + caption + "*\n\n" if caption else "") + "\n".join(md))

    def figure(self, name: str, draw: Callable[[], bytes], caption: str, refs: Sequence[str]) -> None:
        """Draw a figure and embed it; if drawing fails, say so in the report instead."""
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
            links = f' <a class="num" href="#{_anchor(cited[0])}" title="{title}">[data: {len(cited)} version(s)]</a>'
        self.html.append(
            f'<figure id="fig-{html.escape(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}{links}</figcaption></figure>'
        )
        note = f" [{self.source_number(cited)}]" if cited else ""
        alt = caption.replace("[", "(").replace("]", ")")
        self.md.append(f"![{alt}](figures/{name}.png)\n\n*{caption}*{note}")


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


def _anchor(ref: str) -> str:
    return "ref-" + ref  # names are A-Za-z0-9._- and a ref adds @vN: valid, unique HTML ids


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt(x: float | None) -> str:
    """Errors of very different sizes: 4 decimals from 0.001 to 100, else 3 significant digits."""
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 100 else f"{x:.3g}"


def _pm(mean: float, std: float | None, fmt: Callable[[float], str] | None = None, seeds: int = 2) -> str:
    """mean ± std (by default both with the decimals :func:`_fmt` picks for the mean); the mean alone
    for a single seed, where there is no spread to show."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if fmt is not None:
        return fmt(mean) if seeds < 2 or std is None else f"{fmt(mean)} ± {fmt(std)}"
    fixed = mean == 0 or 1e-3 <= abs(mean) < 100
    if seeds < 2 or std is None:
        return f"{mean:.4f}" if fixed else f"{mean:.3g}"
    return f"{mean:.4f} ± {std:.4f}" if fixed else f"{mean:.3g} ± {std:.2g}"


def _f3(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _g4(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


# -- the systems' data: the flows' summaries (pipeline.summaries), computed here when absent ---------


def _given(result: Mapping[str, Any]) -> dict[str, Any]:
    summary = result.get("summary") or {}
    return dict(summary) if "rows" in summary else {}


def _pendulum_data(catalog: Catalog, results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for protocol in PROTOCOL_TITLES:
        if not results.get(protocol):
            continue
        result = results[protocol]
        summary = _given(result)
        if not summary:
            meta = dict(result.get("summary") or {})
            summary = {
                **meta,
                **pendulum_summary(catalog, protocol, result["evaluations"], meta.get("variant", "reference")),
            }
        out[protocol] = {"result": result, "summary": summary}
    return out


def _rietkerk_data(catalog: Catalog, result: Mapping[str, Any]) -> dict[str, Any]:
    summary = _given(result) or {**(result.get("summary") or {}), **rietkerk_summary(catalog, result["evaluations"])}
    return {"result": result, "summary": summary}


def _halos_data(catalog: Catalog, result: Mapping[str, Any]) -> dict[str, Any]:
    summary = _given(result) or {
        **(result.get("summary") or {}),
        **halos_summary(catalog, result["evaluations"], result.get("importance") or {}),
    }
    return {"result": result, "summary": summary}


def _rows_by(rows: Sequence[Mapping[str, Any]], *keys: str) -> dict[tuple, Mapping[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in rows}


def _seeds(rows: Sequence[Mapping[str, Any]]) -> str:
    counts = sorted({int(r["seeds"]) for r in rows}) or [0]
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"


# -- header lines ---------------------------------------------------------------------------------


def _pendulum_line(doc: _Document, data: Mapping[str, Any]) -> list[Fragment]:
    out: list[Fragment] = []
    for protocol in PROTOCOL_TITLES:
        if out:
            out.append(" ")
        if protocol not in data:
            out.append(f"{PROTOCOL_TITLES[protocol]}: not run.")
            continue
        rows = data[protocol]["summary"]["rows"]
        out.append(f"{PROTOCOL_TITLES[protocol]} (geometric-mean relative error, {_seeds(rows)} seed(s)): ")
        models = list(dict.fromkeys(r["model"] for r in rows))
        for i, model in enumerate(models):
            out.append(("; " if i else "") + model)
            mine = [r for r in rows if r["model"] == model]
            for j, r in enumerate(mine):
                out += [("," if j else "") + f" {r['split']} ", doc.num(_fmt(r["mean"]), r["evaluations"])]
                if r["published_mean"] is not None:
                    out += [" (published ", Cell(_fmt(r["published_mean"]), source=PUBLISHED_SOURCES[protocol]), ")"]
        out.append("." if models else "no evaluations.")
    return out


def _rietkerk_line(doc: _Document, data: Mapping[str, Any]) -> list[Fragment]:
    rows = data["summary"]["rows"]
    out: list[Fragment] = [f"emulator score (geometric-mean relative error, {_seeds(rows)} seed(s)): "]
    emulators = list(dict.fromkeys(r["emulator"] for r in rows))
    for i, emulator in enumerate(emulators):
        mine = {r["split"]: r for r in rows if r["emulator"] == emulator}
        out.append(("; " if i else "") + f"{emulator} ")
        if "test" in mine:
            out += ["test ", doc.num(_g4(mine["test"]["mean"]), mine["test"]["evaluations"])]
        ood = [r for s, r in mine.items() if s != "test"]
        if ood:
            worst = max(ood, key=lambda r: r["mean"])
            out += [", worst OOD ", doc.num(_g4(worst["mean"]), worst["evaluations"]), f" ({worst['split']})"]
    out.append("." if emulators else "no evaluations.")
    regimes = data["result"].get("regime_maps") or {}
    out.append(f" Regime maps: {len(regimes)}." if regimes else " Regime maps: not computed.")
    out.append(" Equation discovery: " + ("see below." if data["result"].get("discovery") else "not run."))
    return out


def _halos_line(doc: _Document, data: Mapping[str, Any]) -> list[Fragment]:
    rows = data["summary"]["rows"]
    out: list[Fragment] = []
    for target in dict.fromkeys(r["target"] for r in rows):
        random = {r["model"]: r for r in rows if r["target"] == target and r["split"] == "random"}
        if not random:
            continue
        out.append(("; " if out else "") + f"sigma68 of {target} on the random test split (dex): ")
        for i, (model, r) in enumerate(random.items()):
            out += [("; " if i else "") + f"{model} ", doc.num(_f3(r["sigma68"]), r["evaluations"])]
            published = HALOS.get((target, model, "random"))
            if published:
                out += [" (published ", Cell(_f3(published[0]), source=PUBLISHED_SOURCES["halos"]), ")"]
    if not out:
        out.append("no evaluations on the random split")
    out.append(".")
    return out


# -- pendulum --------------------------------------------------------------------------------------


def _pendulum_section(doc: _Document, data: Mapping[str, Any]) -> None:
    doc.heading(2, SYSTEM_TITLES["pendulum"], anchor="pendulum")
    doc.para(
        "How to read this: the score is the geometric mean, over every test rollout and every time step, of the "
        "relative state error |a - b| / (|a| + |b|) over the 12 numbers of the state (positions in m, momenta in kg "
        "m/s); 0 is a perfect rollout, 1 the worst possible, lower is better. Each rollout starts from the first true"
        " state of a test trajectory and runs the whole trajectory (at the quick and paper presets 150 points 0.2 s "
        "apart in the EMLP protocol, 60 in the units protocol). The units-invariant variant averages the same ratio "
        "taken separately over positions and momenta, which no change of units can move. EMLP protocol: the test "
        "systems come from the training distribution. Units protocol: Exp 1 is the training distribution; Exp 2 "
        "multiplies every input that carries kg (masses, stiffnesses, momenta) by one factor in [3, 7] per system, a "
        "change of the unit of mass that a units-equivariant model must not notice; Exp 3 widens masses, stiffnesses "
        "and lengths from [1, 2] to [1, 5], a real extrapolation. Published numbers were made with the reference "
        "code's Hamiltonian (variant 'reference')."
    )
    for protocol in PROTOCOL_TITLES:
        if protocol not in data:
            doc.heading(3, PROTOCOL_TITLES[protocol], anchor=f"pendulum-{protocol}")
            doc.para(f"{PROTOCOL_NAMES[protocol].capitalize()} was not run for this report.", css="missing")
            continue
        _pendulum_protocol(doc, protocol, data[protocol])


def _pendulum_protocol(doc: _Document, protocol: str, data: Mapping[str, Any]) -> None:
    summary, result = data["summary"], data["result"]
    rows = summary["rows"]
    doc.heading(3, PROTOCOL_TITLES[protocol], anchor=f"pendulum-{protocol}")
    meta = [f"{k} {summary[k]}" for k in ("preset", "variant", "activation", "substeps", "dtype") if k in summary]
    doc.para(f"Settings: {', '.join(meta)}; {_seeds(rows)} training seed(s) per model.")
    if not rows:
        doc.para("No evaluations were given for this protocol.", css="missing")
        return
    if summary.get("variant", "reference") != "reference":
        doc.para(
            f"Note: these runs use the Hamiltonian variant '{summary['variant']}', the published numbers the "
            "'reference' one; the comparison is indicative only.",
            css="missing",
        )
    by = _rows_by(rows, "model", "split")
    source = PUBLISHED_SOURCES[protocol]

    def published(model: str, split: str) -> Fragment:
        found = PENDULUM.get((protocol, model, split))
        return Cell(_pm(*found), source=source) if found else "-"

    def ours(r: Mapping[str, Any] | None) -> Fragment:
        return "not run" if r is None else doc.num(_pm(r["mean"], r["std"], seeds=r["seeds"]), r["evaluations"])

    models = list(dict.fromkeys(r["model"] for r in rows))
    if protocol == "emlp":
        families = list(dict.fromkeys(m.rsplit("-", 1)[0] for m in models if m.rsplit("-", 1)[-1] in PENDULUM_KINDS))
        headers = ["model"] + [f"{PENDULUM_KINDS[k]} {w}" for k in PENDULUM_KINDS for w in ("ours", "published")]
        table = []
        for family in families:
            row: list[Fragment] = [PENDULUM_FAMILIES.get(family, family)]
            for kind in PENDULUM_KINDS:
                row += [ours(by.get((f"{family}-{kind}", "test"))), published(f"{family}-{kind}", "test")]
            table.append(row)
        caption = "Geometric-mean relative error on the test split, in the shape of the published table"
    else:
        splits = [s for s in PENDULUM_SPLITS["units"] if any((m, s) in by for m in models)]
        headers = ["scalar-based MLP"] + [
            f"{SPLIT_LABELS.get(s, s)} {w}" for s in splits for w in ("ours", "published")
        ]
        table = []
        for model in models:
            row = [f"{UNITS_LABELS[model]} ({model})" if model in UNITS_LABELS else model]
            for split in splits:
                row += [ours(by.get((model, split))), published(model, split)]
            table.append(row)
        caption = "Geometric-mean relative error per test set, in the shape of the published table"
    if table:
        doc.table(headers, table, caption=caption + f" (ours: mean ± std over seeds; published: {source})")
    doc.table(
        ["model", "split", "ours (mean ± std)", "units-invariant variant", "published", "seeds"],
        [
            [
                r["model"],
                r["split"],
                ours(r),
                doc.num(_pm(r["blockwise_mean"], r["blockwise_std"], seeds=r["seeds"]), r["evaluations"]),
                published(r["model"], r["split"]),
                doc.num(str(r["seeds"]), r["evaluations"]),
            ]
            for r in rows
        ],
        caption="Every evaluation of this protocol",
        labels=2,
    )
    evaluations = result["evaluations"]
    splits = [s for s in PENDULUM_SPLITS.get(protocol, ()) if any(s in e for e in evaluations.values())]
    splits += [s for e in evaluations.values() for s in e if s not in splits]
    name = f"pendulum_{protocol}"
    read: dict[str, Any] = {}

    def collect() -> dict[str, Any]:
        """One pass over the evaluations: errors against time (every seed) and, for seed 0, the first
        rollout of each split beside its truth from the test dataset."""
        if read:
            return read
        curves: dict[str, dict[str, list]] = {}
        rollouts: dict[str, tuple] = {}
        refs: list[str] = []
        for split in splits:
            truth_ref, truth, times, predicted = None, {}, None, {}
            for model, per_split in evaluations.items():
                for seed, ref in enumerate(per_split.get(split, [])):
                    with doc.open(ref) as ev:
                        curves.setdefault(split, {}).setdefault(model, []).append(
                            (ev["time"].values, ev["score_per_time"].values)
                        )
                        if seed:
                            continue
                        data_ref = doc.catalog.resolve(ev.attrs["data"])
                        if truth_ref is None:
                            truth_ref, times = data_ref, ev["time"].values
                            with doc.open(truth_ref) as raw:
                                truth = {
                                    lab: raw[v].isel(sample=0, space=axis).values
                                    for v, axis, lab in PENDULUM_COMPONENTS
                                }
                            refs.append(truth_ref)
                        elif data_ref != truth_ref:
                            continue  # evaluated on other data: not comparable on one plot
                        predicted[model] = {
                            lab: ev[f"predicted_{v}"].isel(sample=0, component=axis).values
                            for v, axis, lab in PENDULUM_COMPONENTS
                        }
                        refs.append(ref)
            if predicted:
                rollouts[split] = (times, truth, predicted)
        read.update(curves=curves, rollouts=rollouts, refs=refs)
        return read

    rollout_refs: list[str] = []

    def draw_rollouts() -> bytes:
        rollout_refs.extend(collect()["refs"])
        title = f"{PROTOCOL_TITLES[protocol]}: the first test trajectory of each split (seed 0 models)"
        return rf.rollout_figure(collect()["rollouts"], title=title)

    doc.figure(
        f"{name}_rollouts",
        draw_rollouts,
        "Rollouts of each model (seed 0) from the first state of the first test trajectory of each split, against "
        "the true trajectory (dashed, from the test dataset); three of the twelve state components.",
        rollout_refs,  # filled while drawing: the evaluations and the test datasets read
    )

    def draw_errors() -> bytes:
        return rf.error_time_figure(
            collect()["curves"],
            title=f"{PROTOCOL_TITLES[protocol]}: error against time",
            ylabel="geometric-mean relative error",
        )

    all_refs = [r for e in evaluations.values() for s in splits for r in e.get(s, [])]
    doc.figure(
        f"{name}_error_time",
        draw_errors,
        "Geometric mean over test trajectories of the relative state error at each time, per split and model "
        "(line: geometric mean over seeds; band: the seeds' range). Log scale.",
        all_refs,
    )
    values = {(r["model"], r["split"]): (r["mean"], r["std"]) for r in rows}
    published_values = {(r["model"], r["split"]): r["published_mean"] for r in rows if r["published_mean"] is not None}
    doc.figure(
        f"{name}_ood_bars",
        lambda: rf.ood_bars_figure(
            models,
            splits,
            values,
            published=published_values,
            title=f"{PROTOCOL_TITLES[protocol]}: in distribution against OOD",
            ylabel="geometric-mean relative error",
        ),
        "Score per model and split, mean over seeds with the std as error bar; grey: in distribution; crosses: "
        "published. Log scale.",
        all_refs,
    )


# -- Rietkerk --------------------------------------------------------------------------------------


def _rietkerk_section(doc: _Document, data: Mapping[str, Any]) -> None:
    summary, result = data["summary"], data["result"]
    rows = summary["rows"]
    doc.heading(2, SYSTEM_TITLES["rietkerk"], anchor="rietkerk")
    doc.para(
        "How to read this: the emulators map the model's parameters to four dimensionless statistics of the "
        "vegetation pattern at the end of the run (mean biomass / k2, its standard deviation / k2, mean soil water "
        "/ k1, cover fraction). The score is the geometric mean over test runs of the relative error |a - b| / "
        "(|a| + |b|) of those four numbers; lower is better, 0 is exact. The 'pi' emulator reads the 12 Pi groups "
        "of the parameters, the 'dimensional' baseline the 16 parameters as numbers. Splits: test, the training "
        "distribution; units, the same test systems written in ml, kg, hours and cm (the Pi-group emulator must "
        "give identical answers); rainfall, R above the training range; shifted, c, dv and alpha outside their "
        "training ranges; rescaled, systems with 3x slower dynamics on a 2x larger patch, whose dimensional values "
        "lie far outside training but whose Pi groups do not. No published numbers exist for these emulators."
    )
    doc.para(f"Settings: preset {summary.get('preset') or 'n/a'}; {_seeds(rows)} training seed(s) per emulator.")
    if rows:
        by = _rows_by(rows, "emulator", "split")
        emulators = list(dict.fromkeys(r["emulator"] for r in rows))
        splits = [s for s in RIETKERK_SPLITS if any((e, s) in by for e in emulators)]
        splits += [s for s in dict.fromkeys(r["split"] for r in rows) if s not in splits]
        doc.table(
            ["emulator", *splits],
            [
                [e]
                + [
                    doc.num(_pm(by[e, s]["mean"], by[e, s]["std"], _g4, by[e, s]["seeds"]), by[e, s]["evaluations"])
                    if (e, s) in by
                    else "-"
                    for s in splits
                ]
                for e in emulators
            ],
            caption="Emulator score per split (geometric-mean relative error of the dimensionless statistics; "
            "mean ± std over seeds)",
        )
        targets = list(rows[0]["rmse"])
        doc.table(
            ["emulator", "split", *[f"RMSE {t}" for t in targets], "seeds"],
            [
                [r["emulator"], r["split"]]
                + [doc.num(_g4(r["rmse"][t]), r["evaluations"]) for t in targets]
                + [doc.num(str(r["seeds"]), r["evaluations"])]
                for r in rows
            ],
            caption="Root-mean-square error of each dimensionless statistic (mean over seeds)",
            labels=2,
        )
        all_refs = [ref for r in rows for ref in r["evaluations"]]
        doc.figure(
            "rietkerk_ood_bars",
            lambda: rf.ood_bars_figure(
                emulators,
                splits,
                {(r["emulator"], r["split"]): (r["mean"], r["std"]) for r in rows},
                title="Rietkerk emulators: in distribution against OOD",
                ylabel="geometric-mean relative error",
            ),
            "Emulator score per split, mean over seeds with the std as error bar; grey: in distribution. Log scale.",
            all_refs,
        )
    else:
        doc.para("No emulator evaluations were given.", css="missing")
    _rietkerk_maps(doc, result.get("regime_maps") or {})
    _rietkerk_discovery(doc, result.get("discovery"))


def _rietkerk_maps(doc: _Document, maps: Mapping[str, str]) -> None:
    from pipeline.rietkerk_regimes import regime_labels, regime_map_figure

    doc.heading(3, "Regime maps", anchor="rietkerk-regimes")
    if not maps:
        doc.para("The regime maps were not computed in this run.", css="missing")
        return
    datasets = {}
    for name, ref in maps.items():
        with doc.open(ref) as ds:
            datasets[name] = ds.load()
    refs = list(maps.values())
    doc.para(
        "The state at the end of the run over rainfall R, classified into bare soil, spots, labyrinths, gaps and "
        "uniform cover from its pattern statistics, beside linear stability of the uniform state (shaded: "
        "Turing-unstable). The run length is not an equilibrium: patterns keep coarsening."
    )
    items = []
    for (name, ref), ds in zip(maps.items(), datasets.values(), strict=True):
        pairs = ", ".join(f"{r:.4g}: {lab}" for r, lab in zip(ds["R"].values, regime_labels(ds), strict=True))
        head = (
            f"{name} ({ds.attrs.get('parameters', '?')} parameters, {ds.attrs.get('initial_condition', '?')} start, "
            f"T = {ds.attrs.get('T', float('nan')):g} d): "
        )
        items.append([head, doc.num(pairs, [ref])])
    doc.bullets(items)
    doc.figure(
        "rietkerk_regime_maps",
        lambda: rf.shrink_png(regime_map_figure(list(datasets.values()))),
        "Regime maps: mean biomass at the end of the run against rainfall, coloured by regime, with snapshots.",
        refs,
    )
    doc.figure(
        "rietkerk_snapshots",
        lambda: rf.regime_snapshots_figure(list(datasets.values())),
        "Pattern snapshots: the biomass field at the end of the run at a few rainfalls (every regime found is "
        "shown where there is room), titled with R and the regime label.",
        refs,
    )


def _rietkerk_discovery(doc: _Document, ref: str | None) -> None:
    doc.heading(3, "Equation discovery", anchor="rietkerk-discovery")
    if not ref:
        doc.para("Equation discovery was not run for this report.", css="missing")
        return
    with doc.open(ref) as ds:
        lines = discovery_lines(ds.load())
    doc.para(
        "Sparse regression of the dimensionless right-hand sides on a library of candidate terms: each fitted "
        "coefficient beside the true one; then rollouts of the true equations, the fitted ones and a reaction MLP "
        "from the same start, compared by their regime and mean biomass (g m^-2)."
    )
    tables: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("|"):
            tables[-1].append(line)
        elif tables[-1]:
            tables.append([])
    captions = ["Fitted against true coefficients", "Rollouts at a few rainfalls"]
    for i, table in enumerate(t for t in tables if len(t) >= 2):
        header = [c.strip() for c in table[0].strip("|").split("|")]
        body = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
        doc.table(
            header,
            [[row[0]] + [doc.num(c, [ref]) for c in row[1:]] for row in body],
            caption=captions[i] if i < len(captions) else "",
        )


# -- halos -----------------------------------------------------------------------------------------


def _halos_section(doc: _Document, data: Mapping[str, Any]) -> None:
    summary, result = data["summary"], data["result"]
    rows = summary["rows"]
    doc.heading(2, SYSTEM_TITLES["halos"], anchor="halos")
    doc.para(
        "How to read this: sigma68 is half the 16-84 percentile range of the residuals, true minus predicted log "
        "stellar mass, in dex; lower is better. Models: mass-only, the fitted stellar-to-halo relation; global, "
        "halo mass plus concentration, spin and velocity dispersion; scalars, halo mass plus the invariant scalars "
        "of the particles. The ratio to mass-only is the model's sigma68 over the mass-only one on the same split. "
        "Splits: random, the test part of a 70/15/15 split (in distribution); mass_threshold, trained below the "
        "80 % quantile of halo mass and tested above it (extrapolation in mass); subsampled, the random test halos "
        "with a quarter of their particles (lower resolution). 'within 1 sigma' is the fraction of halos whose "
        "residual lies within the predicted uncertainty (0.683 when calibrated). The published numbers are for "
        "IllustrisTNG halos; ours come from the catalog named in the provenance (a synthetic population unless a "
        "real catalog was ingested), so they compare the method, not the same data."
    )
    doc.para(f"Settings: preset {summary.get('preset') or 'n/a'}; {_seeds(rows)} training seed(s) per model.")
    if not rows:
        doc.para("No halo evaluations were given.", css="missing")
        return
    by = _rows_by(rows, "target", "model", "split")
    targets = list(dict.fromkeys(r["target"] for r in rows))
    models = [m for m in HALO_MODELS if any(r["model"] == m for r in rows)]
    models += [m for m in dict.fromkeys(r["model"] for r in rows) if m not in models]
    splits = [s for s in HALO_SPLITS if any(r["split"] == s for r in rows)]
    splits += [s for s in dict.fromkeys(r["split"] for r in rows) if s not in splits]
    source = PUBLISHED_SOURCES["halos"]
    others = [s for s in splits if s != "random"]
    for target in targets:
        base = by.get((target, "mass-only", "random"))
        published_base = HALOS.get((target, "mass-only", "random"))
        table = []
        for model in models:
            r = by.get((target, model, "random"))
            row: list[Fragment] = [model]
            if r is None:
                row += ["not run", "-"]
            else:
                row.append(doc.num(_pm(r["sigma68"], r["std"], _f3, r["seeds"]), r["evaluations"]))
                row.append(
                    doc.num(f"{r['sigma68'] / base['sigma68']:.3f}", r["evaluations"] + base["evaluations"])
                    if base and base["sigma68"] > 0
                    else "-"
                )
            pub = HALOS.get((target, model, "random"))
            row.append(Cell(_f3(pub[0]), source=source) if pub else "-")
            row.append(Cell(f"{pub[0] / published_base[0]:.3f}", source=source) if pub and published_base else "-")
            for split in others:
                o = by.get((target, model, split))
                row.append(doc.num(_pm(o["sigma68"], o["std"], _f3, o["seeds"]), o["evaluations"]) if o else "-")
            if r is None:
                row += ["-", "-", "-"]
            else:
                row += [
                    doc.num(f"{r['within_1sigma']:.2f}", r["evaluations"]),
                    doc.num(str(r["halos"]), r["evaluations"]),
                    doc.num(str(r["seeds"]), r["evaluations"]),
                ]
            table.append(row)
        doc.table(
            [
                "model",
                "sigma68 random (ours)",
                "ratio to mass-only (ours)",
                "sigma68 (published)",
                "ratio to mass-only (published)",
                *[f"sigma68 {s}" for s in others],
                "within 1 sigma (random)",
                "test halos (random)",
                "seeds",
            ],
            table,
            caption=f"sigma68 of {target} (dex; ours: mean ± std over seeds; published: {source})",
        )
        _halo_bins(doc, target, models, by)
        _halo_figures(doc, target, models, splits, by, result["evaluations"])
    for target, ranking in summary.get("importance", {}).items():
        ref = ranking["ref"]
        doc.table(
            ["step", "scalar", "validation sigma68 (dex)", "information"],
            [
                [
                    str(i),
                    step["feature"],
                    doc.num(f"{step['sigma68']:.4f}", [ref]),
                    doc.num(f"{step['information']:.2f}", [ref]),
                ]
                for i, step in enumerate(ranking["steps"])
            ],
            caption=(
                f"Forward selection on the mass-only residuals of {target}: the scalars in the order chosen, the "
                f"validation sigma68 after adding each, and the fraction of the improvement that all scalars reach "
                f"(sigma68 with all: {ranking['sigma68_all']:.4f} dex)"
            ),
            labels=2,
        )


def _halo_bins(doc: _Document, target: str, models: Sequence[str], by: Mapping[tuple, Mapping[str, Any]]) -> None:
    present = [m for m in models if (target, m, "random") in by]
    if not present:
        return
    bins = by[target, present[0], "random"]["bins"]
    headers = ["model"] + [f"[{b['low']:g}, {b['high']:g})" for b in bins]
    first = by[target, present[0], "random"]
    table: list[list[Fragment]] = [["test halos per bin"] + [doc.num(str(b["n"]), first["evaluations"]) for b in bins]]
    for model in present:
        r = by[target, model, "random"]
        table.append(
            [model]
            + [doc.num(_f3(b["sigma68"]), r["evaluations"]) if b["sigma68"] is not None else "-" for b in r["bins"]]
        )
    doc.table(
        headers,
        table,
        caption=f"sigma68 of {target} (dex) per bin of log10 M200m / Msun, random split, mean over seeds "
        "('-': fewer than 10 halos)",
    )


def _halo_figures(
    doc: _Document,
    target: str,
    models: Sequence[str],
    splits: Sequence[str],
    by: Mapping[tuple, Mapping[str, Any]],
    evaluations: Mapping[str, Mapping[str, list[str]]],
) -> None:
    quantity = HALO_TARGETS.get(target, target)
    first = {
        m: evaluations[f"{target}/{m}"]["random"][0]
        for m in models
        if evaluations.get(f"{target}/{m}", {}).get("random")
    }
    loaded: dict[str, xr.Dataset] = {}

    def load() -> dict[str, xr.Dataset]:
        if not loaded:
            for model, ref in first.items():
                with doc.open(ref) as ds:
                    loaded[model] = ds[["true", "predicted_mean", "log_m200m", "sigma68"]].load()
        return loaded

    def draw_scatter() -> bytes:
        panels = {m: (ds["true"].values, ds["predicted_mean"].values, float(ds["sigma68"])) for m, ds in load().items()}
        return rf.predicted_true_figure(panels, quantity=quantity, title=f"{target}, random test split (seed 0 models)")

    def draw_relation() -> bytes:
        datasets = load()
        ds0 = next(iter(datasets.values()))
        for m, ds in datasets.items():
            if not np.array_equal(ds["log_m200m"].values, ds0["log_m200m"].values):
                raise ValueError(f"the evaluations of {m} and {next(iter(datasets))} hold different halos")
        return rf.stellar_to_halo_figure(
            ds0["log_m200m"].values,
            ds0["true"].values,
            {m: ds["predicted_mean"].values for m, ds in datasets.items()},
            quantity=quantity,
            title=f"{target} against halo mass, random test split",
        )

    if first:
        doc.figure(
            f"halos_{target}_predicted_true",
            draw_scatter,
            f"Predicted against true {quantity} on the random test split, one panel per model (seed 0), with the 1:1 "
            "line and that evaluation's sigma68.",
            list(first.values()),
        )
        doc.figure(
            f"halos_{target}_stellar_to_halo",
            draw_relation,
            f"The stellar-to-halo relation: true {quantity} of the random test halos against log10 M200m, with the "
            "running median of the truth and of each model's predicted mean (seed 0).",
            list(first.values()),
        )
    rows = [by[k] for k in by if k[0] == target]
    published = {(m, "random"): HALOS[target, m, "random"][0] for m in models if (target, m, "random") in HALOS}
    doc.figure(
        f"halos_{target}_ood_bars",
        lambda: rf.ood_bars_figure(
            models,
            splits,
            {(r["model"], r["split"]): (r["sigma68"], r["std"]) for r in rows},
            published=published,
            title=f"{target}: in distribution against OOD",
            ylabel="sigma68 (dex)",
            log=False,
        ),
        "sigma68 per model and split, mean over seeds with the std as error bar; grey: in distribution "
        "(random); crosses: published (random split).",
        [ref for r in rows for ref in r["evaluations"]],
    )


# -- assembling ------------------------------------------------------------------------------------

_CSS = """
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


def _provenance(doc: _Document) -> None:
    doc.heading(2, "Published numbers", anchor="published")
    doc.bullets(
        [
            [f"Pendulum, EMLP protocol: {PUBLISHED_SOURCES['emlp']} (ANCHORS.md, section 1)."],
            [f"Pendulum, units protocol: {PUBLISHED_SOURCES['units']} (ANCHORS.md, section 2)."],
            [f"Halos: {PUBLISHED_SOURCES['halos']} (ANCHORS.md, section 4)."],
            ["Rietkerk: no published emulator or equation-discovery numbers exist (ANCHORS.md, section 3)."],
        ]
    )
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
            f'<a href="#{_anchor(p)}">{html.escape(p)}</a>' if p in cited else f"<code>{html.escape(p)}</code>"
            for p in info.parents
        )
        doc.raw(
            f'<div class="prov" id="{html.escape(_anchor(ref))}"><strong>{html.escape(ref)}</strong><dl>'
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


def build_report(
    catalog: Catalog, results: Mapping[str, Any], *, title: str = DEFAULT_TITLE, preset: str | None = None
) -> Report:
    """The OOD evaluation report of the flows' ``results`` (any subset of "pendulum", "rietkerk", "halos").

    ``results["pendulum"]`` maps a protocol ("emlp", "units") to the dict that ``pendulum_flow`` returns;
    ``results["rietkerk"]`` and ``results["halos"]`` are the dicts of ``rietkerk_flow`` and
    ``halos_flow``. The tables are recomputed with :mod:`pipeline.summaries` from the evaluation refs,
    so every number is read from the catalog versions it cites. A system that is absent is named as
    not run.
    """
    unknown = sorted(set(results) - set(SYSTEMS))
    if unknown:
        raise ValueError(f"build_report: unknown system(s) {unknown}; expected some of {list(SYSTEMS)}")
    wrong = sorted(set(results.get("pendulum") or {}) - set(PROTOCOL_TITLES))
    if wrong:
        raise ValueError(
            f"build_report: results['pendulum'] maps a protocol ({', '.join(PROTOCOL_TITLES)}) to what pendulum_flow "
            f"returned; got the keys {wrong}"
        )
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = _Document(catalog)
    data: dict[str, Any] = {}
    if results.get("pendulum"):
        data["pendulum"] = _pendulum_data(catalog, results["pendulum"])
    if results.get("rietkerk"):
        data["rietkerk"] = _rietkerk_data(catalog, results["rietkerk"])
    if results.get("halos"):
        data["halos"] = _halos_data(catalog, results["halos"])

    doc.heading(1, title)
    doc.para(
        f"Preset: {preset or 'n/a'}. Created {created} (UTC). Catalog: {catalog.root}.",
        css="meta",
    )
    lines = {"pendulum": _pendulum_line, "rietkerk": _rietkerk_line, "halos": _halos_line}
    doc.bullets(
        [
            [f"{SYSTEM_TITLES[s]}: "] + (lines[s](doc, data[s]) if s in data else ["not run for this report."])
            for s in SYSTEMS
        ]
    )
    doc.para(
        "Every number in the tables links to the catalog versions it was read from (hover for the list; "
        "the link leads to the Provenance section at the end). Published numbers are grey.",
        css="meta",
    )
    sections = {"pendulum": _pendulum_section, "rietkerk": _rietkerk_section, "halos": _halos_section}
    for system in SYSTEMS:
        if system in data:
            sections[system](doc, data[system])
        else:
            doc.heading(2, SYSTEM_TITLES[system], anchor=system)
            doc.para(f"{SYSTEM_TITLES[system]}: not run for this report.", css="missing")
    _provenance(doc)

    body = "\n".join(part for part in doc.html if part)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    markdown = "\n\n".join(part for part in doc.md if part) + "\n"
    return Report(
        html=page,
        markdown=markdown,
        figures=dict(doc.figures),
        refs=list(doc.refs),
        title=title,
        created_utc=created,
        preset=preset,
    )


# -- writing ---------------------------------------------------------------------------------------


def write_report(report: Report, directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and ``figures/<name>.png`` under ``directory`` (created).

    Each file is written to a temporary file and renamed into place, figures first and the page
    last, so an interrupted write leaves the previous files or complete new ones, never half a page.
    Returns the paths: ``"html"``, ``"markdown"`` and, per figure, its path relative to ``directory``
    (``"figures/<name>.png"``, as the Markdown links it).
    """
    root = Path(directory)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, png in report.figures.items():
        path = root / "figures" / f"{name}.png"
        write_atomic(path, png)
        written[f"figures/{name}.png"] = path
    for key, name, text in (("markdown", "report.md", report.markdown), ("html", "report.html", report.html)):
        write_atomic(root / name, text.encode("utf-8"))
        written[key] = root / name
    return written


def report_dataset(report: Report) -> xr.Dataset:
    """The report as a dataset of kind ``report`` (text as string variables, the figures as one flat
    uint8 array with per-figure offsets and counts, the cited refs), for ``catalog.write``."""
    names = list(report.figures)
    blobs = [np.frombuffer(report.figures[n], dtype=np.uint8) for n in names]
    counts = np.array([b.size for b in blobs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if names else counts
    attrs = {"title": report.title, "report_created_utc": report.created_utc}
    if report.preset is not None:
        attrs["preset"] = report.preset
    return xr.Dataset(
        {
            "html": ((), np.str_(report.html)),
            "markdown": ((), np.str_(report.markdown)),
            "figure_bytes": (
                ("byte",),
                np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8),
                {"units": "1", "long_name": "the PNG files, one after the other"},
            ),
            "figure_offset": (("figure",), offsets, {"units": "1"}),
            "figure_count": (("figure",), counts, {"units": "1"}),
            "cited": (("ref",), np.array(report.refs, dtype=str)),
        },
        coords={"figure": ("figure", np.array(names, dtype=str))},
        attrs=attrs,
    )


def report_from_dataset(ds: xr.Dataset) -> Report:
    """The :class:`Report` stored by :func:`report_dataset` (exactly as it was)."""
    data = ds["figure_bytes"].values
    figures = {
        str(name): data[int(start) : int(start) + int(count)].tobytes()
        for name, start, count in zip(
            ds["figure"].values, ds["figure_offset"].values, ds["figure_count"].values, strict=True
        )
    }
    preset = ds.attrs.get("preset")
    return Report(
        html=str(ds["html"].values.item()),
        markdown=str(ds["markdown"].values.item()),
        figures=figures,
        refs=[str(r) for r in ds["cited"].values],
        title=str(ds.attrs.get("title", DEFAULT_TITLE)),
        created_utc=str(ds.attrs.get("report_created_utc", "")),
        preset=None if preset is None else str(preset),
    )
