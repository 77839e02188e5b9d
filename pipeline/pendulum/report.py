"""The pendulum's section of the OOD report: per protocol, the tables in the shape of the published
ones, every evaluation, rollouts, errors against time and the in-distribution against OOD bars.

Reads a :class:`~pipeline.results.SystemResult` whose ``details`` map a protocol ("emlp", "units") to
that protocol's summary (:func:`pipeline.pendulum.summary.pendulum_summary` plus the flow's settings:
preset, activation, substeps, dtype); a protocol whose summary has no rows is summarised from
``evaluations`` (model -> split -> refs, every protocol's models together).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline import report_figures as rf
from pipeline.pendulum.published import PUBLISHED
from pipeline.pendulum.summary import SYMMETRY_COLUMNS, pendulum_summary, summary_rows, symmetry_columns
from pipeline.report import Cell, Document, Fragment, ReportSection, fmt, ood_bars, pm, rows_by, seeds_text
from pipeline.results import SummaryRow, SystemResult
from sims.pendulum.protocols import TEST_SPLITS

NAME = "pendulum"
TITLE = "Springy double pendulum"
PROTOCOL_TITLES = {"emlp": "EMLP protocol", "units": "Units-equivariance protocol"}
PROTOCOL_NAMES = {"emlp": "the EMLP protocol", "units": "the units-equivariance protocol"}  # within a sentence
#: The state components drawn in the rollouts: (state vector, axis, label).
COMPONENTS = (("q1", 2, "q1 z (m)"), ("q2", 0, "q2 x (m)"), ("p2", 2, "p2 z (kg m s^-1)"))
FAMILIES = {"scalar": "Scalars O(3)", "mlp": "MLP"}
KINDS = {"node": "N-ODE", "hnn": "HNN"}
EMLP_PREFIX = "emlp-hnn-"
UNITS_LABELS = {"dimensional-hnn": "Baseline", "dimensionless-hnn": "Dimensionless"}
SPLIT_LABELS = {"exp1": "Exp 1", "exp2": "Exp 2", "exp3": "Exp 3"}
PUBLISHED_SOURCES = {
    "emlp": "Finzi, Welling, Wilson, ICML 2021 (scalars row: Yao et al. 2021, same protocol)",
    "units": "Villar, Yao, Hogg, Blum-Smith, Dumitrascu, JMLR 2023",
}
READING = (
    "the score is the geometric mean, over every test rollout and every time step, of the "
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


def _emlp_label(model: str) -> str:
    """'emlp-hnn-so2' -> 'EMLP SO(2)', as the published table names its rows."""
    group = model.removeprefix(EMLP_PREFIX).upper()
    return "EMLP " + re.sub(r"^(S?O)(\d+)$", r"\1(\2)", group)


def summaries(doc: Document, result: SystemResult) -> dict[str, dict[str, Any]]:
    """Protocol -> its summary, for every protocol run (the keys of the details). A protocol's summary
    without rows is read from the evaluations of the models evaluated on its test splits."""
    wrong = sorted(set(result.details) - set(PROTOCOL_TITLES))
    if wrong:
        raise ValueError(
            f"the {NAME} result's details map a protocol ({', '.join(PROTOCOL_TITLES)}) to that protocol's summary; "
            f"got the keys {wrong}"
        )
    out = {}
    for protocol in PROTOCOL_TITLES:
        if protocol not in result.details:
            continue
        summary = dict(result.details[protocol] or {})
        if "rows" not in summary:
            mine = {
                model: dict(splits)
                for model, splits in result.evaluations.items()
                if splits and set(splits) <= set(TEST_SPLITS[protocol])
            }
            summary.update(pendulum_summary(doc.catalog, protocol, mine, summary.get("variant", "reference")))
        out[protocol] = summary
    return out


def headline(doc: Document, result: SystemResult) -> list[Fragment]:
    data = summaries(doc, result)
    out: list[Fragment] = []
    for protocol in PROTOCOL_TITLES:
        if out:
            out.append(" ")
        if protocol not in data:
            out.append(f"{PROTOCOL_TITLES[protocol]}: not run.")
            continue
        rows = data[protocol]["rows"]
        seeds = seeds_text(r["seeds"] for r in rows)
        out.append(f"{PROTOCOL_TITLES[protocol]} (geometric-mean relative error, {seeds} seed(s)): ")
        models = list(dict.fromkeys(r["model"] for r in rows))
        for i, model in enumerate(models):
            out.append(("; " if i else "") + model)
            mine = [r for r in rows if r["model"] == model]
            for j, r in enumerate(mine):
                out += [("," if j else "") + f" {r['split']} ", doc.num(fmt(r["mean"]), r["evaluations"])]
                if r["published_mean"] is not None:
                    out += [" (published ", Cell(fmt(r["published_mean"]), source=PUBLISHED_SOURCES[protocol]), ")"]
        out.append("." if models else "no evaluations.")
    return out


def render(doc: Document, result: SystemResult) -> None:
    data = summaries(doc, result)
    for protocol in PROTOCOL_TITLES:
        if protocol not in data:
            doc.heading(3, PROTOCOL_TITLES[protocol], anchor=f"{NAME}-{protocol}")
            doc.para(f"{PROTOCOL_NAMES[protocol].capitalize()} was not run for this report.", css="missing")
            continue
        _protocol(doc, protocol, data[protocol], result.rows_of(protocol))


def _protocol(doc: Document, protocol: str, summary: Mapping[str, Any], given_rows: list[SummaryRow]) -> None:
    rows = summary["rows"]
    doc.heading(3, PROTOCOL_TITLES[protocol], anchor=f"{NAME}-{protocol}")
    meta = [f"{k} {summary[k]}" for k in ("preset", "variant", "activation", "substeps", "dtype") if k in summary]
    doc.para(f"Settings: {', '.join(meta)}; {seeds_text(r['seeds'] for r in rows)} training seed(s) per model.")
    if not rows:
        doc.para("No evaluations were given for this protocol.", css="missing")
        return
    if summary.get("variant", "reference") != "reference":
        doc.para(
            f"Note: these runs use the Hamiltonian variant '{summary['variant']}', the published numbers the "
            "'reference' one; the comparison is indicative only.",
            css="missing",
        )
    by = rows_by(rows, "model", "split")
    source = PUBLISHED_SOURCES[protocol]

    def published(model: str, split: str) -> Fragment:
        found = PUBLISHED.get((protocol, model, split))
        return Cell(pm(*found), source=source) if found else "-"

    def ours(r: Mapping[str, Any] | None) -> Fragment:
        return "not run" if r is None else doc.num(pm(r["mean"], r["std"], seeds=r["seeds"]), r["evaluations"])

    models = list(dict.fromkeys(r["model"] for r in rows))
    if protocol == "emlp":
        families = list(dict.fromkeys(m.rsplit("-", 1)[0] for m in models if m.rsplit("-", 1)[-1] in KINDS))
        headers = ["model"] + [f"{KINDS[k]} {w}" for k in KINDS for w in ("ours", "published")]
        table = []
        for family in families:
            row: list[Fragment] = [FAMILIES.get(family, family)]
            for kind in KINDS:
                row += [ours(by.get((f"{family}-{kind}", "test"))), published(f"{family}-{kind}", "test")]
            table.append(row)
        for model in (m for m in models if m.startswith(EMLP_PREFIX)):  # no EMLP N-ODE is built here
            row = [_emlp_label(model), "-", "-", ours(by.get((model, "test"))), published(model, "test")]
            table.append(row)
        caption = "Geometric-mean relative error on the test split, in the shape of the published table"
    else:
        splits = [s for s in TEST_SPLITS["units"] if any((m, s) in by for m in models)]
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
    errors = symmetry_columns(rows)

    def error(r: Mapping[str, Any], key: str) -> Fragment:
        return "-" if r.get(key) is None else doc.num(f"{r[key]:.1e}", r["evaluations"])

    doc.table(
        ["model", "split", "ours (mean ± std)", "units-invariant variant", "published", "seeds"]
        + [f"{SYMMETRY_COLUMNS[k]} (worst)" for k in errors],
        [
            [
                r["model"],
                r["split"],
                ours(r),
                doc.num(pm(r["blockwise_mean"], r["blockwise_std"], seeds=r["seeds"]), r["evaluations"]),
                published(r["model"], r["split"]),
                doc.num(str(r["seeds"]), r["evaluations"]),
                *(error(r, k) for k in errors),
            ]
            for r in rows
        ],
        caption="Every evaluation of this protocol"
        + (
            "; the symmetry errors are each model's worst relative change of its vector field under 8 random "
            "elements of the group (or changes of kg, m and s) at the split's first 64 states, in float64, the "
            "worst over seeds: round-off (below 1e-10) for a model exact under that group"
            if errors
            else ""
        ),
        labels=2,
    )
    evaluations: dict[str, dict[str, list[str]]] = {}  # model -> split -> refs, as the summary read them
    for r in rows:
        evaluations.setdefault(r["model"], {})[r["split"]] = list(r["evaluations"])
    splits = [s for s in TEST_SPLITS.get(protocol, ()) if any(s in e for e in evaluations.values())]
    splits += [s for e in evaluations.values() for s in e if s not in splits]
    name = f"{NAME}_{protocol}"
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
                                truth = {lab: raw[v].isel(sample=0, space=axis).values for v, axis, lab in COMPONENTS}
                            refs.append(truth_ref)
                        elif data_ref != truth_ref:
                            continue  # evaluated on other data: not comparable on one plot
                        predicted[model] = {
                            lab: ev[f"predicted_{v}"].isel(sample=0, component=axis).values
                            for v, axis, lab in COMPONENTS
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
    ood_bars(
        doc,
        given_rows or summary_rows({**summary, "protocol": protocol}),
        name=f"{name}_ood_bars",
        models=models,
        splits=splits,
        title=f"{PROTOCOL_TITLES[protocol]}: in distribution against OOD",
        ylabel="geometric-mean relative error",
        caption="Score per model and split, mean over seeds with the std as error bar; grey: in distribution; "
        "crosses: published. Log scale.",
        refs=all_refs,
    )


SECTION = ReportSection(
    name=NAME,
    title=TITLE,
    render=render,
    headline=headline,
    reading=READING,
    published=(
        f"Pendulum, EMLP protocol: {PUBLISHED_SOURCES['emlp']} (docs/protocols.md#pendulum-emlp-protocol).",
        f"Pendulum, units protocol: {PUBLISHED_SOURCES['units']} (docs/protocols.md#pendulum-units-protocol).",
    ),
)
