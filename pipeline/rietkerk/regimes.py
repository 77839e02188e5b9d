"""The regime map of the Rietkerk model over rainfall, beside what linear stability predicts.

Two protocols (docs/protocols.md#rietkerk), chosen so that each tests what its source states:

- ``talk``: the talk's parameters from the perturbed uniform state (relative noise 1e-3; bare soil
  with a trace of biomass where no vegetated state exists): small perturbations follow linear
  stability (with 1e-2, finite-amplitude patterns already appear at R = 0.32), so the map
  shows bare below R = 1/3, Turing patterns in the unstable band, uniform cover above it;
- ``rietkerk2002``: the 2002 parameters from the seeded start (10 % of cells with 10 g m^-2): spots,
  labyrinths and gaps at R = 0.75 / 1.0 / 1.25, where large seeds reach the patterned branch even
  below the uniform state's existence (R = 1) and above its Turing point (R = 1.26).

T = 200 d is not an equilibrium (patterns keep coarsening); the map is of the state at T.
"""

from __future__ import annotations

import io

import numpy as np
import xarray as xr

from data_catalog import DatasetSchema, VariableSpec, register_schema
from pipeline.rietkerk.features import COVER_THRESHOLD_K2
from pipeline.rietkerk.patterns import REGIMES, encode_regimes, pattern_statistics, regime_attrs
from sims.rietkerk import system as rk
from sims.rietkerk.solver import simulate

REGIMES_KIND = "rietkerk.regimes"
MAPS = {
    "talk": ("talk", "perturbed", tuple(np.round(np.arange(0.25, 0.601, 0.025), 3)), 1e-3),
    "rietkerk2002": ("rietkerk2002", "seeded", tuple(np.round(np.arange(0.5, 1.501, 0.0625), 4)), 0.0),
}

register_schema(
    DatasetSchema(
        kind=REGIMES_KIND,
        description="Rietkerk regime map: pattern statistics and linear stability over rainfall R",
        variables={
            "regime": VariableSpec(dims=("R",), units="1", dtype="integer"),
            "mean_v": VariableSpec(dims=("R",), units="g m^-2", dtype="float"),
            "v": VariableSpec(dims=("R", "y", "x"), units="g m^-2", dtype="float"),
        },
        coords={"R": VariableSpec(dims=("R",), units="l d^-1 m^-2", dtype="float")},
    )
)


def regime_map(
    name: str, *, L: float = 200.0, dl: float = 2.0, T: float = 200.0, dt: float = 0.5, seed: int = 0, rainfall=None
) -> xr.Dataset:
    """Simulate one protocol of :data:`MAPS` over its rainfalls (or ``rainfall``); a ``rietkerk.regimes`` dataset."""
    if name not in MAPS:
        raise rk.RietkerkInputError(f"unknown regime map {name!r}; choose one of {sorted(MAPS)}")
    base_name, start, default_R, noise = MAPS[name]
    base = rk.PARAMETER_SETS[base_name]
    R = np.asarray(rainfall if rainfall is not None else default_R, dtype=np.float64)
    grid = rk.Grid(L, dl)
    params = rk.Parameters.from_mapping({**base, "R": R}, source=f"regime map {name}")
    z0 = rk.initial_state(params, grid, kind=start, seeds=seed + np.arange(R.size), noise=noise)
    v = simulate(params, grid, z0, T=T, dt=dt).fields[:, -1, 2].numpy()
    stats = pattern_statistics(v, dl, cover_threshold=COVER_THRESHOLD_K2 * base["k2"])
    stability = [rk.linear_stability({**base, "R": r}) for r in R]
    x = grid.coordinates()
    return xr.Dataset(
        {
            "regime": ("R", encode_regimes(stats["regime"]), regime_attrs()),
            "mean_v": ("R", np.asarray(stats["mean"], dtype=float), {"units": "g m^-2"}),
            "cover_fraction": ("R", np.asarray(stats["cover_fraction"], dtype=float), {"units": "1"}),
            "dominant_wavelength": ("R", np.asarray(stats["dominant_wavelength"], dtype=float), {"units": "m"}),
            "vegetated_state_exists": ("R", np.array([s.exists for s in stability]), {"units": "1"}),
            "turing_unstable": ("R", np.array([s.turing_unstable for s in stability]), {"units": "1"}),
            "fastest_wavelength": ("R", np.array([s.fastest_wavelength for s in stability]), {"units": "m"}),
            "v": (("R", "y", "x"), v, {"units": "g m^-2"}),
        },
        coords={"R": ("R", R, {"units": "l d^-1 m^-2"}), "y": ("y", x, {"units": "m"}), "x": ("x", x, {"units": "m"})},
        attrs={
            "map": name,
            "parameters": base_name,
            "initial_condition": start,
            "T": T,
            "dt": dt,
            "L": L,
            "dl": dl,
            "seed": seed,
        },
    )


def regime_labels(ds: xr.Dataset) -> list[str]:
    return [REGIMES[int(c)] for c in ds["regime"].values]


REGIME_COLOURS = {
    "bare": "#c8b38a",
    "spots": "#9bd17f",
    "labyrinth": "#3f9a3a",
    "gaps": "#1f5f2a",
    "uniform": "#0b3d12",
}


def regime_map_figure(maps: list[xr.Dataset], snapshots: int = 5) -> bytes:
    """A PNG: per map, the regime and mean biomass over R with the Turing band shaded, and snapshots of v."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(maps), snapshots, figsize=(2.2 * snapshots, 4.6 * len(maps)), squeeze=False)
    for row, ds in enumerate(maps):
        top = fig.add_subplot(2 * len(maps), 1, 2 * row + 1)
        for ax in axes[2 * row]:
            ax.remove()
        R = ds["R"].values
        labels = regime_labels(ds)
        unstable = ds["turing_unstable"].values.astype(bool)
        if unstable.any():
            top.axvspan(R[unstable].min(), R[unstable].max(), color="0.9", label="Turing-unstable uniform state")
        top.plot(R, ds["mean_v"].values, "k-", lw=1)
        for regime in REGIMES:
            hit = np.array([lab == regime for lab in labels])
            if hit.any():
                top.scatter(
                    R[hit],
                    ds["mean_v"].values[hit],
                    s=60,
                    color=REGIME_COLOURS[regime],
                    label=regime,
                    zorder=3,
                    edgecolor="k",
                )
        top.set_xlabel("rainfall R (l d$^{-1}$ m$^{-2}$)")
        top.set_ylabel("mean biomass at T (g m$^{-2}$)")
        top.set_title(
            f"{ds.attrs['parameters']} parameters, {ds.attrs['initial_condition']} start, T = {ds.attrs['T']:g} d",
            fontsize=9,
        )
        top.legend(fontsize=7, loc="upper left")
        picks = np.unique(np.linspace(0, R.size - 1, snapshots).round().astype(int))
        for ax, i in zip(axes[2 * row + 1], picks):
            ax.imshow(ds["v"].values[i], cmap="Greens", vmin=0, vmax=float(ds["v"].max()))
            ax.set_title(f"R = {R[i]:.3g}: {labels[i]}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[2 * row + 1][len(picks) :]:  # fewer rainfalls than snapshot places
            ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
