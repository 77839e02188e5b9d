"""The halo section's own figure: the stellar-to-halo relation, true and predicted."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.report_figures import layout, model_colours, pyplot, running_median, to_png


def stellar_to_halo_figure(
    log_mass: np.ndarray, true: np.ndarray, predicted: Mapping[str, np.ndarray], *, quantity: str, title: str
) -> bytes:
    """True ``quantity`` against log halo mass (grey points, black running median) and each model's
    predicted mean (coloured running medians)."""
    plt = pyplot()
    colours = model_colours(list(predicted))
    fig, ax = plt.subplots(figsize=(4.8, 3.3))
    ax.scatter(log_mass, true, s=3, color="0.7", lw=0, label="true (test halos)")
    x, m = running_median(log_mass, true)
    ax.plot(x, m, "k-", lw=1.8, label="true, running median")
    for model, pred in predicted.items():
        x, m = running_median(log_mass, pred)
        ax.plot(x, m, "--", color=colours[model], lw=1.4, label=f"{model}, running median")
    ax.set_xlabel("log10 M200m / Msun", fontsize=8)
    ax.set_ylabel(quantity, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    layout(fig, left=0.6, bottom=0.55, top=0.35)
    return to_png(fig)
