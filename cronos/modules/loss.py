"""Cross-entropy over real target tokens only: padded targets never count."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.vocab import PAD_INDEX

__all__ = ["projected_cross_entropy", "token_cross_entropy"]


def token_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, int]:
    """``logits [..., V]``, ``targets [...]`` -> (summed loss over real tokens, number of real tokens).

    Positions whose target is ``<pad>`` are ignored (``ignore_index``), in the smoothing term too.
    Divide the sum by the count for the per-token mean that training optimises.
    """
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD_INDEX,
                            reduction="sum", label_smoothing=label_smoothing)
    return total, int((targets != PAD_INDEX).sum())


def projected_cross_entropy(hidden: Tensor, projection: nn.Module, targets: Tensor,
                            label_smoothing: float = 0.0) -> Tensor:
    """``hidden [N, H]`` at real target positions, ``targets [N]`` -> cross-entropy of ``projection(hidden)``, summed.

    The training step's loss head: the output projection runs on real positions only, and the
    logits are cast to float32 (at least) first, so that under bf16/fp16 autocast the softmax and
    the sum are still float32.  One function, so ``torch.compile`` can take it whole.
    """
    logits = projection(hidden)  # [N, V]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum", label_smoothing=label_smoothing)
