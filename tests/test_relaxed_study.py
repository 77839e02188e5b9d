"""eqs bench relaxed: a row per data set, method, size and seed, carrying its epsilon; the table, the
figure and the JSON written; a bad --data refused in the option's words."""

from __future__ import annotations

import json

import pytest
from fit_examples import dataset, declaration_path

from flows.declared import relaxed_study


def test_the_study_writes_a_row_per_epsilon_method_size_and_seed(tmp_path):
    paths = {}
    for epsilon in (0.0, 1.0):
        paths[epsilon] = tmp_path / f"cp-{epsilon:g}.nc"
        dataset("charged-particle", 120, background=epsilon).to_netcdf(paths[epsilon], engine="h5netcdf")
    out, figure = tmp_path / "study.json", tmp_path / "study.png"
    argv = ["--declaration", str(declaration_path("charged-particle")), "--data"]
    argv += [f"{e:g}={p}" for e, p in paths.items()]
    argv += ["--methods", "scalars", "relaxed", "--sizes", "40", "80", "--seeds", "2", "--epochs", "2"]
    argv += ["--hidden", "8", "--out", str(out), "--figure", str(figure), "--report", str(tmp_path / "page")]
    assert relaxed_study.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    keys = {(r["epsilon"], r["method"], r["train_size"], r["seed"]) for r in rows}
    assert len(rows) == len(keys) == 2 * 2 * 2 * 2
    assert {r["epsilon"] for r in rows} == {0.0, 1.0}
    assert max(r["symmetry_error"] for r in rows if r["method"] == "scalars") < 1e-10
    assert min(r["symmetry_error"] for r in rows if r["method"] == "relaxed") > 1e-10
    table = (tmp_path / "study.md").read_text().splitlines()
    assert len(table) == 2 + 2 * 2  # header, rule, one line per size and epsilon
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the page: the table (the best error of each line in bold) and the same figure
    page = (tmp_path / "page" / "report.html").read_text()
    assert page.count("<tr>") == 1 + 2 * 2 and page.count("<strong>") == 2 * 2
    assert "data:image/png;base64," in page and "--report" in page  # the command that made it
    assert (tmp_path / "page" / "figures" / "figure-1.png").read_bytes() == figure.read_bytes()
    markdown = (tmp_path / "page" / "report.md").read_text()
    assert "\n".join(table[2:]) in markdown and "](figures/figure-1.png)" in markdown


@pytest.mark.parametrize("value", ["0.1", "x=data.nc", "-1=data.nc", "nan=data.nc", "0.1="])
def test_a_bad_data_option_is_refused_in_its_own_words(value, capsys):
    with pytest.raises(SystemExit) as exited:
        relaxed_study.main(["--declaration", "d.json", f"--data={value}", "--out", "o.json"])
    assert exited.value.code == 2
    assert "--data takes EPS=FILE with EPS a number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--report", "a-file", "{path}: {path} is a file, not a folder"),
        ("--out", "missing/o.json", "{path}: folder {folder}/missing does not exist"),
        ("--figure", "", "{path}: is a directory; give a file name"),
    ],
)
def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys, option, value, message):
    """The study's files are checked before it trains anything (its inputs are not even read)."""
    (tmp_path / "a-file").write_text("")
    outputs = {"--out": str(tmp_path / "o.json"), option: str(tmp_path / value) if value else str(tmp_path)}
    argv = ["--declaration", "d.json", "--data", "0=a.nc"] + [x for kv in outputs.items() for x in kv]
    with pytest.raises(SystemExit) as exited:
        relaxed_study.main(argv)
    assert exited.value.code == 2
    expected = message.format(path=outputs[option], folder=tmp_path)
    assert f"{option} {expected}" in capsys.readouterr().err


def test_the_same_epsilon_twice_is_refused(capsys):
    with pytest.raises(SystemExit):
        relaxed_study.main(["--declaration", "d.json", "--data", "0=a.nc", "0.0=b.nc", "--out", "o.json"])
    assert "--data: each EPS once" in capsys.readouterr().err


def test_the_pendulum_study_on_trajectories_breaks_only_the_true_dynamics(tmp_path):
    """The trajectory study: the field changes the true vector field (by a measured amount, none at
    epsilon 0), the exact model stays exact whatever the data, and every row, the table and the figure are
    written."""
    from flows.pendulum import relaxed_study as pendulum_study

    out, figure = tmp_path / "study.json", tmp_path / "study.png"
    argv = ["--preset", "smoke", "--epsilons", "0", "0.5", "--sizes", "4", "--seeds", "1"]
    argv += ["--methods", "scalars", "raw", "--out", str(out), "--figure", str(figure), "--report", str(tmp_path)]
    assert pendulum_study.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["breaking"]["0"] == 0 < 1e-2 < result["breaking"]["0.5"]
    rows = result["rows"]
    assert {(r["epsilon"], r["method"]) for r in rows} == {(e, m) for e in (0.0, 0.5) for m in ("scalars", "raw")}
    assert max(r["symmetry_error"] for r in rows if r["method"] == "scalars") < 1e-10
    assert min(r["symmetry_error"] for r in rows if r["method"] == "raw") > 1e-3
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "report.html").read_text()
    assert page.count("<table") == 2 and "undeclared field" in page  # the field's effect, then the scores
    assert (tmp_path / "figures" / "figure-1.png").read_bytes() == figure.read_bytes()
    with pytest.raises(SystemExit) as exited:
        pendulum_study.main(["--epsilons", "0", "0", "--out", str(out)])
    assert exited.value.code == 2
