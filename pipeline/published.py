"""Published numbers our results are compared with (docs/protocols.md), as (mean, std) per model and split.

Pendulum errors are geometric-mean relative state errors (lower is better); halo numbers are sigma68
of the log stellar mass in dex (lower is better), keyed (target, model, split), with no std reported.
"""

from __future__ import annotations

PENDULUM = {
    # Finzi, Welling, Wilson 2021 (scalars row: Yao et al. 2021 with the EMLP protocol), test split
    ("emlp", "scalar-hnn", "test"): (0.005, 0.002),
    ("emlp", "scalar-node", "test"): (0.009, 0.001),
    ("emlp", "mlp-hnn", "test"): (0.028, 0.001),
    ("emlp", "mlp-node", "test"): (0.048, 0.000),
    # Villar, Yao, Hogg, Blum-Smith, Dumitrascu 2023
    ("units", "dimensional-hnn", "exp1"): (0.0055, 0.0030),
    ("units", "dimensional-hnn", "exp2"): (0.3669, 0.0050),
    ("units", "dimensional-hnn", "exp3"): (0.1885, 0.0031),
    ("units", "dimensionless-hnn", "exp1"): (0.0061, 0.0024),
    ("units", "dimensionless-hnn", "exp2"): (0.0089, 0.0034),
    ("units", "dimensionless-hnn", "exp3"): (0.0435, 0.0047),
}

HALOS = {
    # Storey-Fisher, Hogg, Genel, Villar et al.: scatter (sigma68, dex) of log stellar mass on the random
    # 70/15/15 test split of IllustrisTNG TNG100-1-Dark halos (log10 M200m >= 10.25), docs/protocols.md; no std given
    ("log_mstar", "mass-only", "random"): (0.252, None),
    ("log_mstar", "global", "random"): (0.189, None),
    ("log_mstar", "scalars", "random"): (0.162, None),
}
