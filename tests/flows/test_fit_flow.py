"""``eqs fit`` and ``eqs predict`` end to end on a tiny example: the report, the exactness of the
Pi-group surrogate on the moved test sets, the cache, and bad input refused with nothing stored."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from browser import CHROMIUM, COUNT_IMAGES, chromium
from click.testing import CliRunner
from fit_examples import DECAY, dataset, decays, declaration_path

from data_catalog import Catalog
from flows.cli import main as cli

ROUND_OFF = 1e-10


def _run(root, *args):
    return CliRunner().invoke(cli, ["--catalog", str(root), *map(str, args)])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One smoke fit of the charged particle (120 samples), run through the command line. Without
    --dask-address or $EQS_DASK_ADDRESS it runs the features in threads, as its help says: no local
    cluster of worker processes is started."""
    import distributed

    tmp = tmp_path_factory.mktemp("fit")
    data = tmp / "particles.nc"
    dataset("charged-particle", 120).to_netcdf(data)
    root = tmp / "catalog"
    args = ["fit", data, "--declaration", declaration_path("charged-particle"), "--preset", "smoke"]
    args += ["--report-dir", tmp / "report", "--out", tmp / "summary.json", "--json"]

    def no_cluster(*args, **kwargs):
        raise AssertionError("eqs fit started a local cluster although none was asked for")

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("EQS_DASK_ADDRESS", raising=False)
        patch.setattr(distributed, "LocalCluster", no_cluster)
        result = _run(root, *args)
    assert result.exit_code == 0, result.output
    return tmp, root, json.loads(result.stdout), args


def test_fit_writes_the_report_and_a_row_per_method_and_test_set(fitted):
    tmp, _, out, _ = fitted
    html = (tmp / "report" / "report.html").read_text()
    assert "charged_particle (eqs fit)" in html and "data:image/png;base64," in html
    rows = out["result"]["details"]["rows"]
    assert {(r["method"], r["split"]) for r in rows} == {
        (m, s) for m in ("pi", "scalars", "raw") for s in ("test", "group", "units", "rescaled", "shift")
    }
    assert json.loads((tmp / "summary.json").read_text())["system"] == "fit-charged_particle"


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium_with_every_figure(fitted, tmp_path):
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (install it, e.g. apt-get install chromium, or set EQS_CHROMIUM)")
    html = (fitted[0] / "report" / "report.html").read_text(encoding="utf-8")
    page = tmp_path / "probe.html"  # a copy with a probe script: the report itself has none
    page.write_text(html.replace("</body>", COUNT_IMAGES + "</body>"), encoding="utf-8")
    dom = chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    counted = re.search(r"<title>images (\d+)/(\d+)</title>", dom.stdout)
    assert counted and counted.group(1) == counted.group(2) == str(html.count("<img ")), dom.stdout[:300]


def test_the_pi_surrogate_is_exact_on_every_moved_test_set_and_the_raw_one_is_not(fitted):
    _, _, out, _ = fitted
    by = {(r["method"], r["split"]): r for r in out["result"]["details"]["rows"]}
    for split in ("group", "units", "rescaled"):
        assert by["pi", split]["consistency"] < ROUND_OFF, split
        # a model that is exact on the moved samples scores exactly as on the originals
        assert by["pi", split]["median_rel_error"] == pytest.approx(by["pi", "test"]["median_rel_error"], rel=1e-8)
        assert by["raw", split]["consistency"] > 1e-3, split
    assert by["scalars", "group"]["consistency"] < ROUND_OFF and by["scalars", "units"]["consistency"] > 1e-3
    assert by["pi", "test"]["group_error"] < ROUND_OFF and by["pi", "test"]["units_error"] < ROUND_OFF
    assert by["raw", "test"]["group_error"] > 1e-3 and by["scalars", "test"]["units_error"] > 1e-3


