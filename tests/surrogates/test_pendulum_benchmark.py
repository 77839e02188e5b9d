"""The pendulum benchmark's training limit: the matrix products' work it counts against the MLP's own sizes."""

from __future__ import annotations

import pytest
import torch

from surrogates.pendulum import benchmark
from surrogates.pendulum import models as pm


def test_the_training_limit_counts_six_times_the_forward_products_of_an_hnn_step(monkeypatch):
    """An HNN step multiplies by each weight matrix six times per field evaluation: the forward pass, the
    gradient in the state (kept for the double backward), and two products for each of those in the loss's
    backward (the weight's and the input's gradients). Counted here from the MLP's layer sizes, 4 RK4 stages
    for each of the 9 intervals of the units protocol's 10-point chunks, 512 chunks at a time."""
    model = pm.build_model("mlp-hnn")
    linears = [m for m in model.mlp.net if isinstance(m, torch.nn.Linear)]
    forward = sum(2 * layer.in_features * layer.out_features for layer in linears)
    chunks, points = benchmark.TRAINING_SHAPES["units"]
    evaluations = 4 * (points - 1) * chunks
    monkeypatch.setattr(benchmark, "peak_gemm_rate", lambda dtype, device: 1e10)  # (seconds of large products)
    out = benchmark.training_limit(1, torch.float64, torch.device("cpu"), ("mlp-hnn",))
    limit = out["mlp-hnn"]
    counted = limit["gemm_gflop_per_step"] * 1e9
    # torch does three of the six products of the last layer (one output) elementwise, not as matrix products
    last = 2 * linears[-1].in_features * linears[-1].out_features
    assert counted == pytest.approx((6 * forward - 3 * last) * evaluations, rel=1e-9)
    assert 0 < limit["gemm_share_of_step"] < 1
    assert limit["max_speedup"] > 0 and limit["max_speedup_products_as_they_run"] > 1
    assert out["peak_gemm_gflops"] == 10
    assert limit["floor_seconds_per_step"] == pytest.approx(counted / 1e10)
