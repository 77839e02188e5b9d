"""The Rietkerk section of the OOD report: the emulators' scores and RMSEs per split, the in-distribution
against OOD bars, the regime maps with pattern snapshots, and equation discovery.

Reads a :class:`~pipeline.results.SystemResult` whose ``details`` are the flow's summary
(:func:`pipeline.rietkerk.summary.rietkerk_summary` plus its preset; without rows it is recomputed from
``evaluations``, emulator -> split -> refs) and whose ``artifacts`` hold "regime_maps" (name -> ref)
and "discovery" (a ref, or None when not run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline import report_figures as rf
from pipeline.report import Document, Fragment, ReportSection, g4, ood_bars, pm, rows_by, seeds_text
from pipeline.results import SystemResult
from pipeline.rietkerk.figures import regime_snapshots_figure
from pipeline.rietkerk.summary import discovery_lines, rietkerk_summary, summary_rows
from sims.rietkerk.protocols import OOD_SPLITS

NAME = "rietkerk"
TITLE = "Rietkerk vegetation model"
SPLITS = ("test", *OOD_SPLITS)
READING = (
    "the emulators map the model's parameters to four dimensionless statistics of the "
    "vegetation pattern at the end of the run (mean biomass / k2, its standard deviation / k2, mean soil water "
    "/ k1, cover fraction). The score is the geometric mean over test runs of the relative error |a - b| / "
    "(|a| + |b|) of those four numbers; lower is better, 0 is exact. The 'pi' emulator reads the 12 Pi groups "
    "of the parameters, the 'dimensional' baseline the 16 parameters as numbers. Splits: test, the training "
    "distribution; units, the same test systems written in ml, kg, hours and cm (the Pi-group emulator must "
    "give identical answers); rainfall, R above the training range; shifted, c, dv and alpha outside their "
    "training ranges; rescaled, systems with 3x slower dynamics on a 2x larger patch, whose dimensional values "
    "lie far outside training but whose Pi groups do not. No published numbers exist for these emulators."
)


def summary(doc: Document, result: SystemResult) -> dict[str, Any]:
    """The flow's summary, recomputed from the evaluations when the details have no rows."""
    given = dict(result.details)
    if "rows" in given:
        return given
    return {**given, **rietkerk_summary(doc.catalog, dict(result.evaluations))}


def headline(doc: Document, result: SystemResult) -> list[Fragment]:
    rows = summary(doc, result)["rows"]
    seeds = seeds_text(r["seeds"] for r in rows)
    out: list[Fragment] = [f"emulator score (geometric-mean relative error, {seeds} seed(s)): "]
    emulators = list(dict.fromkeys(r["emulator"] for r in rows))
    for i, emulator in enumerate(emulators):
        mine = {r["split"]: r for r in rows if r["emulator"] == emulator}
        out.append(("; " if i else "") + f"{emulator} ")
        if "test" in mine:
            out += ["test ", doc.num(g4(mine["test"]["mean"]), mine["test"]["evaluations"])]
        ood = [r for s, r in mine.items() if s != "test"]
        if ood:
            worst = max(ood, key=lambda r: r["mean"])
            out += [", worst OOD ", doc.num(g4(worst["mean"]), worst["evaluations"]), f" ({worst['split']})"]
    out.append("." if emulators else "no evaluations.")
    regimes = result.artifacts.get("regime_maps") or {}
    out.append(f" Regime maps: {len(regimes)}." if regimes else " Regime maps: not computed.")
    out.append(" Equation discovery: " + ("see below." if result.artifacts.get("discovery") else "not run."))
    return out


def render(doc: Document, result: SystemResult) -> None:
    data = summary(doc, result)
    rows = data["rows"]
    seeds = seeds_text(r["seeds"] for r in rows)
    doc.para(f"Settings: preset {data.get('preset') or 'n/a'}; {seeds} training seed(s) per emulator.")
    if rows:
        by = rows_by(rows, "emulator", "split")
        emulators = list(dict.fromkeys(r["emulator"] for r in rows))
        splits = [s for s in SPLITS if any((e, s) in by for e in emulators)]
        splits += [s for s in dict.fromkeys(r["split"] for r in rows) if s not in splits]
        doc.table(
            ["emulator", *splits],
            [
                [e]
                + [
                    doc.num(pm(by[e, s]["mean"], by[e, s]["std"], g4, by[e, s]["seeds"]), by[e, s]["evaluations"])
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
                + [doc.num(g4(r["rmse"][t]), r["evaluations"]) for t in targets]
                + [doc.num(str(r["seeds"]), r["evaluations"])]
                for r in rows
            ],
            caption="Root-mean-square error of each dimensionless statistic (mean over seeds)",
            labels=2,
        )
        ood_bars(
            doc,
            result.rows or summary_rows(data),
            name=f"{NAME}_ood_bars",
            models=emulators,
            splits=splits,
            title="Rietkerk emulators: in distribution against OOD",
            ylabel="geometric-mean relative error",
            caption="Emulator score per split, mean over seeds with the std as error bar; grey: in distribution. "
            "Log scale.",
        )
    else:
        doc.para("No emulator evaluations were given.", css="missing")
    _maps(doc, result.artifacts.get("regime_maps") or {})
    _discovery(doc, result.artifacts.get("discovery"))


def _maps(doc: Document, maps: Mapping[str, str]) -> None:
    from pipeline.rietkerk.regimes import regime_labels, regime_map_figure

    doc.heading(3, "Regime maps", anchor=f"{NAME}-regimes")
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
        f"{NAME}_regime_maps",
        lambda: rf.shrink_png(regime_map_figure(list(datasets.values()))),
        "Regime maps: mean biomass at the end of the run against rainfall, coloured by regime, with snapshots.",
        refs,
    )
    doc.figure(
        f"{NAME}_snapshots",
        lambda: regime_snapshots_figure(list(datasets.values())),
        "Pattern snapshots: the biomass field at the end of the run at a few rainfalls (every regime found is "
        "shown where there is room), titled with R and the regime label.",
        refs,
    )


def _discovery(doc: Document, ref: str | None) -> None:
    doc.heading(3, "Equation discovery", anchor=f"{NAME}-discovery")
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


SECTION = ReportSection(
    name=NAME,
    title=TITLE,
    render=render,
    headline=headline,
    reading=READING,
    published=("Rietkerk: no published emulator or equation-discovery numbers exist (docs/protocols.md#rietkerk).",),
)
