"""The config schema: every key with its default, type, one-line doc and range, as frozen dataclasses.

A key is declared with ``key(default, doc, ...)``; its metadata says how ``loading`` checks it: a
numeric range (``minimum``/``maximum`` inclusive, ``above``/``below`` exclusive), whether it is a
path (resolved against the config file's folder), and ``only_for``: the settings of its section
under which it means anything (``cell`` only for an ``rnn`` encoder).  Rules that tie keys
together are checked when a ``Config`` is built (``__post_init__``), so no invalid ``Config`` exists.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

__all__ = [
    "Config", "ConfigError", "Corpus", "DataConfig", "DataFiles", "FilterConfig", "DecoderConfig", "EncoderConfig", "DecodingConfig",
    "ModelConfig", "ParallelFiles", "SentencePieceConfig", "TrainingConfig", "all_keys", "applies", "check_device_name", "key",
]

_DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")  # torch devices a run may name


class ConfigError(ValueError):
    """A config problem: the message names the source, the dotted key and a hint."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


def key(default: Any, doc: str, *, minimum: float | None = None, maximum: float | None = None,
        above: float | None = None, below: float | None = None, path: bool = False,
        only_for: tuple[tuple[str, str], ...] = ()) -> Any:
    """A config field with its doc line and checks: ``minimum``/``maximum`` (inclusive) and
    ``above``/``below`` (exclusive) bounds, ``path`` (resolved against the config's folder), and
    ``only_for``: ``(sibling key, value)`` pairs, one of which must hold for the key to be given."""
    meta = {"doc": doc, "minimum": minimum, "maximum": maximum, "above": above, "below": below, "path": path,
            "only_for": only_for}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def applies(section: Any, name: str) -> bool:
    """Whether key ``name`` means anything in ``section`` (its ``only_for`` settings hold)."""
    only_for = {f.name: f for f in fields(section)}[name].metadata.get("only_for", ())
    return not only_for or any(getattr(section, sibling) == value for sibling, value in only_for)


def check_device_name(name: str, source: str, key: str) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE_NAMES.fullmatch(name):
        raise ConfigError(source, key, f"expected `auto`, `cpu`, `cuda` or `cuda:N`, got {name!r}")


RNN, TRANSFORMER = (("type", "rnn"),), (("type", "transformer"),)
# What the transformer variants mean, the same words for the encoder's and the decoder's keys
_NORMALIZE_BEFORE = ("`transformer` only: each block's layer norm before its sublayer (pre-norm, with one more norm "
                     "after the last layer); false: after the residual sum (post-norm: the original Transformer's and "
                     "Marian's)")
_ACTIVATION = "`transformer` only: the feed-forward activation: `relu`, `gelu` (exact, not tanh's) or `swish` (SiLU)"
_SCALE_EMBEDDINGS = "`transformer` only: multiply the embeddings by sqrt(hidden_size) before positions are added"
_SINUSOIDS = ("`transformer` only: the sinusoidal positions' layout: `interleaved` (sine and cosine of each "
              "frequency side by side) or `halves` (all sines, then all cosines: Marian's and fairseq's)")


@dataclass(frozen=True)
class ParallelFiles:
    """Two line-aligned text files: line i of ``src`` translates to line i of ``tgt``."""

    src: str = key(None, "source-side text file", path=True)
    tgt: str = key(None, "target-side text file", path=True)

    def __post_init__(self) -> None:
        for side in ("src", "tgt"):
            if getattr(self, side) is None:
                raise ConfigError("config", side, "missing: parallel files need both `src` and `tgt` paths")


DataFiles = Union[str, ParallelFiles, None]

TAG = re.compile(r"<[^<>\s]+>")  # a corpus tag: one token in angle brackets, such as <2fr>


