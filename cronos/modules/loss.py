"""Cross-entropy over real target tokens only: padded targets never count."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.vocab import BOS_INDEX, PAD_INDEX

__all__ = ["projected_cross_entropy", "smoothed_cross_entropy", "summed_cross_entropy", "token_cross_entropy"]


def token_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, int]:
    """``logits [..., V]``, ``targets [...]`` -> (summed loss over real tokens, number of real tokens).

    Positions whose target is ``<pad>`` are ignored, in the smoothing term too (``smoothed_cross_entropy``).
    Divide the sum by the count for the per-token mean that training optimises.
    """
    real = targets != PAD_INDEX
    return summed_cross_entropy(logits[real], targets[real], label_smoothing), int(real.sum())


def projected_cross_entropy(hidden: Tensor, projection: nn.Module, targets: Tensor,
                            label_smoothing: float = 0.0) -> Tensor:
    """``hidden [N, H]`` at real target positions, ``targets [N]`` -> cross-entropy of ``projection(hidden)``, summed.

    The training step's loss head: the output projection runs on real positions only, and the
    logits are cast to float32 (at least) first, so that under bf16/fp16 autocast the softmax and
    the sum are still float32.  One function, so ``torch.compile`` can take it whole.
    """
    logits = projection(hidden)  # [N, V]
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return summed_cross_entropy(logits, targets, label_smoothing)


def summed_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """``logits [N, V]``, ``targets [N]`` -> the cross-entropy summed over the N tokens; with
    ``label_smoothing``, ``smoothed_cross_entropy``'s."""
    if not label_smoothing:
        return F.cross_entropy(logits, targets, reduction="sum")
    return smoothed_cross_entropy(logits, targets, label_smoothing)


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, label_smoothing: float) -> Tensor:
    """``logits [N, V]``, ``targets [N]`` -> cross-entropy against the targets smoothed with
    ``label_smoothing`` over the tokens an output can be, summed: every token but ``<pad>`` and
    ``<bos>``, which no target ever is (as OpenNMT leaves out padding).  Smoothing over them as well
    would teach a model to give them probability, and push up a model's fixed bias against them (an
    imported model's, ``storage/marian.py``)."""
    log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
    chosen = log_probs.gather(1, targets[:, None]).squeeze(1)  # [N]
    never = torch.zeros(logits.size(1), dtype=torch.bool, device=logits.device)
    never[[PAD_INDEX, BOS_INDEX]] = True
    spread = log_probs.masked_fill(never, 0.0).sum(dim=1) / (logits.size(1) - 2)  # [N]
    return -((1.0 - label_smoothing) * chosen + label_smoothing * spread).sum()
