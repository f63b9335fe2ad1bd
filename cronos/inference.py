"""Running a network over examples for inference: in batches of similar source length, in eval
mode without autograd, with the results back in input order; and the teacher-forced forward that
scoring, evaluation and explanations share.

    results = in_length_batches(network, examples, 64, lambda batch, positions: ...)  # input order
    for batch, positions in length_batched(network, examples, 64): ...                # batch by batch
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence, TypeVar

from torch import Tensor

from .data import Batch, Example, collate, length_batches
from .network import Seq2Seq, evaluating

__all__ = ["in_length_batches", "length_batched", "teacher_forced"]

T = TypeVar("T")


def length_batched(network: Seq2Seq, examples: Sequence[Example], batch_size: int) -> Iterator[tuple[Batch, list[int]]]:
    """``(batch, positions)``: ``examples`` collated in batches of similar source length on the
    network's device (``positions``: the batch's examples' places in ``examples``), the network in
    eval mode without autograd while the batches are used."""
    with evaluating(network):
        for positions in length_batches(examples, batch_size):
            yield collate([examples[i] for i in positions]).to(network.device), positions


def in_length_batches(network: Seq2Seq, examples: Sequence[Example], batch_size: int,
                      run_batch: Callable[[Batch, list[int]], Sequence[T]]) -> list[T]:
    """``run_batch(batch, positions)`` over ``length_batched`` batches; its per-example results in
    input order."""
    results: list = [None] * len(examples)
    for batch, positions in length_batched(network, examples, batch_size):
        for position, result in zip(positions, run_batch(batch, positions)):
            results[position] = result
    return results


def teacher_forced(network: Seq2Seq, batch: Batch, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
    """``logits [B, T, V]`` and attention ``[B, T, S]`` of ``batch``'s targets given its sources
    (and their ``readings``, for ensembles): the network's teacher-forced forward."""
    state = network.start_decoder(network.encode(batch.src, batch.src_lengths, *batch.readings))
    logits, attention, _ = network.run_decoder(batch.tgt_in, state, need_weights)
    return logits, attention
