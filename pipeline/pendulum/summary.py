"""The pendulum's summary of its evaluation datasets: per protocol, model and split, the score (state
relative error) as mean and std over seeds beside the published numbers, with the catalog refs every
number came from; its Markdown table; and the summary as :class:`~pipeline.results.SummaryRow` s.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.pendulum.published import PUBLISHED
from pipeline.results import SummaryRow
from pipeline.summaries import sample_std

#: The splits drawn like the training data, per protocol (the others are the OOD tests).
IN_DISTRIBUTION = ("test", "exp1")
#: The measured symmetry errors an evaluation may hold (surrogates.pendulum.runs.symmetry_errors), with
#: their column titles.
SYMMETRY_COLUMNS = {
    "symmetry_error": "symmetry error, O(3)",
    "symmetry_error_about_gravity": "symmetry error, O(2) about z",
    "units_error": "units error",
}


def pendulum_summary(
    catalog: Catalog, protocol: str, evaluations: dict[str, dict[str, list[str]]], variant: str = "reference"
) -> dict[str, Any]:
    """Rows of (model, split, n seeds, mean, std, units-invariant mean, published mean/std, the worst
    measured symmetry errors over seeds (None where the evaluations do not hold them), refs)."""
    rows = []
    for model, splits in evaluations.items():
        for split, refs in splits.items():
            scores, blockwise = [], []
            errors: dict[str, list[float]] = {key: [] for key in SYMMETRY_COLUMNS}
            for r in refs:
                with catalog.open(r) as ds:
                    scores.append(float(ds["score"]))
                    blockwise.append(float(ds["score_blockwise"]))
                    for key in SYMMETRY_COLUMNS:
                        if key in ds:
                            errors[key].append(float(ds[key]))
            published = PUBLISHED.get((protocol, model, split))
            rows.append(
                {
                    "protocol": protocol,
                    "model": model,
                    "split": split,
                    "seeds": len(scores),
                    "mean": float(np.mean(scores)),
                    "std": sample_std(scores),
                    "blockwise_mean": float(np.mean(blockwise)),
                    "blockwise_std": sample_std(blockwise),
                    "published_mean": published[0] if published else None,
                    "published_std": published[1] if published else None,
                    # the worst seed; NaN (a model whose field is not finite) is the worst of all
                    **{key: (float(np.max(v)) if v else None) for key, v in errors.items()},
                    "evaluations": refs,
                }
            )
    return {"protocol": protocol, "variant": variant, "rows": rows}


def symmetry_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The measured symmetry errors some row of ``rows`` holds, in SYMMETRY_COLUMNS' order."""
    return [key for key in SYMMETRY_COLUMNS if any(r.get(key) is not None for r in rows)]


def pendulum_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (scores to 4 decimals; std over seeds with ddof = 1; the measured
    symmetry errors, worst over seeds, where the evaluations hold them)."""
    errors = symmetry_columns(summary["rows"])
    lines = [
        f"Hamiltonian variant: {summary.get('variant', 'reference')} (the published numbers use 'reference'); "
        f"activation {summary.get('activation', 'silu')}.",
        "",
        "| model | split | ours (mean +- std) | units-invariant variant | published | seeds |"
        + "".join(f" {SYMMETRY_COLUMNS[k]} (worst) |" for k in errors),
        "|---|---|---|---|---|---|" + "---|" * len(errors),
    ]
    for r in summary["rows"]:
        published = "-" if r["published_mean"] is None else f"{r['published_mean']:.4f} +- {r['published_std']:.4f}"
        lines.append(
            f"| {r['model']} | {r['split']} | {r['mean']:.4f} +- {r['std']:.4f} | "
            f"{r['blockwise_mean']:.4f} +- {r['blockwise_std']:.4f} | {published} | {r['seeds']} |"
            + "".join(" - |" if r.get(k) is None else f" {r[k]:.1e} |" for k in errors)
        )
    return "\n".join(lines)


def summary_rows(summary: dict[str, Any]) -> tuple[SummaryRow, ...]:
    """One protocol's summary (:func:`pendulum_summary`) as summary rows: group = the protocol, metric
    "score"; rows without an evaluation (no seed) are left out."""
    protocol = summary["protocol"]
    return tuple(
        SummaryRow(
            group=protocol,
            model=r["model"],
            split=r["split"],
            metric="score",
            mean=r["mean"],
            std=r["std"],
            seeds=r["seeds"],
            refs=tuple(r["evaluations"]),
            in_distribution=r["split"] in IN_DISTRIBUTION,
            published=r["published_mean"],
            published_std=r["published_std"],
            extra={"blockwise_mean": r["blockwise_mean"], "blockwise_std": r["blockwise_std"]},
        )
        for r in summary["rows"]
        if r["seeds"] >= 1
    )
