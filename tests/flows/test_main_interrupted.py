"""An interrupted main job (``eqs run``, halos at the smoke preset) completes without recomputing what
had finished."""

from __future__ import annotations

from support import forbid

import pipeline.halos.scalars
import sims.halos.population
import surrogates.halos.runs
from data_catalog import Catalog
from flows.main import main_job


def test_an_interrupted_run_completes_only_the_missing_steps(tmp_path, monkeypatch):
    catalog = tmp_path / "catalog"

    def crash(*args, **kwargs):
        raise RuntimeError("the machine went down")

    with monkeypatch.context() as m:
        m.setattr(surrogates.halos.runs, "evaluate_halo_model", crash)
        state = main_job(catalog=str(catalog), preset="smoke", systems=["halos"], return_state=True)
        assert not state.is_completed()
    done = Catalog(catalog).refs()
    assert any(r.startswith("halos-smoke-synthetic-features@") for r in done)
    # the population and the features (of all and of the subsampled test halos) had finished before the
    # crash, in the first evaluation: they are not computed again
    forbid(monkeypatch, [(sims.halos.population, "iter_population"), (pipeline.halos.scalars, "halo_scalars")])
    refs = main_job(catalog=str(catalog), preset="smoke", systems=["halos"], report_dir=str(tmp_path / "r"))
    assert (tmp_path / "r" / "report.html").exists()
    assert set(done) <= set(Catalog(catalog).refs())
    assert refs["report"] in Catalog(catalog).refs()
