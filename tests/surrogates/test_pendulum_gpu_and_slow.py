"""Checks skipped by default: the GPU path (``-m gpu``) and the quick preset's tables (``-m slow``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_catalog import Catalog
from sims.pendulum import protocols as pp
from sims.pendulum import system as sp
from surrogates.pendulum import models as pm

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_simulator_on_cuda_agrees_with_the_cpu():
    rng = np.random.default_rng(0)
    params = sp.Parameters.from_mapping(sp.sample_parameters(64, rng, random_direction=True))
    z0 = torch.as_tensor(sp.sample_initial_states(64, rng))
    times = 0.2 * np.arange(151)
    cpu = sp.simulate(params, z0, times)
    cuda = sp.simulate(params.to("cuda"), z0.to("cuda"), times).cpu()
    assert float(((cuda - cpu).norm(dim=-1) / cpu.norm(dim=-1)).max()) < 1e-8


@pytest.mark.gpu
@needs_cuda
def test_a_training_step_on_cuda_matches_the_cpu():
    rng = np.random.default_rng(1)
    params = sp.Parameters.from_mapping(sp.sample_parameters(32, rng))
    z = sp.simulate(params, torch.as_tensor(sp.sample_initial_states(32, rng)), 0.2 * np.arange(5))
    batch = {"z": z, "theta": pm.theta_of(params)}
    losses = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = pm.build_model("dimensionless-hnn").double()
        model.fit_inputs(z.reshape(-1, 12), batch["theta"].repeat_interleave(5, 0))
        model.to(device).train()
        loss = pm.chunk_loss(torch.arange(5) * 0.2)(model, {k: v.to(device) for k, v in batch.items()})
        loss.backward()
        losses.append(float(loss))
    assert losses[1] == pytest.approx(losses[0], rel=1e-9)


@pytest.mark.slow
def test_quick_preset_shows_the_published_pattern(tmp_path):
    """Units protocol, quick preset, one seed: the dimensionless HNN scores exactly the same on the
    kg-rescaled test set as on exp1 by the units-invariant metric, and the dimensional baseline degrades."""
    from flows.pendulum.flow import pendulum_flow

    root = str(tmp_path / "catalog")
    result = pendulum_flow(protocol="units", preset="quick", seeds=1, catalog=root)
    rows = {(r["model"], r["split"]): r for r in result["summary"]["rows"]}
    exp1, exp2 = rows["dimensionless-hnn", "exp1"], rows["dimensionless-hnn", "exp2"]
    assert exp2["blockwise_mean"] == pytest.approx(exp1["blockwise_mean"], rel=1e-9)
    assert exp1["mean"] < 0.05
    assert rows["dimensional-hnn", "exp2"]["mean"] > 5 * rows["dimensional-hnn", "exp1"]["mean"]
    assert rows["dimensional-hnn", "exp2"]["mean"] > 3 * exp2["mean"]
    evaluation = Catalog(root).open(rows["dimensionless-hnn", "exp2"]["evaluations"][0])
    assert evaluation.attrs["split"] == "exp2"
    assert pp.TEST_SPLITS["units"] == ("exp1", "exp2", "exp3")


@pytest.mark.slow
def test_simulator_benchmark_puts_both_backends_and_scipy_side_by_side(tmp_path):
    import json

    from surrogates.pendulum import benchmark

    out = tmp_path / "bench.json"
    argv = ["--systems", "8", "--scipy-systems", "1", "--check-systems", "1", "--sizes", "4", "8", "--skip-training"]
    benchmark.main([*argv, "--skip-floor", "--out", str(out)])
    sim = json.loads(out.read_text())["simulator"]
    assert set(sim["ours"]) == set(sim["speedup_at_equal_accuracy"]) == {"compiled", "torch"}
    assert [row["systems"] for row in sim["compiled_by_batch_size"]] == [4, 8]
    assert max(sim["our_max_relative_error"].values()) < 1e-6
    assert sim["scipy_loop_numpy_rhs"]["systems_per_second"] > 0
