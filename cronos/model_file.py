"""A model file read with every check, in one place: what ``Cronos.load``, averaging, resuming a
run and a run's reload of its ``best.pt`` read.

    stored = read_model_file(path)     # checkpoint.StoredModel: config, vocabularies, weights, ...

``checkpoint.read_model`` checks the file's entries, its config, its vocabularies and SentencePiece
models, and that its weights are finite; here the weights are also checked against the names and
shapes of the network its config describes, built on the meta device (nothing allocated), so a
file whose config and weights disagree is refused before any model is built from it.
"""
from __future__ import annotations

import os

import torch

from .checkpoint import StoredModel, check_weights, read_model
from .network import Seq2Seq

__all__ = ["read_model_file"]


def read_model_file(path: str | os.PathLike) -> StoredModel:
    """The model stored at ``path``, every check passed (``CheckpointError`` naming the file otherwise)."""
    stored = read_model(path)
    with torch.device("meta"):  # shapes only: a few KB of config could otherwise ask for gigabytes
        skeleton = Seq2Seq(stored.config.model, len(stored.src_vocab), len(stored.tgt_vocab))
    check_weights(stored.weights, skeleton, path)
    return stored
