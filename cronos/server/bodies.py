"""What the server's endpoints take and give: pydantic models, which validate the bodies and
describe them at ``/openapi.json``.  A body becomes a job (``jobs.py``) with ``job()``.

Emptiness is not judged here: a text is empty when the model's codec finds nothing to read in it
(``data.preprocess.is_empty``), which the job learns when it encodes the text, once.
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..data.preprocess import unicode_problem
from .jobs import Sample, Score, Search

__all__ = ["Strict", "TranslateRequest", "ScoreRequest", "SamplingSettings", "DecodingControls", "ScoredTranslation", "PairLogProb",
           "TranslateResponse", "ScoreResponse", "ErrorResponse", "Health"]


class Strict(BaseModel):
    """A JSON object with these fields only, each of its own type (no "4" for 4, no true for 1)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _texts(value, name: str):
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("expected a string or a non-empty list of strings")
    for i, text in enumerate(texts):
        problem = unicode_problem(text)
        if problem is not None:
            raise ValueError(f"{name} {i} {problem}")
    return value


class SamplingSettings(Strict):
    """Sample instead of searching: each token drawn from the model's distribution divided by
    ``temperature``, from the ``top_k`` most likely tokens or the nucleus of probability ``top_p``
    (or from all); reproducible for a ``seed`` (a text samples the same whatever its batch)."""

    top_k: int | None = Field(None, gt=0, description="draw from the k most likely tokens")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="draw from the most likely tokens whose probability reaches p")
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False, description="above 1 flatter, below 1 sharper")
    seed: int = Field(0, description="another seed, another sample")

    @model_validator(mode="after")
    def _one_cut(self) -> "SamplingSettings":
        if self.top_k is not None and self.top_p is not None:
            raise ValueError("sample with top_k or with top_p, not both")
        return self


def _flat(constraints: list) -> bool:
    """Whether ``constraints`` is one text's list of phrases (not a list of such lists)."""
    return not constraints or isinstance(constraints[0], str)


class DecodingControls(Strict):
    """Changes to the model's decoding settings for this request (docs/decoding.md)."""

    min_length: int | None = Field(None, ge=0, description="no translation ends before this many tokens")
    no_repeat_ngram_size: int | None = Field(None, ge=0, description="no translation repeats an n-gram of this size")
    length_penalty: float | None = Field(None, ge=0, allow_inf_nan=False, description="alpha of the length penalty")
    length_penalty_form: Literal["power", "gnmt", "none"] | None = Field(
        None, description="power: length ** alpha; gnmt: ((5 + length) / 6) ** alpha; none")
    coverage_penalty: float | None = Field(None, ge=0, allow_inf_nan=False,
                                           description="weight of the GNMT coverage penalty")

    def changes(self) -> tuple[tuple[str, object], ...]:
        """The settings sent, as a hashable value (requests with equal ones decode together)."""
        return tuple((name, value) for name, value in self.model_dump().items() if value is not None)


