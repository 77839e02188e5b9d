"""The halos' section of the OOD report: per target, sigma68 per model and split beside the published
numbers and the ratios to mass-only, sigma68 per bin of halo mass, predicted against true, the
stellar-to-halo relation, the in-distribution against OOD bars, and the forward-selection ranking.

Reads a :class:`~pipeline.results.SystemResult` whose ``details`` are the flow's summary
(:func:`pipeline.halos.summary.halos_summary` plus its preset and settings; without rows it is
recomputed from ``evaluations``, "target/model" -> split -> refs, and ``artifacts["importance"]``,
target -> ref).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from pipeline import report_figures as rf
from pipeline.halos.figures import stellar_to_halo_figure
from pipeline.halos.published import PUBLISHED
from pipeline.halos.summary import halos_summary, summary_rows
from pipeline.report import Cell, Document, Fragment, ReportSection, f3, ood_bars, pm, rows_by, seeds_text
from pipeline.results import SystemResult
from sims.halos.catalog import TARGETS

NAME = "halos"
TITLE = "Halos"
SPLITS = ("random", "mass_threshold", "subsampled")
MODELS = ("mass-only", "global", "scalars", "catalog")
PUBLISHED_SOURCE = "Storey-Fisher, Hogg, Genel, Villar et al. (IllustrisTNG TNG100-1-Dark halos matched to TNG100-1)"
READING = (
    "sigma68 is half the 16-84 percentile range of the residuals, true minus predicted log "
    "stellar mass, in dex; lower is better. Models: mass-only, the fitted stellar-to-halo relation; global, "
    "halo mass plus concentration, spin and velocity dispersion; scalars, halo mass plus the invariant scalars "
    "of the particles; catalog, halo mass plus the ten properties a halo finder's catalog gives (concentration, "
    "spin, velocity dispersion, axis ratios, centre and velocity offsets, Vmax, T/|U|, half-mass radius), no "
    "particles. The ratio to mass-only is the model's sigma68 over the mass-only one on the same split. "
    "Splits: random, the test part of a 70/15/15 split (in distribution); mass_threshold, trained below the "
    "80 % quantile of halo mass and tested above it (extrapolation in mass); subsampled, the random test halos "
    "with a quarter of their particles (lower resolution). 'within 1 sigma' is the fraction of halos whose "
    "residual lies within the predicted uncertainty (0.683 when calibrated). The published numbers are for "
    "IllustrisTNG halos; ours come from the catalog named in the provenance (a synthetic population unless a "
    "real catalog was ingested), so they compare the method, not the same data."
)


def summary(doc: Document, result: SystemResult) -> dict[str, Any]:
    """The flow's summary, recomputed from the evaluations when the details have no rows."""
    given = dict(result.details)
    if "rows" in given:
        return given
    importance = dict(result.artifacts.get("importance") or {})
    return {**given, **halos_summary(doc.catalog, dict(result.evaluations), importance)}


def headline(doc: Document, result: SystemResult) -> list[Fragment]:
    rows = summary(doc, result)["rows"]
    out: list[Fragment] = []
    for target in dict.fromkeys(r["target"] for r in rows):
        random = {r["model"]: r for r in rows if r["target"] == target and r["split"] == "random"}
        if not random:
            continue
        out.append(("; " if out else "") + f"sigma68 of {target} on the random test split (dex): ")
        for i, (model, r) in enumerate(random.items()):
            out += [("; " if i else "") + f"{model} ", doc.num(f3(r["sigma68"]), r["evaluations"])]
            published = PUBLISHED.get((target, model, "random"))
            if published:
                out += [" (published ", Cell(f3(published[0]), source=PUBLISHED_SOURCE), ")"]
    if not out:
        out.append("no evaluations on the random split")
    out.append(".")
    return out


