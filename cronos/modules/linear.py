"""``Linear``: ``nn.Linear`` (the same parameters and state dict) whose inference on the CPU runs
through oneDNN with the weight packed once per inference call.

    with packed_for_inference(network):   # inference.length_batched does this for every decode and score
        network(...)                       # each Linear multiplies with its packed weight

Inside ``packed_for_inference`` (no autograd, the CPU, float32) each layer's weight is reordered
once into oneDNN's blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, the op PyTorch's
own compiler freezes linear layers with) and every call multiplies with it (``_linear_pointwise``).
Elsewhere (training, gradients, GPUs, other dtypes, compiled code) a layer is ``nn.Linear``,
1-3 rows widened to 4 (``linear_by_rows``) but in a training step.
Two things follow, both measured (docs/batch_invariance.md, docs/deployment.md):

- decoding is faster: the linear layers of the Multi30k Transformer's beam search took 1.5-1.6 s
  of CPU time instead of 2.4 s (MKL's product, the weight transposed at every call);
- a row's result has the same bits whatever the number of rows, from one row on, for every layer
  size tried (MKL's product gives 1-3 rows other bits).

Layers of fewer than ``PACK_MIN_WEIGHTS`` weights keep MKL's product (below).

The packed weights live on the modules for the block only: weights cannot change under a
decoding call, and a later call packs the weights as they are then (an optimizer may update
them in place without a trace in their version counter, as torch's fused Adam does).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import invariance

__all__ = ["Linear", "packed_for_inference"]

BATCH_HINT = 64  # the row count oneDNN lays a packed weight out for; a product of any row count can use it
# Smaller layers keep MKL's product: a 256 x 256 layer was no faster packed (96 rows: 85 against
# 82 microseconds), and oneDNN sets each new product shape up once, which made the test suite's
# tiny models decode 40% slower.
PACK_MIN_WEIGHTS = 1 << 17


class Linear(nn.Linear):
    """``nn.Linear``; inside ``packed_for_inference``, a oneDNN product with a packed weight."""

    packed: Tensor | None = None  # oneDNN's copy of the weight, inside packed_for_inference only

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None or not _runs_packed(x):
            if (self.training and torch.is_grad_enabled()) or x.numel() >= invariance.ROW_MULTIPLE * x.size(-1):
                return F.linear(x, self.weight, self.bias)
            return linear_by_rows(x, self.weight, self.bias)
        rows = x.reshape(-1, self.in_features)  # [M, K]
        out = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")  # [M, N]
        return out.reshape(*x.shape[:-1], self.out_features)

    def __getstate__(self) -> dict:
        """Copies and pickles leave the packed weight out (oneDNN's layout has no storage to copy)."""
        state = self.__dict__.copy()
        state.pop("packed", None)
        return state


def linear_by_rows(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` over ``x [..., K]`` with 1-3 rows widened with zeros to
    ``invariance.ROW_MULTIPLE`` for the product and cut back after it: MKL's product gives 1-3
    rows other bits than it gives them among more, so without this a search whose rows leave as
    its inputs end would see its bits move (docs/batch_invariance.md)."""
    count = x.numel() // max(x.size(-1), 1)  # M, the rows
    extra = invariance.rows_short(count)
    if not extra:
        return F.linear(x, weight, bias)
    out = F.linear(F.pad(x.reshape(count, -1), (0, 0, 0, extra)), weight, bias)[:count]  # [M, N]
    return out.reshape(*x.shape[:-1], out.size(-1))


@contextmanager
def packed_for_inference(network: nn.Module) -> Iterator[None]:
    """Every ``Linear`` of ``network`` with a float32 weight of at least ``PACK_MIN_WEIGHTS`` on the
    CPU multiplies with a packed copy of it for the block (when this torch has oneDNN); the copies
    are dropped after it."""
    layers = [m for m in network.modules() if isinstance(m, Linear) and m.packed is None  # an outer block's stay
              and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32
              and m.weight.numel() >= PACK_MIN_WEIGHTS] if _packing_available() else []
    try:
        for layer in layers:
            layer.packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), BATCH_HINT)
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("packed", None)


def _runs_packed(x: Tensor) -> bool:
    return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu"))


@functools.cache
def _packing_available() -> bool:
    """oneDNN is built into this torch, with the two ops (they are PyTorch's internal ops)."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
