"""Trained models as catalog artefacts: weights as HDF5 arrays plus the config that rebuilds them.

Nothing is pickled, so loading a model never executes code from the file: the class is looked up
by name in a registry of this package, and rebuilt by calling it with the stored config. A name that
no imported module has registered is looked up again after importing the package's modules
(``surrogates.<system>.*``), so a stored model loads wherever its class is defined.

**The model protocol.** A model class is registered with ``@register_model("name")`` and has a
``config`` attribute or property: a dict of its constructor's keyword arguments made of JSON
types (str, int, float, bool, None, lists and dicts with string keys), such that
``cls(**model.config)`` builds the same architecture. Tuples are accepted and come back as lists.

**Layout of a dataset of kind ``model``** (one variable per ``state_dict`` entry):

- ``param:<key>``: a parameter or buffer; ``<key>`` is the state-dict key percent-escaped
  (``urllib.parse.quote`` with no safe characters, so ``net.0.weight`` stays as it is and ``/``
  becomes ``%2F``), dims ``param:<key>_dim0, ...``, units ``"1"``, stored in the tensor's own
  dtype (bfloat16 as float32), with a ``torch_dtype`` attribute.
- ``history:<key>`` along ``epoch``: the training history (``train_loss``, ``val_loss``, ``lr``),
  NaN where an epoch has no value (``val_loss`` between validations).
- ``extra:<name>``: arrays the caller adds (feature scalers ...), with the caller's dims and units.
- Attributes: ``model_class``, ``config`` (canonical JSON), ``format_version``
  (:data:`MODEL_FORMAT_VERSION`), ``torch_dtype`` and, when given, ``training``: a JSON summary
  (``best_val``, ``best_epoch``, ``epochs_run``, ``stopped_early``). Timings and the device are
  left out so that identical weights and history give the same content hash, hence the same
  catalog version.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import numpy as np
import torch
import xarray as xr

from data_catalog import Catalog, DatasetSchema, register_schema
from surrogates.devices import pick_device
from surrogates.training import TrainResult

MODEL_KIND = "model"
#: Version of the artefact layout described in the module docstring; loading another one warns.
MODEL_FORMAT_VERSION = 1
PARAM_PREFIX = "param:"
HISTORY_PREFIX = "history:"
EXTRA_PREFIX = "extra:"
EPOCH_DIM = "epoch"
_MODEL_ATTRS = ("model_class", "config", "format_version", "torch_dtype")
_SUMMARY_KEYS = ("best_val", "best_epoch", "epochs_run", "stopped_early")
_STORED_AS = {torch.bfloat16: torch.float32}  # numpy has no bfloat16

ExtraArrays = Mapping[str, tuple[str | Sequence[str], np.ndarray, str]]
M = TypeVar("M", bound=type[torch.nn.Module])


class ModelArtifactError(ValueError):
    """A model cannot be stored or rebuilt; the message names the model or ref and the key."""


# -- the registry ---------------------------------------------------------------------------------

_MODELS: dict[str, type[torch.nn.Module]] = {}


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` loadable under ``name`` (see the model protocol above)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"register_model needs a non-empty name, got {name!r}")

    def decorate(cls: M) -> M:
        existing = _MODELS.get(name)
        # a module imported twice (reloads, test runners) defines the same class again
        same = existing is not None and (existing.__module__, existing.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if existing is not None and existing is not cls and not same:
            raise ValueError(
                f"model name {name!r} is already registered for {existing.__module__}.{existing.__qualname__}"
            )
        _MODELS[name] = cls
        return cls

    return decorate


def registered_models() -> Mapping[str, type[torch.nn.Module]]:
    """The registered model classes by name (read-only)."""
    return MappingProxyType(_MODELS)


def _import_model_modules() -> None:
    """Import every module of this package (each system's package and its modules), so that the model
    classes they define are registered: a stored model loads in a process that has imported none of
    them, whichever module its class lives in (class names, not module paths, are stored)."""
    import importlib
    import pkgutil

    package = __name__.rpartition(".")[0]
    for found in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
        if found.name not in sys.modules:
            try:
                importlib.import_module(found.name)
            except ImportError:  # an optional dependency of that module is missing: its classes stay unknown
                continue


def model_class(name: str) -> type[torch.nn.Module]:
    """The class registered under ``name`` (imported first from this package when no module imported so
    far registered it); the error lists the registered names."""
    if name not in _MODELS:
        _import_model_modules()
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(sorted(_MODELS)) or "none"
        raise ModelArtifactError(
            f"unknown model class {name!r} (registered: {known}); import the module that defines it"
        ) from None


def _registered_name(model: torch.nn.Module) -> str:
    for name, cls in _MODELS.items():
        if type(model) is cls:
            return name
    raise ModelArtifactError(
        f"{type(model).__qualname__} is not a registered model class: decorate it with @register_model(name)"
    )


# -- names and JSON -------------------------------------------------------------------------------


def variable_name(key: str) -> str:
    """The dataset variable of a state-dict key (reversible: see :func:`state_key`)."""
    return PARAM_PREFIX + quote(key, safe="")


def state_key(name: str) -> str:
    """The state-dict key of a ``param:`` variable."""
    if not name.startswith(PARAM_PREFIX):
        raise ValueError(f"{name!r} is not a parameter variable (no {PARAM_PREFIX!r} prefix)")
    return unquote(name[len(PARAM_PREFIX) :])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _lists(value: Any) -> Any:
    """Tuples as lists, the way JSON gives them back."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def config_json(model: torch.nn.Module) -> str:
    """The model's ``config`` as canonical JSON, checked to round-trip."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise ModelArtifactError(
            f"{type(model).__qualname__} has no 'config' dict (got {type(config).__name__}): give it a config "
            "attribute or property holding the JSON-able keyword arguments of its constructor"
        )
    try:
        text = _canonical(dict(config))
    except (TypeError, ValueError) as exc:
        raise ModelArtifactError(f"{type(model).__qualname__}.config is not JSON-serialisable: {exc}") from None
    if json.loads(text) != _lists(dict(config)):
        raise ModelArtifactError(
            f"{type(model).__qualname__}.config does not round-trip through JSON (non-string dict keys?): {config!r}"
        )
    return text


# -- the dataset kind -----------------------------------------------------------------------------


def _check_model_dataset(ds: xr.Dataset) -> list[str]:
    problems = []
    for name, var in ds.data_vars.items():
        if str(name).startswith(PARAM_PREFIX) and var.dtype.kind == "f":
            bad = int((~np.isfinite(var.values)).sum())
            if bad:
                problems.append(f"variable {name!r} holds {bad} non-finite weight(s)")
    try:
        if not isinstance(json.loads(ds.attrs["config"]), dict):
            problems.append("attribute 'config' is not a JSON object")
    except (TypeError, ValueError) as exc:
        problems.append(f"attribute 'config' is not valid JSON ({exc})")
    if not isinstance(ds.attrs["model_class"], str) or not ds.attrs["model_class"]:
        problems.append("attribute 'model_class' must be a non-empty string")
    if not isinstance(ds.attrs["format_version"], (int, np.integer)):
        problems.append(f"attribute 'format_version' must be an integer, got {ds.attrs['format_version']!r}")
    if "training" in ds.attrs:
        try:
            json.loads(ds.attrs["training"])
        except (TypeError, ValueError) as exc:
            problems.append(f"attribute 'training' is not valid JSON ({exc})")
    return problems


register_schema(
    DatasetSchema(
        kind=MODEL_KIND,
        description="a trained torch model: weights as arrays and the config that rebuilds it",
        attrs=_MODEL_ATTRS,
        check=_check_model_dataset,
    )
)


# -- saving ---------------------------------------------------------------------------------------


def _float_dtype_name(model: torch.nn.Module) -> str:
    # a module of buffers only (a fitted relation) has its dtype in its buffers
    tensors = itertools.chain(model.parameters(), model.buffers())
    dtype = next((p.dtype for p in tensors if p.is_floating_point()), torch.get_default_dtype())
    return str(dtype).removeprefix("torch.")


def _training_parts(training: TrainResult | Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, xr.Variable]]:
    """The JSON summary and the history variables of a training result."""
    data = training.to_dict() if isinstance(training, TrainResult) else dict(training)
    summary = {k: data[k] for k in _SUMMARY_KEYS if k in data}
    history = list(data.get("history") or [])
    if not history:
        return summary, {}
    keys = sorted({k for h in history for k in h} - {"epoch"})
    variables = {
        EPOCH_DIM: xr.Variable(
            EPOCH_DIM, np.array([h.get("epoch", i + 1) for i, h in enumerate(history)], np.int64), {"units": "1"}
        )
    }
    for key in keys:
        values = np.array([float(h[key]) if h.get(key) is not None else math.nan for h in history])
        variables[HISTORY_PREFIX + key] = xr.Variable(EPOCH_DIM, values, {"units": "1"})
    return summary, variables


def model_to_dataset(
    model: torch.nn.Module,
    *,
    training: TrainResult | Mapping[str, Any] | None = None,
    extra_arrays: ExtraArrays | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The dataset of kind ``model`` that stores ``model`` (layout in the module docstring)."""
    variables: dict[str, xr.Variable] = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        torch_dtype = str(tensor.dtype).removeprefix("torch.")
        values = tensor.to(_STORED_AS.get(tensor.dtype, tensor.dtype)).numpy()
        name = variable_name(key)
        dims = tuple(f"{name}_dim{i}" for i in range(values.ndim))
        variables[name] = xr.Variable(dims, values, {"units": "1", "torch_dtype": torch_dtype})
    attributes: dict[str, Any] = {
        "model_class": _registered_name(model),
        "config": config_json(model),
        "format_version": np.int64(MODEL_FORMAT_VERSION),
        "torch_dtype": _float_dtype_name(model),
    }
    if training is not None:
        summary, history = _training_parts(training)
        attributes["training"] = _canonical(summary)
        variables.update(history)
    for name, entry in (extra_arrays or {}).items():
        try:
            dims, values, units = entry
        except (TypeError, ValueError):
            raise ModelArtifactError(f"extra_arrays[{name!r}] must be a tuple (dims, array, units)") from None
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        variables[EXTRA_PREFIX + name] = xr.Variable(dims, np.asarray(values), {"units": units})
    clash = sorted(set(attrs or {}) & (set(attributes) | {"training"}))
    if clash:
        raise ModelArtifactError(f"attrs {clash} are set by save_model itself: choose other names")
    return xr.Dataset(variables, attrs={**attributes, **dict(attrs or {})})


def save_model(
    catalog: Catalog,
    name: str,
    model: torch.nn.Module,
    *,
    parents: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    training: TrainResult | Mapping[str, Any] | None = None,
    extra_arrays: ExtraArrays | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """Store ``model`` in ``catalog`` as the next version of ``name`` (kind ``model``); its ref.

    ``parents`` are the refs it was trained on, ``params`` and ``seed`` its training parameters;
    ``training`` (a :class:`TrainResult` or its ``to_dict()``) adds the history and a summary;
    ``extra_arrays`` maps names to ``(dims, array, units)`` (e.g. feature scales). Saving identical
    weights, history and metadata again returns the existing version.
    """
    ds = model_to_dataset(model, training=training, extra_arrays=extra_arrays, attrs=attrs)
    return catalog.write(ds, name, kind=MODEL_KIND, parents=parents, params=params, seed=seed)


# -- loading --------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model rebuilt from the catalog, in eval mode, with what was stored beside it.

    ``training`` is the summary plus ``history`` (one dict per epoch, values absent where NaN was
    stored), or None; ``extra`` holds the extra arrays by name; ``attrs`` all global attributes.
    """

    model: torch.nn.Module
    ref: str
    model_class: str
    config: dict[str, Any]
    format_version: int
    attrs: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _history(ds: xr.Dataset) -> list[dict[str, Any]]:
    keys = [str(n) for n in ds.data_vars if str(n).startswith(HISTORY_PREFIX)]
    if EPOCH_DIM not in ds.coords:
        return []
    columns = {k[len(HISTORY_PREFIX) :]: ds[k].values for k in keys}
    history = []
    for i, epoch in enumerate(ds[EPOCH_DIM].values):
        entry: dict[str, Any] = {"epoch": int(epoch)}
        entry.update({k: float(v[i]) for k, v in columns.items() if not math.isnan(v[i])})
        history.append(entry)
    return history


def _torch_dtype(dtype: torch.dtype | str, ref: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ModelArtifactError(f"{ref}: {dtype!r} is not a floating-point torch dtype")
    return found


def _misfit(ref: str, what: str, config: Mapping[str, Any], limit: int = 200) -> ModelArtifactError:
    """Weights that do not fit a config that still builds: the class's architecture changed since the
    artefact was written (a feature or basis added in a newer eqs), so say what fixes it. The config is cut
    short: a declared surrogate's holds its whole declaration."""
    shown = _canonical(dict(config))
    shown = shown if len(shown) <= limit else shown[: limit - 3] + "..."
    return ModelArtifactError(
        f"{ref}: {what} (config {shown}); it was written by an eqs that built this model differently: "
        "train or fit it again"
    )


def model_from_dataset(
    ds: xr.Dataset, *, ref: str = "model", device: str | None = None, dtype: torch.dtype | str | None = None
) -> LoadedModel:
    """Rebuild the model stored in ``ds`` (see :func:`load_model`); ``ref`` names it in messages."""
    attrs = dict(ds.attrs)
    missing = [k for k in _MODEL_ATTRS if k not in attrs]
    if missing:
        raise ModelArtifactError(f"{ref} is not a model artefact (attributes {missing} are missing)")
    version = int(attrs["format_version"])
    if version != MODEL_FORMAT_VERSION:
        warnings.warn(
            f"{ref} was stored with model format version {version}, this eqs writes version "
            f"{MODEL_FORMAT_VERSION}; loading it anyway. Re-save the model to update it.",
            stacklevel=3,
        )
    name = str(attrs["model_class"])
    cls = model_class(name)
    config = json.loads(attrs["config"])
    try:
        model = cls(**config)
    except Exception as exc:
        raise ModelArtifactError(
            f"{ref}: {name}(**config) failed ({type(exc).__name__}: {exc}); config {config}"
        ) from exc
    target = _torch_dtype(dtype if dtype is not None else str(attrs["torch_dtype"]), ref)
    model.to(dtype=target)

    expected = model.state_dict()
    stored = {state_key(str(n)): ds[n] for n in ds.data_vars if str(n).startswith(PARAM_PREFIX)}
    lacking, unknown = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if lacking or unknown:
        raise _misfit(
            ref,
            f"stored weights do not match the rebuilt {name}: missing from the artefact {lacking}, "
            f"not in the model {unknown}",
            config,
        )
    state = {}
    for key, tensor in expected.items():
        values = np.asarray(stored[key].values)
        if tuple(values.shape) != tuple(tensor.shape):
            raise _misfit(
                ref,
                f"stored weight {key!r} has shape {tuple(values.shape)}, the rebuilt {name} expects "
                f"{tuple(tensor.shape)}",
                config,
            )
        state[key] = torch.from_numpy(values.copy()).to(tensor.dtype)
    model.load_state_dict(state)
    model.to(device=pick_device(device, dtype=next(iter(state.values()), torch.zeros(0)).dtype))
    model.eval()

    training = None
    if "training" in attrs:
        training = {**json.loads(attrs["training"]), "history": _history(ds)}
    extra = {
        str(n)[len(EXTRA_PREFIX) :]: np.asarray(ds[n].values) for n in ds.data_vars if str(n).startswith(EXTRA_PREFIX)
    }
    return LoadedModel(
        model=model,
        ref=ref,
        model_class=name,
        config=config,
        format_version=version,
        attrs=attrs,
        training=training,
        extra=extra,
    )


def load_model(
    catalog: Catalog, ref: str, *, device: str | None = None, dtype: torch.dtype | str | None = None
) -> LoadedModel:
    """Rebuild the model stored at ``ref``, in eval mode.

    ``device``: as :func:`surrogates.devices.pick_device` (``None``: the best available);
    ``dtype``: floating-point dtype of the model (``torch.float32`` or ``"float32"``; ``None``: the
    stored one). Warns when the
    artefact's format version differs from :data:`MODEL_FORMAT_VERSION`; raises
    :class:`ModelArtifactError` when the class is unknown or the weights do not fit it.
    """
    resolved = catalog.resolve(ref)
    with catalog.open(resolved) as ds:
        if ds.attrs.get("kind") != MODEL_KIND:
            raise ModelArtifactError(f"{resolved} has kind {ds.attrs.get('kind')!r}, not {MODEL_KIND!r}")
        return model_from_dataset(ds.load(), ref=resolved, device=device, dtype=dtype)
