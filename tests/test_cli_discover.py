"""``eqs discover`` on the command line: its result in words and in JSON, the same checks of the data
and declaration as ``eqs fit`` (exit status 2, the option named), and nothing written to the catalog."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fit_examples import dataset, declaration_path

from flows.cli import main as cli
from flows.declared.discover import TRUSTED_MODEL_ERROR, summary_text


def _run(root, *args):
    return CliRunner().invoke(cli, ["--catalog", str(root), *map(str, args)])


def test_discover_reports_generators_and_scalings_and_stores_nothing(tmp_path):
    data = tmp_path / "particles.nc"
    dataset("charged-particle", 200).to_netcdf(data)
    decl = declaration_path("charged-particle")
    root = tmp_path / "catalog"
    out = tmp_path / "found.json"
    result = _run(root, "discover", data, "--declaration", decl, "--preset", "smoke", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found == json.loads(out.read_text())
    assert found["system"] == "charged_particle" and found["symmetry_declared"] == "SO(3)"
    (target,) = found["targets"]
    assert target["target"] == "dx" and target["samples"] == 30  # the test part of the declaration's fit.split
    linear, scalings = target["linear"], target["scalings"]
    assert len(linear["relative_residuals"]) == 9 and linear["relative_residuals"] == sorted(
        linear["relative_residuals"]
    )
    k, residuals = linear["dimension"], linear["relative_residuals"]
    assert k == len(linear["generators"]) and all(r < 0.2 for r in residuals[:k])
    assert k == 0 or k == 9 or residuals[k] >= 2.5 * residuals[k - 1]  # separated from the rest by the gap
    assert scalings["quantities"] == ["m", "q", "B", "v0", "t", "dx"]
    assert scalings["expected_dimension"] == 4  # kg, m, s, A: every base unit of the declaration
    assert not root.exists()
    words = summary_text(found)  # what the command prints without --json
    assert "linear symmetries of the 3-D vector space" in words and "predicted by the units" in words
    assert target["model_trusted"] is (target["model_error"] <= TRUSTED_MODEL_ERROR)
    assert ("caution: that error is above" in words) is not target["model_trusted"]
    for error, cautioned in ((0.5 * TRUSTED_MODEL_ERROR, False), (3.0, True)):  # a model that fits, one that does not
        words = summary_text({**found, "targets": [{**target, "model_error": error}]})
        assert ("caution: that error is above 0.1" in words) is cautioned


def test_the_command_s_defaults_are_the_method_s():
    """The command line spells the defaults out (pipeline.discovery imports scipy, too slow for start-up)."""
    from flows.declared.discover import discover
    from pipeline import discovery

    defaults = {p.name: p.default for p in discover.params}
    assert (defaults["threshold"], defaults["gap"]) == (discovery.THRESHOLD, discovery.GAP)


def test_discover_refuses_bad_input_in_the_command_line_words(tmp_path):
    data = tmp_path / "particles.nc"
    dataset("charged-particle", 60).to_netcdf(data)
    decl = declaration_path("charged-particle")
    result = _run(tmp_path / "catalog", "discover", data, "--declaration", decl, "--target", "dy")
    assert result.exit_code == 2 and "--target dy: system 'charged_particle' declares no target dy" in result.stderr
    result = _run(tmp_path / "catalog", "discover", tmp_path / "none.nc", "--declaration", decl)
    assert result.exit_code == 2 and "none.nc" in result.stderr
    result = _run(tmp_path / "catalog", "discover", data, "--declaration", decl, "--threshold", "0")
    assert result.exit_code == 2 and "--threshold" in result.stderr


def test_discover_takes_a_target_whose_units_the_inputs_cannot_make(tmp_path):
    """The pendulum's energy from its state alone (masses, stiffnesses, lengths and gravity fixed and not
    declared): no Pi-group model exists, which eqs fit refuses; discovery needs none."""
    import xarray as xr

    from surrogates.declared.discovery_cases import case_data

    spec, values, energy = case_data("gravity-fixed", 200)
    units = {q["name"]: q["units"] for q in spec["quantities"]}
    variables = {name: (("sample", "space"), v, {"units": units[name]}) for name, v in values.items()}
    variables["H"] = (("sample",), energy, {"units": units["H"]})
    data = xr.Dataset(variables)
    data.to_netcdf(tmp_path / "pendulum.nc")
    (tmp_path / "pendulum.json").write_text(json.dumps(spec))
    result = _run(
        tmp_path / "catalog", "discover", tmp_path / "pendulum.nc", "--declaration", tmp_path / "pendulum.json",
        "--preset", "smoke", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["targets"][0]["target"] == "H"


def _pendulum_files(tmp_path, n: int = 120):
    from surrogates.declared.discovery_cases import case_data, case_dataset

    spec, values, energy = case_data("gravity-fixed", n)
    case_dataset(spec, values, energy).to_netcdf(tmp_path / "pendulum.nc")
    (tmp_path / "pendulum.json").write_text(json.dumps(spec))
    return tmp_path / "pendulum.nc", tmp_path / "pendulum.json"


def test_derive_writes_the_system_with_the_discovered_group_for_eqs_fit(tmp_path, monkeypatch):
    """Rotations about one axis found (the discovery's answer is given here: its accuracy is tested with the
    cases): the derived system declares SO(3) with the axis as an input, and eqs fit's checks accept it."""
    import numpy as np

    from flows.declared.flow import checked_input
    from pipeline import discovery as dv
    from sims.declaration import SystemDeclaration
    from surrogates.declared import discovery

    axis = np.array([0.0, 0.6, 0.8])

    def found(model, values, *args, **kwargs):
        basis = dv.rotations_about(axis)
        linear = {"space_dim": 3, "dimension": 1, "generators": [basis.reshape(3, 3).tolist()],
                  "relative_residuals": [0.01] + [1.0] * 8, "axis": axis.tolist(),
                  "angles_to_rotations": [0.0], "angles_to_rotations_about_axis": [0.0]}  # fmt: skip
        scalings = {"quantities": [], "left_out_as_constant": [], "dimension": 0, "exponents": [],
                    "relative_residuals": [1.0], "base_dimensions": [], "expected_dimension": 0,
                    "angles_to_dimensional": [], "angles_of_best_to_dimensional": []}  # fmt: skip
        return {"target": model.target, "samples": len(values["q1"]), "threshold": 0.2, "gap": 2.5,
                "linear": linear, "scalings": scalings}  # fmt: skip

    monkeypatch.setattr(discovery, "discover", found)
    data, decl = _pendulum_files(tmp_path)
    out = tmp_path / "derived"
    result = _run(tmp_path / "catalog", "discover", data, "--declaration", decl, "--preset", "smoke", "--derive", out)
    assert result.exit_code == 0, result.output
    assert f"written to {out.resolve()}: the system declared SO(3), with axis added to the inputs" in result.stdout
    derived = SystemDeclaration.from_file(out / "declaration.json")
    assert derived.symmetry == "SO(3)" and [q.name for q in derived.quantities][-2:] == ["axis", "H"]
    checked, canonical, _, _ = checked_input(str(out / "data.nc"), str(out / "declaration.json"), None, None, False)
    np.testing.assert_array_equal(canonical["axis"].values, np.tile(axis, (120, 1)))
    np.testing.assert_array_equal(canonical["q1"].values, xr_values(data, "q1"))
    again = _run(tmp_path / "catalog", "discover", data, "--declaration", decl, "--preset", "smoke", "--derive", out)
    assert again.exit_code == 2 and "--derive" in again.stderr and "file exists" in again.stderr
    assert not (tmp_path / "catalog").exists()


