"""The MLP's input normalisation: columns that vary are standardised; a column constant up to round-off
keeps its round-off as small as it is, in any units, and another value of a small constant stays of
the size of the change."""

from __future__ import annotations

import torch

from surrogates.mlp import CONSTANT_SPREAD, MLP


def test_a_column_constant_to_round_off_is_not_scaled_up_in_any_units():
    torch.manual_seed(0)
    n = 500
    varying = 3.0 + 2.0 * torch.randn(n, dtype=torch.float64)
    for unit in (1e-6, 1.0, 1e8):  # the same data in three units
        square = unit * 0.011 * (1 + 1e-10 * torch.randn(n, dtype=torch.float64))  # m^2 with round-off
        zero = torch.zeros(n, dtype=torch.float64)
        x = torch.stack([unit * varying, square, zero], 1)
        mlp = MLP(3, 1, (4,)).double()
        mlp.fit_input(x)
        normalised = (x - mlp.shift) / mlp.scale
        assert torch.allclose(normalised[:, 0].std(), torch.tensor(1.0, dtype=torch.float64))
        assert normalised[:, 1].abs().max() < 1e-8  # not standardised: that would make it order one
        assert abs(float(mlp.scale[1]) / max(unit * 0.011, 1.0) - 1) < 1e-9  # the size of its mean, at least 1
        assert float(mlp.scale[2]) == 1.0  # an exact zero: nothing to scale
    # just above the threshold a column is standardised as any other
    x = (1 + 10 * CONSTANT_SPREAD * torch.randn(n, 1, dtype=torch.float64)).expand(n, 1)
    mlp = MLP(1, 1, (4,)).double()
    mlp.fit_input(x)
    assert abs(float(mlp.scale[0]) / float(x.std()) - 1) < 1e-12


def test_the_multiplicative_normalisation_keeps_no_shift():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    mlp = MLP(2, 1, (4,)).double()
    mlp.fit_input(x, multiplicative=True)
    assert torch.equal(mlp.shift, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(mlp.scale, torch.tensor([5.0**0.5, 1.0], dtype=torch.float64))


def test_another_value_of_a_small_constant_is_not_blown_up():
    """Newton's G, the same in every training sample: a model asked about another G (a check's random
    inputs, other units) sees the change in G, not the change over G (1e10 times larger)."""
    x = torch.full((10, 1), 6.674e-11, dtype=torch.float64)
    mlp = MLP(1, 1, (4,)).double()
    mlp.fit_input(x)
    assert float(mlp.scale[0]) == 1.0
    assert abs(float((1.5 - mlp.shift[0]) / mlp.scale[0]) - 1.5) < 1e-9
