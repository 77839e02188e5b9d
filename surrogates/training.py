"""A small, generic trainer shared by every surrogate: Adam, mini-batches, early stopping, resume.

``train`` fits any ``torch.nn.Module`` to a dict of tensors with a caller-supplied loss. What it
guarantees:

- **Reproducible**: mini-batches are drawn by a ``torch.Generator`` of its own, seeded from
  ``TrainConfig.seed`` (the global RNG is never used for shuffling). On the CPU, a run that is
  interrupted and resumed from its checkpoint ends with bit-identical weights and history to an
  uninterrupted one. Initial weights are the caller's: seed them with :func:`seed_everything`
  before building the model.
- **Best weights**: the weights with the lowest validation loss are restored into the model at
  the end, whether training ran to the end or stopped early.
- **Resumable**: with ``checkpoint=PATH``, everything needed to continue (weights, optimizer,
  schedule, shuffling state, torch's global CPU RNG state for models that draw random numbers,
  history, early-stopping state, config) is written there atomically every ``checkpoint_every``
  epochs and at the end, as a ``torch.save`` file of tensors and plain values that loads with
  ``weights_only=True`` (no arbitrary pickle). Calling ``train`` again with the same path and a
  matching config continues from it; ``epochs`` may be raised. (Validation always runs at the
  last epoch, so extending a finished run matches an uninterrupted one exactly when its
  ``epochs`` was a multiple of ``val_every``.)
- **Hamiltonian losses work**: validation runs with autograd enabled (an HNN differentiates H
  with respect to its inputs even then) but never calls ``backward``.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.devices import pick_device

#: Version of the checkpoint layout written by :func:`train`.
CHECKPOINT_FORMAT_VERSION = 1
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Config fields that may differ between a checkpoint and the call that resumes it.
_RESUME_FREE = ("progress", "device", "epochs")

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
Data = Mapping[str, torch.Tensor | np.ndarray]


def saved_for_backward_bytes(compute: Callable[[], Any]) -> int:
    """Bytes of the tensors autograd still keeps for the backward pass when ``compute()`` returns, each
    storage once (activations, and the weights the products keep): the memory a training step holds until
    its backward pass, the same on any machine. Tensors saved and released within ``compute`` (the graph of
    an inner ``autograd.grad``) do not count: only live storages are summed, so no freed address is
    mistaken for a live one."""
    saved: list[tuple[weakref.ref, int, int]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved.append((weakref.ref(t), storage.data_ptr(), storage.nbytes()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = compute()
    live = {address: size for ref, address, size in saved if ref() is not None}
    del result
    return sum(live.values())


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch."""


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed: unreadable, from another config, or for another model."""


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch's (CPU and every CUDA device).

    Call it before building a model so its initial weights are reproducible. It does not make
    CUDA kernels deterministic (see ``torch.use_deterministic_algorithms`` for that).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run (all keyword-only; ``seed`` is required).

    - ``batch_size``: samples per step; ``None`` trains on the full batch (one step per epoch).
    - ``lr_decay``/``lr_decay_every``: multiply the learning rate by ``lr_decay`` every
      ``lr_decay_every`` epochs (give both, or neither for a constant rate).
    - ``grad_clip``: clip the global gradient norm to this value (``None``: no clipping).
    - ``patience``: stop after this many validations without an improvement of at least
      ``min_delta`` (``None``: never stop early). Validation runs every ``val_every`` epochs and
      at the last epoch.
    - ``device``: see :func:`surrogates.devices.pick_device` (``None``: the best available).
    - ``dtype``: the model and floating-point data are cast to it (``"float64"`` or ``"float32"``).
    - ``progress``: a rich progress bar on stderr; ``None`` shows it only on a terminal.
    """

    seed: int
    epochs: int = 100
    batch_size: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_decay: float | None = None
    lr_decay_every: int | None = None
    grad_clip: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    val_every: int = 1
    checkpoint_every: int = 10
    dtype: str = "float64"
    device: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        for f in fields(self):  # numpy scalars become plain Python values, so to_dict is JSON-able
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, value.item())
        problems = self._problems()
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def is_number(v: Any) -> bool:
            return (is_int(v) or isinstance(v, (float, np.floating))) and math.isfinite(v)

        problems = []
        if not is_int(self.seed):
            problems.append(f"seed must be an integer, got {self.seed!r}")
        for name in ("epochs", "val_every", "checkpoint_every"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("batch_size", "lr_decay_every", "patience"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                problems.append(f"{name} must be None or an integer >= 1, got {value!r}")
        if not is_number(self.lr) or self.lr <= 0:
            problems.append(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.optimizer != "adam":
            problems.append(f"optimizer must be 'adam' (the only one offered), got {self.optimizer!r}")
        for name in ("weight_decay", "min_delta"):
            value = getattr(self, name)
            if not is_number(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr_decay is not None and (not is_number(self.lr_decay) or not 0 < self.lr_decay <= 1):
            problems.append(f"lr_decay must be None or a factor in (0, 1], got {self.lr_decay!r}")
        if (self.lr_decay is None) != (self.lr_decay_every is None):
            problems.append("lr_decay and lr_decay_every go together: give both or neither")
        if self.grad_clip is not None and (not is_number(self.grad_clip) or self.grad_clip <= 0):
            problems.append(f"grad_clip must be None or a finite number > 0, got {self.grad_clip!r}")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.device is not None and not isinstance(self.device, str):
            problems.append(f"device must be None or a string such as 'cpu' or 'cuda:0', got {self.device!r}")
        if self.progress is not None and not isinstance(self.progress, bool):
            problems.append(f"progress must be None, True or False, got {self.progress!r}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"invalid TrainConfig: unknown field(s) {unknown}; known fields: {sorted(known)}")
        if "seed" not in data:
            raise ValueError("invalid TrainConfig: seed is required")
        return cls(**dict(data))


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    ``history`` has one dict per epoch (``epoch``, ``train_loss``, ``lr``, and ``val_loss`` on
    validated epochs); it holds no timings, so that it is reproducible. ``seconds`` and
    ``steps_per_second`` add up over resumed calls. ``best_epoch`` is the epoch whose weights the
    model holds at the end.
    """

    history: list[dict[str, Any]]
    best_val: float | None
    best_epoch: int | None
    epochs_run: int
    stopped_early: bool
    seconds: float
    steps_per_second: float
    device: str
    steps: int = field(default=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- data -----------------------------------------------------------------------------------------


def _prepare(data: Data, label: str, device: torch.device, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], int]:
    """Checked tensors on ``device`` (floating ones cast to ``dtype``) and their common length."""
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{label} must be a non-empty dict of name -> tensor")
    prepared: dict[str, torch.Tensor] = {}
    length = None
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{label}[{key!r}] is a {type(value).__name__}, expected a torch.Tensor")
        if value.ndim == 0:
            raise ValueError(f"{label}[{key!r}] is a scalar; every entry needs a first (sample) dimension")
        if length is None:
            length, first = value.shape[0], key
        elif value.shape[0] != length:
            raise ValueError(f"{label}[{key!r}] has {value.shape[0]} samples but {label}[{first!r}] has {length}")
        if value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise ValueError(f"{label}[{key!r}] holds {bad} non-finite value(s) (NaN or inf)")
            value = value.to(device=device, dtype=dtype)
        else:
            value = value.to(device=device)
        prepared[key] = value
    if not length:
        raise ValueError(f"{label} is empty (0 samples)")
    return prepared, int(length)


def _batches(
    data: dict[str, torch.Tensor], n: int, batch_size: int, order: torch.Tensor | None
) -> list[tuple[dict[str, torch.Tensor], int]]:
    """Mini-batches with their sizes, in ``order`` (None: as stored, one view per batch)."""
    if batch_size >= n:
        batch = data if order is None else {k: v[order] for k, v in data.items()}
        return [(batch, n)]
    out = []
    for start in range(0, n, batch_size):
        if order is None:
            batch = {k: v[start : start + batch_size] for k, v in data.items()}
        else:
            index = order[start : start + batch_size]
            batch = {k: v[index] for k, v in data.items()}
        out.append((batch, min(batch_size, n - start)))
    return out


def _scalar_loss(loss: Any, where: str) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"loss_fn must return a scalar tensor ({where}), got {shape}")
    return loss.reshape(())


def _loss_total(device: torch.device) -> torch.Tensor:
    """A zero on ``device`` to sum batch losses into without a host sync per step: float64, except on
    MPS, which has none."""
    return torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)


def _evaluate(model: torch.nn.Module, loss_fn: LossFn, data: dict[str, torch.Tensor], n: int, batch_size: int) -> float:
    """Validation loss: the batch losses averaged with the batch sizes as weights.

    Gradients stay enabled because Hamiltonian losses differentiate the model with respect to its
    inputs; nothing calls ``backward``, and any stray parameter gradients are cleared afterwards.
    """
    was_training = model.training
    model.eval()
    total = _loss_total(next(iter(data.values())).device)
    with torch.enable_grad():
        for batch, size in _batches(data, n, batch_size, None):
            loss = _scalar_loss(loss_fn(model, batch), "validation")
            total += loss.detach().to(total.dtype) * size
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return float(total) / n


# -- checkpoints ----------------------------------------------------------------------------------


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); delete it to start afresh"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != "eqs.train_checkpoint":
        raise CheckpointError(f"{path} is not a training checkpoint written by eqs")
    if state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state.get('format_version')}, this eqs reads "
            f"{CHECKPOINT_FORMAT_VERSION}; delete it to start afresh"
        )
    return state


def _config_differences(stored: Mapping[str, Any], config: TrainConfig) -> list[str]:
    current = config.to_dict()
    return [
        f"{key}: checkpoint {stored.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(stored) | set(current))
        if key not in _RESUME_FREE and stored.get(key) != current.get(key)
    ]


# -- progress -------------------------------------------------------------------------------------


class _Progress:
    """A rich progress bar on stderr showing the epoch and the latest losses (or nothing)."""

    def __init__(self, enabled: bool, total: int, done: int):
        self._bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("train", total=total, completed=done, losses="")
        self._bar.start()

    def update(self, epoch: int, train_loss: float, val_loss: float | None) -> None:
        if self._bar is not None:
            text = f"train {train_loss:.4g}" + ("" if val_loss is None else f"  val {val_loss:.4g}")
            self._bar.update(self._task, completed=epoch, losses=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- the trainer ----------------------------------------------------------------------------------


@dataclass
class _State:
    """What changes from epoch to epoch besides the model and optimizer (all of it checkpointed)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_val: float = math.inf
    best_epoch: int = 0
    bad_validations: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    steps: int = 0


def train(
    model: torch.nn.Module,
    loss_fn: LossFn,
    train_data: Data,
    val_data: Data,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit ``model`` by minimising ``loss_fn(model, batch)`` over ``train_data``; see the module docstring.

    ``train_data`` and ``val_data`` map names to tensors (or numpy arrays) that share their first,
    sample dimension; each batch passed to ``loss_fn`` holds the same keys, on the device, with
    floating tensors cast to ``config.dtype`` (the model is cast too). ``on_epoch(epoch, logs)`` is
    called after every epoch (and after its checkpoint) with ``epoch``, ``train_loss``, ``lr``
    (the rate used during the epoch), ``seconds``, and ``val_loss`` when it validated.

    At the end the model holds the weights of the best validation loss. Raises
    :class:`TrainingDiverged` on a NaN or infinite loss, :class:`CheckpointError` when
    ``checkpoint`` exists but belongs to another config or model.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    dtype = _DTYPES[config.dtype]
    device = pick_device(config.device, dtype=dtype)
    model.to(device=device, dtype=dtype)
    train_tensors, n_train = _prepare(train_data, "train_data", device, dtype)
    val_tensors, n_val = _prepare(val_data, "val_data", device, dtype)
    if set(val_tensors) != set(train_tensors):
        raise ValueError(
            f"val_data has keys {sorted(val_tensors)} but train_data has {sorted(train_tensors)}: they must match"
        )
    batch_size = config.batch_size or n_train
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters")

    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_every, gamma=config.lr_decay)
        if config.lr_decay is not None
        else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    state = _State()
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = _resume(path, config, model, optimizer, scheduler, generator)

    def save_checkpoint() -> None:
        if path is None:
            return
        _write_checkpoint(
            path,
            {
                "format": "eqs.train_checkpoint",
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "config": config.to_dict(),
                "model": _state_copy(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),  # for models that draw random numbers (dropout)
                **vars(state),
            },
        )

    progress = _Progress(
        config.progress if config.progress is not None else sys.stderr.isatty(), config.epochs, state.epoch
    )
    model.train()
    try:
        while state.epoch < config.epochs and not state.stopped_early:
            logs = _run_epoch(model, loss_fn, optimizer, generator, train_tensors, n_train, batch_size, config, state)
            if scheduler is not None:
                scheduler.step()
            epoch = state.epoch
            if epoch % config.val_every == 0 or epoch == config.epochs:
                val_loss = _evaluate(model, loss_fn, val_tensors, n_val, batch_size)
                if not math.isfinite(val_loss):
                    raise TrainingDiverged(f"validation loss is {val_loss} at epoch {epoch}")
                logs["val_loss"] = val_loss
                if val_loss < state.best_val - config.min_delta:
                    state.best_val, state.best_epoch, state.bad_validations = val_loss, epoch, 0
                    state.best_state = _state_copy(model)
                else:
                    state.bad_validations += 1
                    state.stopped_early = config.patience is not None and state.bad_validations >= config.patience
            seconds = logs.pop("seconds")
            state.history.append(logs)
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs or state.stopped_early:
                save_checkpoint()
            progress.update(epoch, logs["train_loss"], logs.get("val_loss"))
            if on_epoch is not None:
                on_epoch(epoch, {**logs, "seconds": seconds})
    finally:
        progress.close()

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return TrainResult(
        history=[dict(h) for h in state.history],
        best_val=state.best_val if state.best_state is not None else None,
        best_epoch=state.best_epoch if state.best_state is not None else None,
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        seconds=state.seconds,
        steps_per_second=state.steps / state.seconds if state.seconds > 0 else 0.0,
        device=str(device),
        steps=state.steps,
    )


def _run_epoch(
    model: torch.nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    data: dict[str, torch.Tensor],
    n: int,
    batch_size: int,
    config: TrainConfig,
    state: _State,
) -> dict[str, Any]:
    """One pass over the training data; advances ``state.epoch`` and returns the epoch's logs."""
    start = time.perf_counter()
    epoch = state.epoch + 1
    lr = float(optimizer.param_groups[0]["lr"])
    # a full batch needs no shuffling: the mean loss is the same up to round-off
    order = torch.randperm(n, generator=generator).to(next(iter(data.values())).device) if batch_size < n else None
    total = _loss_total(next(iter(data.values())).device)
    batches = _batches(data, n, batch_size, order)
    for batch, size in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = _scalar_loss(loss_fn(model, batch), f"training, epoch {epoch}")
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += loss.detach().to(total.dtype) * size
    # checked once per epoch: a per-step check would synchronise with the GPU at every step
    train_loss = float(total) / n
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"training loss is {train_loss} at epoch {epoch} (lr {lr:g}); lower lr, set grad_clip, "
            "or check the data and the loss"
        )
    state.epoch = epoch
    state.steps += len(batches)
    seconds = time.perf_counter() - start
    state.seconds += seconds
    return {"epoch": epoch, "train_loss": train_loss, "lr": lr, "seconds": seconds}


def _resume(
    path: Path,
    config: TrainConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    generator: torch.Generator,
) -> _State:
    """Load everything from the checkpoint at ``path`` into the given objects; the state to continue."""
    stored = _read_checkpoint(path)
    diffs = _config_differences(stored["config"], config)
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was written with another config ({'; '.join(diffs)}); "
            "use the same config (only epochs, device and progress may change) or another checkpoint path"
        )
    if stored["epoch"] > config.epochs:
        raise CheckpointError(
            f"checkpoint {path} is at epoch {stored['epoch']}, beyond epochs={config.epochs}; "
            "epochs may only be raised when resuming"
        )
    try:
        model.load_state_dict(stored["model"])
        optimizer.load_state_dict(stored["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {exc}") from exc
    if scheduler is not None:
        scheduler.load_state_dict(stored["scheduler"])
    generator.set_state(stored["generator"])
    torch.set_rng_state(stored["torch_rng"])
    device = next(model.parameters()).device
    best_state = stored["best_state"]
    if best_state is not None:
        best_state = {k: v.to(device) for k, v in best_state.items()}
    return _State(
        epoch=int(stored["epoch"]),
        history=list(stored["history"]),
        best_state=best_state,
        best_val=float(stored["best_val"]),
        best_epoch=int(stored["best_epoch"]),
        bad_validations=int(stored["bad_validations"]),
        stopped_early=bool(stored["stopped_early"]),
        seconds=float(stored["seconds"]),
        steps=int(stored["steps"]),
    )
