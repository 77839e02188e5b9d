"""The OOD evaluation report: built from small but real evaluation datasets in a temporary catalog,
in the shape that the pendulum, Rietkerk and halo flows return (the flows themselves are not run)."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from data_catalog import Catalog
from pipeline import halo_evaluation as he
from pipeline import metrics
from pipeline.published import HALOS, PENDULUM
from pipeline.report import (
    PNG_SIGNATURE,
    REPORT_KIND,
    Report,
    build_report,
    report_dataset,
    report_from_dataset,
    write_report,
)
from pipeline.report_figures import snapshot_indices
from pipeline.rietkerk_features import TARGETS as RIETKERK_TARGETS
from pipeline.rietkerk_regimes import REGIMES_KIND, regime_map
from pipeline.summaries import halos_summary, pendulum_summary, rietkerk_summary
from sims import pendulum_protocols as pp
from sims.spring_pendulum import RAW_KIND
from surrogates.pendulum_runs import MODELS_BY_PROTOCOL, POSITION_MOMENTUM_BLOCKS, STATE_COMPONENTS
from surrogates.rietkerk_discovery import DISCOVERY_KIND, discovery_dataset

# few catalog writes (the bulk of the time): two seeds only where a std is looked at, three Rietkerk splits
SEEDS = {"dimensionless-hnn": 2, "scalars": 2}
RIETKERK_SPLITS = ("test", "units", "rainfall")
STATE_VECTORS = [c[0] for c in STATE_COMPONENTS]
CHROMIUM = os.environ.get("EQS_CHROMIUM", "/usr/bin/chromium")

# -- inputs in the shape the flows return ------------------------------------------------------------


def _pendulum_result(cat: Catalog, protocol: str) -> dict:
    """Test datasets simulated for real (tiny), evaluations with predictions that drift from the truth."""
    cfg = pp.preset(protocol, "smoke", n_train=1, n_val=1, n_test=3, n_times=12)
    tests = {split: ds for split, ds in pp.generate(cfg).items() if split in pp.TEST_SPLITS[protocol]}
    data = {
        split: cat.write(ds, f"pendulum-{protocol}-smoke-{split}", kind=RAW_KIND, params=cfg.to_dict(), seed=cfg.seed)
        for split, ds in tests.items()
    }
    rng = np.random.default_rng(1)
    evaluations: dict[str, dict[str, list[str]]] = {}
    for m, model in enumerate(MODELS_BY_PROTOCOL[protocol]):
        for seed in range(SEEDS.get(model, 1)):
            for s, (split, ref) in enumerate(data.items()):
                ds = tests[split]
                truth = np.concatenate([ds[v].transpose("sample", "time", "space").values for v in STATE_VECTORS], -1)
                times = ds["time"].values
                drift = 1e-3 * (m + 1) * (s + 1) * (1 + 0.1 * seed) * (1 + times[None, :, None])
                predicted = truth * (1 + drift * rng.standard_normal(truth.shape))
                ev = metrics.evaluation_dataset(
                    predicted,
                    truth,
                    times,
                    blocks=POSITION_MOMENTUM_BLOCKS,
                    components=STATE_COMPONENTS,
                    model=f"pendulum-{protocol}-smoke-{model}@v{seed + 1}",
                    data=ref,
                    split=split,
                    extra_attrs={"protocol": protocol},
                )
                name = f"pendulum-{protocol}-smoke-{model}-s{seed}-on-{split}"
                evaluations.setdefault(model, {}).setdefault(split, []).append(
                    cat.write(ev, name, kind=metrics.EVALUATION_KIND, parents=(ref,))
                )
    summary = pendulum_summary(cat, protocol, evaluations, "reference")  # as the flow adds it
    summary.update(activation="silu", substeps=1, preset="smoke", dtype="float64")
    return {"data": data, "features": {}, "models": {}, "evaluations": evaluations, "summary": summary}


def _rietkerk_result(cat: Catalog) -> dict:
    """Emulator evaluations as ``surrogates.rietkerk.evaluate_emulator`` stores them, tiny regime maps and a
    discovery dataset."""
    rng = np.random.default_rng(2)
    evaluations: dict[str, dict[str, list[str]]] = {}
    n = 16
    for e, kind in enumerate(("pi", "dimensional")):
        for seed in range(SEEDS.get(kind, 1)):
            for s, split in enumerate(RIETKERK_SPLITS):
                true = rng.uniform(0.1, 1.0, (n, len(RIETKERK_TARGETS)))
                scale = 0.02 * (1 + s * (1 + 4 * e)) * (1 + 0.1 * seed)
                predicted = true * (1 + scale * rng.standard_normal(true.shape))
                ds = metrics.evaluation_dataset(
                    predicted[:, None, :],
                    true[:, None, :],
                    np.zeros(1),
                    blocks=[(j, j + 1) for j in range(len(RIETKERK_TARGETS))],
                    components=[(t, j, j + 1, "1") for j, t in enumerate(RIETKERK_TARGETS)],
                    model=f"rietkerk-smoke-{kind}-emulator@v{seed + 1}",
                    data=f"rietkerk-smoke-{split}-features@v1",
                    split=split,
                    extra_attrs={"system": "rietkerk", "emulator": kind},
                )
                ds = ds.assign_coords(time=("time", [20.0], {"units": "d"}))
                ds["true"] = (("sample", "target"), true, {"units": "1"})
                ds["abs_error"] = (("sample", "target"), np.abs(predicted - true), {"units": "1"})
                ds["rmse"] = (("target",), np.sqrt(np.mean((predicted - true) ** 2, axis=0)), {"units": "1"})
                ds = ds.assign_coords(target=list(RIETKERK_TARGETS))
                ref = cat.write(ds, f"rietkerk-smoke-{kind}-s{seed}-on-{split}", kind=metrics.EVALUATION_KIND)
                evaluations.setdefault(kind, {}).setdefault(split, []).append(ref)
    maps = {
        name: cat.write(
            regime_map(name, L=32.0, dl=2.0, T=4.0, rainfall=rain), f"rietkerk-regimes-{name}-smoke", kind=REGIMES_KIND
        )
        for name, rain in (("talk", [0.3, 0.4, 0.5]), ("rietkerk2002", [0.75, 1.0, 1.25]))
    }
    study = {
        "discovery": {
            "table": [
                {"equation": "v", "term": "v w/(1+w)", "true": 2.0, "fitted": 2.01},
                {"equation": "v", "term": "v", "true": -1.25, "fitted": -1.2497},
                {"equation": "w", "term": "v", "true": 0.0, "fitted": 1e-4},  # a spurious term
            ]
        },
        "noise_study": [{"noise": 0.0, "stencil": "5-point", "max_relative_error": 0.005, "spurious": []}],
        "rollouts": [
            {R: {"mean": 10.0 + i, "regime": "spots"} for R in ("truth", "sparse", "mlp")} | {"R": R}
            for i, R in enumerate((0.75, 1.0))
        ],
    }
    discovery = cat.write(discovery_dataset(study), "rietkerk-discovery-smoke", kind=DISCOVERY_KIND, seed=0)
    return {
        "raw": {},
        "statistics": {},
        "features": {},
        "models": {},
        "evaluations": evaluations,
        "regime_maps": maps,
        "discovery": discovery,
        "summary": {**rietkerk_summary(cat, evaluations), "preset": "smoke"},
    }


def _halos_result(cat: Catalog) -> dict:
    rng = np.random.default_rng(3)
    n = 240
    log_mass = rng.uniform(10.3, 13.6, n)
    true = 10.0 + 0.8 * (log_mass - 11.5) - 0.3 * np.maximum(log_mass - 12, 0) + 0.2 * rng.standard_normal(n)
    relation = 10.0 + 0.8 * (log_mass - 11.5) - 0.3 * np.maximum(log_mass - 12, 0)
    evaluations: dict[str, dict[str, list[str]]] = {}
    top = log_mass >= np.quantile(log_mass, 0.8)
    for m, model in enumerate(("mass-only", "global", "scalars")):
        for seed in range(SEEDS.get(model, 1)):
            for split, rows, extra in (
                ("random", slice(None), 0.0),
                ("mass_threshold", top, 0.05),
                ("subsampled", slice(None), 0.02),
            ):
                if seed and split != "random":
                    continue  # a second seed where the std is looked at only
                scatter = true[rows] - relation[rows]
                noise = (extra + 0.01 * seed) * rng.standard_normal(scatter.size)
                mean = relation[rows] + 0.25 * m * scatter + noise  # each model recovers more of the scatter
                ds = he.evaluation_dataset(
                    np.arange(n)[rows],
                    log_mass[rows],
                    true[rows],
                    mean,
                    np.full(np.size(mean), 0.2),
                    model=f"halos-smoke-log_mstar-s{seed}-{model}@v1",
                    data="halos-smoke-synthetic-features@v1",
                    split=split,
                    target="log_mstar",
                    extra_attrs={"system": "halos", "halo_model": model},
                )
                ref = cat.write(ds, f"halos-smoke-log_mstar-s{seed}-{model}-on-{split}", kind=he.EVALUATION_KIND)
                evaluations.setdefault(f"log_mstar/{model}", {}).setdefault(split, []).append(ref)
    steps = [{"feature": f"scalar_{i}", "column": i, "sigma68": 0.2 - 0.01 * i} for i in range(4)]
    importance = he.importance_dataset(steps, all_features_sigma68=0.15, target="log_mstar", data="features@v1")
    imp = cat.write(importance, "halos-smoke-importance-log_mstar", kind=he.IMPORTANCE_KIND)
    return {
        "raw": None,
        "features": None,
        "subsampled": None,
        "subsampled_features": None,
        "models": {},
        "evaluations": evaluations,
        "importance": {"log_mstar": imp},
        "summary": {**halos_summary(cat, evaluations, {"log_mstar": imp}), "preset": "smoke"},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cat = Catalog(tmp_path_factory.mktemp("report") / "catalog")
    results = {
        "pendulum": {"emlp": _pendulum_result(cat, "emlp"), "units": _pendulum_result(cat, "units")},
        "rietkerk": _rietkerk_result(cat),
        "halos": _halos_result(cat),
    }
    return cat, results, build_report(cat, results, title="Test report", preset="smoke")


EXPECTED_FIGURES = {
    "pendulum_emlp_rollouts",
    "pendulum_emlp_error_time",
    "pendulum_emlp_ood_bars",
    "pendulum_units_rollouts",
    "pendulum_units_error_time",
    "pendulum_units_ood_bars",
    "rietkerk_ood_bars",
    "rietkerk_regime_maps",
    "rietkerk_snapshots",
    "halos_log_mstar_predicted_true",
    "halos_log_mstar_stellar_to_halo",
    "halos_log_mstar_ood_bars",
}


# -- an HTML reader for the assertions ---------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.images: list[dict[str, str]] = []
        self.cells: list[dict] = []  # td: class, text, links
        self.links: list[dict[str, str]] = []
        self.tags: set[str] = set()
        self._cell: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a)
            if self._cell is not None:
                self._cell["links"].append(a)
        if tag == "td":
            self._cell = {"class": a.get("class", ""), "text": "", "links": []}

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


# -- tests ------------------------------------------------------------------------------------------


def test_every_system_section_and_figure_is_present(built):
    _, _, report = built
    page = Page(report.html)
    for anchor in ("pendulum", "pendulum-emlp", "pendulum-units", "rietkerk", "rietkerk-regimes"):
        assert anchor in page.ids
    assert {"rietkerk-discovery", "halos", "published", "provenance"} <= set(page.ids)
    assert set(report.figures) == EXPECTED_FIGURES
    assert len(page.images) == len(EXPECTED_FIGURES)
    assert {f"fig-{n}" for n in EXPECTED_FIGURES} <= set(page.ids)
    assert "could not be drawn" not in report.html
    for heading in ("# Test report", "## Springy double pendulum", "## Rietkerk vegetation model", "## Halos"):
        assert heading in report.markdown
    assert report.html.count("How to read this") == 3
    # the header: title, preset, time, catalog root, a line per system
    assert "<h1>Test report</h1>" in report.html and "Preset: smoke." in report.html
    assert re.search(r"Created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 \(UTC\)", report.html)
    assert str(built[0].root) in report.html
    # the discovery tables, through pipeline.summaries.discovery_lines
    assert "v w/(1+w)" in report.html and "2.01" in report.html and "spurious (true 0)" in report.html
    assert sum(len(png) for png in report.figures.values()) < 1_500_000


def test_images_are_decodable_png_data_uris(built):
    from PIL import Image

    _, _, report = built
    pngs = set(report.figures.values())
    for img in Page(report.html).images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix), img["src"][:40]
        png = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert png.startswith(PNG_SIGNATURE) and png in pngs
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
        assert img["alt"]


def test_every_number_links_to_its_catalog_versions(built):
    cat, _, report = built
    page = Page(report.html)
    anchors = set(page.ids)
    assert [i.removeprefix("ref-") for i in page.ids if i.startswith("ref-")] == report.refs
    assert report.refs and all(cat.resolve(r) == r for r in report.refs)
    numbered = 0
    for cell in page.cells:
        if cell["class"] == "label":
            continue
        if re.search(r"\d", cell["text"]):
            assert cell["class"] in ("num", "pub"), cell
        if cell["class"] == "num":
            numbered += 1
            (link,) = cell["links"]
            assert link["href"].startswith("#ref-") and link["href"][1:] in anchors, link
            cited = link["title"].split(", ")
            assert link["href"] == f"#ref-{cited[0]}"
            for ref in cited:
                assert cat.resolve(ref) == ref and f"ref-{ref}" in anchors
        if cell["class"] == "pub":
            assert cell["links"][0]["href"] == "#published"
    assert numbered > 50
    for link in page.links:
        if link.get("href", "").startswith("#"):
            assert link["href"][1:] in anchors, link
    # each provenance entry: kind, short hash, created time, params, parents
    ev = report.refs[0]
    info = cat.info(ev)
    block = report.html.split(f'id="ref-{ev}"', 1)[1].split('<div class="prov"', 1)[0]
    assert info.kind in block and info.content_sha256[:12] in block and info.created_utc in block
    assert "params" in block and all(p in block for p in info.parents)
    # Markdown: every table row with a number names its sources, and every source is listed
    sources = dict(re.findall(r"^- \[(\d+)\] (.+)$", report.markdown, flags=re.M))
    assert sources
    lines = report.markdown.splitlines()
    rows = [line for i, line in enumerate(lines[:-1]) if line.startswith("| ") and not lines[i + 1].startswith("|---")]
    assert len(rows) > 30
    for line in rows + ([lines[-1]] if lines[-1].startswith("| ") else []):
        if re.search(r"\d\.\d", line):
            number = re.search(r"\| \[(\d+)\] \|$", line)
            assert number, line
            assert all(cat.resolve(r) == r for r in sources[number.group(1)].split(", "))
    assert all(r in report.markdown for r in report.refs)


def test_published_numbers_appear_beside_ours(built):
    _, results, report = built
    for (protocol, model, split), (mean, std) in PENDULUM.items():
        text = f"{mean:.4f} ± {std:.4f}"
        assert text in report.html and text in report.markdown, (protocol, model, split)
    for value, _ in HALOS.values():
        assert f"{value:.3f}" in report.html
    assert ">0.750<" in report.html and ">0.643<" in report.html  # published ratios to mass only
    page = Page(report.html)
    # in the EMLP table the published cell follows ours in the same row
    row = next(i for i, c in enumerate(page.cells) if c["text"] == "Scalars O(3)")
    assert page.cells[row + 1]["class"] == "num" and page.cells[row + 2]["class"] == "pub"
    assert page.cells[row + 2]["text"] == "0.0090 ± 0.0010"
    # ours: mean +- std over seeds, from the summary of pipeline.summaries that the flow returns
    summary = results["pendulum"]["units"]["summary"]
    r = next(r for r in summary["rows"] if (r["model"], r["split"]) == ("dimensionless-hnn", "exp2"))
    assert f"{r['mean']:.4f} ± {r['std']:.4f}" in report.html
    assert "Rietkerk: no published" in report.html


def test_a_missing_system_is_stated(built):
    cat, results, _ = built
    ran = {  # the EMLP protocol with no evaluations; Rietkerk without regime maps or discovery; no halos
        "pendulum": {"emlp": {**results["pendulum"]["emlp"], "evaluations": {}, "summary": {}}},
        "rietkerk": {**results["rietkerk"], "regime_maps": {}, "discovery": None},
    }
    report = build_report(cat, ran)
    for text in (report.html, report.markdown):
        assert "Units-equivariance protocol: not run." in text
        assert "The units-equivariance protocol was not run for this report." in text
        assert "No evaluations were given for this protocol." in text
        assert "The regime maps were not computed in this run." in text
        assert "Equation discovery was not run for this report." in text
        assert "Halos: not run for this report." in text
    assert {"rietkerk", "halos", "pendulum-units"} <= set(Page(report.html).ids)
    assert set(report.figures) == {"rietkerk_ood_bars"}
    empty = build_report(cat, {})
    assert empty.figures == {} and empty.refs == []
    for system in ("Springy double pendulum", "Rietkerk vegetation model", "Halos"):
        assert f"{system}: not run for this report." in empty.html
        assert f"{system}: not run for this report." in empty.markdown
    with pytest.raises(ValueError, match="unknown system"):
        build_report(cat, {"pendulums": {}})
    with pytest.raises(ValueError, match="maps a protocol"):
        build_report(cat, {"pendulum": results["pendulum"]["emlp"]})  # the flow's dict without its protocol


def test_the_page_loads_nothing_from_outside(built):
    _, _, report = built
    assert not re.search(r"https?://", report.html)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", report.html, flags=re.I)
    for attr in re.findall(r'(?:src|href)="([^"]*)"', report.html):
        assert attr.startswith("#") or attr.startswith("data:image/png;base64,"), attr
    assert "@import" not in report.html and "url(" not in report.html


def test_write_report_round_trips_and_leaves_no_temporary_files(built, tmp_path):
    _, _, report = built
    out = tmp_path / "out" / "report"
    paths = write_report(report, out)
    assert paths["html"].read_text(encoding="utf-8") == report.html
    assert paths["markdown"].read_text(encoding="utf-8") == report.markdown
    for name, png in report.figures.items():
        assert paths[f"figures/{name}.png"].read_bytes() == png
        assert f"](figures/{name}.png)" in report.markdown
    for link in re.findall(r"\]\((figures/[^)]+)\)", report.markdown):
        assert (out / link).is_file()
    write_report(report, out)  # again, over the first: same files, nothing left behind
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out).as_posix() for p in paths.values())
    assert sorted(paths) == sorted(["html", "markdown", *(f"figures/{n}.png" for n in report.figures)])
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    mask = os.umask(0o022)
    try:
        write_report(report, out)
    finally:
        os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in paths.values()} == {0o644}  # readable by others, as files are


def test_an_interrupted_write_keeps_the_previous_page(built, tmp_path, monkeypatch):
    _, _, report = built
    write_report(report, tmp_path)
    before = (tmp_path / "report.html").read_bytes()
    real = os.replace

    def fail_on_page(src, dst):
        if str(dst).endswith("report.html"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_page)
    changed = Report(html=report.html + "<!-- new -->", markdown=report.markdown, figures={}, refs=report.refs)
    with pytest.raises(OSError, match="disk full"):
        write_report(changed, tmp_path)
    assert (tmp_path / "report.html").read_bytes() == before
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]


def test_report_dataset_round_trips_exactly_through_the_catalog(built):
    cat, _, report = built
    ds = report_dataset(report)
    ref = cat.write(ds, "report-test", kind=REPORT_KIND, parents=report.refs, params={"preset": "smoke"})
    back = report_from_dataset(cat.open(ref).load())
    assert back == report
    assert cat.info(ref).parents == report.refs
    empty = build_report(cat, {}, title="nothing ü\r\n")
    assert report_from_dataset(cat.open(cat.write(report_dataset(empty), "report-empty", kind=REPORT_KIND))) == empty


def test_snapshot_indices_show_every_regime_where_there_is_room():
    labels = ["bare"] * 3 + ["spots"] * 5 + ["labyrinth"] + ["uniform"] * 8
    picks = snapshot_indices(labels, 6)
    assert picks == sorted(set(picks)) and len(picks) == 6
    assert {labels[i] for i in picks} == {"bare", "spots", "labyrinth", "uniform"}
    assert snapshot_indices(["bare"] * 2, 6) == [0, 1]


# -- the page in a real browser ----------------------------------------------------------------------

COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var ok = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.title = "images " + ok + "/" + images.length;
});
</script>"""


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(built, tmp_path):
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (install it, e.g. apt-get install chromium, or set EQS_CHROMIUM)")
    _, _, report = built
    paths = write_report(report, tmp_path / "written")
    page = tmp_path / "probe.html"  # a copy with a probe script: the report itself has none
    page.write_text(paths["html"].read_text(encoding="utf-8").replace("</body>", COUNT_IMAGES + "</body>"))
    dom = _chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    title = re.search(r"<title>images (\d+)/(\d+)</title>", dom.stdout)
    assert title, dom.stdout[:500]
    assert title.group(1) == title.group(2) == str(len(report.figures))
    shot = Path(os.environ.get("EQS_REPORT_SCREENSHOT") or tmp_path / "report.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    run = _chromium(
        f"--screenshot={shot}", "--window-size=1280,4000", paths["html"].as_uri(), user_data=tmp_path / "p2"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 50_000
