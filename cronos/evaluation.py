"""Metrics: teacher-forced loss, perplexity and token accuracy over real target tokens; decoded
exact match; BLEU and chrF from sacrebleu (with their signatures), detokenised and, for BLEU,
also over the tokenizer's tokens."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF

from .data import EvalSplit, Example, collate
from .data.vocab import PAD_INDEX
from .loss import token_cross_entropy
from .search import Hypothesis, search

__all__ = ["teacher_forced_scores", "decode_examples", "evaluate_split", "METRICS"]

METRICS = ("loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf")


def _batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Positions of ``examples`` in batches of similar source length (little padding)."""
    order = sorted(range(len(examples)), key=lambda i: (examples[i].src_length, i))
    return [order[start: start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def teacher_forced_scores(model, examples: Sequence[Example], batch_size: int) -> dict[str, float]:
    """Per-token loss (no label smoothing), perplexity and token accuracy over real target tokens."""
    was_training = model.training
    model.eval()
    loss_sum, tokens, correct = 0.0, 0, 0
    for positions in _batches(examples, batch_size):
        batch = collate([examples[i] for i in positions]).to(model.device)
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in, need_attention=False)
        batch_loss, count = token_cross_entropy(logits, batch.tgt_out, 0.0)
        real = batch.tgt_out != PAD_INDEX
        loss_sum, tokens = loss_sum + float(batch_loss), tokens + count
        correct += int(((logits.argmax(-1) == batch.tgt_out) & real).sum())
    model.train(was_training)
    loss = loss_sum / max(tokens, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "token_accuracy": correct / max(tokens, 1)}


@torch.no_grad()
def decode_examples(model, examples: Sequence[Example], beam_size: int, length_penalty: float, batch_size: int,
                    need_attention: bool = False) -> list[Hypothesis]:
    """Search every example, in batches of similar length; results in input order."""
    was_training = model.training
    model.eval()
    results: list[Hypothesis | None] = [None] * len(examples)
    for positions in _batches(examples, batch_size):
        batch = collate([examples[i] for i in positions]).to(model.device)
        hypotheses = search(model, batch.src, batch.src_lengths, beam_size, length_penalty,
                            need_attention=need_attention)
        for position, hypothesis in zip(positions, hypotheses):
            results[position] = hypothesis
    model.train(was_training)
    return results


def evaluate_split(model, split: EvalSplit, beam_size: int | None = None) -> dict:
    """Every metric on ``split``, decoding with ``beam_size`` (default: ``evaluation.beam_size``)."""
    evaluation = model.config.evaluation
    beam_size = beam_size or evaluation.beam_size
    scores = teacher_forced_scores(model, split.examples, evaluation.batch_size)
    hypotheses = decode_examples(model, split.examples, beam_size, evaluation.length_penalty, evaluation.batch_size)
    outputs = [model.detokenize(h.tokens) for h in hypotheses]
    references = [model.tokenizer.detokenize(model.tokenizer.tokenize(t)) for t in split.targets]
    bleu, chrf, tokenized_bleu = BLEU(), CHRF(), BLEU(tokenize="none", force=True)
    # BLEU over the tokenizer's own tokens (lowercased when data.lowercase is on): what classic
    # NMT tutorials report, e.g. 28.11 for the Multi30k attention model
    tokenized_outputs = [" ".join(model.tgt_vocab.decode(h.tokens)) for h in hypotheses]
    tokenized_references = [" ".join(model.tokenizer.tokenize(t)) for t in split.targets]
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
