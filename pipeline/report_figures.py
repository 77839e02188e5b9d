"""Figures of the OOD evaluation report (:mod:`pipeline.report`) that any system may use, as small PNG bytes.

Every function takes plain arrays and returns a PNG drawn with the Agg backend at :data:`DPI`; reading
the catalog is the report's business. A system's own figures live beside its report section
(``pipeline.<system>.figures``) and use the helpers here (:func:`pyplot`, :func:`png`, :func:`layout`).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping, Sequence

import numpy as np

DPI = 90
_OOD_COLOURS = ("#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
_MODEL_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    pyplot().close(fig)
    return shrink_png(buffer.getvalue())


def shrink_png(png: bytes) -> bytes:
    """The same picture with a 256-colour palette: plots lose nothing visible and the file shrinks
    about threefold."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def plain_log_axis(ax) -> None:
    """A log y axis labelled at the decades only (minor labels crowd a small panel)."""
    from matplotlib.ticker import NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_minor_formatter(NullFormatter())


def layout(
    fig,
    *,
    left: float = 0.65,
    right: float = 0.15,
    bottom: float = 0.5,
    top: float = 0.5,
    wspace: float = 0.3,
    hspace: float = 0.45,
) -> None:
    """Margins in inches (``tight_layout`` measures every tick label and costs more than the drawing)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace,
        hspace=hspace,
    )


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, stable in the order given."""
    return {m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(models)}