def xr_values(path, name):
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return ds[name].values


def test_derive_refuses_a_group_no_declaration_states(tmp_path, monkeypatch):
    from flows.declared.discover import common_group

    linear = {"space_dim": 3, "dimension": 2, "angles_to_rotations": [0.1, 30.0]}
    with pytest.raises(ValueError, match=r"--derive: target H: the 2 discovered generator\(s\) are not so\(3\)"):
        common_group([{"target": "H", "linear": linear}])
    about = {"space_dim": 3, "dimension": 1, "angles_to_rotations": [0.1], "angles_to_rotations_about_axis": [0.1]}
    with pytest.raises(ValueError, match="targets a and b have different symmetries"):
        common_group([{"target": "a", "linear": {**about, "axis": [0, 0, 1]}},
                      {"target": "b", "linear": {**about, "axis": [0, 1, 0]}}])  # fmt: skip


def test_tensor_inputs_move_with_the_vector_space(tmp_path):
    """A system whose only directional input is a tensor has a vector space to search (its tensor moves
    as g T g^T); the algebra itself is checked on exact gradients in tests/pipeline/test_discovery.py."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    m = rng.normal(size=(200, 3, 3))
    t = (m + np.swapaxes(m, 1, 2)) / 2
    energy = np.einsum("nab,nba->n", t, t)
    xr.Dataset(
        {"T": (("sample", "space", "space2"), t, {"units": "m^2"}), "E": (("sample",), energy, {"units": "m^4"})}
    ).to_netcdf(tmp_path / "tensor.nc")
    spec = {"name": "tensor_toy", "description": "tr(T^2)", "symmetry": "O(3)", "quantities": [
        {"name": "T", "units": "m^2", "kind": "tensor", "role": "state"},
        {"name": "E", "units": "m^4", "kind": "scalar", "role": "target"}]}  # fmt: skip
    (tmp_path / "tensor.json").write_text(json.dumps(spec))
    args = [
        "discover",
        tmp_path / "tensor.nc",
        "--declaration",
        tmp_path / "tensor.json",
        "--preset",
        "smoke",
        "--json",
    ]
    result = _run(tmp_path / "catalog", *args)
    assert result.exit_code == 0, result.output
    linear = json.loads(result.stdout)["targets"][0]["linear"]
    assert linear["space_dim"] == 3 and len(linear["relative_residuals"]) == 9