@dataclass(frozen=True)
class Corpus:
    """One training corpus of several: its files (a TSV ``path``, or ``src`` and ``tgt``), how much of
    it an epoch draws (``weight``) and the tag its sources start with."""

    path: str | None = key(None, "a TSV file of pairs (or give src and tgt)", path=True)
    src: str | None = key(None, "source-side text file (with tgt, instead of path)", path=True)
    tgt: str | None = key(None, "target-side text file (with src)", path=True)
    weight: float = key(1.0, "how many times its size an epoch draws from it: 1 each pair once, 0.5 a random "
                             "half, 3 each pair three times", above=0.0)
    tag: str | None = key(None, "a token every source of this corpus starts with, such as <2fr> (the language "
                                "to translate into, for one model of several directions)")
    name: str | None = key(None, "its name in the log and metrics.jsonl (default: its file's name)")

    def __post_init__(self) -> None:
        if (self.path is None) == (self.src is None and self.tgt is None) or (self.src is None) != (self.tgt is None):
            raise ConfigError("config", "path", "give a corpus either `path` (a TSV file) or both `src` and `tgt`")
        if self.tag is not None and not TAG.fullmatch(self.tag):
            raise ConfigError("config", "tag", f"expected one token in angle brackets, such as <2fr>, got "
                                               f"{self.tag!r}")

    @property
    def files(self) -> str | ParallelFiles:
        return self.path if self.path is not None else ParallelFiles(self.src, self.tgt)

    @property
    def label(self) -> str:
        return self.name or Path(self.path or self.src).name


@dataclass(frozen=True)
class SentencePieceConfig:
    model_type: Literal["unigram", "bpe"] = key("unigram", "`unigram` or `bpe`")
    vocab_size: int = key(8000, "pieces per model, cronos's four specials included", minimum=8, maximum=1_000_000)
    joint: bool = key(True, "one vocabulary for both sides (needed by model.share_embeddings), and one model when "
                            "cronos trains them; an imported Marian model has a model per side over one vocabulary")
    character_coverage: float = key(1.0, "share of the training text's characters the model covers (0.9995 "
                                         "for scripts with large alphabets)", above=0.0, maximum=1.0)
    model: str | None = key(None, "an existing SentencePiece `.model` to use for both sides instead of "
                                  "training one", path=True)
    sampling_alpha: float | None = key(
        None, "subword regularisation: each epoch, sample the training data's segmentation with this smoothing "
              "(unigram; for bpe, the BPE-dropout probability), e.g. 0.1; never at evaluation (null: off)",
        above=0.0, maximum=1.0)
    nbest_size: int = key(-1, "with sampling_alpha and unigram: sample among the n best segmentations (-1: all)",
                          minimum=-1)
    input_sentence_size: int = key(1_000_000, "training pairs the models are trained on: a uniform sample of "
                                              "the training split when it has more", minimum=1)


@dataclass(frozen=True)
class FilterConfig:
    """Training pairs left out as they are read (counted in the log), as corpus-cleaning scripts do."""

    max_length_ratio: float | None = key(
        None, "leave out a pair whose longer side has more than this many times the tokens of its shorter side "
              "(e.g. 3; null: keep every ratio)", minimum=1.0)
    min_length: int = key(1, "leave out a pair with a side of fewer tokens than this", minimum=1)
    copies: bool = key(True, "keep pairs whose target is their source's text unchanged (false: leave them out, "
                             "they teach copying)")


