"""The features flow: content-hash caching and the declaration found from the dataset's kind."""

from __future__ import annotations

from support import pendulum_dataset

from flows import feature_steps
from flows.features import features_flow
from pipeline.cluster import ENV_ADDRESS


def test_features_flow_runs_once_per_content(catalog, monkeypatch):
    monkeypatch.setenv(ENV_ADDRESS, "threads")
    calls = []
    real = feature_steps.write_features
    monkeypatch.setattr(feature_steps, "write_features", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    first = catalog.write(pendulum_dataset(n=10, seed=0), "pend", kind="spring_pendulum.raw")
    out = features_flow(first, catalog=str(catalog.root))
    assert out == "pend-features@v1" and catalog.info(out).parents == [first]
    # cached on the content hash: the same result, and the extraction did not run again
    assert features_flow(first, catalog=str(catalog.root)) == out
    assert calls == [first]
    second = catalog.write(pendulum_dataset(n=10, seed=1), "pend", kind="spring_pendulum.raw")
    assert features_flow("pend", catalog=str(catalog.root)) == "pend-features@v2"
    assert catalog.info("pend-features@v2").parents == [second]
    assert calls == [first, second]
