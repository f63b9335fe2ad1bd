"""Checkpoint averaging: the element-wise mean of the weights of compatible checkpoints, written as
one more checkpoint (which evaluates, translates and explains like any other).

    payload = average_checkpoints(["runs/x/checkpoints/step_00001700.pt", ...])
    save_checkpoint("runs/x/averaged.pt", payload)

The last checkpoints of a run lie near one another in weight space; their mean is often a better
model than any of them (Vaswani et al. 2017 averaged the last 5 or 20).  Checkpoints are
compatible when they hold the same architecture, the same vocabularies and the same SentencePiece
models; anything else is refused, naming the file.  Frozen ``<pad>`` rows, zero in every
checkpoint, stay exactly zero in the mean.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from .checkpoint import check_same_model, model_payload
from ..data import TextCodec
from .checkpoint import read_model_file

__all__ = ["average_checkpoints"]


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The model payload (as ``checkpoint.model_payload`` makes it) whose weights are the mean of
    ``paths``' weights, computed in float64; config and vocabularies those of the first file."""
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    first = read_model_file(paths[0])
    codec = TextCodec.for_data(first.config.data, first.src_vocab, first.tgt_vocab, first.subwords)
    sums = {name: tensor.double() if tensor.is_floating_point() else tensor for name, tensor in first.weights.items()}
    for path in paths[1:]:
        stored = read_model_file(path)
        check_same_model(stored, first.config, codec, path, reference=paths[0])
        for name, tensor in stored.weights.items():
            if tensor.is_floating_point():
                sums[name] = sums[name] + tensor.double()
    averaged = {name: (total / len(paths)).to(first.weights[name].dtype) if total.is_floating_point() else total
                for name, total in sums.items()}
    return model_payload(first.config, codec, averaged)