class TranslateRequest(Strict):
    """Texts to translate, and how (the model's beam size when not given)."""

    text: Union[str, list[str]] = Field(description="a text, or a list of texts (one answer each, in order)")
    beam_size: int | None = Field(None, gt=0, description="beams per text; 1 is greedy search")
    n_best: int | None = Field(None, gt=0, description="answer the n best hypotheses of each text (n <= beam size)")
    scores: bool = Field(False, description="answer each translation with its score and log-probability")
    sampling: SamplingSettings | None = Field(None, description="sample instead of searching (no beam_size, n_best, scores)")
    tag: str | None = Field(None, description="the corpus tag every text starts with, such as <2fr>, for a model "
                                              "trained on several corpora with tags")
    prefix: Union[str, list[Union[str, None]], None] = Field(
        None, description="the text a translation must start with; with a list of texts, a list of one per text "
                          "(null: none)")
    constraints: Union[list[str], list[list[str]], None] = Field(
        None, description="phrases a translation must hold; with a list of texts, a list of them per text")
    decoding: DecodingControls | None = Field(None, description="changes to the model's decoding settings")
    alignments: bool = Field(False, description="answer each translation with its word alignment: source-output "
                                                "word pairs i-j, from the attention")
    stream: bool = Field(False, description="send each translation as soon as it is found, as server-sent events "
                                            "(event: translation, data: {index, translation}), then event: done")

    @field_validator("text", mode="before")
    @classmethod
    def _check_text(cls, value):
        return _texts(value, "text")

    @field_validator("prefix", mode="before")
    @classmethod
    def _check_prefix(cls, value):
        for i, text in enumerate([value] if isinstance(value, str) else value or []):
            problem = None if text is None or not isinstance(text, str) else unicode_problem(text)
            if problem is not None:
                raise ValueError(f"prefix {i} {problem}")
        return value

    @field_validator("constraints", mode="before")
    @classmethod
    def _check_constraints(cls, value):
        for phrases in value if isinstance(value, list) and value and isinstance(value[0], list) else [value or []]:
            for phrase in phrases if isinstance(phrases, list) else []:
                problem = unicode_problem(phrase) if isinstance(phrase, str) else None
                if problem is not None:
                    raise ValueError(f"a constraint {problem}")
        return value

    @model_validator(mode="after")
    def _search_or_sampling(self) -> "TranslateRequest":
        if self.sampling is not None and (self.beam_size or self.n_best or self.scores or self.alignments):
            raise ValueError("sampling: send sampling, or beam_size / n_best / scores / alignments, not both")
        if self.prefix is not None and (isinstance(self.prefix, str) != isinstance(self.text, str)
                                        or len(self.prefixes()) != len(self.texts())):
            raise ValueError("prefix: send one prefix with one text, or a list of one per text (null for none)")
        if self.constraints is not None and (isinstance(self.text, str) != _flat(self.constraints)
                                             or len(self.constraint_lists()) != len(self.texts())):
            raise ValueError("constraints: send a list of phrases with one text, or a list of such lists, one per "
                             "text ([] for none)")
        if self.constraints is not None and self.sampling is not None:
            raise ValueError("constraints: constraints are met by beam search, and samples are drawn; send one")
        return self

    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else self.text

    def prefixes(self) -> list[str | None]:
        """One per text (None: none)."""
        return [None] * len(self.texts()) if self.prefix is None else \
            [self.prefix] if isinstance(self.prefix, str) else self.prefix

    def constraint_lists(self) -> list[list[str]]:
        """One list of phrases per text."""
        if self.constraints is None:
            return [[] for _ in self.texts()]
        return [self.constraints] if _flat(self.constraints) else self.constraints

    def items(self) -> list[tuple[int, tuple[str, str | None, list[str]]]]:
        """What the batcher decodes: each text with its prefix and constraints, by position."""
        return list(enumerate(zip(self.texts(), self.prefixes(), self.constraint_lists())))

    def job(self, default_beam_size: int, max_beam: int) -> Search | Sample:
        """How to decode these texts; ``ValueError`` when the beam or the n-best list is larger than
        ``max_beam`` (the server's ``--max-beam``) or n_best asks for more than the beam holds."""
        if self.sampling is not None:
            return Sample(self.sampling.top_k, self.sampling.top_p, self.sampling.temperature, self.sampling.seed,
                          self.tag, self._changes())
        beam_size = self.beam_size or default_beam_size
        for name, size in (("n_best", self.n_best), ("beam_size", beam_size)):
            if size is not None and size > max_beam:
                raise ValueError(f"{name}: {size}; this server searches with at most {max_beam} beams (--max-beam)")
        if self.n_best is not None and self.n_best > beam_size:
            raise ValueError(f"n_best: {self.n_best} hypotheses need a beam_size of at least {self.n_best} "
                             f"(it is {beam_size})")
        return Search(beam_size, self.n_best, self.scores, self.tag, self._changes(), self.alignments)

    def _changes(self) -> tuple[tuple[str, object], ...]:
        return () if self.decoding is None else self.decoding.changes()


class ScoreRequest(Strict):
    """Pairs to score: the log-probability of each target given its source (teacher-forced)."""

    source: Union[str, list[str]] = Field(description="a source text, or a list of them")
    target: Union[str, list[str]] = Field(description="its target text, or a list of them (one per source)")
    per_token: bool = Field(False, description="answer each target token's log-probability too")
    tag: str | None = Field(None, description="the corpus tag every source starts with, as for /translate")

    @field_validator("source", "target", mode="before")
    @classmethod
    def _check_texts(cls, value, info):
        return _texts(value, info.field_name)

    @model_validator(mode="after")
    def _paired(self) -> "ScoreRequest":
        if isinstance(self.source, str) != isinstance(self.target, str) or len(self.sources()) != len(self.targets()):
            raise ValueError("source and target: send one of each, or two lists of the same length")
        return self

    def sources(self) -> list[str]:
        return [self.source] if isinstance(self.source, str) else self.source

    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else self.target

    def job(self) -> Score:
        return Score(self.per_token, self.tag)


class ScoredTranslation(BaseModel):
    text: str
    score: float | None = Field(None, description="what ranks hypotheses: log_prob over the length penalty (with "
                                                  "scores or n_best)")
    log_prob: float | None = Field(None, description="the sum of its tokens' log-probabilities (with scores or n_best)")
    alignment: str | None = Field(None, description="source-output word pairs i-j (with alignments)")


class TranslateResponse(BaseModel):
    translations: Union[str, ScoredTranslation, list[str], list[ScoredTranslation], list[list[ScoredTranslation]]] = Field(
        description="per text: a string; a hypothesis with scores; a list of them with n_best. One text sent "
                    "(not in a list): its answer alone")


class PairLogProb(BaseModel):
    log_prob: float = Field(description="the target's log-probability given the source (end of text included)")
    mean_log_prob: float = Field(description="per token")
    tokens: int = Field(description="target tokens, with the end of text")
    token_log_probs: list[float] | None = Field(None, description="each token's, with per_token")


class ScoreResponse(BaseModel):
    scores: Union[PairLogProb, list[PairLogProb]]


class ErrorResponse(BaseModel):
    error: str = Field(description="what was wrong, and what to send instead")


class Health(BaseModel):
    status: str
    waiting: int = Field(description="sentences accepted and waiting to be decoded")
