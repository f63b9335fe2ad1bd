"""``training.precision``: the forward pass under autocast, and fp16's gradient scaler.

    precision = MixedPrecision("fp16", device)   # fp32 | bf16 | fp16
    with precision.autocast():
        loss = network(...)
    precision.backward(loss)                     # scaled in fp16, so small gradients do not flush to 0
    precision.unscale(optimizer)                 # before clipping: the gradients as they really are
    stepped = precision.step(optimizer)          # False: fp16 overflowed, the update was skipped

Weights, gradients and optimiser state stay float32 in every mode.  bfloat16 has float32's range,
so it needs no scaler; float16 does (``torch.amp.GradScaler``: the loss times a scale that halves
when the gradients overflow, the update then skipped, and doubles after 2000 clean steps).
"""
from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor

from .config import ConfigError

__all__ = ["FP16_DEVICE_TYPES", "MixedPrecision", "cpu_runs_bf16_lstm"]

logger = logging.getLogger("cronos")

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# fp16 autocast also runs on the CPU, but CPUs have no faster float16 matrix products, and bf16,
# which needs no scaler, is the CPU's half precision.
FP16_DEVICE_TYPES = ("cuda",)


class MixedPrecision:
    """Autocast and gradient scaling for one of ``fp32``, ``bf16``, ``fp16`` on ``device``."""

    INITIAL_SCALE = 2.0 ** 16  # torch's default; the scale finds its level in the first steps

    def __init__(self, precision: str, device: torch.device):
        if precision == "fp16" and device.type not in FP16_DEVICE_TYPES:
            raise ConfigError("config", "training.precision",
                              f"fp16 trains on a CUDA GPU only, and this run trains on {device.type}; use bf16 "
                              "(half precision without a gradient scaler, on any device) or fp32")
        self.device, self.dtype = device, AUTOCAST_DTYPES[precision]
        self.scaler = torch.amp.GradScaler(device.type, init_scale=self.INITIAL_SCALE, enabled=precision == "fp16")

    @property
    def scaling(self) -> bool:
        """Whether gradients are scaled (fp16): an overflowing gradient is then the scaler's business."""
        return self.scaler.is_enabled()

    @property
    def scale(self) -> float:
        """The current loss scale (1.0 without scaling)."""
        return self.scaler.get_scale() if self.scaling else 1.0

    def autocast(self) -> torch.autocast:
        """The forward pass in half precision where it is safe (autocast's op lists), or as it is (fp32)."""
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()  # the loss itself without scaling

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale (once per step, before clipping or reading them)."""
        if self.scaling:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """The optimiser's step; False when fp16 gradients overflowed: the step was skipped, the scale halved."""
        if not self.scaling:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)  # skips the step when unscale_ found inf/NaN
        self.scaler.update()
        return self.scaler.get_scale() >= scale

    def state_dict(self) -> dict:
        return self.scaler.state_dict()  # {} without scaling

    def load_state_dict(self, state: dict) -> None:
        if state and self.scaling:
            self.scaler.load_state_dict(state)


@functools.cache
def cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU runs an LSTM under bfloat16 autocast (oneDNN needs native bfloat16 or AVX-512
    for it); asked of torch once per process with a one-step LSTM, and logged when it does not."""
    lstm = torch.nn.LSTM(1, 1)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 1))
    except RuntimeError:
        logger.info("bf16: this CPU has no bfloat16 LSTM kernel, so LSTMs run their recurrence in float32 "
                    "(the rest of the network in bfloat16)")
        return False
    return True
