"""The network: embeddings -> encoder -> decoder -> output projection, with one mask from the lengths.

    network = Seq2Seq(config.model, len(src_vocab), len(tgt_vocab))
    logits, attention = network(src, src_lengths, tgt_in)           # [B, T, V], [B, T, S]
    loss = network(src, src_lengths, tgt_in, tgt_out)               # the training step's loss
    (loss.total / loss.tokens).backward()

``forward`` is the whole training step's computation, so whatever wraps a module (a forward hook,
``DistributedDataParallel``, ``torch.compile``, autocast) sees every step.  It builds the source
mask from the lengths and threads it through the encoder, the decoder and every attention class.
Search calls the pieces one by one: ``encode`` once, then ``run_decoder`` step by step on a state
from ``start_decoder``.  The network knows tensors only: no text, no files, no training loop.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..data.vocab import PAD_INDEX
from .loss import projected_cross_entropy
from .masking import check_lengths, lengths_to_mask
from .attention import AdditiveAttention
from .decoders import Parts, build_decoder, joined
from .encoders import build_encoder
from .linear import Linear, packed_for_inference

__all__ = ["Encoded", "Seq2Seq", "TokenLoss", "evaluating"]


class TokenLoss(NamedTuple):
    """The loss of a batch: summed over its real target tokens, and their number (divide for the mean)."""

    total: Tensor  # [], summed cross-entropy
    tokens: int


@dataclass(frozen=True)
class Encoded:
    memory: Tensor       # [B, S, M]
    lengths: Tensor      # [B], CPU
    mask: Tensor | None  # [B, S], True = real token: what attention receives (None in the unmasked ablation)


class Seq2Seq(nn.Module):
    """Embeddings -> encoder -> decoder -> output projection, with one mask from the lengths.

    ``mask_padding`` (masking) hands the mask to every attention class; off, attention sees
    padded positions (for ablations only).  ``freeze_pad_embedding`` (frozen ``<pad>`` rows) keeps the
    ``<pad>`` embedding rows zero and gradient-free, so they stay bit-identical under any
    optimizer, weight decay included.  ``share_embeddings`` makes the source and target embedding
    one module (one vocabulary for both sides); ``tie_output_embedding`` makes the output
    projection's weight the target embedding's, whose ``<pad>`` row then also gets no gradient
    through the projection (a hook zeroes it), so it stays zero all the same.
    """

    def __init__(self, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int):
        super().__init__()
        self.mask_padding, self.freeze_pad_embedding = config.mask_padding, config.freeze_pad_embedding
        padding_idx = PAD_INDEX if config.freeze_pad_embedding else None
        if config.share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(f"shared embeddings need one vocabulary for both sides, got {src_vocab_size} source "
                             f"and {tgt_vocab_size} target tokens")
        self.src_embedding = nn.Embedding(src_vocab_size, config.embedding_size, padding_idx=padding_idx)
        self.tgt_embedding = (self.src_embedding if config.share_embeddings
                              else nn.Embedding(tgt_vocab_size, config.embedding_size, padding_idx=padding_idx))
        self.src_dropout = nn.Dropout(config.encoder.dropout)
        self.tgt_dropout = nn.Dropout(config.decoder.dropout)
        self.encoder = build_encoder(config.embedding_size, config.encoder)
        self.decoder = build_decoder(config.embedding_size, self.encoder.output_size, config.decoder)
        self.tied = config.tie_output_embedding
        self.output_projection = OutputProjection(self.decoder.output_size, tgt_vocab_size,
                                                  pad_row_frozen=self.tied and self.freeze_pad_embedding)
        if self.tied:
            self.output_projection.weight = self.tgt_embedding.weight  # [V, E], E == decoder output size
        self.loss_head = projected_cross_entropy  # compile_blocks swaps in its compiled form
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re-)initialise all weights; the ``<pad>`` rows end zero when they are frozen."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                if not (module is self.output_projection and self.tied):  # tied: initialised as the embedding
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)
            elif isinstance(module, (nn.GRU, nn.LSTM, nn.LayerNorm)):
                module.reset_parameters()
        self.zero_pad_embeddings()

    def compile_blocks(self) -> None:
        """``torch.compile`` the blocks that gain from it, in place (the state dict keeps its keys).

        Regional compilation, as PyTorch recommends for repeated blocks: each block compiles once
        (in seconds, where compiling the whole network took minutes and broke its graph at the
        packed RNN), and serves training and decoding.  Compiled: the loss head (projection,
        log-softmax and sum fused) and additive attention (its ``[B, T, S, A]`` tanh fused with
        the reduction over ``A``).  The batch and length dimensions are dynamic, so batches of
        new shapes do not recompile.  Transformer layers are left as they are: compiled, they were
        slower on the CPU (docs/BENCHMARKS.md).
        """
        for module in self.modules():
            if isinstance(module, AdditiveAttention):
                module.compile(dynamic=True)
        self.loss_head = torch.compile(projected_cross_entropy, dynamic=True)

    @torch.no_grad()
    def zero_pad_embeddings(self) -> None:
        if self.freeze_pad_embedding:
            self.src_embedding.weight[PAD_INDEX].zero_()
            self.tgt_embedding.weight[PAD_INDEX].zero_()

    @property
    def device(self) -> torch.device:
        return self.src_embedding.weight.device  # a parameter every network keeps in float (int8 too)

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """``src [B, S]``, ``src_lengths [B]`` -> memory and the mask built from the lengths."""
        return self.encode_embedded(self.src_embedding(src), src_lengths)

    def encode_embedded(self, embedded: Tensor, src_lengths: Tensor) -> Encoded:
        """``encode`` from the source embeddings ``[B, S, E]`` (what gradient attributions differentiate)."""
        check_lengths(src_lengths)
        src_lengths = src_lengths.cpu()
        mask = lengths_to_mask(src_lengths, embedded.size(1)).to(embedded.device) if self.mask_padding else None
        memory = self.encoder(self.src_dropout(embedded), src_lengths, mask)  # [B, S, M]
        return Encoded(memory, src_lengths, mask)

    def start_decoder(self, encoded: Encoded):
        """Decoder state for ``encoded``: memory projections computed once, the mask stored with them."""
        return self.decoder.start(encoded.memory, encoded.lengths, encoded.mask)

    def run_decoder(self, tgt_in: Tensor, state, need_weights: bool = True):
        """``tgt_in [B, T]`` (one step or the whole target) -> ``logits [B, T, V]``, ``attention [B, T, S]``, state
        (a state of ``Parts``: a search whose inputs joined at different steps, one step)."""
        if isinstance(state, Parts):
            return self.run_decoder_together([(tgt_in, state)], need_weights)[0]
        outputs, attention, state = self._decoder_outputs(tgt_in, state, need_weights)
        return self.output_projection(outputs), attention, state

    def run_decoder_together(self, steps: Sequence[tuple[Tensor, object]],
                             need_weights: bool = True) -> list[tuple[Tensor, Tensor | None, object]]:
        """``run_decoder`` for several searches at once: ``steps``, each one's ``tgt_in [b_i, T]``
        and state -> each one's logits, attention and state, with the bits it gets alone.  The
        embedding, the decoder's per-row layers and the output projection run over all rows."""
        sizes = [tokens.size(0) for tokens, _ in steps]
        parts = [Parts.of(state, size) for (_, state), size in zip(steps, sizes)]  # a search's own parts, if any
        embedded = self.tgt_dropout(self.tgt_embedding(joined([tokens for tokens, _ in steps])))  # [N, T, E]
        outputs, attention, states = self.decoder.together(embedded, [size for p in parts for size in p.sizes],
                                                           [state for p in parts for state in p.states], need_weights)
        found, start = [], 0
        for logits, part in zip(self.output_projection(outputs).split(sizes), parts):
            end = start + len(part.sizes)
            weights = None if attention[start] is None else _side_by_side(attention[start:end])
            found.append((logits, weights, states[start] if end - start == 1 else Parts(tuple(states[start:end]),
                                                                                        part.sizes)))
            start = end
        return found

    def _decoder_outputs(self, tgt_in: Tensor, state, need_weights: bool):
        """``tgt_in [B, T]`` -> decoder outputs ``[B, T, H]`` before the vocabulary projection, attention, state."""
        return self.decoder(self.tgt_dropout(self.tgt_embedding(tgt_in)), state, need_weights)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor | None = None,
                label_smoothing: float = 0.0, need_weights: bool = True) -> tuple[Tensor, Tensor | None] | TokenLoss:
        """Teacher-forced pass over ``src [B, S]`` (real lengths ``src_lengths [B]``) and ``tgt_in [B, T]``.

        Without ``tgt_out``: ``logits [B, T, V]`` and cross-attention ``[B, T, S]`` (None when
        ``need_weights`` is false: the transformer then skips computing attention weights).
        With ``tgt_out [B, T]``: the batch's ``TokenLoss``, the cross-entropy (with
        ``label_smoothing``) summed over real target tokens, and their count.  The output
        projection and softmax then run on real target positions only: padding costs no compute
        in the largest matrix product of the model.
        """
        state = self.start_decoder(self.encode(src, src_lengths))
        if tgt_out is None:
            logits, attention, _ = self.run_decoder(tgt_in, state, need_weights)
            return logits, attention
        outputs, _, _ = self._decoder_outputs(tgt_in, state, need_weights=False)  # [B, T, H]
        # The target's padding is read from its ids, not from lengths: text never encodes to
        # <pad> (the vocabulary maps a literal "<pad>" to <unk>), so the two are the same
        # positions, and cross-entropy's ignore_index works on ids anyway.  Decoder
        # self-attention needs no target mask: it is causal and targets are right-padded, so
        # no real position ever sees a padded one.
        real = tgt_out != PAD_INDEX  # [B, T]
        targets = tgt_out[real]  # [N], N = real target tokens
        total = self.loss_head(outputs[real], self.output_projection, targets, label_smoothing)
        return TokenLoss(total, targets.numel())


