"""A declared system's section of the OOD report (``eqs fit``): what was declared and derived (Pi
groups, scalings, the test sets), per target the median relative error of every method on every
test set, the RMSE, calibration and measured symmetry errors beside it, and the bars."""

from __future__ import annotations

import math
from typing import Any

from pipeline.declared.methods import METHOD_TITLES
from pipeline.declared.summary import METRIC
from pipeline.report import (
    Document,
    ReportSection,
    figure_name,
    ood_bars,
    pm,
    results_table,
)
from pipeline.results import SystemResult

READING = (
    "each row is a surrogate of one target, each column a test set; the number is the median over test samples "
    "of ||predicted - true|| / ||true|| (lower is better), mean ± std over training seeds. test: held-out samples "
    "drawn like the training data. group: the same samples, each moved by a random element of the declared "
    "group. permutation (systems with a relabelled set): the same samples with their members relabelled. "
    "units: the same samples in other units (every base unit changed). rescaled: the same samples at "
    "another scale, with every dimensional input outside its training range and the Pi groups inside. shift: "
    "trained on the lower values of the shift quantity and tested on the top. The second table gives, per method, "
    "the RMSE in the target's declared units, the fraction of samples within the predicted 1-sigma region "
    "(0.683 when calibrated; noisy targets only), the measured symmetry errors (the worst relative change of the "
    "output under random group elements, random changes of units and random relabellings of the members, in float64: round-off, about 1e-15, means "
    "exact) and the consistency (how far predictions on the moved test samples are from the moved predictions)."
)


def _fmt(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def render(doc: Document, result: SystemResult) -> None:
    details = dict(result.details)
    decl = details.get("declaration", {})
    features = details.get("features", {})
    analysis = features.get("dimensional_analysis", {})
    doc.para(
        f"Settings: preset {details.get('preset', 'n/a')}; {details.get('seeds', '?')} training seed(s); symmetry "
        f"{decl.get('symmetry', 'n/a')}; data ",
        doc.num(result.data.get("raw", ""), [result.data["raw"]]) if result.data.get("raw") else "n/a",
        ".",
    )
    pis = analysis.get("pi_groups") or []
    names = [g.get("name", str(g)) if isinstance(g, dict) else str(g) for g in pis]
    zero = details.get("conditions", {}).get("zero", [])
    doc.para(
        "Pi groups: "
        + (", ".join(names) if names else "none (every invariant scalar is independent in units)")
        + "."
        + (f" Zero on the data, so left out of every feature: {', '.join(zero)}." if zero else "")
    )
    notes = details.get("notes", {})
    if notes:
        doc.bullets([[f"{split}: {text}"] for split, text in notes.items()])
    rows = details.get("rows", [])
    for target in result.groups():
        target_rows = result.rows_of(target)
        doc.heading(3, target, anchor=f"{result.system}-{figure_name(target)}")
        results_table(doc, target_rows, caption=f"{METRIC} of {target} per method and test set (lower is better)")
        extra_table(doc, target, [r for r in rows if r["target"] == target])
        ood_bars(
            doc,
            target_rows,
            name=figure_name(result.system, target, "ood_bars"),
            title=f"{target}: in distribution against OOD",
            ylabel=METRIC,
            log=True,
            caption=f"{METRIC} of {target} per method and test set, mean over seeds with the std as error bar; "
            "grey: in distribution. Log scale.",
        )


def extra_table(doc: Document, target: str, rows: list[dict[str, Any]]) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    units = next((r["units"] for r in rows if r.get("units")), "")
    errors = ["group_error", "units_error", "consistency"]
    if any(math.isfinite(r.get("permutation_error", math.nan)) for r in rows):
        errors.insert(2, "permutation_error")
    table = []
    for method in methods:
        by = {r["split"]: r for r in rows if r["method"] == method}
        first = next(iter(by.values()))
        line = [METHOD_TITLES.get(method, method)]
        line += [
            doc.num(pm(by[s]["rmse"], by[s]["rmse_std"], _fmt, by[s]["seeds"]), by[s]["evaluations"])
            if s in by
            else "-"
            for s in splits
        ]
        test = by.get("test", first)
        line.append(doc.num(_fmt(test["within_1sigma"]), test["evaluations"]))
        worst = {
            key: max((r[key] for r in by.values() if math.isfinite(r.get(key, math.nan))), default=float("nan"))
            for key in errors
        }
        refs = [ref for r in by.values() for ref in r["evaluations"]]
        line += [doc.num(_fmt(worst[k]), refs) for k in errors]
        table.append(line)
    doc.table(
        ["method", *[f"RMSE {s}" for s in splits], "within 1 sigma (test)", *[k.replace("_", " ") for k in errors]],
        table,
        caption=f"{target}: RMSE in {units or 'its declared units'} (mean ± std over seeds), calibration, and the worst "
        "measured symmetry errors over seeds and test sets",
    )


def section(name: str, title: str) -> ReportSection:
    return ReportSection(name=name, title=title, render=render, reading=READING)
