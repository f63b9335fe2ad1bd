"""``Cronos``: the high-level object, a ``Translator`` (``translator.py``: translate, sample, score,
evaluate, explain) that is also built from a config, trained, saved and loaded.  It holds the
network (``cronos.modules.network.Seq2Seq``), the text codec (tokenizer + vocabularies) and the config, and
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
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from .config import Config, load_config
from .data import SubwordModels, TrainingData, Vocabulary, load_split, load_training_data
from .decoding.ensemble import ensemble_of
from .device import resolve_device
from .modules.network import TokenLoss
from .storage.checkpoint import model_payload, read_model_file, save_checkpoint
from .training.start import start_from
from .training.trainer import Trainer, TrainingHistory
from .translator import Translation, Translator, build

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
        Translator.__init__(self, *build(config, src_vocab, tgt_vocab, subwords), config)
        self._training_data: TrainingData | None = None  # read by from_config, so fit does not read it again

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor | None = None,
                label_smoothing: float = 0.0, need_weights: bool = True) -> tuple[Tensor, Tensor | None] | TokenLoss:
        """The network's forward (``Seq2Seq.forward``): ``logits [B, T, V]`` and attention
        ``[B, T, S]``, or with ``tgt_out`` the batch's loss summed over real target tokens and their count."""
        return self.network(src, src_lengths, tgt_in, tgt_out, label_smoothing, need_weights)

    @classmethod
    def from_config(cls, config: Config | str | os.PathLike) -> "Cronos":
        """Read the training data, build the vocabularies, and build the model (seeded by ``config.seed``)."""
        config = config if isinstance(config, Config) else load_config(config)
        if config.training.init_from is not None:  # fine-tuning: the model's weights, its vocabulary kept or extended
            start = start_from(config)
            torch.manual_seed(config.seed)  # the rows of new tokens start as a fresh network's
            model = cls(config, *start.vocabularies, start.subwords)
            start.transplant(model.network)
            data = start.data
        else:
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
        codec, data_config = self.codec, self.config.data
        data = self._training_data or load_training_data(data_config, (codec.src_vocab, codec.tgt_vocab),
                                                         codec.subwords)
        valid = load_split("valid", data_config, codec) if data_config.valid is not None else None
        return Trainer(self.network, codec, self.config, data, valid).run()

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, vocabularies (SentencePiece models included) and weights to one file, atomically."""
        return save_checkpoint(path, model_payload(self.config, self.codec, self.network.state_dict()))

    @classmethod
    def ensemble(cls, members: Sequence["Translator | str | os.PathLike"],
                 device: str | torch.device = "auto") -> Translator:
        """Models (or checkpoint paths) decoding together: each step from the mean of their
        probabilities, in ``translate`` (greedy, beam, n-best), ``sample``, ``score``, ``evaluate`` and
        ``explain``.  The members must write text alike: the same target tokenizer and vocabulary (a
        ``ValueError`` names the member and what differs).  They may read the source differently
        (another tokenizer, SentencePiece model or vocabulary): each reads every source its own way.
        Search settings and length limits are the first member's (output lengths count its source
        tokens); ``explain`` shows the mean attention of the members that read the source as the
        first does.  An ensemble is a ``Translator``: it decodes, and is neither trained nor saved."""
        models = [m if isinstance(m, Translator) else Translator.load(m, device) for m in members]
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(models)}")
        network, codec = ensemble_of([m.network for m in models], [m.codec for m in models])
        return Translator(network.to(models[0].device).eval(), codec, models[0].config)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto",
             quantize: str | None = None) -> "Cronos | Translator":
        """Rebuild a model from a file written by ``save`` (or a run's best.pt/last.pt), in eval mode,
        to decode, train on or save.

        ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda[:N]``
        or a ``torch.device``.  A model for decoding only, int8 among them: ``Translator.load``
        (``quantize`` here is that, deprecated: it goes in cronos 0.3).
        """
        if quantize is not None:
            warnings.warn("Cronos.load(..., quantize=...) gives a Translator, which decodes only: call "
                          "Translator.load(path, device, quantize) (Cronos.load's quantize goes in cronos 0.3)",
                          DeprecationWarning, stacklevel=2)
            return Translator.load(path, device, quantize)
        device = device if isinstance(device, torch.device) else resolve_device(device, "Cronos.load", "device")
        stored = read_model_file(path)  # untrusted: every check before a model is allocated
        model = cls(stored.config, stored.src_vocab, stored.tgt_vocab, stored.subwords)
        model.network.load_state_dict(stored.weights)
        return model.to(device).eval()
