"""Choosing the torch device that trains and evaluates the surrogates.

The best available device is taken unless told otherwise: CUDA, then Apple's MPS, then the CPU.
``$EQS_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto``) overrides the automatic choice
for a whole shell, e.g. to keep a shared GPU free or to reproduce a CPU run bit for bit.
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "EQS_DEVICE"
_KINDS = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The devices this machine can use, best first (``cuda:0`` ... , ``mps``, ``cpu``)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        found.append("mps")
    return [*found, "cpu"]


def _explicit(preference: str, source: str) -> torch.device:
    """The device named by ``preference``, checked to exist on this machine."""
    try:
        device = torch.device(preference)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{source} {preference!r} is not a device name: use one of auto, {', '.join(_KINDS)} or cuda:N"
        ) from None
    if device.type not in _KINDS:
        raise ValueError(f"{source} {preference!r}: device type {device.type!r} is not supported (use {_KINDS})")
    available = available_devices()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        ok = count > 0 and (device.index is None or device.index < count)
    elif device.type == "mps":
        ok = _mps_available()
    else:
        ok = True
    if not ok:
        raise ValueError(f"{source} {preference!r} is not available on this machine; available: {', '.join(available)}")
    return device


def pick_device(preference: str | None = None, *, dtype: torch.dtype | None = None) -> torch.device:
    """The torch device to use.

    ``None`` or ``"auto"``: ``$EQS_DEVICE`` when set, else CUDA when available, then MPS, then the
    CPU. An explicit name (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) must be available here;
    otherwise a ValueError lists the devices that are. With ``dtype=torch.float64`` the automatic
    choice skips MPS (which has no float64) and an explicit MPS request is an error.
    """
    device = _pick(preference)
    if dtype == torch.float64 and device.type == "mps":
        if preference is None or preference.strip().lower() == "auto":
            return torch.device("cpu")
        raise ValueError("device 'mps' has no float64 support; use float32 or another device")
    return device


def _pick(preference: str | None) -> torch.device:
    if preference is not None and not isinstance(preference, str):
        raise ValueError(f"device preference must be a string or None, got {type(preference).__name__}")
    if preference is None or preference.strip().lower() == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env.lower() != "auto":
            return _explicit(env, f"${ENV_VAR}")
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    return _explicit(preference.strip(), "device")
