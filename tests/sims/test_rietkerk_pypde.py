"""Our IMEX (SBDF2) and exponential (ETDRK4) solvers against py-pde's explicit Euler, an independent code for the
same semi-discrete system."""

from __future__ import annotations

import numpy as np
import pytest

from sims.rietkerk.solver import simulate
from sims.rietkerk.system import RIETKERK_2002, Grid, Parameters, initial_state


@pytest.mark.slow
def test_agrees_with_pypde_explicit_euler_at_200_days():
    pytest.importorskip("pde")
    from sims.rietkerk.benchmark import pypde_laplacian_error, pypde_problem, pypde_solve, rel_l2

    grid = Grid(48.0, 2.0)
    params = Parameters.from_mapping(RIETKERK_2002)  # R = 1.0: labyrinths
    state0 = initial_state(params, grid, kind="seeded", seeds=0)
    assert pypde_laplacian_error(grid.n, grid.L) < 1e-12
    reference = pypde_solve(pypde_problem(RIETKERK_2002, state0[0].numpy(), grid.L), T=200.0)
    assert np.isfinite(reference).all() and reference[2].max() > 1.0  # vegetation survived
    for method, dt in (("sbdf2", 0.5), ("etdrk4", 5.0)):
        ours = simulate(params, grid, state0, T=200.0, dt=dt, laplacian="fd5", method=method).fields[0, -1].numpy()
        assert rel_l2(ours, reference) <= 1e-2, method
