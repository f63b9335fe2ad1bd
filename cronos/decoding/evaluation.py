"""Metrics: teacher-forced loss, perplexity and token accuracy over real target tokens; decoded
exact match; BLEU and chrF from sacrebleu (with their signatures), detokenised and, for BLEU,
also over the tokenizer's tokens.

    scores = evaluate_split(network, codec, split, config.decoding, beam_size=5)
"""
from __future__ import annotations

import math
from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from ..config import DecodingConfig
from ..data import EvalSplit, Example, TextCodec
from ..data.vocab import PAD_INDEX
from .inference import example_log_probs, length_batched, target_log_probs, teacher_forced
from ..modules.network import Seq2Seq
from .search import Beam, decode

__all__ = ["teacher_forced_scores", "evaluate_split", "METRICS"]

METRICS = ("loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf")


def teacher_forced_scores(network: Seq2Seq, examples: Sequence[Example], batch_size: int) -> dict[str, float]:
    """Per-token loss (no label smoothing), perplexity and token accuracy over real target tokens.

    The loss is the exactly rounded sum (``math.fsum``) of each example's own, so it does not
    depend on how the examples were batched."""
    log_probs: list[float] = []
    tokens, correct = 0, 0
    for batch, _ in length_batched(network, examples, batch_size):
        logits, _ = teacher_forced(network, batch, need_weights=False)
        targets = batch.tgt_out
        log_probs += example_log_probs(target_log_probs(logits, targets), batch.tgt_lengths)
        real = targets != PAD_INDEX
        tokens += int(real.sum())
        correct += int(((logits.argmax(-1) == targets) & real).sum())
    loss = -math.fsum(log_probs) / max(tokens, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "token_accuracy": correct / max(tokens, 1)}


def evaluate_split(network: Seq2Seq, codec: TextCodec, split: EvalSplit, options: DecodingConfig,
                   beam_size: int | None = None) -> dict:
    """Every metric on ``split``, decoding with ``beam_size`` (default: ``options.beam_size``)."""
    beam_size = beam_size or options.beam_size
    scores = teacher_forced_scores(network, split.examples, options.batch_size)
    hypotheses = [found[0] for found in decode(network, split.examples, Beam(beam_size), options)]
    outputs = [codec.to_text(h.tokens) for h in hypotheses]
    references = [codec.as_output(t) for t in split.targets]
    bleu, chrf, tokenized_bleu = BLEU(), CHRF(), BLEU(tokenize="none", force=True)
    # BLEU over the tokenizer's own tokens (lowercased when data.lowercase is on): what classic
    # NMT tutorials report, e.g. 28.11 for the Multi30k attention model
    tokenized_outputs = [" ".join(codec.tgt_vocab.to_tokens(h.tokens)) for h in hypotheses]
    tokenized_references = [" ".join(codec.target_tokens(t)) for t in split.targets]
    scores.update(
        bleu_tokenized=tokenized_bleu.corpus_score(tokenized_outputs, [tokenized_references]).score,
        bleu_tokenized_signature=str(tokenized_bleu.get_signature()),
        sequence_accuracy=sum(o == r for o, r in zip(outputs, references)) / max(len(outputs), 1),
        # BLEU and chrF against the raw references: sacrebleu's standard, detokenised scores
        bleu=bleu.corpus_score(outputs, [list(split.targets)]).score,
        chrf=chrf.corpus_score(outputs, [list(split.targets)]).score,
        bleu_signature=str(bleu.get_signature()), chrf_signature=str(chrf.get_signature()),
        beam_size=beam_size, examples=len(outputs),
    )
    return scores