def render(doc: Document, result: SystemResult) -> None:
    data = summary(doc, result)
    rows = data["rows"]
    seeds = seeds_text(r["seeds"] for r in rows)
    doc.para(f"Settings: preset {data.get('preset') or 'n/a'}; {seeds} training seed(s) per model.")
    if not rows:
        doc.para("No halo evaluations were given.", css="missing")
        return
    by = rows_by(rows, "target", "model", "split")
    targets = list(dict.fromkeys(r["target"] for r in rows))
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    models += [m for m in dict.fromkeys(r["model"] for r in rows) if m not in models]
    splits = [s for s in SPLITS if any(r["split"] == s for r in rows)]
    splits += [s for s in dict.fromkeys(r["split"] for r in rows) if s not in splits]
    for target in targets:
        _sigma_table(doc, target, models, splits, by)
        _bins(doc, target, models, by)
        _figures(doc, target, models, by)
        ood_bars(
            doc,
            result.rows_of(target) or summary_rows({"rows": [r for r in rows if r["target"] == target]}),
            name=f"{NAME}_{target}_ood_bars",
            models=models,
            splits=splits,
            title=f"{target}: in distribution against OOD",
            ylabel="sigma68 (dex)",
            log=False,
            caption="sigma68 per model and split, mean over seeds with the std as error bar; grey: in distribution "
            "(random); crosses: published (random split).",
        )
    for target, ranking in data.get("importance", {}).items():
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


def _sigma_table(
    doc: Document, target: str, models: Sequence[str], splits: Sequence[str], by: Mapping[tuple, Mapping[str, Any]]
) -> None:
    base = by.get((target, "mass-only", "random"))
    published_base = PUBLISHED.get((target, "mass-only", "random"))
    others = [s for s in splits if s != "random"]
    table = []
    for model in models:
        r = by.get((target, model, "random"))
        row: list[Fragment] = [model]
        if r is None:
            row += ["not run", "-"]
        else:
            row.append(doc.num(pm(r["sigma68"], r["std"], f3, r["seeds"]), r["evaluations"]))
            row.append(
                doc.num(f"{r['sigma68'] / base['sigma68']:.3f}", r["evaluations"] + base["evaluations"])
                if base and base["sigma68"] > 0
                else "-"
            )
        pub = PUBLISHED.get((target, model, "random"))
        row.append(Cell(f3(pub[0]), source=PUBLISHED_SOURCE) if pub else "-")
        row.append(
            Cell(f"{pub[0] / published_base[0]:.3f}", source=PUBLISHED_SOURCE) if pub and published_base else "-"
        )
        for split in others:
            o = by.get((target, model, split))
            row.append(doc.num(pm(o["sigma68"], o["std"], f3, o["seeds"]), o["evaluations"]) if o else "-")
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
        caption=f"sigma68 of {target} (dex; ours: mean ± std over seeds; published: {PUBLISHED_SOURCE})",
    )


def _bins(doc: Document, target: str, models: Sequence[str], by: Mapping[tuple, Mapping[str, Any]]) -> None:
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
            + [doc.num(f3(b["sigma68"]), r["evaluations"]) if b["sigma68"] is not None else "-" for b in r["bins"]]
        )
    doc.table(
        headers,
        table,
        caption=f"sigma68 of {target} (dex) per bin of log10 M200m / Msun, random split, mean over seeds "
        "('-': fewer than 10 halos)",
    )


def _figures(doc: Document, target: str, models: Sequence[str], by: Mapping[tuple, Mapping[str, Any]]) -> None:
    """Predicted against true and the stellar-to-halo relation, from the seed-0 random-split evaluations."""
    quantity = TARGETS.get(target, target)
    first = {
        m: by[target, m, "random"]["evaluations"][0]
        for m in models
        if (target, m, "random") in by and by[target, m, "random"]["evaluations"]
    }
    if not first:
        return
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
        return stellar_to_halo_figure(
            ds0["log_m200m"].values,
            ds0["true"].values,
            {m: ds["predicted_mean"].values for m, ds in datasets.items()},
            quantity=quantity,
            title=f"{target} against halo mass, random test split",
        )

    doc.figure(
        f"{NAME}_{target}_predicted_true",
        draw_scatter,
        f"Predicted against true {quantity} on the random test split, one panel per model (seed 0), with the 1:1 "
        "line and that evaluation's sigma68.",
        list(first.values()),
    )
    doc.figure(
        f"{NAME}_{target}_stellar_to_halo",
        draw_relation,
        f"The stellar-to-halo relation: true {quantity} of the random test halos against log10 M200m, with the "
        "running median of the truth and of each model's predicted mean (seed 0).",
        list(first.values()),
    )


SECTION = ReportSection(
    name=NAME,
    title=TITLE,
    render=render,
    headline=headline,
    reading=READING,
    published=(f"Halos: {PUBLISHED_SOURCE} (docs/protocols.md#halos).",),
)
