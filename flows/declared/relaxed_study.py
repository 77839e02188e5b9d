"""Exact, relaxed and unconstrained models on data whose symmetry is broken by a controlled amount
(docs/fit.md#relaxed-symmetry): per breaking strength epsilon, method and training-set size, over seeds,
the test error and the measured symmetry error, as a table, a figure and JSON.

    python -m flows.declared.relaxed_study --declaration FILE --data 0=exact.nc 0.1=broken.nc ... \\
        --sizes 250 1000 2800 --seeds 3 --out relaxed.json --figure relaxed.png

Each ``--data EPS=FILE`` is one data set of the declared system, its symmetry broken by EPS (in whatever
measure the data's generator uses; the charged particle's ``--background EPS`` is one). Every data set is
split and fitted as ``eqs bench methods`` does (flows.declared.methods_benchmark), on this machine, in
this run.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from flows.declared.methods_benchmark import RunInputError, add_run_options, run
from pipeline.declared.methods import METHODS
from pipeline.outputs import write_atomic
from pipeline.report.study import (
    StudyFigure,
    StudyTable,
    check_study_outputs,
    command_line,
    figure_png,
    write_study,
)
from pipeline.summaries import spread_text

DEFAULT_METHODS = ("scalars", "relaxed", "raw")


def _data_option(text: str) -> tuple[float, str]:
    epsilon, sep, path = text.partition("=")
    try:
        value = float(epsilon)
    except ValueError:
        value = float("nan")
    if not sep or not path or not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"--data takes EPS=FILE with EPS a number >= 0, got {text!r}")
    return value, path


def study(
    declaration: str,
    data: Sequence[tuple[float, str]],
    methods: Sequence[str],
    sizes,
    seeds: int,
    epochs: int,
    hidden,
    strict: bool = False,
) -> dict[str, Any]:
    """Every method, size and seed on every data set; the rows carry their epsilon (``strict``: as
    :func:`flows.declared.methods_benchmark.run`)."""
    rows, system = [], None
    for epsilon, path in sorted(data):
        result = run(path, declaration, methods, sizes, seeds, epochs, hidden, strict)
        system = result["system"]
        rows += [{**row, "epsilon": epsilon, "data": path} for row in result["rows"]]
    return {
        "system": system,
        "methods": list(methods),
        "sizes": list(sizes),
        "seeds": seeds,
        "epochs": epochs,
        "hidden": list(hidden),
        "rows": rows,
    }


def _groups(result: dict[str, Any]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for row in result["rows"]:
        out.setdefault((row["target"], row["train_size"], row["epsilon"], row["method"]), []).append(row)
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown: per target, size and epsilon, each method's test error (mean ± std over seeds) and its
    worst symmetry error; the lowest mean error in bold."""
    groups = _groups(result)
    methods = [m for m in METHODS if m in result["methods"]]
    lines = [
        "| target | train | epsilon | " + " | ".join(f"{m}: test error | {m}: symmetry error" for m in methods) + " |",
        "|---|---|---|" + "---|---|" * len(methods),
    ]
    for target, size, epsilon in sorted({k[:3] for k in groups}):
        found = {m: groups[target, size, epsilon, m] for m in methods if (target, size, epsilon, m) in groups}
        best = min(found, key=lambda m: np.mean([r["test_error"] for r in found[m]]))
        cells = []
        for method in methods:
            if method not in found:
                cells += ["-", "-"]
                continue
            text = spread_text([r["test_error"] for r in found[method]])
            worst = max(r["symmetry_error"] for r in found[method])
            cells += [f"**{text}**" if method == best else text, f"{worst:.1e}"]
        lines.append(f"| {target} | {size} | {epsilon:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(result: dict[str, Any], path: Any) -> None:
    """Test error against epsilon, one panel per training-set size (and target), a line per method; the
    result's ``size_label`` and ``error_label`` name the sizes and the error when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(result)
    panels = sorted({k[:2] for k in groups})
    methods = [m for m in METHODS if m in result["methods"]]
    epsilons = sorted({k[2] for k in groups})
    positive = [e for e in epsilons if e > 0]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), sharey=True, squeeze=False)
    for ax, (target, size) in zip(axes[0], panels):
        for method in methods:
            points = [(e, [r["test_error"] for r in groups[(target, size, e, method)]]) for e in epsilons]
            points = [(e, np.array(v)) for e, v in points if (target, size, e, method) in groups]
            if not points:
                continue
            x = np.array([e for e, _ in points])
            mean = np.array([v.mean() for _, v in points])
            std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for _, v in points])
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=method)
        if positive:  # linear through zero, logarithmic above the smallest positive epsilon
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_yscale("log")
        ax.set_title(f"{target}, {size} {result.get('size_label', 'training samples')}")
        ax.set_xlabel("symmetry breaking epsilon")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(result.get("error_label", "median relative test error"))
    axes[0][0].legend()
    title = f"{result['system']}: exact, relaxed and unconstrained models against broken symmetry"
    fig.suptitle(textwrap.fill(title, width=45 * len(panels)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eqs bench relaxed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=_data_option, nargs="+", required=True, metavar="EPS=FILE")
    add_run_options(parser, DEFAULT_METHODS, epochs=150)
    parser.add_argument("--figure", help="PNG of the test error against epsilon")
    args = parser.parse_args(argv)
    check_study_outputs(parser, args.out, figure=args.figure, report=args.report)
    epsilons = [e for e, _ in args.data]
    if len(set(epsilons)) != len(epsilons):
        parser.error(f"--data: each EPS once, got {sorted(epsilons)}")
    methods, strict = args.methods or list(DEFAULT_METHODS), args.methods is not None
    try:
        result = study(
            args.declaration, args.data, methods, args.sizes, args.seeds, args.epochs, tuple(args.hidden), strict
        )
    except RunInputError as exc:
        parser.error(str(exc))
    title, summary = f"Relaxed symmetry study: {result['system']}", __doc__.split("\n\n")[0]
    tables = [StudyTable(table(result), labels=3)]
    write_outputs(result, args.out, tables, args.figure, args.report, title, summary, command_line(parser, argv))
    return 0


def write_outputs(
    result: dict[str, Any],
    out: str,
    tables: list[StudyTable],
    figure_path: str | None,
    report: str | None,
    title: str,
    summary: str,
    command: list[str],
) -> None:
    """The JSON and tables (``out``), the figure (``--figure``) and the page (``--report``) of a study."""
    figures = []
    if figure_path or report:
        png = figure_png(lambda file: figure(result, file))
        if figure_path:
            write_atomic(figure_path, png)
        error = result.get("error_label", "median relative test error")
        caption = f"{error[0].upper()}{error[1:]} against the symmetry breaking epsilon, mean and std over seeds"
        figures.append(StudyFigure(png, caption))
    write_study(result, out, tables, report=report, title=title, summary=summary, command=command, figures=figures)


if __name__ == "__main__":
    raise SystemExit(main())
