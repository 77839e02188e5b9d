"""The pendulum tables: our scores (mean +- std over seeds) beside the published ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.published import PENDULUM


def sample_std(values: list[float]) -> float:
    """Standard deviation over seeds with Bessel's correction (ddof = 1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarize(
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
            published = PENDULUM.get((protocol, model, split))
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


def markdown_table(summary: dict[str, Any]) -> str:
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
