"""A run that starts from a trained model (``training.init_from``): its weights, with a fresh
optimiser, schedule and step count, and its vocabulary kept or extended.

    start = start_from(config)                  # the model read, the training data read its way
    model = Cronos(config, *start.vocabularies, start.subwords)
    start.transplant(model.network)             # the model's rows and weights into the new network

``training.vocabulary: keep`` reads the new data through the model's own codec (vocabularies and
SentencePiece models); data settings that would read text another way are refused.  ``extend``
builds this data's own vocabularies (or trains SentencePiece models on it, ``data.sentencepiece``)
and adds the tokens or pieces the model lacks after its own: an old token keeps its id and its
rows, a new one starts as a fresh network's row does (the ``<pad>`` row stays zero and frozen;
shared and tied embeddings stay one).  SentencePiece models are merged, not replaced: the new
pieces join the old model, which keeps its pieces and their scores, so text the model read before
mostly segments as before.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config, ConfigError, DataConfig, config_to_dict
from ..data import SubwordModels, TrainingData, Vocabulary, load_training_data, train_subword_models
from ..storage.checkpoint import StoredModel, architecture_differences, read_model_file

__all__ = ["Start", "start_from"]

logger = logging.getLogger("cronos")

KEY = "training.init_from"
TEXT_KEYS = ("tokenizer", "lowercase", "source_eos")  # how text becomes tokens: the model's, kept or extended
KEPT_KEYS = ("min_freq", "max_vocab_size", "sentencepiece.model_type", "sentencepiece.vocab_size",
             "sentencepiece.joint", "sentencepiece.character_coverage", "sentencepiece.model",
             "sentencepiece.input_sentence_size")  # what builds a vocabulary: the model's, when it is kept
EXTENDED_KEYS = ("sentencepiece.model_type", "sentencepiece.joint")  # pieces that can join the model's
SOURCE_ROWS, TARGET_ROWS = ("src_embedding.",), ("tgt_embedding.", "output_projection.")  # weights per token


@dataclass
class Start:
    """The model a run starts from (``parent``, read from ``path``) and the run's training data."""

    parent: StoredModel
    path: Path
    data: TrainingData

    @property
    def vocabularies(self) -> tuple[Vocabulary, Vocabulary]:
        return self.data.src_vocab, self.data.tgt_vocab

    @property
    def subwords(self) -> SubwordModels | None:
        return self.data.subwords

    def transplant(self, network: torch.nn.Module) -> None:
        """``network`` (built for the run's vocabularies) takes the parent's weights: every weight
        whole, and the rows of the embeddings and the output projection token by token."""
        parent, state = self.parent.weights, network.state_dict()
        rows = {SOURCE_ROWS: _row_pairs(self.parent.src_vocab, self.data.src_vocab),
                TARGET_ROWS: _row_pairs(self.parent.tgt_vocab, self.data.tgt_vocab)}
        with torch.no_grad():
            for name, tensor in state.items():
                pairs = next((pairs for prefixes, pairs in rows.items() if name.startswith(prefixes)), None)
                if pairs is None:
                    tensor.copy_(parent[name])
                else:  # the rows of the tokens both hold; the others keep their fresh values
                    new, old = pairs
                    tensor[new] = parent[name][old].to(tensor.dtype)
        network.load_state_dict(state)


def _row_pairs(old: Vocabulary, new: Vocabulary) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rows of the tokens both vocabularies hold, as (new ids, old ids); None when they are one."""
    if old == new:
        return None
    new_ids, old_ids = zip(*[(index, old.stoi[token]) for index, token in enumerate(new.itos) if token in old.stoi])
    return torch.tensor(new_ids), torch.tensor(old_ids)


def start_from(config: Config) -> Start:
    """Read ``training.init_from``'s model, check that this config can start from it, and read the
    training data with its vocabulary kept or extended (``training.vocabulary``)."""
    path = Path(config.training.init_from)
    parent = read_model_file(path)
    differing = architecture_differences(config, parent.config, ignored=("dropout",))
    if differing:
        raise ConfigError("config", KEY, f"{path}: its model differs from this config's at {', '.join(differing)}; "
                                         "the model settings must be the checkpoint's (dropout may differ)")
    keep = config.training.vocabulary == "keep"
    _check_text_settings(config.data, parent.config.data, TEXT_KEYS + (KEPT_KEYS if keep else EXTENDED_KEYS), keep)
    if keep:
        data = load_training_data(config.data, (parent.src_vocab, parent.tgt_vocab), parent.subwords, config.seed)
    else:
        data = _extended_data(config, parent)
    return Start(parent, path, data)


def _check_text_settings(ours: DataConfig, theirs: DataConfig, keys: tuple[str, ...], keep: bool) -> None:
    """Refuse a data setting that would read text otherwise than the model did, naming it."""
    ours_dict, theirs_dict = config_to_dict(ours), config_to_dict(theirs)
    for dotted in keys:
        mine, its = _get(ours_dict, dotted), _get(theirs_dict, dotted)
        if mine != its:
            way = ("with training.vocabulary: keep the data is read with the model's vocabulary; set it as the "
                   "model's, or training.vocabulary: extend") if keep else "an extended vocabulary adds to the model's"
            raise ConfigError("config", f"data.{dotted}", f"the model of {KEY} was trained with {its!r} and this "
                                                           f"config says {mine!r}: {way}")
    if not keep and ours.tokenizer == "sentencepiece" and ours.sentencepiece.model is not None:
        raise ConfigError("config", "data.sentencepiece.model", "training.vocabulary: extend trains pieces on this "
                                                                "data to add to the model's; leave this out")


def _get(section: dict, dotted: str):
    for part in dotted.split("."):
        section = section.get(part) if isinstance(section, dict) else None
    return section


def _extended_data(config: Config, parent: StoredModel) -> TrainingData:
    """The training data read with the parent's vocabularies extended by this data's own."""
    if config.data.tokenizer == "sentencepiece":
        subwords = parent.subwords.extended_with(train_subword_models(config.data, config.seed))
        vocabularies = subwords.vocabularies()
    else:
        own = load_training_data(config.data, seed=config.seed)  # this data's vocabularies, built its way
        subwords, vocabularies = None, (parent.src_vocab.extended(own.src_vocab),
                                        parent.tgt_vocab.extended(own.tgt_vocab))
    logger.info("training.vocabulary: extend: %d source and %d target tokens added to the model's %d and %d",
                len(vocabularies[0]) - len(parent.src_vocab), len(vocabularies[1]) - len(parent.tgt_vocab),
                len(parent.src_vocab), len(parent.tgt_vocab))
    return load_training_data(config.data, vocabularies, subwords, config.seed)
