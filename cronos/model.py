"""``Cronos``: the high-level model. ``forward`` builds the padding mask from the source lengths and
threads it through the encoder, the decoder and every attention class.

    model = Cronos(config, src_vocab, tgt_vocab)
    batch = model.prepare(["Thu 26 Nov 2026"], ["2026-11-26"])
    logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)   # [B, T, V], [B, T, S]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .config import Config
from .data import Batch, Vocabulary, collate, encode_sources, tokenizer_for
from .data.vocab import PAD_INDEX
from .loss import token_cross_entropy
from .masking import check_lengths, lengths_to_mask
from .modules.decoders import build_decoder
from .modules.encoders import build_encoder

__all__ = ["Cronos", "Encoded"]


@dataclass(frozen=True)
class Encoded:
    memory: Tensor        # [B, S, M]
    lengths: Tensor       # [B], CPU
    mask: Tensor          # [B, S], True = real token
    attention_mask: Tensor | None  # what attention receives: ``mask``, or None in the unmasked ablation


class Cronos(nn.Module):
    """Embeddings -> encoder -> decoder -> output projection, with one mask from the lengths.

    ``model.mask_padding`` (methodology A) hands the mask to every attention class; off, attention
    sees padded positions (for ablations only).  ``model.freeze_pad_embedding`` (methodology B)
    keeps the ``<pad>`` embedding rows zero and gradient-free, so they stay bit-identical under any
    optimizer, weight decay included.
    """

    def __init__(self, config: Config, src_vocab: Vocabulary, tgt_vocab: Vocabulary):
        super().__init__()
        self.config, self.src_vocab, self.tgt_vocab = config, src_vocab, tgt_vocab
        self.tokenizer = tokenizer_for(config.data)
        model = config.model
        self.mask_padding, self.freeze_pad_embedding = model.mask_padding, model.freeze_pad_embedding
        padding_idx = PAD_INDEX if model.freeze_pad_embedding else None
        self.src_embedding = nn.Embedding(len(src_vocab), model.embedding_size, padding_idx=padding_idx)
        self.tgt_embedding = nn.Embedding(len(tgt_vocab), model.embedding_size, padding_idx=padding_idx)
        self.src_dropout = nn.Dropout(model.encoder.dropout)
        self.tgt_dropout = nn.Dropout(model.decoder.dropout)
        self.encoder = build_encoder(model.embedding_size, model.encoder)
        self.decoder = build_decoder(model.embedding_size, self.encoder.output_size, model.decoder)
        self.output_projection = nn.Linear(self.decoder.output_size, len(tgt_vocab))
        self.reset_parameters()

    # --- parameters -----------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """(Re-)initialise all weights; the ``<pad>`` rows end zero when they are frozen."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=module.embedding_dim ** -0.5)
            elif isinstance(module, (nn.GRU, nn.LSTM, nn.LayerNorm)):
                module.reset_parameters()
        self.zero_pad_embeddings()

    @torch.no_grad()
    def zero_pad_embeddings(self) -> None:
        if self.freeze_pad_embedding:
            self.src_embedding.weight[PAD_INDEX].zero_()
            self.tgt_embedding.weight[PAD_INDEX].zero_()

    # --- the computation ------------------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded:
        """``src [B, S]``, ``src_lengths [B]`` -> memory and the mask built from the lengths."""
        check_lengths(src_lengths)
        src_lengths = src_lengths.cpu()
        mask = lengths_to_mask(src_lengths, src.size(1)).to(src.device)  # [B, S]; the one mask
        attention_mask = mask if self.mask_padding else None
        memory = self.encoder(self.src_dropout(self.src_embedding(src)), src_lengths, attention_mask)
        return Encoded(memory, src_lengths, mask, attention_mask)

    def start_decoding(self, encoded: Encoded):
        """Decoder state for ``encoded``: memory projections computed once, the mask stored with them."""
        return self.decoder.start(encoded.memory, encoded.lengths, encoded.attention_mask)

    def decode(self, tgt_in: Tensor, state, need_attention: bool = True):
        """``tgt_in [B, T]`` (one step or the whole target) -> ``logits [B, T, V]``, ``attention [B, T, S]``, state."""
        outputs, attention, state = self.decoder(self.tgt_dropout(self.tgt_embedding(tgt_in)), state, need_attention)
        return self.output_projection(outputs), attention, state

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                need_attention: bool = True) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: ``logits [B, T, V]`` and cross-attention ``[B, T, S]``.

        ``need_attention=False`` lets the transformer skip computing attention weights (returns None).
        """
        state = self.start_decoding(self.encode(src, src_lengths))
        logits, attention, _ = self.decode(tgt_in, state, need_attention)
        return logits, attention

    def loss(self, batch: Batch, label_smoothing: float | None = None) -> tuple[Tensor, int]:
        """Summed cross-entropy over ``batch``'s real target tokens, and their count."""
        smoothing = self.config.training.label_smoothing if label_smoothing is None else label_smoothing
        logits, _ = self(batch.src, batch.src_lengths, batch.tgt_in, need_attention=False)
        return token_cross_entropy(logits, batch.tgt_out, smoothing)

    # --- strings -> tensors ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.output_projection.weight.device

    def prepare(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> Batch:
        """Tokenise, numericalise, measure and collate ``sources`` (and ``targets``) into a ``Batch``.

        An empty or whitespace-only source raises ``ValueError``; unknown tokens become ``<unk>``.
        """
        examples = encode_sources(sources, self.tokenizer, self.src_vocab, targets, self.tgt_vocab)
        return collate(examples).to(self.device)
