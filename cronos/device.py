"""Which torch device a run uses: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``.  The config key ``training.device`` and the CLI's ``--device`` both land here.
"""
from __future__ import annotations

import torch

from .config import ConfigError, check_device_name

__all__ = ["resolve_device"]


def resolve_device(name: str, source: str = "config", key: str = "training.device") -> torch.device:
    """``name`` -> the device to use; a GPU that torch cannot see is a ``ConfigError`` naming ``key``."""
    check_device_name(name, source, key)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(source, key, f"{name!r} asked for, but torch {torch.__version__} sees no CUDA "
                              "GPU; use `cpu`, or `auto` to take a GPU only where there is one")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(source, key, f"{name!r} asked for, but torch sees "
                              f"{torch.cuda.device_count()} GPU(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device
