"""The Rietkerk section's own figures: pattern snapshots along each regime map (the regime map itself
is :func:`pipeline.rietkerk.regimes.regime_map_figure`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from pipeline.report_figures import layout, pyplot, to_png
from pipeline.rietkerk.regimes import regime_labels


def snapshot_indices(labels: Sequence[str], count: int) -> list[int]:
    """Up to ``count`` positions along R: one in the middle of every regime's run of R values, then
    evenly spaced ones, in increasing order."""
    picks: list[int] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            picks.append((start + i - 1) // 2)
            start = i
    for i in np.linspace(0, len(labels) - 1, count).round().astype(int):
        if len(picks) >= count:
            break
        if int(i) not in picks:
            picks.append(int(i))
    return sorted(picks[:count])


def regime_snapshots_figure(maps: Sequence[xr.Dataset], per_map: int = 6) -> bytes:
    """Biomass fields ``v`` of each regime map at a few rainfalls (every regime shown where there is
    room), titled with R and the regime label; one row per map."""
    plt = pyplot()
    fig, axes = plt.subplots(len(maps), per_map, figsize=(1.75 * per_map, 2.05 * len(maps)), squeeze=False)
    for row, ds in zip(axes, maps, strict=True):
        labels = regime_labels(ds)
        picks = snapshot_indices(labels, per_map)
        vmax = float(ds["v"].max()) or 1.0
        extent = None
        if "x" in ds.coords and ds.sizes.get("x", 0) > 1:
            x = ds["x"].values
            extent = (float(x[0]), float(x[-1]), float(x[0]), float(x[-1]))
        for k, ax in enumerate(row):
            if k >= len(picks):
                ax.axis("off")
                continue
            i = picks[k]
            ax.imshow(ds["v"].values[i], cmap="Greens", vmin=0, vmax=vmax, extent=extent, origin="lower")
            R = float(ds["R"].values[i])
            ax.set_title(f"R = {R:.3g}: {labels[i]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{ds.attrs.get('map', '')}\nT = {ds.attrs.get('T', float('nan')):g} d", fontsize=8)
    fig.suptitle(
        "biomass v (g m$^{-2}$) at the end of the run; 0 (white) to the map's maximum (dark green)", fontsize=8
    )
    layout(fig, left=0.55, right=0.1, bottom=0.1, top=0.55, wspace=0.08, hspace=0.3)
    return to_png(fig)