@dataclass(frozen=True)
class DataConfig:
    train: DataFiles | tuple[Corpus, ...] = key(
        None, "training data: a TSV path, {src: PATH, tgt: PATH}, or a list of corpora {path or src/tgt, weight, tag, "
              "name} drawn from by weight each epoch", path=True)
    valid: DataFiles = key(None, "validation data, same forms as data.train", path=True)
    test: DataFiles = key(None, "test data, same forms as data.train", path=True)
    root: str | None = key(
        None,
        "folder that relative data paths resolve against (default: the config file's folder); "
        "variables are expanded, with defaults: `${MULTI30K_ROOT:-../data/multi30k}`", path=True)
    tokenizer: Literal["char", "whitespace", "word", "sentencepiece"] = key(
        "char", "`char`, `whitespace`, `word` (regex split of words and punctuation), or `sentencepiece` "
                "(subwords: a model trained on the training split, see data.sentencepiece)")
    lowercase: bool = key(False, "lowercase text before tokenising")
    source_eos: bool = key(False, "every source ends with <eos>, which the encoder reads as one more token (as "
                                  "Marian's models, OPUS-MT's among them, read their sources)")
    max_length: int = key(100, "longest source or target, in tokens", minimum=1)
    long_policy: Literal["filter", "truncate"] = key(
        "filter", "what happens to longer training examples: `filter` drops them, `truncate` cuts them")
    empty_policy: Literal["error", "skip"] = key(
        "error", "an empty source or target: `error` stops with file and line, `skip` drops and counts it")
    min_freq: int = key(1, "tokens seen fewer times in training become <unk>", minimum=1)
    max_vocab_size: int | None = key(None, "most tokens per vocabulary, specials excluded", minimum=1)
    sentencepiece: SentencePieceConfig = key(SentencePieceConfig(), "`sentencepiece` tokenizer options")
    filters: FilterConfig = key(FilterConfig(), "training pairs left out as they are read: length ratio, "
                                                "shortest side, copies")
    prepared: str | None = key(
        None, "a folder for the training split prepared once as memory-mapped arrays (written when missing or "
              "out of date, then shared by every run and process that reads it): for corpora of millions of pairs; "
              "null: read into memory at each start; relative, like the data paths", path=True)
    workers: int = key(1, "processes that tokenise the training split when it is prepared", minimum=1, maximum=256)
    loader_workers: int = key(
        0, "processes that build the next training batches while a step runs (0: the training process builds "
           "each when it needs it); batches and results are the same either way", minimum=0, maximum=64)

    def __post_init__(self) -> None:
        if isinstance(self.train, tuple):
            _check_corpora(self.train)
        if self.tokenizer != "sentencepiece" and self.sentencepiece != SentencePieceConfig():
            raise ConfigError("config", "sentencepiece", f"means something only for tokenizer `sentencepiece`, and "
                              f"data.tokenizer is `{self.tokenizer}`: remove the section or set the tokenizer")


def _check_corpora(corpora: tuple[Corpus, ...]) -> None:
    if not corpora:
        raise ConfigError("config", "train", "an empty list of corpora: give at least one")
    names = [corpus.label for corpus in corpora]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError("config", "train", f"two corpora are called {repeated[0]!r}: give each its own `name`")


@dataclass(frozen=True)
class EncoderConfig:
    type: Literal["rnn", "transformer"] = key("rnn", "`rnn` or `transformer`")
    cell: Literal["gru", "lstm"] = key("gru", "recurrent cell for `rnn`: `gru` or `lstm`", only_for=RNN)
    hidden_size: int = key(128, "RNN hidden size per direction, or transformer model size", minimum=1)
    layers: int = key(1, "number of layers", minimum=1)
    bidirectional: bool = key(True, "`rnn` only: read the source in both directions", only_for=RNN)
    heads: int = key(4, "`transformer` only: attention heads", minimum=1, only_for=TRANSFORMER)
    ff_size: int = key(256, "`transformer` only: feed-forward inner size", minimum=1, only_for=TRANSFORMER)
    normalize_before: bool = key(True, _NORMALIZE_BEFORE, only_for=TRANSFORMER)
    activation: Literal["relu", "gelu", "swish"] = key("relu", _ACTIVATION, only_for=TRANSFORMER)
    scale_embeddings: bool = key(True, _SCALE_EMBEDDINGS, only_for=TRANSFORMER)
    sinusoids: Literal["interleaved", "halves"] = key("interleaved", _SINUSOIDS, only_for=TRANSFORMER)
    dropout: float = key(0.1, "dropout probability", minimum=0.0, below=1.0)


