"""Running a network over examples for inference: in batches of similar source length, in eval
mode without autograd, with the results back in input order; and the teacher-forced forward that
scoring, evaluation and explanations share.

A batch holds its examples and nothing else.  A matrix product on the CPU picks its kernel by
its number of rows (one sentence alone is a 1-row product), and from 4 rows on a row's bits do not
depend on the rows beside it: the network's products widen 1-3 rows with zeros themselves
(``invariance``), so an example's results are the same alone and in any batch
(docs/batch_invariance.md), and a sentence alone decodes as one, not with filler copies of it.

    results = in_length_batches(network, examples, 64, lambda batch, positions: ...)  # input order
    for batch, positions in length_batched(network, examples, 64): ...                # batch by batch
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence, TypeVar

import torch
from torch import Tensor

from ..data import Batch, Example, collate, length_batches
from ..data.vocab import PAD_INDEX
from ..modules.network import Seq2Seq, evaluating

__all__ = ["in_length_batches", "length_batched", "one_batch", "teacher_forced", "target_log_probs", "example_log_probs",
           "NonFiniteOutput", "check_numbers"]

T = TypeVar("T")


def length_batched(network: Seq2Seq, examples: Sequence[Example], batch_size: int) -> Iterator[tuple[Batch, list[int]]]:
    """``(batch, positions)``: ``examples`` collated in batches of similar source length on the
    network's device (``positions``: the places in ``examples`` of the batch's rows), the network
    in eval mode without autograd while the batches are used."""
    with evaluating(network):
        for positions in length_batches(examples, batch_size):
            yield one_batch(network, [examples[i] for i in positions]), positions


def one_batch(network: Seq2Seq, examples: Sequence[Example]) -> Batch:
    """``examples`` collated in one batch on the network's device."""
    return collate(examples).to(network.device)


def in_length_batches(network: Seq2Seq, examples: Sequence[Example], batch_size: int,
                      run_batch: Callable[[Batch, list[int]], Sequence[T]]) -> list[T]:
    """``run_batch(batch, positions)`` over ``length_batched`` batches; its per-row results in input order."""
    results: list = [None] * len(examples)
    for batch, positions in length_batched(network, examples, batch_size):
        for position, result in zip(positions, run_batch(batch, positions)):
            results[position] = result
    return results


class NonFiniteOutput(ArithmeticError):
    """The network computed log-probabilities that are not numbers: its weights, or their products,
    do not fit float32 (a corrupted or diverged checkpoint).  Nothing it outputs then means anything."""

    def __init__(self) -> None:
        super().__init__("the model computed log-probabilities that are not numbers (NaN or infinite): its weights, "
                         "or their products, do not fit in float32 (a corrupted or diverged checkpoint?); nothing it "
                         "outputs would mean anything")


def check_numbers(log_probs: Tensor, infinite_too: bool) -> Tensor:
    """``log_probs`` as they are, or ``NonFiniteOutput`` when any is NaN (or infinite, with
    ``infinite_too``: a search's may hold -inf for what is out of reach, a target's may not)."""
    bad = ~torch.isfinite(log_probs) if infinite_too else torch.isnan(log_probs)
    if bool(bad.any()):
        raise NonFiniteOutput()
    return log_probs


def teacher_forced(network: Seq2Seq, batch: Batch, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
    """``logits [B, T, V]`` and attention ``[B, T, S]`` of ``batch``'s targets given its sources
    (and their ``readings``, for ensembles): the network's teacher-forced forward."""
    state = network.start_decoder(network.encode(batch.src, batch.src_lengths, *batch.readings))
    logits, attention, _ = network.run_decoder(batch.tgt_in, state, need_weights)
    return logits, attention


def target_log_probs(logits: Tensor, tgt_out: Tensor) -> Tensor:
    """``logits [B, T, V]``, ``tgt_out [B, T]`` -> each target token's log-prob ``[B, T]``, float64 on
    the CPU, 0 at padding."""
    chosen = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)
    return check_numbers(chosen.masked_fill(tgt_out == PAD_INDEX, 0.0), infinite_too=True).double().cpu()


def example_log_probs(chosen: Tensor, lengths: Tensor) -> list[float]:
    """Each row's summed log-prob over its ``lengths`` real tokens (``chosen [B, T]`` from
    ``target_log_probs``): a sum over exactly those, so it has the same bits in any batch."""
    return [float(row[:length].sum()) for row, length in zip(chosen, lengths.tolist())]
