"""Shared fixtures: a temporary catalog (the test kind is registered by importing support).

Under pytest-xdist (``make test`` runs ``-n 2 --dist loadscope``: a module's tests on one worker, so
that a module-scoped fixture such as a smoke run is built once) every worker computes with one thread:
two workers each running torch, BLAS or numba on every core would oversubscribe the machine."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # before torch, numpy or numba is imported in this worker; inherited by the processes tests start
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_name] = "1"

import pytest  # noqa: E402
import support  # noqa: F401, E402  (registers the test kind)

from data_catalog import Catalog  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    return Catalog(tmp_path / "catalog")