@dataclass(frozen=True)
class DecoderConfig:
    type: Literal["rnn", "transformer"] = key("rnn", "`rnn` or `transformer`")
    cell: Literal["gru", "lstm"] = key("gru", "recurrent cell for `rnn`: `gru` or `lstm`", only_for=RNN)
    hidden_size: int = key(128, "RNN hidden size, or transformer model size", minimum=1)
    layers: int = key(1, "number of layers", minimum=1)
    attention: Literal["additive", "dot", "general", "multihead"] = key(
        "additive", "`rnn` only: `additive` (Bahdanau), `dot`/`general` (Luong) or `multihead`", only_for=RNN)
    heads: int = key(4, "heads of `multihead` attention and of the transformer", minimum=1,
                     only_for=TRANSFORMER + (("attention", "multihead"),))
    ff_size: int = key(256, "`transformer` only: feed-forward inner size", minimum=1, only_for=TRANSFORMER)
    normalize_before: bool = key(True, _NORMALIZE_BEFORE, only_for=TRANSFORMER)
    activation: Literal["relu", "gelu", "swish"] = key("relu", _ACTIVATION, only_for=TRANSFORMER)
    scale_embeddings: bool = key(True, _SCALE_EMBEDDINGS, only_for=TRANSFORMER)
    sinusoids: Literal["interleaved", "halves"] = key("interleaved", _SINUSOIDS, only_for=TRANSFORMER)
    dropout: float = key(0.1, "dropout probability", minimum=0.0, below=1.0)


