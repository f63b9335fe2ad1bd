"""``Translator``: a model that decodes (translates, samples, scores, evaluates, explains).  It holds
a network (one ``Seq2Seq``, or an ``Ensemble`` of several), the text codec and the config, and each
method is a short call into the module that owns the work.  ``Cronos`` is the one that is also
trained and saved; ``Cronos.ensemble`` returns a ``Translator``.

    translator = Translator.load("runs/x/best.pt", quantize="int8")   # for decoding only
    translator.translate(["Thu 26 Nov 2026"])                   # search.decode -> ['2026-11-26']
    translator.evaluate("test"), translator.explain([...])       # evaluation, explain

Its methods take texts, or the examples its codec made of them (``translator.codec.encode(texts)``):
a front end that has tokenised a text already (to measure it, or to find the empty lines of a file)
hands over the examples, and the text is not tokenised again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Generator, Mapping, Sequence, Union, overload

import torch

from .config import Config, ConfigError, DecodingConfig, with_changes
from .data import Batch, Example, SubwordModels, TextCodec, Vocabulary, collate, load_split
from .decoding.controls import Guide
from .decoding.ensemble import Ensemble
from .decoding.evaluation import evaluate_split
from .explain.explanation import Explanation, explain_decoded, explain_forced
from .device import resolve_device
from .modules.network import Seq2Seq
from .modules.quantized import QUANTIZATIONS, quantize_linear_layers
from .decoding.scoring import PairScore, score_examples
from .decoding.alignment import word_alignment
from .decoding.inference import one_batch
from .decoding.beam import Arrival, Joining
from .decoding.search import (Beam, DecoderStep, Hypothesis, Sampling, StepOutput, Stop, arrival_of, decode,
                              searching)
from .storage.checkpoint import read_model_file

__all__ = ["Translator", "Translation", "Inputs", "build"]

Inputs = Union[Sequence[str], Sequence[Example]]  # texts, or what ``TextCodec.encode`` made of them


def build(config: Config, src_vocab: Vocabulary, tgt_vocab: Vocabulary,
          subwords: SubwordModels | None = None) -> tuple[Seq2Seq, TextCodec]:
    """The network (freshly initialised) and the codec that a config and vocabularies describe."""
    if config.model.share_embeddings and src_vocab != tgt_vocab:
        raise ConfigError("config", "model.share_embeddings",
                          f"needs one vocabulary for both sides, and this data gives two ({len(src_vocab)} source, "
                          f"{len(tgt_vocab)} target tokens): use data.tokenizer: sentencepiece with "
                          "data.sentencepiece.joint: true, or share_embeddings: false")
    network = Seq2Seq(config.model, len(src_vocab), len(tgt_vocab))
    return network, TextCodec.for_data(config.data, src_vocab, tgt_vocab, subwords)


@dataclass(frozen=True)
class Translation:
    """One hypothesis of an n-best list."""

    text: str
    score: float     # what ranks it: log_prob over the length penalty (length: tokens + <eos>), plus the
                     # coverage penalty when weighted; the same in every search
    log_prob: float  # the sum of its tokens' log-probs (<eos> included when it ended with it), under the
                     # search's distribution: a token a control blocks takes no share, a forced one has log 1
    alignment: tuple[tuple[int, int], ...] | None = None  # (source word, output word) pairs, with alignments=True


class Translator:
    """A model that decodes: ``network`` (a ``Seq2Seq``, or an ``Ensemble`` of several), ``codec``
    (tokenizers and vocabularies), ``config`` (search settings in ``config.decoding``, data
    settings in ``config.data``).  An output never depends on its batch mates."""

    def __init__(self, network: Seq2Seq | Ensemble, codec: TextCodec, config: Config):
        self.network, self.codec, self.config = network, codec, config

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto",
             quantize: str | None = None) -> "Translator":
        """The model stored at ``path`` (``Cronos.save``, a run's best.pt/last.pt), for decoding, in eval mode.

        ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu``, ``cuda[:N]``
        or a ``torch.device``.  ``quantize="int8"`` (CPU only): every linear layer computes in int8
        (``modules/quantized.py``), for faster decoding; it translates, samples, scores, evaluates
        and explains with attention (int8 layers compute no gradients).  ``Cronos.load`` gives a
        model that is also trained and saved.
        """
        device = device if isinstance(device, torch.device) else resolve_device(device, "Translator.load", "device")
        if quantize is not None and quantize not in QUANTIZATIONS:
            raise ValueError(f"quantize={quantize!r} is not one cronos knows; choose {', '.join(QUANTIZATIONS)} or None")
        if quantize is not None and device.type != "cpu":
            raise ValueError(f"int8 linear layers run on the CPU, not on {device}: load with device='cpu'")
        stored = read_model_file(path)  # untrusted: every check before a model is allocated
        network, codec = build(stored.config, stored.src_vocab, stored.tgt_vocab, stored.subwords)
        network.load_state_dict(stored.weights)
        if quantize is not None:
            quantize_linear_layers(network)
        return cls(network.to(device).eval(), codec, stored.config)

    def _examples(self, sources: Inputs, tag: str | None = None) -> list[Example]:
        """``sources`` as examples: texts encoded (``codec.encode``, each starting with ``tag`` when
        given), examples taken as they are."""
        if len(sources) and all(isinstance(source, Example) for source in sources):
            if tag is not None:
                raise ValueError("give the tag to codec.encode(texts, tag=...) with examples, not to translate")
            return list(sources)
        return self.codec.encode(sources, tag=tag)

    @property
    def device(self) -> torch.device:
        return self.network.device

    def prepare(self, sources: Sequence[str], targets: Sequence[str] | None = None) -> Batch:
        """Tokenise, numericalise, measure and collate ``sources`` (and ``targets``) into a ``Batch``.

        An empty or whitespace-only source raises ``ValueError``; unknown tokens become ``<unk>``;
        texts longer than ``data.max_length`` tokens are cut to it (with a warning).
        """
        return collate(self.codec.encode(sources, targets)).to(self.device)

    def evaluate(self, data: str | Sequence[tuple[str, str]] = "test", beam_size: int | None = None,
                 tag: str | None = None) -> dict:
        """Loss, ppl, token_accuracy, sequence_accuracy, BLEU and chrF (with sacrebleu signatures).

        ``data``: a split name (``train``, ``valid``, ``test``), a TSV path, or (source, target) pairs;
        ``tag``: every source starts with this corpus tag (the direction of a model of several).
        """
        split = load_split(data, self.config.data, self.codec)
        split = replace(split, examples=self.codec.tagged(split.examples, tag))
        return evaluate_split(self.network, self.codec, split, self.config.decoding, beam_size)

    def score(self, data: str | Sequence[tuple[str, str]] | Sequence[Example], per_token: bool = False,
              batch_size: int | None = None) -> list[PairScore]:
        """Each pair's teacher-forced log-probability of the target given the source: ``log_prob``
        (sum, ``<eos>`` included), ``mean_log_prob``, ``tokens``, and ``token_log_probs`` with
        ``per_token``.  ``data``: (source, target) pairs, a split name or a TSV path, as for
        ``evaluate`` (texts longer than ``data.max_length`` tokens are cut to it, as the model
        reads them), or examples with targets (``codec.encode(sources, targets)``).  A pair's
        score does not depend on its batch mates or the batch size."""
        if len(data) and not isinstance(data, str) and all(isinstance(pair, Example) for pair in data):
            if any(example.tgt is None for example in data):
                raise ValueError("scoring needs a target for every source: encode them with codec.encode(sources, "
                                 "targets)")
            examples = list(data)
        else:
            examples = load_split(data, self.config.data, self.codec).examples
        return score_examples(self.network, examples, batch_size or self.config.decoding.batch_size, per_token)

    @overload
    def translate(self, sources: Inputs, beam_size: int | None = None, batch_size: int | None = None,
                  n_best: None = None, stop: Stop | None = None, tag: str | None = None,
                  prefixes: Sequence[str | None] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None,
                  decoding: Mapping[str, Any] | None = None, alignments: bool = False) -> list[str]: ...

    @overload
    def translate(self, sources: Inputs, beam_size: int | None = None, batch_size: int | None = None,
                  n_best: int = ..., stop: Stop | None = None, tag: str | None = None,
                  prefixes: Sequence[str | None] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None,
                  decoding: Mapping[str, Any] | None = None, alignments: bool = False) -> list[list[Translation]]: ...

    def translate(self, sources: Inputs, beam_size: int | None = None, batch_size: int | None = None,
                  n_best: int | None = None, stop: Stop | None = None, tag: str | None = None,
                  prefixes: Sequence[str | None] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None,
                  decoding: Mapping[str, Any] | None = None,
                  alignments: bool = False) -> list[str] | list[list[Translation]]:
        """Decode ``sources`` (greedy for ``beam_size=1``); an output never depends on its batch mates.

        With ``n_best=m`` (at most the beam size): per source, up to ``m`` ``Translation``s (text,
        ranking score, summed log-prob), best first; the first is the 1-best output.  Sources
        longer than ``data.max_length`` tokens are cut to it, with a warning that counts them.
        ``stop``: asked before every search step; when it returns True, ``search.SearchStopped`` ends
        the call (a server that no one waits for any more).  ``tag``: the corpus tag every source
        starts with (``<2fr>`` for a model of several directions, ``data.train``'s tags).
        ``prefixes``: per source, the text its output must start with (None: none); the output
        holds it, and its length limit counts from it.  ``constraints``: per source, the phrases its
        output must contain (``[]``: none), found by beam search with dynamic beam allocation; an
        output that cannot hold them all within its length limit comes after those that do.
        ``decoding``: changes to the config's ``decoding`` section for this call, such as
        ``{"no_repeat_ngram_size": 3, "min_length": 2}``.  ``alignments=True``: ``Translation``s
        (as with ``n_best``, one each by default) with their word alignments
        (``decoding.alignment``).
        """
        options = self._decoding(decoding)
        examples = self._examples(sources, tag)
        found = decode(self.network, examples, Beam(beam_size or options.beam_size, n_best or 1), options, batch_size,
                       need_weights=alignments, stop=stop, guides=self._guides(len(examples), prefixes, constraints))
        if n_best is None and not alignments:
            return [self.codec.to_text(hypotheses[0].tokens) for hypotheses in found]
        return self._translations(examples, found, alignments)

    def searching(self, examples: Sequence[Example], beam_size: int | None = None, n_best: int = 1,
                  stop: Stop | None = None, prefixes: Sequence[str | None] | None = None,
                  constraints: Sequence[Sequence[str]] | None = None, decoding: Mapping[str, Any] | None = None,
                  alignments: bool = False) -> Generator[DecoderStep, StepOutput, list[list[Translation]]]:
        """``translate(examples, n_best=...)`` as one batch's search, the decoder steps it asks for
        (``decoding/in_flight.py`` runs them with other searches'), then its ``Translation``s: a
        server's sentences joining a search in flight.  The network must be in ``evaluating``."""
        options = self._decoding(decoding)
        guides = self._guides(len(examples), prefixes, constraints)
        found = yield from searching(self.network, one_batch(self.network, examples),
                                     Beam(beam_size or options.beam_size, n_best), options, alignments, stop, guides)
        return self._translations(examples, found, alignments)

    def arrival(self, examples: Sequence[Example], answer: Callable[[int, list[Translation]], None],
                failed: Callable[[Exception], None], stop: Stop | None = None, beam_size: int | None = None,
                n_best: int = 1, prefixes: Sequence[str | None] | None = None,
                decoding: Mapping[str, Any] | None = None,
                alignments: bool = False) -> tuple[Arrival, Callable[[Joining], Generator]] | None:
        """``searching`` as one batch that joins a beam search in flight (``InFlight.arrive``): the
        batch, each sentence answered by ``answer(index, translations)`` the step it ends (or all
        told ``failed(error)``), and how to start the search in flight of these settings.  None
        for greedy search, whose batches decode as searches of their own (``searching``)."""
        options = self._decoding(decoding)
        beam = Beam(beam_size or options.beam_size, n_best)
        if beam.size == 1:
            return None

        def translated(index: int, hypotheses: list[Hypothesis]) -> None:
            answer(index, self._translations([examples[index]], [hypotheses], alignments)[0])
        arrival = arrival_of(one_batch(self.network, examples), options, self._guides(len(examples), prefixes),
                             translated, stop, failed)
        return arrival, lambda joining: beam.in_flight(self.network, joining, options, alignments)

    def _translations(self, examples: Sequence[Example], found: list[list[Hypothesis]],
                      alignments: bool) -> list[list[Translation]]:
        return [[Translation(self.codec.to_text(h.tokens), h.score, h.log_prob,
                             self._alignment(example, h) if alignments else None) for h in hypotheses]
                for example, hypotheses in zip(examples, found)]

    def _alignment(self, example: Example, hypothesis: Hypothesis) -> tuple[tuple[int, int], ...]:
        return tuple(word_alignment(hypothesis.attention, self.codec.source_words(example.src),
                                    self.codec.output_words(hypothesis.tokens)))

    def _decoding(self, changes: Mapping[str, Any] | None) -> DecodingConfig:
        """The config's decoding section with ``changes`` (checked as a config's keys are)."""
        return self.config.decoding if not changes else with_changes(self.config.decoding, changes, "decoding",
                                                                          "decoding")

    def _guides(self, count: int, prefixes: Sequence[str | None] | None,
                constraints: Sequence[Sequence[str]] | None = None) -> list[Guide] | None:
        """One ``Guide`` per source from its prefix text (None: none) and constraint phrases."""
        if prefixes is None and constraints is None:
            return None
        for name, given in (("prefixes", prefixes), ("constraint lists", constraints)):
            if given is not None and (isinstance(given, str) or len(given) != count):
                raise ValueError(f"give one of the {name} per source (None or [] for none): {count} sources, "
                                 f"{'a string' if isinstance(given, str) else len(given)} {name}")
        if constraints is not None and any(isinstance(phrases, str) for phrases in constraints):
            raise ValueError("give each source's constraints as a list of phrases, such as [\"der Hund\"], not a "
                             "string")
        return [Guide(() if prefix is None else self.codec.output_ids(prefix, f"prefix {number}"),
                      tuple(self.codec.output_ids(phrase, f"constraint {phrase_number} of source {number}")
                            for phrase_number, phrase in enumerate(phrases, 1)))
                for number, (prefix, phrases) in enumerate(zip(prefixes or [None] * count,
                                                               constraints or [()] * count), 1)]

    def sample(self, sources: Inputs, top_k: int | None = None, top_p: float | None = None,
               temperature: float = 1.0, seed: int = 0, batch_size: int | None = None,
               stop: Stop | None = None, tag: str | None = None, prefixes: Sequence[str | None] | None = None,
               decoding: Mapping[str, Any] | None = None) -> list[str]:
        """One sampled output per source (e.g. for back-translation): each token drawn from the
        model's distribution divided by ``temperature``, kept to the ``top_k`` most likely tokens or
        the nucleus of probability ``top_p`` (or neither).  Reproducible: an output depends on the
        seed and its source only, not on batch mates, position or batch size (so the same source
        twice samples the same; vary ``seed`` for more samples).  ``stop``, ``tag``, ``prefixes``,
        ``decoding``: as for ``translate``."""
        examples = self._examples(sources, tag)
        found = decode(self.network, examples, Sampling(top_k, top_p, temperature, seed), self._decoding(decoding),
                       batch_size, stop=stop, guides=self._guides(len(examples), prefixes))
        return [self.codec.to_text(drawn.tokens) for drawn, in found]

    def sampling(self, examples: Sequence[Example], top_k: int | None = None, top_p: float | None = None,
                 temperature: float = 1.0, seed: int = 0, stop: Stop | None = None,
                 prefixes: Sequence[str | None] | None = None,
                 decoding: Mapping[str, Any] | None = None) -> Generator[DecoderStep, StepOutput, list[str]]:
        """``sample(examples)`` as one batch's steps (as ``searching`` is ``translate``'s)."""
        found = yield from searching(self.network, one_batch(self.network, examples),
                                     Sampling(top_k, top_p, temperature, seed), self._decoding(decoding),
                                     stop=stop, guides=self._guides(len(examples), prefixes))
        return [self.codec.to_text(drawn.tokens) for drawn, in found]

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
        if method != "attention" and not isinstance(self.network, Seq2Seq):
            raise TypeError("an ensemble decodes only; it is not explained by gradients (explain each member; the "
                            "ensemble explains with attention)")
        if targets is None:
            return explain_decoded(self.network, self.codec, sources, self.config.decoding, beam_size, method, steps)
        return explain_forced(self.network, self.codec, sources, targets, self.config.decoding.batch_size, method,
                              steps)
