"""Progress artifacts of long steps reach 100 % and the wrapped work is unchanged."""

from __future__ import annotations

import httpx
from prefect import flow
from prefect.settings import PREFECT_API_URL

from flows.progress import counted, epoch_progress, tracked


def progress_of(description: str) -> list[float]:
    # the REST API directly: this Prefect client sends explicit nulls for the optional filters, which
    # the pinned server refuses (422) or answers with nothing
    body = {"artifacts": {"type": {"any_": ["progress"]}}, "limit": 200}
    found = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30).raise_for_status().json()
    return [float(a["data"]) for a in found if a["description"] == description]


def test_tracked_counted_and_epoch_progress_reach_100_percent():
    @flow
    def work() -> list[int]:
        items = list(tracked(iter(range(7)), 7, "seven items"))
        with counted(130, "130 units") as update:
            for done in range(1, 131):
                update(done)
        on_epoch = epoch_progress(3, "three epochs")
        for epoch in (1, 2, 3):
            on_epoch(epoch, {"loss": 0.0})
        return items

    assert work() == list(range(7))
    for description in ("seven items", "130 units", "three epochs"):
        assert progress_of(description) == [100.0]