@dataclass(frozen=True)
class ModelConfig:
    embedding_size: int = key(64, "source and target embedding size", minimum=1)
    encoder: EncoderConfig = key(EncoderConfig(), "encoder section")
    decoder: DecoderConfig = key(DecoderConfig(), "decoder section")
    mask_padding: bool = key(True, "masking: attention never sees padded keys (off only for ablations)")
    freeze_pad_embedding: bool = key(
        True, "frozen <pad> rows: the <pad> embedding row is zero and never changes (off only for ablations)")
    tie_output_embedding: bool = key(
        False, "the output projection's weight is the target embedding (needs model.decoder.hidden_size equal "
               "to model.embedding_size)")
    share_embeddings: bool = key(
        False, "one embedding for source and target: needs one vocabulary for both (data.tokenizer: "
               "sentencepiece, with data.sentencepiece.joint: true)")

    def __post_init__(self) -> None:
        encoder, decoder = self.encoder, self.decoder
        if encoder.type == "transformer" and encoder.hidden_size % encoder.heads:
            raise ConfigError("config", "encoder.heads",
                              f"hidden_size {encoder.hidden_size} must be divisible by heads {encoder.heads}")
        if applies(decoder, "heads") and decoder.hidden_size % decoder.heads:
            raise ConfigError("config", "decoder.heads",
                              f"hidden_size {decoder.hidden_size} must be divisible by heads {decoder.heads}")
        memory_size = encoder.hidden_size * (2 if encoder.type == "rnn" and encoder.bidirectional else 1)
        if decoder.type == "rnn" and decoder.attention == "dot" and decoder.hidden_size != memory_size:
            raise ConfigError("config", "decoder.attention",
                              f"`dot` needs model.decoder.hidden_size ({decoder.hidden_size}) equal to the encoder's "
                              f"output size ({memory_size}); change a size or use `general`")
        if self.tie_output_embedding and decoder.hidden_size != self.embedding_size:
            raise ConfigError("config", "tie_output_embedding",
                              f"needs model.decoder.hidden_size ({decoder.hidden_size}) equal to model.embedding_size "
                              f"({self.embedding_size}): the output projection then is the target embedding")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = key(10, "passes over the training data", minimum=1)
    batch_size: int | None = key(
        None, "sentences per batch (default 64 when neither this nor batch_tokens is set)", minimum=1)
    batch_tokens: int | None = key(
        None, "token budget per batch: batch size x longest side, padding included", minimum=1)
    accumulate: int = key(1, "batches per optimiser step (gradient accumulation); the step's loss is divided by "
                             "the real target tokens of all of them, so it is the step of their union", minimum=1)
    precision: Literal["fp32", "bf16", "fp16"] = key(
        "fp32", "`fp32`; `bf16`: each batch's forward pass under autocast in bfloat16 (weights, gradients, "
                "optimiser state and evaluation stay float32); `fp16`: float16 autocast with a gradient scaler "
                "(CUDA GPUs only)")
    compile: bool = key(False, "torch.compile the blocks that gain from it (the loss head, the RNN decoder's "
                               "additive attention), for training and decoding; docs/training.md says when it pays")
    optimizer: Literal["adam", "adamw"] = key("adam", "`adam` or `adamw`")
    lr: float = key(1e-3, "peak learning rate", minimum=0.0)
    weight_decay: float = key(0.0, "weight decay (decoupled for adamw)", minimum=0.0)
    clip_grad_norm: float | None = key(1.0, "clip the gradient's global norm to this (null: no clipping)",
                                       above=0.0)
    label_smoothing: float = key(0.0, "label smoothing of the cross-entropy, spread over the tokens an output can be "
                                                "(every one but <pad> and <bos>)", minimum=0.0, below=1.0)
    scheduler: Literal["none", "plateau", "warmup_inverse_sqrt"] = key(
        "none", "`none`, `plateau` (decay on a flat validation metric) or `warmup_inverse_sqrt`")
    warmup_steps: int = key(1000, "`warmup_inverse_sqrt`: steps of linear warm-up", minimum=1)
    plateau_factor: float = key(0.5, "`plateau`: multiply the lr by this", above=0.0, below=1.0)
    plateau_patience: int = key(1, "`plateau`: validations without improvement before decaying", minimum=0)
    min_lr: float = key(0.0, "floor for scheduled learning rates", minimum=0.0)
    max_steps: int | None = key(None, "stop after this many optimiser steps in all (null: train all epochs)",
                                minimum=1)
    validate_every: int | None = key(None, "validate every N steps as well as at the end of every epoch "
                                           "(null: at the end of every epoch only)", minimum=1)
    early_stopping_metric: Literal[
        "valid_loss", "valid_ppl", "valid_token_accuracy", "valid_sequence_accuracy", "valid_bleu", "valid_chrf",
        "loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf"] = key(
        "valid_loss", "metric that picks the best checkpoint and drives early stopping and `plateau`: a name "
                      "metrics.jsonl writes (`valid_loss`, `valid_ppl`, `valid_token_accuracy`, "
                      "`valid_sequence_accuracy`, `valid_bleu`, `valid_chrf`); the `valid_` prefix may be left out")
    patience: int | None = key(None, "stop after this many validations without improvement (null: never)",
                               minimum=1)
    ema_decay: float | None = key(
        None, "keep an exponential moving average of the weights with this decay (e.g. 0.999): validation, best.pt, "
              "kept checkpoints and the trained model use the averaged weights (null: off)", above=0.0, below=1.0)
    keep_checkpoints: int = key(0, "also keep the weights of the last N validations in output_dir/checkpoints, "
                                   "for `cronos average` (0: none)", minimum=0)
    checkpoint_every: int | None = key(
        None, "also write a resumable checkpoint every N steps (null: at each validation)", minimum=1)
    resume: str | None = key(None, "`auto` (the run's own last checkpoint, if any) or a checkpoint path",
                             path=True)
    init_from: str | None = key(
        None, "start a new run from this checkpoint's weights (fine-tuning), with a fresh optimiser, schedule and "
              "step count; the model settings must be the checkpoint's (dropout may differ)", path=True)
    vocabulary: Literal["keep", "extend"] = key(
        "keep", "with init_from: `keep` reads the data with the checkpoint's vocabulary (and SentencePiece models); "
                "`extend` adds the tokens or pieces of this data that it lacks, as fresh rows")
    overwrite: bool = key(False, "start a new run in an output_dir that holds one, removing its best.pt, "
                                 "last.pt, metrics.jsonl and tensorboard/ (otherwise that is refused)")
    nan_policy: Literal["error", "skip"] = key(
        "error", "NaN/Inf loss or gradient: `error` stops naming the batch, `skip` drops the batch and counts it")
    tensorboard: bool = key(False, "also write TensorBoard logs to output_dir/tensorboard: loss, tokens/s, lr, "
                                   "validation metrics, padded share, and the attention of a validation example "
                                   "(needs the `tensorboard` extra)")
    progress: bool = key(True, "show a tqdm progress bar when stderr is a terminal (elsewhere, log lines)")
    log_every: int | None = key(100, "without a bar, log step, loss, tokens/s, lr and time left every N steps "
                                     "(null: never)", minimum=1)
    num_threads: int | None = key(None, "torch CPU threads (null: torch's default)", minimum=1)
    device: str = key("auto", "`auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`")

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_tokens is not None:
            raise ConfigError("config", "batch_tokens", "set either training.batch_size or training.batch_tokens, "
                                                        "not both")
        check_device_name(self.device, "config", "device")
        if self.overwrite and self.resume is not None:
            raise ConfigError("config", "overwrite",
                              "training.overwrite starts a new run and training.resume continues one: set only one")
        if self.vocabulary != "keep" and self.init_from is None:
            raise ConfigError("config", "vocabulary", "says what becomes of the vocabulary of training.init_from's "
                                                      "model: set training.init_from, or leave this out")

    @property
    def metric(self) -> str:
        """``early_stopping_metric`` as metrics.jsonl names it."""
        name = self.early_stopping_metric
        return name if name.startswith("valid_") else f"valid_{name}"

    @property
    def lower_is_better(self) -> bool:
        return self.metric in ("valid_loss", "valid_ppl")


