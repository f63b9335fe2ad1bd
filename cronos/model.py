"""``Cronos``: the high-level object.  It holds the network (``cronos.network.Seq2Seq``), the text
codec (tokenizer + vocabularies) and the config, and each of its methods is a short call into the
module that owns the work, handing it only what that work needs.

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
from dataclasses import dataclass
from typing import Sequence, overload

import torch
from torch import Tensor, nn

from .checkpoint import model_payload, save_checkpoint
from .config import Config, ConfigError, load_config
from .data import Batch, SubwordModels, TextCodec, TrainingData, Vocabulary, collate, load_split, load_training_data
from .device import resolve_device
from .ensemble import Ensemble
from .evaluation import evaluate_split
from .explain import Explanation, explain_decoded, explain_forced
from .model_file import read_model_file
from .network import Seq2Seq, TokenLoss
from .scoring import PairScore, score_examples
from .search import Beam, Sampling, decode
from .training import Trainer, TrainingHistory

__all__ = ["Cronos", "Translation"]


@dataclass(frozen=True)
class Translation:
    """One hypothesis of an n-best list."""

    text: str
    score: float     # what ranks it: log_prob / length ** evaluation.length_penalty (length: tokens + <eos>),
                     # the same in every search
    log_prob: float  # the sum of its tokens' log-probs (<eos> included when it ended with it)


class Cronos(nn.Module):
    """A sequence-to-sequence model with what it needs to read and write text, train, and be saved.

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
        self.config = config
        self.codec = TextCodec.for_data(config.data, src_vocab, tgt_vocab, subwords)
        self.network = Seq2Seq(config.model, len(src_vocab), len(tgt_vocab))
        self._training_data: TrainingData | None = None  # read by from_config, so fit does not read it again

    def _refuse_for_ensembles(self, what: str) -> None:
        if isinstance(self.network, Ensemble):
            raise TypeError(f"an ensemble decodes only; it is not {what}")

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor | None = None,
                label_smoothing: float = 0.0, need_weights: bool = True) -> tuple[Tensor, Tensor | None] | TokenLoss:
        """The network's forward (``Seq2Seq.forward``): ``logits [B, T, V]`` and attention
        ``[B, T, S]``, or with ``tgt_out`` the batch's loss summed over real target tokens and their count."""
        self._refuse_for_ensembles("a network to call (use translate, score, evaluate or explain)")
        return self.network(src, src_lengths, tgt_in, tgt_out, label_smoothing, need_weights)

    @property
    def device(self) -> torch.device:
        return self.network.device

    def prepare(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> Batch:
        """Tokenise, numericalise, measure and collate ``sources`` (and ``targets``) into a ``Batch``.

        An empty or whitespace-only source raises ``ValueError``; unknown tokens become ``<unk>``;
        texts longer than ``data.max_length`` tokens are cut to it (with a warning).
        """
        return collate(self.codec.encode(sources, targets)).to(self.device)

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
        self._refuse_for_ensembles("trained (train its members)")
        codec, data_config = self.codec, self.config.data
        data = self._training_data or load_training_data(data_config, (codec.src_vocab, codec.tgt_vocab),
                                                         codec.subwords)
        valid = load_split("valid", data_config, codec) if data_config.valid is not None else None
        return Trainer(self.network, codec, self.config, data, valid).run()

    def evaluate(self, data: str | Sequence[tuple[str, str]] = "test", beam_size: int | None = None) -> dict:
        """Loss, ppl, token_accuracy, sequence_accuracy, BLEU and chrF (with sacrebleu signatures).

        ``data``: a split name (``train``, ``valid``, ``test``), a TSV path, or (source, target) pairs.
        """
        split = load_split(data, self.config.data, self.codec)
        return evaluate_split(self.network, self.codec, split, self.config.evaluation, beam_size)

    def score(self, data: str | Sequence[tuple[str, str]], per_token: bool = False,
              batch_size: int | None = None) -> list[PairScore]:
        """Each pair's teacher-forced log-probability of the target given the source: ``log_prob``
        (sum, ``<eos>`` included), ``mean_log_prob``, ``tokens``, and ``token_log_probs`` with
        ``per_token``.  ``data``: (source, target) pairs, a split name or a TSV path, as for
        ``evaluate`` (texts longer than ``data.max_length`` tokens are cut to it, as the model
        reads them).  A pair's score does not depend on its batch mates or the batch size."""
        split = load_split(data, self.config.data, self.codec)
        return score_examples(self.network, split.examples, batch_size or self.config.evaluation.batch_size,
                              per_token)

    @overload
    def translate(self, sources: Sequence[str], beam_size: int | None = None, batch_size: int | None = None,
                  n_best: None = None) -> list[str]: ...

    @overload
    def translate(self, sources: Sequence[str], beam_size: int | None = None, batch_size: int | None = None,
                  n_best: int = ...) -> list[list[Translation]]: ...

    def translate(self, sources: Sequence[str], beam_size: int | None = None, batch_size: int | None = None,
                  n_best: int | None = None) -> list[str] | list[list[Translation]]:
        """Decode ``sources`` (greedy for ``beam_size=1``); an output never depends on its batch mates.

        With ``n_best=m`` (at most the beam size): per source, up to ``m`` ``Translation``s (text,
        ranking score, summed log-prob), best first; the first is the 1-best output.  Sources
        longer than ``data.max_length`` tokens are cut to it, with a warning that counts them.
        """
        options = self.config.evaluation
        found = decode(self.network, self.codec.encode(sources), Beam(beam_size or options.beam_size, n_best or 1),
                       options, batch_size)
        if n_best is None:
            return [self.codec.decode(hypotheses[0].tokens) for hypotheses in found]
        return [[Translation(self.codec.decode(h.tokens), h.score, h.log_prob) for h in hypotheses]
                for hypotheses in found]

    def sample(self, sources: Sequence[str], top_k: int | None = None, top_p: float | None = None,
               temperature: float = 1.0, seed: int = 0, batch_size: int | None = None) -> list[str]:
        """One sampled output per source (e.g. for back-translation): each token drawn from the
        model's distribution divided by ``temperature``, kept to the ``top_k`` most likely tokens or
        the nucleus of probability ``top_p`` (or neither).  Reproducible: an output depends on the
        seed and its source only, not on batch mates, position or batch size (so the same source
        twice samples the same; vary ``seed`` for more samples)."""
        found = decode(self.network, self.codec.encode(sources), Sampling(top_k, top_p, temperature, seed),
                       self.config.evaluation, batch_size)
        return [self.codec.decode(drawn.tokens) for drawn, in found]

    def explain(self, sources: Sequence[str], targets: Sequence[str] | None = None,
                beam_size: int | None = None, method: str = "attention", steps: int = 50) -> list[Explanation]:
        """Attention of each output token over the source tokens, trimmed to true lengths, and with a
        gradient ``method`` (``saliency``, ``input_x_gradient``, ``integrated_gradients`` with
        ``steps`` path points; needs Captum, the ``attributions`` extra) each source token's
        attribution to each output token's log-probability (``Explanation.attribution``).

        Without ``targets`` the outputs are decoded (``beam_size``: those of the returned
        hypothesis); with ``targets`` they are forced to those.  An example's explanation does not
        depend on its batch mates, and padding gets exactly nothing.
        """
        if method != "attention":
            self._refuse_for_ensembles("explained by gradients (explain each member; the ensemble explains "
                                       "with attention)")
        if targets is None:
            return explain_decoded(self.network, self.codec, sources, self.config.evaluation, beam_size, method, steps)
        return explain_forced(self.network, self.codec, sources, targets, self.config.evaluation.batch_size, method,
                              steps)

    def save(self, path: str | os.PathLike) -> Path:
        """Write config, vocabularies (SentencePiece models included) and weights to one file, atomically."""
        self._refuse_for_ensembles("saved (save its members; Cronos.ensemble takes their paths)")
        return save_checkpoint(path, model_payload(self.config, self.codec, self.network.state_dict()))

    @classmethod
    def ensemble(cls, members: Sequence["Cronos | str | os.PathLike"], device: str | torch.device = "auto") -> "Cronos":
        """Models (or checkpoint paths) decoding together: each step from the mean of their
        probabilities, in ``translate`` (greedy, beam, n-best), ``sample``, ``score``, ``evaluate`` and
        ``explain``.  The members must write text alike: the same target tokenizer and vocabulary (a
        ``ValueError`` names the member and what differs).  They may read the source differently
        (another tokenizer, SentencePiece model or vocabulary): each reads every source its own way.
        Search settings and length limits are the first member's (output lengths count its source
        tokens); ``explain`` shows the mean attention of the members that read the source as the
        first does.  An ensemble decodes only: it is not trained or saved."""
        models = [m if isinstance(m, Cronos) else cls.load(m, device) for m in members]
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(models)}")
        first = models[0]
        sides, reading_of = [first.codec], []  # the distinct source sides, the first member's first
        for number, model in enumerate(models, start=1):
            differs = [d for d in first.codec.differences(model.codec) if d.side == "target"]
            if differs:
                raise ValueError(f"ensemble member {number} does not write text as member 1 does: {differs[0]}")
            same = [r for r, side in enumerate(sides) if side.reads_source_as(model.codec)]
            if not same:
                sides.append(model.codec)
            reading_of.append(same[0] if same else len(sides) - 1)
        ensemble = cls.__new__(cls)
        nn.Module.__init__(ensemble)
        ensemble.config, ensemble._training_data = first.config, None
        ensemble.codec = first.codec.with_readings(sides[1:])
        ensemble.network = Ensemble([m.network for m in models], reading_of)
        return ensemble.to(first.device).eval()

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto") -> "Cronos":
        """Rebuild a model from a file written by ``save`` (or a run's best.pt/last.pt), in eval mode.

        ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda[:N]``
        or a ``torch.device``.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device, "Cronos.load", "device")
        stored = read_model_file(path)  # untrusted: every check before a model is allocated
        model = cls(stored.config, stored.src_vocab, stored.tgt_vocab, stored.subwords)
        model.network.load_state_dict(stored.weights)
        return model.to(device).eval()
