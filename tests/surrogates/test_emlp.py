"""EMLP-style layers: exact equivariance for any weights under each group (and not under a larger one),
the reference code's feature allocation, and the pendulum's EMLP HNN trained, stored and reloaded."""

from __future__ import annotations

import numpy as np
import pytest
import support
import torch

from pipeline.model_symmetry import measure_equivariance
from pipeline.symmetry import random_orthogonal, relative_error
from sims.pendulum import protocols as pp
from sims.pendulum import system as sp
from surrogates.artifacts import load_model
from surrogates.emlp import EMLP, TensorSum, uniform_rep
from surrogates.pendulum import methods_benchmark as mb
from surrogates.pendulum import models as pm
from surrogates.pendulum import runs as pr
from surrogates.training import TrainConfig

GROUPS = support.matrix_groups()


def _act(x: torch.Tensor, g: torch.Tensor, rep: TensorSum) -> torch.Tensor:
    """g on every index of every copy, written out index by index (not through the layers' bases)."""
    out = []
    for r, part in enumerate(rep.split(x)):
        t = part.unflatten(-1, (rep.d,) * r) if r else part
        for i in range(r):
            axis = t.ndim - r + i
            t = torch.movedim(torch.tensordot(t, g, dims=([axis], [1])), -1, axis)
        out.append(t.flatten(-r - 1) if r else t.flatten(-2))
    return torch.cat(out, dim=-1)


def test_hidden_features_follow_the_reference_allocation():
    """The reference code's uniform_rep(384) on R^3: 102 scalars, 34 vectors, 11 rank-2 and 3 rank-3 tensors."""
    assert uniform_rep(384, 3) == TensorSum((102, 34, 11, 3), 3)
    assert uniform_rep(384, 3).size == 384 and uniform_rep(16, 3).size == 16


@pytest.mark.parametrize("name", GROUPS)
def test_an_emlp_is_exactly_equivariant_under_its_group_and_not_more(name):
    """Scalars, vectors and rank-2 tensors in; a scalar and two vectors out; random weights in float64,
    the bilinear ones included (a model built in float32 and cast keeps its bases exact)."""
    group, rng = GROUPS[name], np.random.default_rng(0)
    torch.manual_seed(0)
    rep_in, rep_out = TensorSum((2, 3, 1), 3), TensorSum((1, 2), 3)
    net = EMLP(rep_in, rep_out, group, (32, 32), bilinear_init=0.02).double()
    with torch.no_grad():  # the bilinear weights start at the spread asked: give them the size training may
        bilinear = [p for name, p in net.named_parameters() if ".bilinear." in name]
        assert bilinear and float(torch.cat([p.flatten() for p in bilinear]).std()) == pytest.approx(0.02, rel=0.1)
        for p in bilinear:
            p.normal_()
    x = torch.randn(6, rep_in.size, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
        for _ in range(6):
            g = torch.as_tensor(group.random_element(rng))
            assert relative_error(net(_act(x, g, rep_in)), _act(y, g, rep_out)) < 1e-12
        if name != "O(3)":  # an element of O(3) outside the group (a generic reflection) moves the output
            g = torch.as_tensor(random_orthogonal(3, rng, reflection=True))
            assert relative_error(net(_act(x, g, rep_in)), _act(y, g, rep_out)) > 1e-3


def test_emlp_hnn_fields_and_rollouts_are_exactly_equivariant_under_the_protocols_symmetry():
    """The O(2) HNN reads the state only; rotations about z and the vertical mirror move states and the field."""
    torch.manual_seed(0)
    model = pm.build_model("emlp-hnn-o2", hidden=(32, 32)).double().eval()
    test = pp.generate(pp.preset("emlp", "smoke"))["test"]
    params, truth, times = sp.from_dataset(test)
    z, theta = truth[:, 0], pm.theta_of(params)
    assert measure_equivariance(model, data=[z, theta], group=pr.ABOUT_GRAVITY).worst < 1e-12
    assert measure_equivariance(model, data=[z, theta]).worst > 1e-3  # not O(3): it cannot see gravity turn
    moved = mb.rotated_split(test, about_gravity=True)
    assert mb.score(model, *moved) == pytest.approx(mb.score(model, params, truth, times), rel=1e-9)


def test_emlp_hnn_trains_at_its_capped_rate_and_reloads(catalog):
    emlp = pp.generate(pp.preset("emlp", "smoke"))
    refs = {s: catalog.write(ds, f"e-{s}", kind=sp.RAW_KIND) for s, ds in emlp.items()}
    config = TrainConfig(seed=0, epochs=3, lr=5e-3, progress=False)
    ref = pr.train_model(catalog, "emlp-hnn-d6", refs["train"], refs["val"], config, model_options={"hidden": (16,)})
    assert catalog.info(ref, variables=False).params["training"]["lr"] == pm.EMLP_MAX_LR
    loaded = load_model(catalog, ref, device="cpu", dtype=torch.float64).model
    assert loaded.config == {"group": "D6", "hidden": [16], "bilinear_init": pm.EMLP_BILINEAR_INIT}
    rebuilt = pm.build_model("emlp-hnn-d6", hidden=(16,)).double()
    rebuilt.load_state_dict(loaded.state_dict())  # the stored weights are the model's whole state
    params, truth, _ = sp.from_dataset(emlp["test"])
    z, theta = truth[:, 0], pm.theta_of(params)
    torch.testing.assert_close(loaded(z, theta), rebuilt(z, theta), rtol=1e-12, atol=0)
    # D6 and O(2) leave the same tensors of rank up to 5 invariant: with vector features only, this is exact
    assert measure_equivariance(loaded, data=[z, theta], group=pr.ABOUT_GRAVITY).worst < 1e-12
    with pytest.raises(ValueError, match="unknown EMLP group 'O\\(4\\)'"):
        pm.EMLPHNN(group="O(4)")


def test_the_methods_benchmark_trains_the_emlps_at_the_bilinear_spread_asked(tmp_path, capsys):
    """The spread is part of the stored model (it rebuilds with it) and of each row; a bad spread, or one
    given without an EMLP model to apply it to, is refused in the CLI's words."""
    spread = 0.05
    assert spread != pm.EMLP_BILINEAR_INIT  # the row must show the spread asked, not the default
    result = mb.run("smoke", ["emlp-hnn-o2", "scalar-hnn"], [4], 1, (16,), bilinear_init=spread)
    emlp, scalar = result["rows"]
    assert result["bilinear_init"] == spread and emlp["bilinear_init"] == spread and "bilinear_init" not in scalar
    assert 0 < emlp["best_val_loss"] < float("inf")
    with pytest.raises(ValueError, match="initial spread must be positive"):
        pm.build_model("emlp-hnn-o2", hidden=(16,), bilinear_init=0.0)
    out = str(tmp_path / "b.json")
    for argv, message in (
        (["--bilinear-init", "-1", "--models", "emlp-hnn-o2"], "--bilinear-init must be positive"),
        (["--bilinear-init", "0.3", "--models", "scalar-hnn"], "--models has no emlp-hnn-"),
    ):
        with pytest.raises(SystemExit) as exit_:
            mb.main([*argv, "--preset", "smoke", "--out", out])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
