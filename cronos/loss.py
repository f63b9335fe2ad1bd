"""Cross-entropy over real target tokens only: padded targets never count."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .data.vocab import PAD_INDEX

__all__ = ["token_cross_entropy"]


def token_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, int]:
    """``logits [..., V]``, ``targets [...]`` -> (summed loss over real tokens, number of real tokens).

    Positions whose target is ``<pad>`` are ignored (``ignore_index``), in the smoothing term too.
    Divide the sum by the count for the per-token mean that training optimises.
    """
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD_INDEX,
                            reduction="sum", label_smoothing=label_smoothing)
    return total, int((targets != PAD_INDEX).sum())
