"""``Cronos``: the high-level model. ``forward`` builds the padding mask from the source lengths and
threads it through the encoder, the decoder and every attention class.

    model = Cronos(config, src_vocab, tgt_vocab)
    batch = model.prepare(["Thu 26 Nov 2026"], ["2026-11-26"])
    logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)   # [B, T, V], [B, T, S]
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .checkpoint import CheckpointError, check_weights, load_checkpoint, save_checkpoint
from .config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from .data import (Batch, EvalSplit, TrainingData, Vocabulary, collate, encode_sources, load_eval_split,
                   load_training_data, tokenizer_for)
from .data.vocab import PAD_INDEX
from .device import resolve_device
from .evaluation import decode_examples, evaluate_split
from .explain import Explanation, explain_decoded, explain_forced
from .loss import token_cross_entropy
from .masking import check_lengths, lengths_to_mask
from .modules.decoders import build_decoder
from .modules.encoders import build_encoder
from .training import Trainer, TrainingHistory

__all__ = ["Cronos", "Encoded"]

SPLITS = ("train", "valid", "test")


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
        self._training_data: TrainingData | None = None
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
        outputs, attention, state = self._decoder_outputs(tgt_in, state, need_attention)
        return self.output_projection(outputs), attention, state

    def _decoder_outputs(self, tgt_in: Tensor, state, need_attention: bool):
        """``tgt_in [B, T]`` -> decoder outputs ``[B, T, H]`` before the vocabulary projection, attention, state."""
        return self.decoder(self.tgt_dropout(self.tgt_embedding(tgt_in)), state, need_attention)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor,
                need_attention: bool = True) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass: ``logits [B, T, V]`` and cross-attention ``[B, T, S]``.

        ``need_attention=False`` lets the transformer skip computing attention weights (returns None).
        """
        state = self.start_decoding(self.encode(src, src_lengths))
        logits, attention, _ = self.decode(tgt_in, state, need_attention)
        return logits, attention

    def loss(self, batch: Batch, label_smoothing: float | None = None) -> tuple[Tensor, int]:
        """Summed cross-entropy over ``batch``'s real target tokens, and their count.

        The output projection and softmax run on real target positions only: padding costs no
        compute in the largest matrix product of the model.
        """
        smoothing = self.config.training.label_smoothing if label_smoothing is None else label_smoothing
        state = self.start_decoding(self.encode(batch.src, batch.src_lengths))
        outputs, _, _ = self._decoder_outputs(batch.tgt_in, state, need_attention=False)  # [B, T, H]
        real = batch.tgt_out != PAD_INDEX  # [B, T]
        logits = self.output_projection(outputs[real])  # [N, V], N = real target tokens
        return token_cross_entropy(logits, batch.tgt_out[real], smoothing)

    # --- strings -> tensors ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.output_projection.weight.device

    def prepare(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> Batch:
        """Tokenise, numericalise, measure and collate ``sources`` (and ``targets``) into a ``Batch``.

        An empty or whitespace-only source raises ``ValueError``; unknown tokens become ``<unk>``;
        texts longer than ``data.max_length`` tokens are cut to it (with a warning).
        """
        examples = encode_sources(sources, self.tokenizer, self.src_vocab, targets, self.tgt_vocab,
                                  self.config.data.max_length)
        return collate(examples).to(self.device)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.detokenize(self.tgt_vocab.decode(token_ids))

    # --- the high-level API: build, fit, evaluate, translate, explain, save, load ------------------

    @classmethod
    def from_config(cls, config: Config | str | os.PathLike) -> "Cronos":
        """Read the training data, build the vocabularies, and build the model (seeded by ``config.seed``)."""
        config = config if isinstance(config, Config) else load_config(config)
        data = load_training_data(config.data)
        torch.manual_seed(config.seed)
        model = cls(config, data.src_vocab, data.tgt_vocab)
        model._training_data = data
        return model

    def fit(self) -> TrainingHistory:
        """Train per ``config.training``; return one dict per epoch (train_loss, valid_* metrics, lr, seconds),
        a list that also says where the run ended (``TrainingHistory``).

        An ``output_dir`` that holds an earlier run is refused unless ``training.resume`` continues
        it or ``training.overwrite`` replaces it.  Afterwards the model holds the weights of this
        run's best validation (``output_dir/best.pt``), or its last weights when it was stopped
        before its first validation.
        """
        data = self._training_data or load_training_data(self.config.data, (self.src_vocab, self.tgt_vocab))
        valid = self._split("valid") if self.config.data.valid is not None else None
        trainer = Trainer(self, data, valid)
        history = trainer.run()
        if history.best_step is not None:  # best.pt holds this run's best validation
            self.load_state_dict(load_checkpoint(trainer.folder.best)["model"])
        return history

    def evaluate(self, data: str | Sequence[tuple[str, str]] = "test", beam_size: int | None = None) -> dict:
        """Loss, ppl, token_accuracy, sequence_accuracy, BLEU and chrF (with sacrebleu signatures).

        ``data``: a split name (``train``, ``valid``, ``test``), a TSV path, or (source, target) pairs.
        """
        return evaluate_split(self, self._split(data), beam_size)

    def translate(self, sources: Sequence[str], beam_size: int | None = None,
                  batch_size: int | None = None) -> list[str]:
        """Decode ``sources`` (greedy for ``beam_size=1``); an output never depends on its batch mates.

        Sources longer than ``data.max_length`` tokens are cut to it, with a warning that counts them.
        """
        evaluation = self.config.evaluation
        examples = encode_sources(sources, self.tokenizer, self.src_vocab, max_length=self.config.data.max_length)
        hypotheses = decode_examples(self, examples, beam_size or evaluation.beam_size, evaluation.length_penalty,
                                     batch_size or evaluation.batch_size)
        return [self.detokenize(h.tokens) for h in hypotheses]

    def explain(self, sources: Sequence[str], targets: Sequence[str] | None = None,
                beam_size: int | None = None) -> list[Explanation]:
        """Attention of each output token over the source tokens, trimmed to true lengths.

        Without ``targets`` the outputs are decoded (``beam_size``: attention of the returned
        hypothesis); with ``targets`` they are forced to those.
        """
        if targets is None:
            return explain_decoded(self, sources, beam_size or self.config.evaluation.beam_size)
        return explain_forced(self, sources, targets)

    def checkpoint_payload(self) -> dict[str, Any]:
        return {"config": config_to_dict(self.config), "src_vocab": self.src_vocab.to_list(),
                "tgt_vocab": self.tgt_vocab.to_list(), "model": self.state_dict()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, vocabularies and weights to one file, atomically."""
        return save_checkpoint(path, self.checkpoint_payload())

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto") -> "Cronos":
        """Rebuild a model from a file written by ``save`` (or a run's best.pt/last.pt), in eval mode.

        ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda[:N]``
        or a ``torch.device``.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device, "Cronos.load", "device")
        payload = load_checkpoint(path)
        try:
            config = config_from_dict(payload["config"], source=f"{path} (config)")
            vocabularies = Vocabulary(payload["src_vocab"]), Vocabulary(payload["tgt_vocab"])
        except (ConfigError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path}: incompatible checkpoint: {error}") from None
        # The file is untrusted: its config must describe exactly the weights it stores before
        # a model is allocated from that config (a few KB could otherwise ask for gigabytes).
        weights = payload["model"]
        for section in ("encoder", "decoder"):
            layers = getattr(config.model, section).layers
            if layers > len(weights):  # every layer has weights of its own
                raise CheckpointError(f"{path}: weights do not fit the model its config describes: "
                                      f"model.{section}.layers is {layers}, but the file holds {len(weights)} tensors")
        with torch.device("meta"):  # shapes only: nothing is allocated
            skeleton = cls(config, *vocabularies)
        check_weights(weights, skeleton, path)
        model = cls(config, *vocabularies)
        model.load_state_dict(weights)
        return model.to(device).eval()

    def check_compatible(self, payload: dict[str, Any], path: str | os.PathLike) -> None:
        """Raise ``CheckpointError`` naming what differs when ``payload`` was made for another model."""
        for side, key, vocab in (("source", "src_vocab", self.src_vocab), ("target", "tgt_vocab", self.tgt_vocab)):
            theirs = payload[key]
            if theirs != vocab.to_list():
                raise CheckpointError(
                    f"{path}: the {side} vocabulary differs from the one built from this config's data "
                    f"(checkpoint {len(theirs)} tokens, config {len(vocab)}); use the data the checkpoint "
                    "was trained on")
        ours, theirs = config_to_dict(self.config)["model"], payload["config"].get("model", {})
        differing = sorted(_differences(ours, theirs, "model"))
        if differing:
            raise CheckpointError(f"{path}: architecture differs from this config at {', '.join(differing)}")

    def _split(self, data: str | Sequence[tuple[str, str]] | EvalSplit) -> EvalSplit:
        if isinstance(data, EvalSplit):
            return data
        if isinstance(data, str) and data in SPLITS:
            files = getattr(self.config.data, data)
            if files is None:
                raise ValueError(f"data.{data} is not set in the config; pass a file or (source, target) pairs")
            # a split's paths come from the config, which a checkpoint from anywhere may carry:
            # messages about those files never quote what they hold
            return load_eval_split(files, self.config.data, self.src_vocab, self.tgt_vocab, quote=False)
        if isinstance(data, (str, os.PathLike)):
            if not os.path.exists(data):
                raise ValueError(f"{str(data)!r} is neither a split name ({', '.join(SPLITS)}) nor an existing file")
            return load_eval_split(str(data), self.config.data, self.src_vocab, self.tgt_vocab)
        pairs = list(data)
        sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
        examples = encode_sources(sources, self.tokenizer, self.src_vocab, targets, self.tgt_vocab,
                                  self.config.data.max_length)
        return EvalSplit(sources, targets, examples)


def _differences(ours: Any, theirs: Any, prefix: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        keys = set(ours) | set(theirs)
        return [d for k in keys for d in _differences(ours.get(k), theirs.get(k), f"{prefix}.{k}")]
    return [] if ours == theirs else [f"{prefix} (checkpoint {theirs!r}, config {ours!r})"]
