"""The pendulum's published numbers our results are compared with (docs/protocols.md), as (mean, std)
per protocol, model and split: geometric-mean relative state errors (lower is better)."""

from __future__ import annotations

PUBLISHED = {
    # Finzi, Welling, Wilson 2021 (scalars row: Yao et al. 2021 with the EMLP protocol), test split
    ("emlp", "scalar-hnn", "test"): (0.005, 0.002),
    ("emlp", "scalar-node", "test"): (0.009, 0.001),
    ("emlp", "mlp-hnn", "test"): (0.028, 0.001),
    ("emlp", "mlp-node", "test"): (0.048, 0.000),
    # the EMLP HNNs of the same table (Finzi et al.'s own)
    ("emlp", "emlp-hnn-o2", "test"): (0.012, 0.002),
    ("emlp", "emlp-hnn-so2", "test"): (0.016, 0.003),
    ("emlp", "emlp-hnn-d2", "test"): (0.111, 0.167),
    ("emlp", "emlp-hnn-d6", "test"): (0.013, 0.002),
    # Villar, Yao, Hogg, Blum-Smith, Dumitrascu 2023
    ("units", "dimensional-hnn", "exp1"): (0.0055, 0.0030),
    ("units", "dimensional-hnn", "exp2"): (0.3669, 0.0050),
    ("units", "dimensional-hnn", "exp3"): (0.1885, 0.0031),
    ("units", "dimensionless-hnn", "exp1"): (0.0061, 0.0024),
    ("units", "dimensionless-hnn", "exp2"): (0.0089, 0.0034),
    ("units", "dimensionless-hnn", "exp3"): (0.0435, 0.0047),
}
