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


def pendulum_summary(
    catalog: Catalog, protocol: str, evaluations: dict[str, dict[str, list[str]]], variant: str = "reference"
) -> dict[str, Any]:
    """Rows of (model, split, n seeds, mean, std, units-invariant mean, published mean/std, refs)."""
    rows = []
    for model, splits in evaluations.items():
        for split, refs in splits.items():
            scores, blockwise = [], []
            for r in refs:
                with catalog.open(r) as ds:
                    scores.append(float(ds["score"]))
                    blockwise.append(float(ds["score_blockwise"]))
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
                    "evaluations": refs,
                }
            )
    return {"protocol": protocol, "variant": variant, "rows": rows}


def pendulum_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (scores to 4 decimals; std over seeds with ddof = 1)."""
    lines = [
        f"Hamiltonian variant: {summary.get('variant', 'reference')} (the published numbers use 'reference'); "
        f"activation {summary.get('activation', 'silu')}.",
        "",
        "| model | split | ours (mean +- std) | units-invariant variant | published | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        published = "-" if r["published_mean"] is None else f"{r['published_mean']:.4f} +- {r['published_std']:.4f}"
        lines.append(
            f"| {r['model']} | {r['split']} | {r['mean']:.4f} +- {r['std']:.4f} | "
            f"{r['blockwise_mean']:.4f} +- {r['blockwise_std']:.4f} | {published} | {r['seeds']} |"
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
