"""The jobs a request becomes on the batcher's worker: how each of its items is encoded (once: the
example is what is measured and decoded) and how a batch of them is decoded.  Requests batch
together when their jobs are equal.

    prepared, tokens = job.prepare(codec, item)  # item: (position, (text, prefix, constraints)) or a pair's
    search = job.steps(translator, prepared_items, abandoned)  # the decoder steps it asks for, then the results

A job's ``steps`` are a search of ``decoding/search.py`` (``Translator.searching``): the server's
batcher runs them in flight with other jobs' (``decoding/in_flight.py``), and its results are the
generator's return value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator

from ..data import Example, TextCodec
from ..data.preprocess import EmptyText
from ..decoding.beam import Arrival, Joining
from ..decoding.search import DecoderStep, StepOutput, Stop
from ..decoding.alignment import moses
from ..translator import Translation, Translator

__all__ = ["Item", "UnreadableText", "Search", "Sample", "Score"]

Item = tuple[int, object]  # an item's position in its request (for messages), and its text or pair


class UnreadableText(ValueError):
    """A text the model cannot read (nothing left once tokenised): that request's 422."""


def _encode(codec: TextCodec, tag: str | None, position: int, source: str, target: str | None = None) -> Example:
    """The item's example (its source starting with ``tag``); ``UnreadableText`` naming the item
    when the codec finds nothing to read."""
    try:
        return codec.encode([source], None if target is None else [target], tag=tag)[0]
    except EmptyText as error:
        field = "text" if target is None else error.side
        raise UnreadableText(f"{field} {position} is empty (no text, or only white space); send the text itself") \
            from None
    except ValueError as error:
        raise UnreadableText(f"text {position}: {error}") from None


class _TranslatesTexts:
    """A job over texts to translate, each with its prefix (or None): an item's tokens are its
    source's; a prefix the model cannot write fails its request."""

    tag: str | None  # the corpus tag every source starts with (a dataclass field of each job)
    controls: tuple[tuple[str, object], ...]  # changes to the decoding settings (``DecodingControls``)

    def prepare(self, codec: TextCodec, item: Item) -> tuple[tuple[Example, str | None, list[str]], int]:
        position, (text, prefix, phrases) = item
        example = _encode(codec, self.tag, position, text)
        try:
            if prefix is not None:
                codec.output_ids(prefix, f"prefix {position}")
            for number, phrase in enumerate(phrases):
                codec.output_ids(phrase, f"constraint {number} of text {position}")
        except ValueError as error:
            raise UnreadableText(str(error)) from None
        return (example, prefix, phrases), example.src_length

    @staticmethod
    def _split(items: list[tuple[Example, str | None, list[str]]]) -> tuple[list[Example], list | None, list | None]:
        """The items' examples, prefixes and constraints (None where no item has any)."""
        prefixes, constraints = [item[1] for item in items], [item[2] for item in items]
        return ([item[0] for item in items], prefixes if any(p is not None for p in prefixes) else None,
                constraints if any(constraints) else None)


@dataclass(frozen=True)
class Search(_TranslatesTexts):
    """Beam (or greedy) search; a result is a string, a ``ScoredTranslation`` dict with ``scores``,
    a list of them with ``n_best``."""

    beam_size: int
    n_best: int | None
    scores: bool
    tag: str | None = None
    controls: tuple[tuple[str, object], ...] = ()
    alignments: bool = False

    def steps(self, translator: Translator, items: list[tuple[Example, str | None, list[str]]],
              abandoned: Stop) -> Generator[DecoderStep, StepOutput, list]:
        examples, prefixes, constraints = self._split(items)
        found = yield from translator.searching(examples, self.beam_size, n_best=self.n_best or 1, stop=abandoned,
                                                prefixes=prefixes, constraints=constraints,
                                                decoding=dict(self.controls), alignments=self.alignments)
        return [self._result(hypotheses) for hypotheses in found]

    def arrival(self, translator: Translator, items: list[tuple[Example, str | None, list[str]]], abandoned: Stop,
                answer: Callable[[int, object], None],
                failed: Callable[[Exception], None]) -> tuple[Arrival, Callable[[Joining], Generator]] | None:
        """The items as a batch that joins the beam search in flight of this job's settings, each
        answered the step it ends (``Translator.arrival``); None where they decode as a search of
        their own (``steps``): greedy search, constraints."""
        examples, prefixes, constraints = self._split(items)
        if constraints is not None:
            return None
        return translator.arrival(examples, lambda index, found: answer(index, self._result(found)), failed, abandoned,
                                  self.beam_size, self.n_best or 1, prefixes, dict(self.controls), self.alignments)

    def _result(self, hypotheses: list[Translation]):
        """An item's result: its best translation's text, or as ``ScoredTranslation`` dicts."""
        answers = [self._answer(t, scored=self.scores or self.n_best is not None) for t in hypotheses]
        if self.n_best is not None:
            return answers
        return answers[0] if self.scores or self.alignments else answers[0]["text"]

    def _answer(self, translation: Translation, scored: bool) -> dict:
        """A hypothesis as the response shows it: its text, scores when asked, its alignment when asked."""
        answer = {"text": translation.text}
        if scored:
            answer.update(score=translation.score, log_prob=translation.log_prob)
        if self.alignments:
            answer["alignment"] = moses(translation.alignment)
        return answer


@dataclass(frozen=True)
class Sample(_TranslatesTexts):
    """Sampling; a result is a string."""

    top_k: int | None
    top_p: float | None
    temperature: float
    seed: int
    tag: str | None = None
    controls: tuple[tuple[str, object], ...] = ()

    def steps(self, translator: Translator, items: list[tuple[Example, str | None, list[str]]],
              abandoned: Stop) -> Generator[DecoderStep, StepOutput, list[str]]:
        examples, prefixes, _ = self._split(items)  # constraints are refused with sampling (bodies.py)
        return (yield from translator.sampling(examples, self.top_k, self.top_p, self.temperature, self.seed,
                                               stop=abandoned, prefixes=prefixes, decoding=dict(self.controls)))


@dataclass(frozen=True)
class Score:
    """Teacher-forced scoring of (source, target) pairs; a result is a ``PairLogProb`` dict."""

    per_token: bool
    tag: str | None = None

    def prepare(self, codec: TextCodec, item: Item) -> tuple[Example, int]:
        position, (source, target) = item
        example = _encode(codec, self.tag, position, source, target)
        return example, example.src_length + example.tgt_length

    def steps(self, translator: Translator, examples: list[Example],
              abandoned: Stop) -> Generator[DecoderStep, StepOutput, list[dict]]:
        """One teacher-forced pass, no decoder steps: nothing to stop part way (``abandoned`` is not asked)."""
        yield from ()
        found = translator.score(examples, per_token=self.per_token, batch_size=len(examples))
        return [{"log_prob": s.log_prob, "mean_log_prob": s.mean_log_prob, "tokens": s.tokens,
                 **({"token_log_probs": s.token_log_probs} if self.per_token else {})} for s in found]
