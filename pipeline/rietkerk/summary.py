"""The Rietkerk emulators' summary of their evaluation datasets: per emulator and split, the score as
mean and std over seeds and the RMSE of each dimensionless target, with the catalog refs every number
came from; its Markdown tables (and those of equation discovery); and the summary as
:class:`~pipeline.results.SummaryRow` s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.results import SummaryRow
from pipeline.summaries import sample_std

#: The split drawn like the training data (the others are the OOD tests).
IN_DISTRIBUTION = "test"


def rietkerk_summary(catalog: Catalog, evaluations: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Rows (emulator, split, seeds, score mean/std, RMSE per dimensionless target mean)."""
    rows = []
    for kind, splits in evaluations.items():
        for split, refs in splits.items():
            scores, rmse = [], []
            for r in refs:
                with catalog.open(r) as ds:
                    scores.append(float(ds["score"]))
                    rmse.append(ds["rmse"].values.astype(float))
                    targets = [str(t) for t in ds["target"].values]
            rows.append(
                {
                    "emulator": kind,
                    "split": split,
                    "seeds": len(refs),
                    "mean": float(np.mean(scores)),
                    "std": sample_std(scores),
                    "rmse": dict(zip(targets, np.mean(rmse, axis=0).tolist())),
                    "evaluations": refs,
                }
            )
    return {"system": "rietkerk", "rows": rows}


def rietkerk_table(summary: dict[str, Any]) -> str:
    targets = list(summary["rows"][0]["rmse"]) if summary["rows"] else []
    lines = [
        "| emulator | split | score (mean +- std) | " + " | ".join(f"RMSE {t}" for t in targets) + " | seeds |",
        "|---|---|---|" + "---|" * len(targets) + "---|",
    ]
    for r in summary["rows"]:
        rmse = " | ".join(f"{r['rmse'][t]:.4g}" for t in targets)
        lines.append(f"| {r['emulator']} | {r['split']} | {r['mean']:.4g} +- {r['std']:.2g} | {rmse} | {r['seeds']} |")
    return "\n".join(lines)


def discovery_lines(ds) -> list[str]:
    """The coefficient table and the rollout comparison in Markdown."""
    lines = ["| term | true | fitted | relative error |", "|---|---|---|---|"]
    for term, true, fitted in zip(ds["term"].values, ds["true"].values, ds["fitted"].values):
        error = "spurious (true 0)" if true == 0 else f"{abs(fitted - true) / abs(true):.2g}"
        lines.append(f"| {term} | {true:.6g} | {fitted:.6g} | {error} |")
    lines += ["", "| R | truth | sparse regression | reaction MLP |", "|---|---|---|---|"]
    for i, R in enumerate(ds["R"].values):
        cells = [
            f"{ds['rollout_regime'].values[i, j]} ({ds['rollout_mean_v'].values[i, j]:.3g} g m^-2)" for j in range(3)
        ]
        lines.append(f"| {R:g} | " + " | ".join(cells) + " |")
    return lines


def summary_rows(summary: dict[str, Any]) -> tuple[SummaryRow, ...]:
    """The summary (:func:`rietkerk_summary`) as summary rows: model = the emulator, metric "score",
    the RMSE per target in ``extra``; rows without an evaluation (no seed) are left out."""
    return tuple(
        SummaryRow(
            model=r["emulator"],
            split=r["split"],
            metric="score",
            mean=r["mean"],
            std=r["std"],
            seeds=r["seeds"],
            refs=tuple(r["evaluations"]),
            in_distribution=r["split"] == IN_DISTRIBUTION,
            extra={"rmse": dict(r["rmse"])},
        )
        for r in summary["rows"]
        if r["seeds"] >= 1
    )
