"""The pendulum tables: our scores (mean +- std over seeds) beside the published ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.published import PENDULUM


def summarize(catalog: Catalog, protocol: str, evaluations: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Rows of (model, split, n seeds, mean, std, units-invariant mean, published mean/std, refs)."""
    rows = []
    for model, splits in evaluations.items():
        for split, refs in splits.items():
            scores = [float(catalog.open(r)["score"]) for r in refs]
            blockwise = [float(catalog.open(r)["score_blockwise"]) for r in refs]
            published = PENDULUM.get((protocol, model, split))
            rows.append(
                {
                    "protocol": protocol,
                    "model": model,
                    "split": split,
                    "seeds": len(scores),
                    "mean": float(np.mean(scores)),
                    "std": float(np.std(scores)),
                    "blockwise_mean": float(np.mean(blockwise)),
                    "blockwise_std": float(np.std(blockwise)),
                    "published_mean": published[0] if published else None,
                    "published_std": published[1] if published else None,
                    "evaluations": refs,
                }
            )
    return {"protocol": protocol, "rows": rows}


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (scores to 4 decimals)."""
    lines = [
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
