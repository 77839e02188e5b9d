"""eqs bench methods' memory column: the bytes a training step keeps for its backward pass, counted from
the tensors autograd saves, grow with what each method runs per sample."""

from __future__ import annotations

import json

import torch
from fit_examples import dataset, declaration

from flows.declared.methods_benchmark import MEMORY_BATCH, training_memory
from surrogates.declared.models import DeclaredSurrogate


def _model(method: str, decl, values, target):
    torch.manual_seed(0)
    model = DeclaredSurrogate(decl.to_dict(), "dx", method, hidden=(32, 32)).double()
    model.fit_normalisation(values, target)
    return model


def test_the_memory_of_a_training_step_follows_the_passes_of_the_network():
    decl = declaration("charged-particle")
    data = dataset("charged-particle", 64)
    values = {q.name: data[q.name].values for q in decl.inputs_only().quantities}
    target = data["dx"].values
    saved = {m: training_memory(_model(m, decl, values, target), values, target) for m in ("raw", "frame", "relaxed")}
    # the hidden activations of one MLP pass over the batch, in float64, are part of what raw keeps
    assert saved["raw"] >= 2 * MEMORY_BATCH * 32 * 8
    # SO(3)'s PCA frame has 4 elements: the MLP runs 4 times per sample; relaxed runs two networks
    assert 3.5 < saved["frame"] / saved["raw"] < 4.5, saved
    assert 1.7 < saved["relaxed"] / saved["raw"] < 2.5, saved


def test_the_benchmark_writes_its_rows_table_and_page(tmp_path):
    import json

    from fit_examples import declaration_path

    from flows.declared import methods_benchmark

    data = tmp_path / "cp.nc"
    dataset("charged-particle", 120).to_netcdf(data, engine="h5netcdf")
    out, page = tmp_path / "bench.json", tmp_path / "page"
    argv = [str(data), "--declaration", str(declaration_path("charged-particle")), "--methods", "scalars", "raw"]
    argv += [
        "--sizes",
        "40",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--out",
        str(out),
        "--report",
        str(page),
    ]
    assert methods_benchmark.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("scalars", "raw") for s in (0, 1)}
    table = (tmp_path / "bench.md").read_text().strip().splitlines()
    html = (page / "report.html").read_text()
    assert html.count("<tr>") == len(table) - 1 == 1 + len({(r["target"], r["method"]) for r in rows})
    assert "Methods side by side" in html and "--report" in html


def _refusal(argv, capsys) -> str:
    import pytest

    from flows.declared import methods_benchmark

    with pytest.raises(SystemExit) as stop:
        methods_benchmark.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_what_the_system_cannot_take_is_refused_in_the_command_line_words(tmp_path, capsys):
    """A method named that the system's group rules out, a size above the training part, a size of 0:
    exit 2 naming the option, nothing written; the default methods leave out what the group rules out,
    saying so."""
    from fit_examples import declaration_path

    from flows.declared import methods_benchmark

    data, out = tmp_path / "ee.nc", tmp_path / "bench.json"
    dataset("ee-to-mumu", 60).to_netcdf(data, engine="h5netcdf")
    base = [str(data), "--declaration", str(declaration_path("ee-to-mumu")), "--out", str(out)]
    err = _refusal([*base, "--methods", "pi", "frame", "--sizes", "20"], capsys)
    assert "eqs bench methods: error: --methods: frame is built on frames" in err and "O(1,3)" in err
    err = _refusal([*base, "--methods", "pi", "--sizes", "20", "500"], capsys)
    assert "--sizes 500: the training part of" in err and "has 42 of its 60 samples" in err
    err = _refusal([*base, "--sizes", "0"], capsys)
    assert "argument --sizes: expected a positive integer, got '0'" in err
    assert not out.exists()
    argv = [*base, "--sizes", "10", "--seeds", "1", "--epochs", "1", "--hidden", "4"]
    assert methods_benchmark.main(argv) == 0
    err = capsys.readouterr().err
    assert all(f"note: left out: {m}" in err for m in ("frame", "canonical", "e3nn", "emlp")), err
    assert {r["method"] for r in json.loads(out.read_text())["rows"]} == {
        "pi",
        "scalars",
        "raw",
        "augment",
        "penalty",
        "relaxed",
    }
