"""Which torch device a ``device`` setting means, with one policy for a GPU that is not there.

Every setting that picks a device (``sample.device``, ``segment.sam.device``, ``score.device``,
the trainer's ``--device``) takes ``auto``, ``cpu``, ``cuda`` or ``cuda:<i>``. ``auto`` is the
first GPU when there is one, else the CPU. A CUDA device that is asked for but missing (no CUDA
here, or fewer GPUs than the index) follows ``on_missing_gpu``: ``fallback`` warns and uses the
CPU, ``error`` stops with a message naming the setting.
"""

from __future__ import annotations

import logging

import torch

from schemas import constants

log = logging.getLogger(__name__)

ON_MISSING_GPU = constants.ON_MISSING_GPU


class DeviceError(ValueError):
    """A device setting names no usable device; the message names the setting."""


def resolve_device(requested: str, on_missing_gpu: str, key: str) -> torch.device:
    """The device ``key=requested`` asks for; ``key`` is the setting's name for messages (a
    config key such as ``sample.device``, whose section holds ``on_missing_gpu``, or a flag)."""
    policy_key = f"{key.rsplit('.', 1)[0]}.on_missing_gpu" if "." in key else "on_missing_gpu"
    if on_missing_gpu not in ON_MISSING_GPU:
        raise DeviceError(f"{policy_key}={on_missing_gpu!r}: expected one of {', '.join(ON_MISSING_GPU)}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DeviceError(f"{key}={requested!r} is not a device: expected auto, cpu, cuda or cuda:<index>") from None
    if device.type != "cuda" or _cuda_has(device):
        return device
    if on_missing_gpu == "error":
        hint = f" (set {policy_key}=fallback to run on the CPU instead)" if "." in key else ""
        raise DeviceError(f"{key}={requested} but no such CUDA device is available here{hint}")
    log.warning("%s=%s but no such CUDA device is available here: running on the CPU (slow)", key, requested)
    return torch.device("cpu")


def _cuda_has(device: torch.device) -> bool:
    if not torch.cuda.is_available():
        return False
    return device.index is None or device.index < torch.cuda.device_count()
