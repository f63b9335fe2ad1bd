"""The padding mask: its single definition, and the one way attention applies it.

Polarity everywhere in cronos (as in Hugging Face's ``attention_mask``): **True = real token**,
False = padding.  Libraries that want the opposite (PyTorch's ``key_padding_mask``) are converted at
their one call site, never in between.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import invariance

__all__ = ["lengths_to_mask", "masked_softmax", "pad_keys", "check_lengths"]


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``lengths [B]`` -> ``mask [B, S]`` (bool, True = real token), ``S = max_len or max(lengths)``.

    >>> lengths_to_mask(torch.tensor([2, 0, 3]), 4).int().tolist()
    [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]]
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D [batch], got shape {tuple(lengths.shape)}")
    longest = int(lengths.max()) if lengths.numel() else 0
    max_len = longest if max_len is None else max_len
    if longest > max_len:
        raise ValueError(f"a length ({longest}) exceeds max_len ({max_len})")
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths.to(positions.device)[:, None]  # [B, S]


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last axis (keys) with padded keys muted.

    ``scores [B, ..., S]``, ``mask [B, S]`` (True = real key) or ``None`` (no masking, for
    ablations).  Padded keys are filled with ``-inf`` before the softmax, so they get exactly 0
    weight and real keys' weights are exactly those of the unpadded sequence.  A row with no real
    key at all would be 0/0; cronos rejects empty sources before they reach a model, and this
    function still returns 0 for such a row instead of NaN.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    key_mask = mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))  # [B, 1.., S]
    weights = torch.softmax(scores.masked_fill(~key_mask, float("-inf")), dim=-1)
    return weights.masked_fill(~key_mask, 0.0)  # exact zeros, and 0 instead of NaN for an all-pad row


def pad_keys(keys: Tensor, values: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, int]:
    """Keys and values ``[..., S, *]`` widened with zeros to ``S'``, a multiple of
    ``invariance.KEY_MULTIPLE`` positions (so an example's attention keeps its bits whatever its
    batch's longest source), the mask widened with False to ``[B, S']``, and the real width: the mask's, or with
    ``None`` (the unmasked ablation) all ``S`` keys, ``[1, S']``.  The added keys get exactly
    nothing.  Keys already widened (a decoder's memory, once per source) are not copied again."""
    length = keys.size(-2) if mask is None else mask.size(-1)
    width = invariance.key_width(keys.size(-2))
    if mask is None:
        mask = torch.ones(1, length, dtype=torch.bool, device=keys.device)
    if width != keys.size(-2):
        extra = width - keys.size(-2)
        keys, values = F.pad(keys, (0, 0, 0, extra)), F.pad(values, (0, 0, 0, extra))
    if width != mask.size(-1):
        mask = F.pad(mask, (0, width - mask.size(-1)), value=False)
    return keys, values, mask, length


def check_lengths(lengths: Tensor) -> None:
    """Reject length-0 sources before they reach a model (they would have no key to attend to)."""
    if lengths.numel() and int(lengths.min()) < 1:
        bad = (lengths < 1).nonzero().flatten().tolist()
        raise ValueError(f"source sequence(s) at batch position(s) {bad} have length 0; "
                         "every source needs at least one token")
