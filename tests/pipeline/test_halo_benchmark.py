"""The halo-scalar benchmark: every reader and scheduler it times gives the scalars of the catalog in memory."""

from __future__ import annotations

import json

from pipeline.halos.benchmark import throughput


def test_every_reader_and_the_threaded_scheduler_give_the_in_memory_scalars(tmp_path):
    out = tmp_path / "bench.json"
    report = throughput(
        12, 150, scales=(1, 2), workers=(), threads=True, chunk_halos=5, repeats=1, with_limits=False,
        engines=("catalog", "store", "h5netcdf"), out=out,
    )  # fmt: skip
    runs = report["runs"]
    assert {(r["engine"], r["scale"]) for r in runs} == {
        (e, s) for e in ("catalog", "store", "h5netcdf") for s in (1, 2)
    }
    assert all(r["same_as_in_memory"] and r["workers"] == "threads" for r in runs)
    assert {r["particles"] for r in runs} == {12 * 150, 24 * 150}
    assert json.loads(out.read_text())["runs"] == runs