def _side_by_side(attention: Sequence[Tensor]) -> Tensor:
    """The attention ``[r_i, T, S_i]`` of a search's parts as one ``[R, T, max S_i]``: a narrower
    source's is widened with zeros (its padding's weights)."""
    width = max(part.size(-1) for part in attention)
    return joined([F.pad(part, (0, width - part.size(-1))) for part in attention])


class OutputProjection(Linear):
    """The decoder's outputs -> vocabulary logits: ``[..., H] -> [..., V]``.

    With ``pad_row_frozen`` (the weight tied to the target embedding, whose ``<pad>`` row stays
    zero) the ``<pad>`` row of the weight gets no gradient through the projection: the softmax
    would give it one (the ``<pad>`` logit is in every denominator).  The hook sits on a view made
    in each forward, not on the parameter, so it holds in copies of the module too.
    """

    def __init__(self, in_features: int, out_features: int, pad_row_frozen: bool = False):
        super().__init__(in_features, out_features)
        self.pad_row_frozen = pad_row_frozen

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight
        if self.pad_row_frozen and weight.requires_grad and torch.is_grad_enabled():
            weight = weight.view_as(weight)
            weight.register_hook(_without_pad_row)
            return F.linear(x, weight, self.bias)
        return super().forward(x)


def _without_pad_row(gradient: Tensor) -> Tensor:
    """``gradient [V, H]`` with its ``<pad>`` row zero."""
    return gradient.index_fill(0, torch.tensor([PAD_INDEX], device=gradient.device), 0.0)


@contextmanager
def evaluating(network: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) without autograd for the block, the linear layers multiplying with
    weights packed for the CPU (``modules/linear.py``); the previous mode comes back even when the
    block raises."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), packed_for_inference(network):
            yield
    finally:
        network.train(was_training)
