"""Where dask work runs: in-process schedulers, a local cluster, or a scheduler's address."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from support import pendulum_dataset

from pipeline.cluster import ENV_ADDRESS, dask_scheduler, resolve_scheduler


def test_scheduler_choice(monkeypatch):
    monkeypatch.delenv(ENV_ADDRESS, raising=False)
    assert resolve_scheduler(None) == "local"
    monkeypatch.setenv(ENV_ADDRESS, "tcp://10.0.0.1:8786")
    assert resolve_scheduler(None) == "tcp://10.0.0.1:8786"
    assert resolve_scheduler("threads") == "threads"


def test_a_local_cluster_computes_the_same_features():
    from pipeline.features import extract
    from sims.declaration import find_system

    ds = pendulum_dataset(n=30)
    lazy = extract(ds, find_system("spring_pendulum"), chunk_size=10)
    with dask.config.set(scheduler="synchronous"):
        expected = lazy["pi"].values
    with dask_scheduler("local", n_workers=1) as where:
        assert where.startswith("local cluster (1 processes")
        np.testing.assert_array_equal(lazy["pi"].compute().values, expected)


def test_an_unreachable_scheduler_is_named():
    with pytest.raises(OSError, match="cannot reach the dask scheduler at 'tcp://127.0.0.1:9'"):
        with dask_scheduler("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass


def test_a_failed_connection_leaves_the_default_scheduler_alone():
    before = dask.config.get("scheduler", None)
    with pytest.raises(OSError):
        with dask_scheduler("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass
    assert dask.config.get("scheduler", None) == before
    with pytest.raises(ValueError, match="is not 'local'"):
        with dask_scheduler("Threads"):
            pass
