"""The halo models' summary of their evaluation datasets: per target, model and split, sigma68 (dex) as
mean and std over seeds, the 1-sigma coverage and sigma68 per bin of halo mass, with the catalog refs
every number came from, and the forward-selection ranking of each target; its Markdown tables; and
the summary as :class:`~pipeline.results.SummaryRow` s.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.halos.published import PUBLISHED
from pipeline.results import SummaryRow
from pipeline.summaries import sample_std

#: The split drawn like the training data (the others are the OOD tests).
IN_DISTRIBUTION = "random"


def halos_summary(
    catalog: Catalog, evaluations: dict[str, dict[str, list[str]]], importance: dict[str, str]
) -> dict[str, Any]:
    """Rows (model, split, target: sigma68 mean and std over seeds, 1-sigma coverage, per-bin sigma68)
    and the forward-selection ranking of each target."""
    rows = []
    for key, splits in evaluations.items():
        for split, eval_refs in splits.items():
            datasets = [catalog.open(r).load() for r in eval_refs]
            scores = [float(ds["sigma68"]) for ds in datasets]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # bins without halos stay NaN
                bins = np.nanmean([ds["bin_sigma68"].values for ds in datasets], axis=0)
            first = datasets[0]
            rows.append(
                {
                    "model": key.split("/")[1],
                    "target": key.split("/")[0],
                    "split": split,
                    "seeds": len(scores),
                    "halos": int(first.sizes["halo"]),
                    "sigma68": float(np.mean(scores)),
                    "std": sample_std(scores),
                    "within_1sigma": float(np.mean([float(ds["within_1sigma"]) for ds in datasets])),
                    "bins": [
                        {"low": float(lo), "high": float(hi), "n": int(n), "sigma68": None if np.isnan(s) else float(s)}
                        for lo, hi, n, s in zip(
                            first["bin_low"].values, first["bin_high"].values, first["bin_count"].values, bins
                        )
                    ],
                    "evaluations": eval_refs,
                }
            )
    ranking = {}
    for target, ref in importance.items():
        ds = catalog.open(ref).load()
        ranking[target] = {
            "ref": ref,
            "sigma68_all": float(ds["sigma68_all"]),
            "steps": [
                {"feature": str(f), "sigma68": float(s), "information": float(i)}
                for f, s, i in zip(ds["feature"].values, ds["sigma68"].values, ds["information"].values)
            ],
        }
    return {"system": "halos", "rows": rows, "importance": ranking}


def halos_table(summary: dict[str, Any]) -> str:
    """The sigma68 table (dex) and the forward-selection ranking in Markdown."""
    lines = [
        "| target | model | split | halos | sigma68 (dex, mean +- std) | within 1 sigma | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        lines.append(
            f"| {r['target']} | {r['model']} | {r['split']} | {r['halos']} | {r['sigma68']:.4f} +- {r['std']:.4f} "
            f"| {r['within_1sigma']:.2f} | {r['seeds']} |"
        )
    for target, ranking in summary.get("importance", {}).items():
        lines += [
            "",
            (
                f"Forward selection on the mass-only residuals of {target} (validation sigma68, dex; "
                f"all 567 scalars: {ranking['sigma68_all']:.4f}):"
            ),
            "",
            "| step | scalar | sigma68 | information |",
            "|---|---|---|---|",
        ]
        for i, step in enumerate(ranking["steps"]):
            lines.append(f"| {i} | {step['feature']} | {step['sigma68']:.4f} | {step['information']:.2f} |")
    return "\n".join(lines)


def summary_rows(summary: dict[str, Any]) -> tuple[SummaryRow, ...]:
    """The summary (:func:`halos_summary`) as summary rows: group = the target, metric "sigma68" (dex),
    the published number of :data:`pipeline.halos.published.PUBLISHED` where there is one, the halo count, the
    1-sigma coverage and the per-bin sigma68 in ``extra``; rows without an evaluation are left out."""
    out = []
    for r in summary["rows"]:
        if r["seeds"] < 1:
            continue
        published = PUBLISHED.get((r["target"], r["model"], r["split"]))
        out.append(
            SummaryRow(
                group=r["target"],
                model=r["model"],
                split=r["split"],
                metric="sigma68",
                mean=r["sigma68"],
                std=r["std"],
                seeds=r["seeds"],
                refs=tuple(r["evaluations"]),
                in_distribution=r["split"] == IN_DISTRIBUTION,
                published=published[0] if published else None,
                published_std=published[1] if published else None,
                extra={"halos": r["halos"], "within_1sigma": r["within_1sigma"], "bins": list(r["bins"])},
            )
        )
    return tuple(out)