MAX_BEAM_SIZE = 1000  # beams per input anywhere (a beam is a copy of the decoder's state per input)


@dataclass(frozen=True)
class DecodingConfig:
    beam_size: int = key(1, "1 is greedy search", minimum=1, maximum=MAX_BEAM_SIZE)
    length_penalty: float = key(1.0, "alpha of the length penalty that divides an output's log-probability (0: "
                                      "none)", minimum=0.0)
    length_penalty_form: Literal["power", "gnmt", "none"] = key(
        "power", "the length penalty: `power` (length ** alpha), `gnmt` (((5 + length) / 6) ** alpha, Wu et al. "
                 "2016) or `none` (rank by log-probability)")
    coverage_penalty: float = key(0.0, "weight of the GNMT coverage penalty, which favours outputs whose attention "
                                       "covers every source token (0: off; e.g. 0.2)", minimum=0.0)
    min_length: int = key(0, "no output ends before this many tokens (a forced prefix's included)", minimum=0)
    no_repeat_ngram_size: int = key(0, "no output repeats an n-gram of this many tokens (0: off; e.g. 3)",
                                    minimum=0)
    max_length_ratio: float = key(1.5, "outputs stop at ratio x source length + offset tokens", minimum=0.0)
    max_length_offset: int = key(10, "see max_length_ratio", minimum=0)
    batch_size: int = key(128, "sentences per decoding batch", minimum=1)


@dataclass(frozen=True)
class Config:
    name: str = key("cronos", "run name")
    seed: int = key(1234, "seed for initialisation, shuffling and dropout (0 to 2**31 - 1)", minimum=0,
                    maximum=2 ** 31 - 1)
    output_dir: str = key("runs/cronos", "where checkpoints, metrics.jsonl and explanations go", path=True)
    data: DataConfig = key(DataConfig(), "data section")
    model: ModelConfig = key(ModelConfig(), "model section")
    training: TrainingConfig = key(TrainingConfig(), "training section")
    decoding: DecodingConfig = key(DecodingConfig(), "decoding section: the search settings of translate, evaluate, explain and validation")

    def __post_init__(self) -> None:
        data = self.data
        if self.model.share_embeddings and data.tokenizer == "sentencepiece" and not data.sentencepiece.joint:
            raise ConfigError("config", "model.share_embeddings",
                              "needs one vocabulary for both sides, and data.sentencepiece.joint is false: set it "
                              "true, or share_embeddings false")


def all_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every dotted key with its default and doc line, in declaration order (for docs and hints)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        dotted = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            rows.extend(all_keys(hints[f.name], dotted + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((dotted, default, f.metadata.get("doc", "")))
    return rows
