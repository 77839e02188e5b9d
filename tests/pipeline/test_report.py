"""The OOD evaluation report: an engine that names no system, fed by each system's SystemResult and laid
out by the registered report sections. The results come from ``report_factory.make_result``: small but
real evaluation datasets in a temporary catalog, summarised as the flows do (the flows are not run)."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import CHROMIUM, COUNT_IMAGES, chromium
from report_factory import EXTRA_MODELS, MEASURED, SEEDS, make_result, symmetry_error

from data_catalog import Catalog
from pipeline import halos, pendulum, rietkerk
from pipeline.halos.published import PUBLISHED as HALOS
from pipeline.pendulum.published import PUBLISHED as PENDULUM
from pipeline.pendulum.report import summaries as pendulum_summaries
from pipeline.report import (
    PNG_SIGNATURE,
    REPORT_KIND,
    Document,
    Report,
    ReportSection,
    build_report,
    report_dataset,
    report_from_dataset,
    write_report,
)
from pipeline.results import ResultFormatError, SystemResult
from pipeline.rietkerk import snapshot_indices
from surrogates.pendulum.runs import MODELS_BY_PROTOCOL

ROOT = Path(__file__).resolve().parents[2]
#: The built-in systems' sections in the registry's order.
SECTIONS = [pendulum.SECTION, rietkerk.SECTION, halos.SECTION]
BUILT_IN = ("pendulum", "rietkerk", "halos")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cat = Catalog(tmp_path_factory.mktemp("report") / "catalog")
    results = {system: make_result(system, cat) for system in BUILT_IN}
    return cat, results, build_report(cat, results, SECTIONS, title="Test report", preset="smoke")


@pytest.fixture(scope="module")
def toy(built):
    """A system registered without a report section ("springs": two row groups, a published number)."""
    cat, results, _ = built
    return make_result("springs", cat, groups=("", "wide"), published={"toy-a": 0.01})


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


def check_numbers_link_to_provenance(cat: Catalog, report: Report, *, numbers: int, rows: int) -> None:
    """Every number in a table links to the versions it was read from, each with a provenance entry; every
    Markdown row with a number names its sources, and every source is listed."""
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
    assert numbered > numbers
    for link in page.links:
        if link.get("href", "").startswith("#"):
            assert link["href"][1:] in anchors, link
    sources = dict(re.findall(r"^- \[(\d+)\] (.+)$", report.markdown, flags=re.M))
    assert sources
    lines = report.markdown.splitlines()
    found = [line for i, line in enumerate(lines[:-1]) if line.startswith("| ") and not lines[i + 1].startswith("|---")]
    assert len(found) > rows
    for line in found + ([lines[-1]] if lines[-1].startswith("| ") else []):
        if re.search(r"\d\.\d", line):
            number = re.search(r"\| \[(\d+)\] \|$", line)
            assert number, line
            assert all(cat.resolve(r) == r for r in sources[number.group(1)].split(", "))
    assert all(r in report.markdown for r in report.refs)


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
    # the sections in the order given (the registry's), then the closing parts
    positions = [report.html.index(f'id="{a}"') for a in (*BUILT_IN, "published", "provenance")]
    assert positions == sorted(positions)
    # the header: title, preset, time, catalog root, a line per system
    assert "<h1>Test report</h1>" in report.html and "Preset: smoke." in report.html
    assert re.search(r"Created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 \(UTC\)", report.html)
    assert str(built[0].root) in report.html
    for line in (
        "Springy double pendulum: EMLP protocol",
        "Rietkerk vegetation model: emulator score",
        "Halos: sigma68",
    ):
        assert line in report.markdown
    # the discovery tables, through pipeline.rietkerk.discovery_lines
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
    check_numbers_link_to_provenance(cat, report, numbers=50, rows=30)
    # each provenance entry: kind, short hash, created time, params, parents
    ev = report.refs[0]
    info = cat.info(ev)
    block = report.html.split(f'id="ref-{ev}"', 1)[1].split('<div class="prov"', 1)[0]
    assert info.kind in block and info.content_sha256[:12] in block and info.created_utc in block
    assert "params" in block and all(p in block for p in info.parents)


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
    # ours: mean +- std over seeds, from the summary that the flow returns in the result's details
    summary = results["pendulum"].details["units"]
    r = next(r for r in summary["rows"] if (r["model"], r["split"]) == ("dimensionless-hnn", "exp2"))
    assert f"{r['mean']:.4f} ± {r['std']:.4f}" in report.html
    assert "Rietkerk: no published" in report.html
    for line in (*pendulum.SECTION.published, *rietkerk.SECTION.published, *halos.SECTION.published):
        assert line in report.markdown


def test_summary_rows_follow_the_contract(built):
    _, results, _ = built
    rows = results["pendulum"].rows
    assert results["pendulum"].groups() == ["emlp", "units"]
    assert {r.metric for r in rows} == {"score"}
    assert {r.split for r in rows if r.in_distribution} == {"test", "exp1"}
    for r in rows:
        assert (r.published, r.published_std) == PENDULUM.get((r.group, r.model, r.split), (None, None))
        assert set(r.extra) == {"blockwise_mean", "blockwise_std"}
    summary = results["pendulum"].details["units"]["rows"]
    assert [(r.model, r.split, r.mean, r.std, r.seeds, list(r.refs)) for r in results["pendulum"].rows_of("units")] == [
        (s["model"], s["split"], s["mean"], s["std"], s["seeds"], s["evaluations"]) for s in summary
    ]
    rows = results["rietkerk"].rows
    assert results["rietkerk"].groups() == [""] and {r.split for r in rows if r.in_distribution} == {"test"}
    assert all(set(r.extra) == {"rmse"} and r.published is None for r in rows)
    rows = results["halos"].rows
    assert results["halos"].groups() == ["log_mstar"] and {r.metric for r in rows} == {"sigma68"}
    assert {r.split for r in rows if r.in_distribution} == {"random"}
    for r in rows:
        published = HALOS.get((r.group, r.model, r.split))
        assert r.published == (published[0] if published else None)
        assert set(r.extra) == {"halos", "within_1sigma", "bins"}
    assert {r.model for r in rows if r.published is not None} == {"mass-only", "global", "scalars"}


def test_results_round_trip_through_json(built, toy):
    cat, results, _ = built
    for result in (*results.values(), toy):
        back = SystemResult.from_json(result.to_json())
        assert back == result
        assert all(isinstance(r.refs, tuple) for r in back.rows)
    # the JSON form (as Prefect persists a flow's result) builds the same report
    mine = build_report(cat, {"springs": toy}, [])
    again = build_report(cat, {"springs": toy.to_dict()}, [])
    assert _timeless(again.markdown) == _timeless(mine.markdown) and again.figures == mine.figures


def _timeless(text: str) -> str:
    return re.sub(r"Created \S+ \(UTC\)", "", text)


def test_a_system_without_a_section_gets_the_generic_parts(built, toy):
    cat, results, _ = built
    report = build_report(cat, {**results, "springs": toy}, SECTIONS, title="With a toy", preset="smoke")
    page = Page(report.html)
    # after the registered sections, titled by its name, with a table and the bars per group
    positions = [report.html.index(f'id="{a}"') for a in ("halos", "springs", "springs-wide", "published")]
    assert positions == sorted(positions)
    assert "## springs" in report.markdown and "### wide" in report.markdown
    assert {"springs_ood_bars", "springs_wide_ood_bars"} <= set(report.figures)
    assert set(report.figures) - EXPECTED_FIGURES == {"springs_ood_bars", "springs_wide_ood_bars"}
    assert "could not be drawn" not in report.html and report.html.count("How to read this") == 3
    # its line in the summary list: the best in-distribution model, its published number and worst OOD ratio
    best = toy.best("")
    assert best.model == "toy-a" and best.split == "train-like"
    worst = max((r for r in toy.rows_of("") if r.model == "toy-a" and not r.in_distribution), key=lambda r: r.mean)
    line = next(line for line in report.markdown.splitlines() if line.startswith("- springs: "))
    assert "best in distribution toy-a (score on train-like, 1 seed(s))" in line
    assert f"{best.mean:.4f}" in line and "(published 0.0100)" in line
    assert f"worst OOD ratio {worst.mean / best.mean:.3g}" in line and f"({worst.split})" in line
    assert "; wide: best in distribution toy-a" in line
    # the table: model x split, ours beside published, the in-distribution split first
    header = next(line for line in report.markdown.splitlines() if line.startswith("| model | train-like (ours)"))
    assert header.startswith("| model | train-like (ours) | train-like (published) | wider (ours) | shifted (ours) |")
    b = next(r for r in toy.rows_of("wide") if (r.model, r.split) == ("toy-b", "shifted"))
    assert f"{b.mean:.4f} ± {b.std:.4f}" in report.html
    assert any(c["class"] == "pub" and c["text"] == "0.0100" for c in page.cells)
    assert "springs: the published numbers given with its results." in report.markdown
    assert all(ref in report.refs for ref in toy.refs())
    check_numbers_link_to_provenance(cat, report, numbers=60, rows=40)
    # alone, with no section registered at all
    alone = build_report(cat, {"springs": toy}, [])
    assert set(alone.figures) == {"springs_ood_bars", "springs_wide_ood_bars"}
    assert "## springs" in alone.markdown and "not run" not in alone.markdown


def test_a_missing_system_is_stated(built):
    cat, results, _ = built
    ran = {  # the EMLP protocol with no evaluations; Rietkerk without regime maps or discovery; no halos
        "pendulum": make_result("pendulum", cat, protocols=("emlp",), evaluated=False),
        "rietkerk": dataclasses.replace(results["rietkerk"], artifacts={"regime_maps": {}, "discovery": None}),
    }
    report = build_report(cat, ran, SECTIONS)
    for text in (report.html, report.markdown):
        assert "Units-equivariance protocol: not run." in text
        assert "The units-equivariance protocol was not run for this report." in text
        assert "No evaluations were given for this protocol." in text
        assert "The regime maps were not computed in this run." in text
        assert "Equation discovery was not run for this report." in text
        assert "Halos: not run for this report." in text
    assert {"rietkerk", "halos", "pendulum-units"} <= set(Page(report.html).ids)
    assert set(report.figures) == {"rietkerk_ood_bars"}
    empty = build_report(cat, {}, SECTIONS)
    assert empty.figures == {} and empty.refs == []
    for system in ("Springy double pendulum", "Rietkerk vegetation model", "Halos"):
        assert f"{system}: not run for this report." in empty.html
        assert f"{system}: not run for this report." in empty.markdown


def test_a_section_recomputes_its_summary_from_the_evaluations(built):
    cat, results, _ = built
    given = dataclasses.replace(results["rietkerk"], artifacts={})
    bare = dataclasses.replace(given, details={"preset": "smoke"})  # no rows: read from the evaluations
    one, two = (build_report(cat, {"rietkerk": r}, [rietkerk.SECTION]) for r in (given, bare))
    assert _timeless(one.markdown) == _timeless(two.markdown) and one.figures == two.figures
    # the pendulum: per protocol, from the evaluations of the models evaluated on that protocol's splits
    summaries = pendulum_summaries(Document(cat), results["pendulum"])
    bare = dataclasses.replace(results["pendulum"], details={p: {"variant": "reference"} for p in ("emlp", "units")})
    again = pendulum_summaries(Document(cat), bare)
    assert {p: s["rows"] for p, s in again.items()} == {p: s["rows"] for p, s in summaries.items()}


def test_wrong_results_and_sections_are_refused(built):
    cat, results, _ = built
    with pytest.raises(ValueError, match="is the result of system 'rietkerk'"):
        build_report(cat, {"pendulum": results["rietkerk"]}, SECTIONS)
    with pytest.raises(ResultFormatError, match="unknown fields"):  # the flows' dicts of before
        build_report(cat, {"rietkerk": {"system": "rietkerk", "summary": {}, "regime_maps": {}}}, SECTIONS)
    with pytest.raises(TypeError, match="must be a SystemResult"):
        build_report(cat, {"rietkerk": ["not", "a", "result"]}, SECTIONS)
    with pytest.raises(ValueError, match="details map a protocol"):  # a protocol's summary without its protocol
        wrong = dataclasses.replace(results["pendulum"], details=results["pendulum"].details["emlp"])
        build_report(cat, {"pendulum": wrong}, SECTIONS)
    with pytest.raises(ValueError, match="more than one section"):
        build_report(cat, {}, [*SECTIONS, ReportSection(name="halos", title="Halos again")])
    with pytest.raises(ValueError, match="HTML id the report uses"):
        build_report(cat, {"provenance": SystemResult("provenance")}, SECTIONS)


def test_the_engine_names_no_system():
    """The engine and the generic parts are the same for every system: no built-in system is named there."""
    files = sorted((ROOT / "pipeline" / "report").glob("*.py"))
    files += [ROOT / "pipeline" / "summaries.py", ROOT / "pipeline" / "report_figures.py"]
    assert len(files) >= 7
    for path in files:
        text = path.read_text(encoding="utf-8")
        for word in ("pendulum", "rietkerk", "halo"):
            assert word not in text.lower(), f"{path.relative_to(ROOT)} names {word!r}"
    assert not (ROOT / "pipeline" / "report.py").exists()  # the package replaces the module


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
    empty = build_report(cat, {}, SECTIONS, title="nothing ü\r\n")
    assert report_from_dataset(cat.open(cat.write(report_dataset(empty), "report-empty", kind=REPORT_KIND))) == empty


def test_snapshot_indices_show_every_regime_where_there_is_room():
    labels = ["bare"] * 3 + ["spots"] * 5 + ["labyrinth"] + ["uniform"] * 8
    picks = snapshot_indices(labels, 6)
    assert picks == sorted(set(picks)) and len(picks) == 6
    assert {labels[i] for i in picks} == {"bare", "spots", "labyrinth", "uniform"}
    assert snapshot_indices(["bare"] * 2, 6) == [0, 1]


# -- the page in a real browser ----------------------------------------------------------------------


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(built, tmp_path):
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (install it, e.g. apt-get install chromium, or set EQS_CHROMIUM)")
    _, _, report = built
    paths = write_report(report, tmp_path / "written")
    page = tmp_path / "probe.html"  # a copy with a probe script: the report itself has none
    page.write_text(paths["html"].read_text(encoding="utf-8").replace("</body>", COUNT_IMAGES + "</body>"))
    dom = chromium("--dump-dom", page.as_uri(), user_data=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    title = re.search(r"<title>images (\d+)/(\d+)</title>", dom.stdout)
    assert title, dom.stdout[:500]
    assert title.group(1) == title.group(2) == str(len(report.figures))
    shot = Path(os.environ.get("EQS_REPORT_SCREENSHOT") or tmp_path / "report.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    run = chromium(f"--screenshot={shot}", "--window-size=1280,4000", paths["html"].as_uri(), user_data=tmp_path / "p2")
    assert run.returncode == 0, run.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 50_000


def test_the_pendulum_tables_give_each_models_worst_measured_symmetry_errors(built):
    _, results, report = built
    for protocol, keys in MEASURED.items():
        rows = results["pendulum"].details[protocol]["rows"]
        for m, model in enumerate(MODELS_BY_PROTOCOL[protocol] + EXTRA_MODELS.get(protocol, ())):
            worst = symmetry_error(m, SEEDS.get(model, 1) - 1)  # the last seed's is the largest
            for r in (r for r in rows if r["model"] == model):
                assert all(r[key] == worst for key in keys) and f"{worst:.1e}" in report.html
    assert "| EMLP SO(2) | - | - | " in report.markdown  # the EMLP HNNs join the published table's shape
    for title in ("symmetry error, O(3) (worst)", "symmetry error, O(2) about z (worst)", "units error (worst)"):
        assert title in report.markdown
