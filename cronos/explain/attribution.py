"""Gradient attributions: how much each source token moves each output token's log-probability.

    attributions = attribute(network, batch, "integrated_gradients", steps=50)
    attributions.scores    # [B, T, S]: output token t (``batch.tgt_out[:, t]``) over source position s
    attributions.gaps      # [B, T]: integrated gradients' completeness gap, else None

The attributed quantity is ``log p(y_t | y_<t, x)`` of each target token under teacher forcing,
differentiated with respect to the source embeddings ``[B, S, E]`` (Captum does the
differentiating), and reduced over the embedding axis to one number per source position:

- ``saliency``: the gradient's L2 norm (>= 0);
- ``input_x_gradient``: the embedding times the gradient, summed (signed);
- ``integrated_gradients``: the gradient integrated along the straight path from the baseline to
  the embedding, times their difference, summed (signed).  The integral is the trapezoidal rule
  over ``steps`` evenly spaced points (Captum's ``riemann_trapezoid``): time and memory linear in
  ``steps`` (one forward and backward pass per point, a batch at a time), error shrinking as
  ``1 / steps ** 2``.  Captum's default, Gauss-Legendre, costs ``O(steps ** 2)`` memory and
  ``O(steps ** 3)`` time before the first pass (15,000 steps: 3.8 GB in a red-team run), so it is not used;
  ``steps`` is at most ``MAX_STEPS``.  The baseline is
  the ``<pad>`` embedding at every position: the input that carries no information (zero and
  frozen under ``model.freeze_pad_embedding``).  Completeness: the scores of a row sum to the
  log-probability minus the baseline's, up to the gap reported.

Padding gets exactly nothing: with the mask, no gradient reaches a padded position (its key is
muted before the softmax, its value weighted by exactly 0; an RNN encoder, packed, never reads
it), and a padded position's embedding is the baseline itself.  An example's attributions do not
depend on its batch mates: its log-probs depend on its own embeddings only (P1), so the gradient of
the batch's sum is its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..data import Batch
from ..data.vocab import PAD_INDEX
from ..decoding.inference import check_numbers
from ..modules.network import Seq2Seq

__all__ = ["ATTRIBUTION_METHODS", "AttributionDependencyError", "Attributions", "attribute", "MAX_STEPS"]

ATTRIBUTION_METHODS = ("saliency", "input_x_gradient", "integrated_gradients")
MAX_STEPS = 10_000  # integrated gradients' path points: 200x the default 50 (0.40 s an example on the dates model)


class AttributionDependencyError(ImportError):
    """Captum is missing: it comes with the ``attributions`` extra."""


@dataclass(frozen=True)
class Attributions:
    scores: Tensor        # [B, T, S]; padded source columns exactly 0
    gaps: Tensor | None   # [B, T]: sum of a row's scores minus (log-prob - baseline log-prob); IG only


def attribute(network: Seq2Seq, batch: Batch, method: str, steps: int = 50) -> Attributions:
    """Attributions of each of ``batch``'s target tokens (``tgt_out``, ``<eos>`` included) to its
    source positions, by ``method`` (one of ``ATTRIBUTION_METHODS``; ``steps``: integrated
    gradients' path points).  The network should be in eval mode (dropout would make them random)."""
    if method not in _METHODS:
        raise ValueError(f"unknown attribution method {method!r}; expected one of {', '.join(ATTRIBUTION_METHODS)}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"integrated gradients takes 1 to {MAX_STEPS:,} steps (each one forward and backward pass "
                         f"per output token; the error shrinks as 1 / steps ** 2), got {steps:,}")
    if batch.tgt_in is None:
        raise ValueError("attributions need the output tokens: decode first, or give targets")
    _captum()  # the extra is optional: say so before any work
    embedded = network.src_embedding(batch.src).detach().requires_grad_()  # [B, S, E]
    baseline = network.src_embedding.weight[PAD_INDEX].detach().expand_as(embedded)  # [B, S, E]
    extra = (batch.src_lengths, batch.tgt_in, batch.tgt_out)
    rows, gaps = [], []
    with torch.enable_grad(), _cudnn_rnn_backward_in_eval():
        for t in range(batch.tgt_out.size(1)):
            scores, gap = _METHODS[method](_target_log_probs(network), embedded, baseline, t, extra, steps)
            rows.append(check_numbers(scores.detach(), infinite_too=True))  # [B, S]: NaN when the log-probs are
            gaps.append(gap)
    scores = torch.stack(rows, dim=1)  # [B, T, S]
    return Attributions(scores, torch.stack(gaps, dim=1).detach() if gaps[0] is not None else None)


def _target_log_probs(network: Seq2Seq) -> Callable[..., Tensor]:
    """Captum's forward: source embeddings ``[B', S, E]`` -> each target token's log-prob ``[B', T]``
    (integrated gradients repeats the batch once per step, ``B' = B * steps``, and the extra
    arguments with it)."""
    def log_probs(embedded: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        state = network.start_decoder(network.encode_embedded(embedded, src_lengths))
        logits, _, _ = network.run_decoder(tgt_in, state, need_weights=False)  # [B', T, V]
        return torch.log_softmax(logits, dim=-1).gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)  # [B', T]
    return log_probs


def _captum():
    try:
        import captum.attr
    except ImportError:
        raise AttributionDependencyError("gradient attributions need Captum: pip install 'cronos[attributions]'") \
            from None
    return captum.attr


def _saliency(forward, embedded, baseline, t, extra, steps) -> tuple[Tensor, None]:
    gradient = _captum().Saliency(forward).attribute(embedded, target=t, abs=True, additional_forward_args=extra)
    return gradient.norm(dim=-1), None  # [B, S]


def _input_x_gradient(forward, embedded, baseline, t, extra, steps) -> tuple[Tensor, None]:
    products = _captum().InputXGradient(forward).attribute(embedded, target=t, additional_forward_args=extra)
    return products.sum(dim=-1), None  # [B, S]


def _integrated_gradients(forward, embedded, baseline, t, extra, steps) -> tuple[Tensor, Tensor]:
    method = _captum().IntegratedGradients(forward)
    # the path points in chunks of one batch: memory as for one forward pass, not ``steps`` of them
    scores, gap = method.attribute(embedded, baselines=baseline, target=t, n_steps=steps, method="riemann_trapezoid",
                                   additional_forward_args=extra, internal_batch_size=embedded.size(0),
                                   return_convergence_delta=True)
    return scores.sum(dim=-1), gap  # [B, S], [B]


_METHODS = {"saliency": _saliency, "input_x_gradient": _input_x_gradient, "integrated_gradients": _integrated_gradients}


def _cudnn_rnn_backward_in_eval():
    """cuDNN's RNN backward runs in training mode only; attributions differentiate in eval mode
    (no dropout), so on CUDA the RNNs run without cuDNN meanwhile."""
    return torch.backends.cudnn.flags(enabled=False)