def test_a_second_fit_comes_from_the_cache(fitted):
    tmp, root, out, args = fitted
    versions = sorted(p.name for p in Catalog(root).root.rglob("*.h5"))
    again = _run(root, *args[:-3], "--report-dir", tmp / "report2", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["result"]["evaluations"] == out["result"]["evaluations"]
    assert sorted(p.name for p in Catalog(root).root.rglob("*.h5")) == versions


def test_predict_applies_a_stored_surrogate_to_data_in_other_units(fitted):
    tmp, root, out, _ = fitted
    model = out["result"]["models"]["dx"]["pi"]["random"][0]
    new = dataset("charged-particle", 30, seed=5)
    converted = new.copy()
    converted["v0"] = converted["v0"] * 100.0
    converted["v0"].attrs["units"] = "cm/s"
    converted["t"] = converted["t"] * 1000.0
    converted["t"].attrs["units"] = "ms"
    for ds, name in ((new, "a.nc"), (converted, "b.nc")):
        ds.to_netcdf(tmp / name)
        result = _run(root, "predict", model, tmp / name, "--out", tmp / f"pred-{name}", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["samples"] == 30
    a, b = xr.open_dataset(tmp / "pred-a.nc"), xr.open_dataset(tmp / "pred-b.nc")
    np.testing.assert_allclose(a["dx"].values, b["dx"].values, rtol=1e-12)
    assert a["dx"].attrs["units"] == "m"


def test_predict_refuses_data_declared_otherwise(fitted, tmp_path):
    _, root, out, _ = fitted
    model = out["result"]["models"]["dx"]["pi"]["random"][0]
    spec = json.loads(declaration_path("charged-particle").read_text())
    spec["symmetry"] = "O(3)"
    spec["quantities"][0]["units"] = "m"
    (tmp_path / "other.json").write_text(json.dumps(spec))
    dataset("charged-particle", 20).to_netcdf(tmp_path / "d.nc")
    result = _run(
        root, "predict", model, tmp_path / "d.nc", "--out", tmp_path / "p.nc", "--declaration", tmp_path / "other.json"
    )
    assert result.exit_code == 2, result.output
    assert "does not match the declaration of model" in result.stderr
    assert "symmetry O(3)" in result.stderr and "'m' is in m" in result.stderr
    assert not (tmp_path / "p.nc").exists()


def test_predict_refuses_a_model_this_eqs_builds_differently(fitted, tmp_path):
    """A surrogate stored by an eqs whose architecture differed (another basis or set of Pi groups) is
    refused as bad input, saying what to do, not as an internal error."""
    _, root, out, _ = fitted
    model = out["result"]["models"]["dx"]["pi"]["random"][0]
    with Catalog(root).open(Catalog(root).resolve(model)) as ds:
        stored = ds.load()
    weight = next(n for n in stored.data_vars if str(n).startswith("param:") and stored[n].ndim == 2)
    older = stored.isel({stored[weight].dims[0]: slice(1, None)})  # one unit fewer, as an older basis would give
    other = Catalog(tmp_path / "catalog")
    ref = other.write(older, "older", kind="model")
    dataset("charged-particle", 20).to_netcdf(tmp_path / "d.nc")
    result = _run(other.root, "predict", ref, tmp_path / "d.nc", "--out", tmp_path / "p.nc")
    assert result.exit_code == 2, result.output
    assert f"MODEL {ref}: stored weight" in result.stderr and "train or fit it again" in result.stderr
    assert "internal error" not in result.stderr and not (tmp_path / "p.nc").exists()


def _bad(tmp_path, change_data=None, change_spec=None):
    ds = dataset("charged-particle", 60)
    spec = json.loads(declaration_path("charged-particle").read_text())
    if change_data:
        ds = change_data(ds)
    if change_spec:
        change_spec(spec)
    ds.to_netcdf(tmp_path / "d.nc")
    (tmp_path / "decl.json").write_text(json.dumps(spec))
    return tmp_path / "d.nc", tmp_path / "decl.json"


def _nan(ds):
    ds["t"][4] = np.nan
    return ds


def _units(ds):
    ds["m"].attrs["units"] = "s"
    return ds


def _components(ds):
    ds = ds.drop_vars("v0")
    ds["v0"] = (("sample", "c"), np.ones((60, 2)), {"units": "m/s"})
    return ds


def _no_mass_or_time(spec):  # then no monomial carries a time: dx / v0 has no scale
    spec["quantities"] = [q for q in spec["quantities"] if q["name"] not in ("m", "t")]


def _bad_kind(spec):
    spec["quantities"][0]["kind"] = "spinor"


def _bad_unit_string(spec):
    spec["quantities"][0]["units"] = "kgx"


BAD = {
    "NaN": (_nan, None, ["variable 't' has 1 NaN"]),
    "units of another dimension": (_units, None, ["variable 'm'", "kg"]),
    "wrong component count": (_components, None, ["variable 'v0'", "expected 3"]),
    "missing variable": (lambda ds: ds.drop_vars("B"), None, ["variable 'B' is missing"]),
    "unreachable target": (None, _no_mass_or_time, ["target 'dx'", "no units-equivariant model exists"]),
    "bad kind": (None, _bad_kind, ["kind 'spinor' is not one of"]),
    "bad unit string in the declaration": (None, _bad_unit_string, ["--declaration", "quantity 'm'", "'kgx'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_and_declarations_exit_2_and_store_nothing(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    change_data, change_spec, words = BAD[case]
    data, decl = _bad(tmp_path, change_data, change_spec)
    root = tmp_path / "catalog"
    for extra in ([], ["--json"]):
        result = _run(root, "fit", data, "--declaration", decl, "--preset", "smoke", *extra)
        assert result.exit_code == 2, result.output
        message = json.loads(result.stdout)["error"] if extra else result.stderr
        for word in words:
            assert word in message, message
        assert "Traceback" not in result.output
    assert not root.exists() or not list(root.rglob("*.h5"))
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    "options, words",
    [
        (["--target", "dy"], "--target dy: system 'charged_particle' declares no target dy"),
        (["--name", "../x"], "--name ../x: dataset name '../x'"),
        (["--shift-by", "v0"], "needs a scalar input"),
        (["--shift-by", "nothing"], "neither a declared scalar input nor an invariant"),
    ],
)
def test_bad_options_exit_2(options, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run that got through would write its report here
    data, decl = _bad(tmp_path)
    result = _run(tmp_path / "catalog", "fit", data, "--declaration", decl, *options)
    assert result.exit_code == 2 and words in result.stderr, result.output


def test_a_method_that_cannot_model_the_system_is_refused_before_anything_is_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def lorentz(spec):
        spec["symmetry"] = "O(1,2)"  # the declared 3-vectors as (t, x, y)

    data, decl = _bad(tmp_path, None, lorentz)
    root = tmp_path / "catalog"
    result = _run(root, "fit", data, "--declaration", decl, "--method", "pi", "--method", "frame")
    assert result.exit_code == 2, result.output
    assert "--method frame: frame is built on frames of O(d), SO(d), E(d) or SE(d)" in result.stderr
    assert "O(1,2)" in result.stderr and "not compact" in result.stderr
    assert not root.exists() or not list(root.rglob("*.h5"))


def test_a_missing_data_file_is_named_as_itself(tmp_path):
    _, decl = _bad(tmp_path)
    result = _run(tmp_path / "catalog", "fit", tmp_path / "nothing.nc", "--declaration", decl)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"Error: {tmp_path / 'nothing.nc'}: no such file or folder"


def test_a_discovered_axis_drives_the_invariant_model_of_a_target_no_pi_model_can_make(tmp_path, monkeypatch):
    """The pendulum's energy with gravity fixed along -z and left out (eqs discover --derive's system: SO(3)
    with the axis as an input): no Pi-group model exists, so the default methods are refused before anything
    is stored, while the invariant scalars of the derived group are trained and exact on the rotated samples."""
    from flows.declared.discover import derived_system
    from pipeline.discovery import DiscoveredGroup
    from sims.declaration import SystemDeclaration
    from surrogates.declared.discovery_cases import case_data, case_dataset

    monkeypatch.chdir(tmp_path)
    spec, values, energy = case_data("gravity-fixed", 120)
    decl = SystemDeclaration.from_dict(spec, source="case")
    derived, data, added = derived_system(
        decl, case_dataset(spec, values, energy), DiscoveredGroup("axis", 3, (0, 0, 1))
    )
    assert added == ["axis"] and derived["symmetry"] == "SO(3)"
    data.to_netcdf(tmp_path / "derived.nc")
    (tmp_path / "derived.json").write_text(json.dumps(derived))
    root = tmp_path / "catalog"
    refused = _run(
        root, "fit", tmp_path / "derived.nc", "--declaration", tmp_path / "derived.json", "--preset", "smoke"
    )
    assert refused.exit_code == 2 and "no units-equivariant (pi) model exists" in refused.stderr
    assert "train the other methods alone" in refused.stderr and not root.exists()
    args = ["fit", tmp_path / "derived.nc", "--declaration", tmp_path / "derived.json", "--preset", "smoke"]
    done = _run(root, *args, "--method", "scalars", "--json")
    assert done.exit_code == 0, done.output
    rows = {r["split"]: r for r in json.loads(done.stdout)["result"]["details"]["rows"] if r["method"] == "scalars"}
    assert rows["group"]["consistency"] < ROUND_OFF  # the discovered group's model is exact under it


def test_on_shell_four_momenta_fit_without_a_warning_the_data_settle(tmp_path):
    """Every Pi group divides by a muon's square p1.p1, a Minkowski product that could be negative, but
    is positive on every sample: no warning about signed scalars (the check of the targets' units
    before the data are read used to give one), and the Pi-group model is as exact as the data allow."""
    import warnings

    p1, p2, mass = decays(80, np.random.default_rng(0))
    data = tmp_path / "decay.nc"
    xr.Dataset(
        {
            "p1": (("sample", "mu"), 1e3 * p1, {"units": "MeV"}),
            "p2": (("sample", "mu"), p2, {"units": "GeV"}),
            "M": (("sample",), mass, {"units": "GeV"}),
        }
    ).to_netcdf(data)
    (tmp_path / "decay.json").write_text(json.dumps(DECAY))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = _run(
            tmp_path / "catalog", "fit", data, "--declaration", tmp_path / "decay.json", "--preset", "smoke",
            "--method", "pi", "--report-dir", tmp_path / "report", "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["result"]["details"]["rows"]
    (test,) = [r for r in rows if r["split"] == "test"]
    assert test["group_error"] < 1e-8 and test["units_error"] < 1e-8, test  # the boosts' own round-off: 5e-8
