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


def test_an_existing_scheduler_is_used_by_address(catalog, monkeypatch):
    """Features computed on a cluster reached by its address, as `--dask-address` / EQS_DASK_ADDRESS do."""
    from distributed import LocalCluster

    from pipeline.features import write_features
    from sims.declaration import find_system

    ref = catalog.write(pendulum_dataset(n=20), "pend", kind="spring_pendulum.raw")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        monkeypatch.setenv(ENV_ADDRESS, cluster.scheduler_address)
        with dask_scheduler(None) as where:
            assert where == f"dask scheduler at {cluster.scheduler_address}"
            out = write_features(catalog, ref, find_system("spring_pendulum"))
        assert cluster.scheduler.transition_counter > 0  # the work ran on that cluster's scheduler
    assert catalog.info(out).parents == [ref]
