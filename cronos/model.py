"""``Cronos``: the high-level object, a ``Translator`` (``translator.py``: translate, sample, score,
evaluate, explain) that is also built from a config, trained, saved and loaded.  It holds the
network (``cronos.network.Seq2Seq``), the text codec (tokenizer + vocabularies) and the config, and
each of its methods is a short call into the module that owns the work, handing it only what that
work needs.

    model = Cronos.from_config("configs/dates.yaml")       # reads the data, builds the vocabularies
    model.fit()                                            # training.Trainer
    model.translate(["Thu 26 Nov 2026"])                   # search.decode -> ['2026-11-26']
    model.evaluate("test"), model.explain([...])           # evaluation, explain
    batch = model.prepare(["Thu 26 Nov 2026"], ["2026-11-26"])
    logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)   # the network's forward
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from .checkpoint import model_payload, save_checkpoint
from .config import Config, ConfigError, load_config
from .data import SubwordModels, TextCodec, TrainingData, Vocabulary, load_split, load_training_data
from .device import resolve_device
from .ensemble import ensemble_of
from .model_file import read_model_file
from .modules.quantized import QUANTIZATIONS, quantize_linear_layers
from .network import Seq2Seq, TokenLoss
from .training import Trainer, TrainingHistory
from .translator import Translation, Translator

__all__ = ["Cronos", "Translation", "Translator"]


class Cronos(nn.Module, Translator):
    """A sequence-to-sequence model with what it needs to read and write text, train, and be saved:
    a ``Translator`` that is also trained (``fit``) and saved (``save``).

    ``network``: the ``Seq2Seq`` module (embeddings, encoder, decoder, output projection);
    ``codec``: tokenizer and vocabularies; ``config``: the whole config.  Called, it is the
    network: ``forward`` builds the padding mask from the lengths and threads it through every
    attention class.
    """

    def __init__(self, config: Config, src_vocab: Vocabulary, tgt_vocab: Vocabulary,
                 subwords: SubwordModels | None = None):
        super().__init__()
        if config.model.share_embeddings and src_vocab != tgt_vocab:
            raise ConfigError("config", "model.share_embeddings",
                              f"needs one vocabulary for both sides, and this data gives two ({len(src_vocab)} source, "
                              f"{len(tgt_vocab)} target tokens): use data.tokenizer: sentencepiece with "
                              "data.sentencepiece.joint: true, or share_embeddings: false")
        Translator.__init__(self, Seq2Seq(config.model, len(src_vocab), len(tgt_vocab)),
                            TextCodec.for_data(config.data, src_vocab, tgt_vocab, subwords), config)
        self._training_data: TrainingData | None = None  # read by from_config, so fit does not read it again
        self.quantization: str | None = None  # "int8" once loaded so: then it decodes and scores only

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor | None = None,
                label_smoothing: float = 0.0, need_weights: bool = True) -> tuple[Tensor, Tensor | None] | TokenLoss:
        """The network's forward (``Seq2Seq.forward``): ``logits [B, T, V]`` and attention
        ``[B, T, S]``, or with ``tgt_out`` the batch's loss summed over real target tokens and their count."""
        return self.network(src, src_lengths, tgt_in, tgt_out, label_smoothing, need_weights)

    @classmethod
    def from_config(cls, config: Config | str | os.PathLike) -> "Cronos":
        """Read the training data, build the vocabularies, and build the model (seeded by ``config.seed``)."""
        config = config if isinstance(config, Config) else load_config(config)
        data = load_training_data(config.data, seed=config.seed)
        torch.manual_seed(config.seed)
        model = cls(config, data.src_vocab, data.tgt_vocab, data.subwords)
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
        self._refuse_quantized("trained")
        codec, data_config = self.codec, self.config.data
        data = self._training_data or load_training_data(data_config, (codec.src_vocab, codec.tgt_vocab),
                                                         codec.subwords)
        valid = load_split("valid", data_config, codec) if data_config.valid is not None else None
        return Trainer(self.network, codec, self.config, data, valid).run()

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, vocabularies (SentencePiece models included) and weights to one file, atomically."""
        self._refuse_quantized("saved")
        return save_checkpoint(path, model_payload(self.config, self.codec, self.network.state_dict()))

    @classmethod
    def ensemble(cls, members: Sequence["Cronos | str | os.PathLike"],
                 device: str | torch.device = "auto") -> Translator:
        """Models (or checkpoint paths) decoding together: each step from the mean of their
        probabilities, in ``translate`` (greedy, beam, n-best), ``sample``, ``score``, ``evaluate`` and
        ``explain``.  The members must write text alike: the same target tokenizer and vocabulary (a
        ``ValueError`` names the member and what differs).  They may read the source differently
        (another tokenizer, SentencePiece model or vocabulary): each reads every source its own way.
        Search settings and length limits are the first member's (output lengths count its source
        tokens); ``explain`` shows the mean attention of the members that read the source as the
        first does.  An ensemble is a ``Translator``: it decodes, and is neither trained nor saved."""
        models = [m if isinstance(m, Cronos) else cls.load(m, device) for m in members]
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(models)}")
        network, codec = ensemble_of([m.network for m in models], [m.codec for m in models])
        return Translator(network.to(models[0].device).eval(), codec, models[0].config)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto",
             quantize: str | None = None) -> "Cronos":
        """Rebuild a model from a file written by ``save`` (or a run's best.pt/last.pt), in eval mode.

        ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda[:N]``
        or a ``torch.device``.  ``quantize="int8"`` (CPU only): every linear layer computes in int8
        (``modules/quantized.py``), for faster decoding; such a model translates, samples, scores and
        evaluates, but is neither trained, saved nor explained with gradients.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device, "Cronos.load", "device")
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize={quantize!r} is not one cronos knows; choose {', '.join(QUANTIZATIONS)} or None")
        if quantize is not None and device.type != "cpu":
            raise ValueError(f"int8 linear layers run on the CPU, not on {device}: load with device='cpu'")
        stored = read_model_file(path)  # untrusted: every check before a model is allocated
        model = cls(stored.config, stored.src_vocab, stored.tgt_vocab, stored.subwords)
        model.network.load_state_dict(stored.weights)
        if quantize is not None:
            quantize_linear_layers(model.network)
            model.quantization = quantize
        return model.to(device).eval()

    def _refuse_quantized(self, verb: str) -> None:
        if self.quantization is not None:
            raise ValueError(f"this model was loaded with quantize={self.quantization!r}, for inference: it cannot be "
                             f"{verb}; load the checkpoint without quantize for that")
