"""The summary of a declared system's fit: per target, method and test set, the scores over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from data_catalog import Catalog
from pipeline.declared.evaluation import scores
from pipeline.declared.methods import METHOD_TITLES
from pipeline.declared.splits import IN_DISTRIBUTION, SPLITS
from pipeline.results import SummaryRow
from pipeline.summaries import sample_std

METRIC = "median relative error"


def _spread(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), sample_std(finite)


def fit_summary(
    catalog: Catalog, evaluations: Mapping[str, Mapping[str, Mapping[str, Sequence[str]]]]
) -> dict[str, Any]:
    """Rows (target, method, split): mean and std over seeds of every score, the worst symmetry errors,
    and the evaluation refs."""
    rows = []
    for target, by_method in evaluations.items():
        for method, by_split in by_method.items():
            for split in [s for s in SPLITS if s in by_split] + [s for s in by_split if s not in SPLITS]:
                refs = [catalog.resolve(r) for r in by_split[split]]
                found = []
                units = ""
                for ref in refs:
                    with catalog.open(ref) as ds:
                        found.append(scores(ds))
                        units = str(ds["rmse"].attrs.get("units", ""))
                row: dict[str, Any] = {"target": target, "method": method, "split": split, "seeds": len(refs)}
                for key in ("median_rel_error", "rmse", "within_1sigma"):
                    row[key], row[f"{key}_std"] = _spread([f[key] for f in found])
                for key in ("group_error", "units_error", "permutation_error", "consistency"):
                    values = [f[key] for f in found if np.isfinite(f.get(key, np.nan))]
                    row[key] = float(max(values)) if values else float("nan")
                row.update(units=units, evaluations=refs)
                rows.append(row)
    return {"rows": rows}


def summary_rows(summary: Mapping[str, Any]) -> tuple[SummaryRow, ...]:
    """The report's rows: the median relative error per method and split, grouped by target."""
    out = []
    for r in summary["rows"]:
        keys = ("rmse", "rmse_std", "within_1sigma", "group_error", "units_error", "permutation_error", "consistency")
        extra = {k: r.get(k, float("nan")) for k in keys} | {"units": r["units"]}
        out.append(
            SummaryRow(
                model=METHOD_TITLES.get(r["method"], r["method"]),
                split=r["split"],
                metric=METRIC,
                mean=r["median_rel_error"],
                std=r["median_rel_error_std"],
                seeds=r["seeds"],
                refs=tuple(r["evaluations"]),
                group=r["target"],
                in_distribution=r["split"] == IN_DISTRIBUTION,
                extra=extra,
            )
        )
    return tuple(out)


def _cell(row: Mapping[str, Any]) -> str:
    """The median relative error, with its spread over seeds when there are several."""
    mean = f"{row['median_rel_error']:.3g}"
    return f"{mean} ± {row['median_rel_error_std']:.2g}" if row["seeds"] > 1 else mean


def summary_markdown(result: Any) -> str:
    """The summary as a Markdown table per target: median relative error (mean ± std over seeds) per
    method and test set, with the measured symmetry errors."""
    lines = []
    rows = result.details.get("rows", [])
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        splits = list(dict.fromkeys(r["split"] for r in mine))
        lines += [f"### {target}: {METRIC} (mean ± std over seeds)", ""]
        errors = ["group_error", "units_error"]
        errors += ["permutation_error"] if any(np.isfinite(r.get("permutation_error", np.nan)) for r in mine) else []
        lines.append(
            "| method | " + " | ".join(splits) + " | " + " | ".join(e.replace("_", " ") for e in errors) + " |"
        )
        lines.append("|---|" + "---|" * (len(splits) + len(errors)))
        for method in dict.fromkeys(r["method"] for r in mine):
            by = {r["split"]: r for r in mine if r["method"] == method}
            cells = [_cell(by[s]) if s in by else "-" for s in splits]
            worst = [
                max((r[k] for r in by.values() if np.isfinite(r.get(k, np.nan))), default=float("nan")) for k in errors
            ]
            lines.append(
                f"| {METHOD_TITLES.get(method, method)} | "
                + " | ".join(cells)
                + " | "
                + " | ".join("-" if not np.isfinite(w) else f"{w:.2g}" for w in worst)
                + " |"
            )
        lines.append("")
    notes = result.details.get("notes", {})
    lines += [f"- {split}: {text}" for split, text in notes.items()]
    return "\n".join(lines).rstrip()
