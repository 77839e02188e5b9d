"""Models as catalog artefacts: exact round trips, content addressing, clear refusals, no pickle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np
import pytest
import torch

from data_catalog import SchemaError
from surrogates import artifacts
from surrogates.artifacts import (
    ModelArtifactError,
    load_model,
    model_to_dataset,
    register_model,
    save_model,
    state_key,
    variable_name,
)
from surrogates.training import TrainConfig, seed_everything, train


@register_model("test.tiny_mlp")
class TinyMLP(torch.nn.Module):
    """Two layers, a buffer and a nested module dict whose key needs escaping."""

    def __init__(self, inputs: int = 2, hidden: int = 6, widths: list[int] | tuple[int, ...] = (3,)):
        super().__init__()
        self._config = {"inputs": inputs, "hidden": hidden, "widths": list(widths)}
        self.body = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.heads = torch.nn.ModuleDict({"a/b": torch.nn.Linear(1, widths[0])})
        self.register_buffer("scale", torch.tensor(2.0))
        self.register_buffer("calls", torch.tensor(3, dtype=torch.int64))

    @property
    def config(self) -> dict:
        return self._config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads["a/b"](self.body(x) * self.scale)


class Unregistered(torch.nn.Linear):
    config: ClassVar[dict] = {"in_features": 1, "out_features": 1}


def tiny(seed: int = 0, **kwargs) -> TinyMLP:
    seed_everything(seed)
    return TinyMLP(**kwargs).double()


def fitted() -> tuple[TinyMLP, object]:
    model = tiny()
    x = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(8, 2)
    data = {"x": x, "y": x.sum(dim=1, keepdim=True).repeat(1, 3)}
    config = TrainConfig(seed=1, epochs=4, val_every=2, lr=1e-2, progress=False, device="cpu")
    result = train(model, lambda m, b: torch.mean((m(b["x"]) - b["y"]) ** 2), data, data, config)
    return model, result


SCALES = {"scales": ("feature", np.array([1.5, 2.0]), "1"), "offset": ((), np.float64(3.0), "m")}


def test_round_trip_is_exact(catalog):
    model, result = fitted()
    ref = save_model(catalog, "tiny", model, params={"lr": 1e-2}, seed=1, training=result, extra_arrays=SCALES)
    loaded = load_model(catalog, "tiny", device="cpu")
    assert loaded.ref == ref == "tiny@v1"
    assert not loaded.model.training and loaded.config == model.config
    x = torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(loaded.model(x), model.eval()(x))
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in model.state_dict().items())
    assert loaded.training["history"] == result.history
    assert loaded.training["best_epoch"] == result.best_epoch and loaded.training["best_val"] == result.best_val
    assert np.array_equal(loaded.extra["scales"], [1.5, 2.0]) and loaded.extra["offset"] == 3.0
    assert catalog.info(ref).seed == 1 and catalog.verify(ref).ok

    float32 = load_model(catalog, ref, device="cpu", dtype="float32").model
    assert float32.body[0].weight.dtype == torch.float32


def test_identical_weights_give_the_same_version(catalog):
    model, result = fitted()
    first = save_model(catalog, "tiny", model, training=result)
    assert save_model(catalog, "tiny", model, training=result.to_dict()) == first
    with torch.no_grad():
        model.body[0].bias += 1.0
    assert save_model(catalog, "tiny", model, training=result) == "tiny@v2"


def test_state_dict_keys_escape_reversibly():
    for key in ["body.0.weight", "heads.a/b.bias", "odd%2F:key", "ünïcode key"]:
        name = variable_name(key)
        assert "/" not in name and state_key(name) == key
    assert variable_name("body.0.weight") == "param:body.0.weight"


def test_stored_file_is_plain_hdf5_without_pickle(catalog):
    ref = save_model(catalog, "tiny", fitted()[0])
    netcdf_internals = {"DIMENSION_LIST", "REFERENCE_LIST"}  # HDF5 references between dimension scales

    def check(name, obj):
        if isinstance(obj, h5py.Dataset):
            assert obj.dtype.kind != "O" or h5py.check_string_dtype(obj.dtype), name
        for key, value in obj.attrs.items():
            if key not in netcdf_internals:
                dtype = np.asarray(value).dtype
                assert dtype.kind in "iufSUb" or h5py.check_string_dtype(dtype), (name, key, dtype)

    with h5py.File(catalog.path_of(ref), "r") as f:
        f.visititems(check)
        assert json.loads(f.attrs["config"]) == {"hidden": 6, "inputs": 2, "widths": [3]}
        assert f.attrs["model_class"] == "test.tiny_mlp"
    ds = catalog.open(ref)
    assert ds["param:heads.a%2Fb.weight"].dims == ("param:heads.a%2Fb.weight_dim0", "param:heads.a%2Fb.weight_dim1")
    assert ds["param:calls"].dtype == np.int64 and ds["param:scale"].attrs["units"] == "1"


def test_format_version_mismatch_warns(catalog, monkeypatch):
    model = tiny()
    monkeypatch.setattr(artifacts, "MODEL_FORMAT_VERSION", 0)
    ref = save_model(catalog, "old", model)
    monkeypatch.undo()
    with pytest.warns(UserWarning, match=r"old@v1 was stored with model format version 0"):
        loaded = load_model(catalog, ref, device="cpu")
    assert loaded.format_version == 0


def test_weights_that_do_not_fit_are_refused(catalog):
    ds = model_to_dataset(tiny(hidden=4))
    ds.attrs["config"] = json.dumps({"inputs": 2, "hidden": 5, "widths": [3]})
    ref = catalog.write(ds, "misfit", kind="model")
    with pytest.raises(
        ModelArtifactError,
        match=r"misfit@v1: stored weight 'body.0.weight' has shape \(4, 2\).*: train or fit it again$",
    ):
        load_model(catalog, ref, device="cpu")

    ds = model_to_dataset(tiny()).drop_vars("param:scale")
    ref = catalog.write(ds, "lacking", kind="model")
    with pytest.raises(
        ModelArtifactError, match=r"lacking@v1: .*missing from the artefact \['scale'\].*train or fit it again$"
    ):
        load_model(catalog, ref, device="cpu")


def test_unknown_class_lists_the_registered_ones(catalog):
    ds = model_to_dataset(tiny())
    ds.attrs["model_class"] = "nope"
    ref = catalog.write(ds, "stranger", kind="model")
    with pytest.raises(ModelArtifactError, match=r"unknown model class 'nope' \(registered: .*test.tiny_mlp"):
        load_model(catalog, ref, device="cpu")


def test_models_that_cannot_be_stored_are_refused(catalog):
    with pytest.raises(ModelArtifactError, match="not a registered model class"):
        save_model(catalog, "x", Unregistered(1, 1))
    model = tiny()
    model._config = {"inputs": 2, "hidden": 6, "widths": np.array([3])}
    with pytest.raises(ModelArtifactError, match="not JSON-serialisable"):
        save_model(catalog, "x", model)
    model = tiny()
    with torch.no_grad():
        model.body[0].weight[0, 0] = float("nan")
    with pytest.raises(SchemaError, match="param:body.0.weight.*non-finite"):
        save_model(catalog, "x", model)
    with pytest.raises(ModelArtifactError, match="set by save_model"):
        save_model(catalog, "x", tiny(), attrs={"config": "{}"})
    with pytest.raises(ValueError, match="already registered"):
        register_model("test.tiny_mlp")(Unregistered)


LOAD_ALONE = """
import json, sys
from data_catalog import Catalog
from surrogates.artifacts import load_model, model_class
loaded = load_model(Catalog(sys.argv[1]), "halo-mlp", device="cpu")
names = json.loads(sys.argv[2])
print(json.dumps({
    "loaded": f"{type(loaded.model).__module__}.{type(loaded.model).__qualname__}",
    "classes": {n: f"{model_class(n).__module__}.{model_class(n).__qualname__}" for n in names},
}))
"""


def test_a_stored_model_loads_in_a_process_that_imported_no_model_module(catalog):
    """Artefacts store the class's registered name, not its module: a process that imported none of the
    systems' model modules finds every registered class, wherever in ``surrogates`` it lives."""
    import surrogates.halos
    import surrogates.pendulum
    import surrogates.rietkerk
    import surrogates.rietkerk.discovery  # noqa: F401  (registers the reaction MLP)
    from surrogates.halos.models import GaussianMLP

    save_model(catalog, "halo-mlp", GaussianMLP(3, hidden=(4,)))
    project = {
        name: f"{cls.__module__}.{cls.__qualname__}"
        for name, cls in artifacts.registered_models().items()
        if not name.startswith("test.")
    }
    assert {"pendulum.hnn", "rietkerk-pi-emulator", "rietkerk-reaction-mlp", "halo-gaussian-mlp"} <= set(project)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALONE, str(catalog.root), json.dumps(sorted(project))],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loaded"] == "surrogates.halos.models.GaussianMLP"
    assert found["classes"] == project
