"""Summaries of evaluation datasets: per model and split, mean and std over seeds, beside the
published numbers, with the catalog refs every number came from; and their Markdown tables.

Shared by the flows (their returned summaries, ``eqs reproduce`` tables) and the OOD report.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.published import PENDULUM


def sample_std(values: list[float]) -> float:
    """Standard deviation over seeds with Bessel's correction (ddof = 1); 0 for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# -- pendulum --------------------------------------------------------------------------------------


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


# -- Rietkerk --------------------------------------------------------------------------------------


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


# -- halos -----------------------------------------------------------------------------------------


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