def rollout_figure(
    rows: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray], Mapping[str, Mapping[str, np.ndarray]]]],
    *,
    title: str,
    time_units: str = "s",
) -> bytes:
    """True (black, dashed) and predicted trajectories of a few state components against time.

    One row per split: ``rows[split] = (times, truth, predicted)``, where ``truth`` maps a component
    label (e.g. "q2 x (m)") to its values over ``times`` and ``predicted`` maps each model to the
    same labels.
    """
    plt = pyplot()
    labels = list(next(iter(rows.values()))[1])
    models = list(dict.fromkeys(m for _, _, predicted in rows.values() for m in predicted))
    colours = model_colours(models)
    fig, axes = plt.subplots(
        len(rows), len(labels), figsize=(3.3 * len(labels), 2.3 * len(rows) + 0.5), squeeze=False, sharex=True
    )
    for axes_row, (split, (times, truth, predicted)) in zip(axes, rows.items(), strict=True):
        for ax, label in zip(axes_row, labels, strict=True):
            for model, values in predicted.items():
                ax.plot(times, values[label], color=colours[model], lw=1.2, label=model)
            ax.plot(times, truth[label], "k--", lw=1.2, label="truth")
            ax.set_title(f"{split}: {label}", fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(f"time ({time_units})", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    layout(fig, hspace=0.35)
    return to_png(fig)


def error_time_figure(
    curves: Mapping[str, Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]]],
    *,
    title: str,
    ylabel: str = "relative error",
    time_units: str = "s",
) -> bytes:
    """Error against time on a log scale: one panel per split, one line per model.

    ``curves[split][model]`` holds (times, errors) per seed; the line is the geometric mean over
    seeds and the band spans the seeds' minimum to maximum.
    """
    plt = pyplot()
    splits = list(curves)
    models = list(dict.fromkeys(m for s in splits for m in curves[s]))
    colours = model_colours(models)
    fig, axes = plt.subplots(1, len(splits), figsize=(3.3 * len(splits) + 0.4, 2.8), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits, strict=True):
        for model, seeds in curves[split].items():
            t = np.asarray(seeds[0][0], dtype=float)
            e = np.maximum(np.array([np.asarray(s[1], dtype=float) for s in seeds]), 1e-12)
            ax.plot(t, np.exp(np.log(e).mean(axis=0)), color=colours[model], lw=1.2, label=model)
            if len(seeds) > 1:
                ax.fill_between(t, e.min(axis=0), e.max(axis=0), color=colours[model], alpha=0.2, lw=0)
        plain_log_axis(ax)
        ax.set_title(split, fontsize=9)
        ax.set_xlabel(f"time ({time_units})", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    layout(fig, left=0.75, wspace=0.1)
    return to_png(fig)


def ood_bars_figure(
    models: Sequence[str],
    splits: Sequence[str],
    values: Mapping[tuple[str, str], tuple[float, float]],
    *,
    title: str,
    ylabel: str,
    published: Mapping[tuple[str, str], float] | None = None,
    log: bool = True,
    in_distribution: Collection[str] = (),
) -> bytes:
    """Grouped bars: per model, the in-distribution splits (``in_distribution``, grey) beside each OOD
    split, with the std over seeds as error bars and published values (where given) as black crosses."""
    plt = pyplot()
    published = published or {}
    per_model = max(1.0, 0.4 * len(splits))  # inches of axis per model: room for its label and bars
    fig, ax = plt.subplots(figsize=(per_model * len(models) + 2.6, 3.0))
    width = 0.8 / max(1, len(splits))
    ood_index = 0
    for j, split in enumerate(splits):
        if split in in_distribution:
            colour, hatch = "0.65", None
        else:
            colour, hatch = _OOD_COLOURS[ood_index % len(_OOD_COLOURS)], None
            ood_index += 1
        x, heights, errors = [], [], []
        for i, model in enumerate(models):
            if (model, split) in values:
                mean, std = values[model, split]
                x.append(i + (j - (len(splits) - 1) / 2) * width)
                heights.append(mean)
                errors.append(std)
        label = f"{split} (in distribution)" if split in in_distribution else split
        if x:
            ax.bar(x, heights, width * 0.95, yerr=errors, color=colour, hatch=hatch, label=label, capsize=2, lw=0)
        marks = [
            (i + (j - (len(splits) - 1) / 2) * width, published[m, split])
            for i, m in enumerate(models)
            if (m, split) in published
        ]
        if marks:
            xs, ys = zip(*marks, strict=True)
            ax.scatter(xs, ys, marker="x", color="k", s=30, zorder=3, label="published" if j == 0 else None)
    if published and not any((m, splits[0]) in published for m in models):
        ax.scatter([], [], marker="x", color="k", label="published")
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels(models, fontsize=8)
    if log:
        plain_log_axis(ax)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    layout(fig, left=0.7, right=1.9, top=0.35)
    return to_png(fig)


def predicted_true_figure(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray, float]], *, quantity: str, title: str
) -> bytes:
    """Predicted against true, one panel per model, with the 1:1 line and sigma68 in the legend.

    ``panels[model] = (true, predicted, sigma68)``.
    """
    plt = pyplot()
    colours = model_colours(list(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.0), squeeze=False)
    values = np.concatenate([np.concatenate([p[0], p[1]]) for p in panels.values()])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    lims = (low - pad, high + pad)
    for ax, (model, (true, pred, s68)) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(true, pred, s=4, alpha=0.5, color=colours[model], lw=0, label=f"{model}: σ68 = {s68:.3f} dex")
        ax.plot(lims, lims, "k-", lw=0.8, label="1:1")
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {quantity}", fontsize=8)
        ax.set_ylabel(f"predicted {quantity}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    layout(fig, left=0.6, bottom=0.55, wspace=0.45)
    return to_png(fig)


def running_median(x: np.ndarray, y: np.ndarray, bins: int = 12, minimum: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Median of ``y`` in equal-width bins of ``x`` (bins with fewer than ``minimum`` points left out)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return np.array([]), np.array([])
    edges = np.linspace(x.min(), x.max() + 1e-12, bins + 1)
    where = np.digitize(x, edges) - 1
    centres, medians = [], []
    for b in range(bins):
        inside = where == b
        if inside.sum() >= minimum:
            centres.append(0.5 * (edges[b] + edges[b + 1]))
            medians.append(float(np.median(y[inside])))
    return np.array(centres), np.array(medians)
