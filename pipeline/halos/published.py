"""The halos' published numbers our results are compared with (docs/protocols.md#halos), as (mean, std)
per target, model and split: sigma68 of the log stellar mass in dex (lower is better), no std reported."""

from __future__ import annotations

PUBLISHED = {
    # Storey-Fisher, Hogg, Genel, Villar et al.: scatter (sigma68, dex) of log stellar mass on the random
    # 70/15/15 test split of IllustrisTNG TNG100-1-Dark halos (log10 M200m >= 10.25), docs/protocols.md; no std given
    ("log_mstar", "mass-only", "random"): (0.252, None),
    ("log_mstar", "global", "random"): (0.189, None),
    ("log_mstar", "scalars", "random"): (0.162, None),
}
