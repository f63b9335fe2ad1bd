"""YAML -> validated, frozen dataclasses.

Every key has a default, a type and a one-line doc (``_key``).  Validation is strict: an unknown
key is an error that suggests the nearest valid key, a wrong type names the key, what was expected
and what was found, and every message starts with the file it came from.

    cfg = load_config("configs/dates.yaml", overrides={"training.epochs": 2})
    key, value = parse_override("training.lr=3e-4")      # CLI --set key=value
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml

__all__ = [
    "Config", "ConfigError", "DataConfig", "ModelConfig", "EncoderConfig", "DecoderConfig",
    "TrainingConfig", "EvaluationConfig", "ParallelFiles", "load_config", "parse_override",
    "config_from_dict", "config_to_dict", "all_keys", "check_device_name",
]


_DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")  # torch devices a run may name

# A config is a few dozen values four levels deep; anything far larger is refused before it is
# looked at (YAML aliases can make a few hundred bytes stand for billions of values).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
MAX_CONFIG_DEPTH = 32


class ConfigError(ValueError):
    """A config problem: the message names the source, the dotted key and a hint."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


def _key(default: Any, doc: str, *, minimum: float | None = None, above: float | None = None,
         below: float | None = None, path: bool = False) -> Any:
    """A config field with its doc line, its numeric range (``minimum`` inclusive, ``above`` and
    ``below`` exclusive), and whether it is a path."""
    meta = {"doc": doc, "minimum": minimum, "above": above, "below": below, "path": path}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParallelFiles:
    """Two line-aligned text files: line i of ``src`` translates to line i of ``tgt``."""

    src: str = _key(None, "source-side text file", path=True)
    tgt: str = _key(None, "target-side text file", path=True)

    def __post_init__(self) -> None:
        for side in ("src", "tgt"):
            if getattr(self, side) is None:
                raise ConfigError("config", side, "missing: parallel files need both `src` and `tgt` paths")


DataFiles = Union[str, ParallelFiles, None]


@dataclass(frozen=True)
class DataConfig:
    train: DataFiles = _key(None, "training data: a TSV path or {src: PATH, tgt: PATH}", path=True)
    valid: DataFiles = _key(None, "validation data, same forms as data.train", path=True)
    test: DataFiles = _key(None, "test data, same forms as data.train", path=True)
    root: str | None = _key(
        None,
        "folder that relative data paths resolve against (default: the config file's folder); "
        "variables are expanded, with defaults: `${MULTI30K_ROOT:-../data/multi30k}`", path=True)
    tokenizer: Literal["char", "whitespace", "word"] = _key(
        "char", "`char`, `whitespace`, or `word` (regex split of words and punctuation)")
    lowercase: bool = _key(False, "lowercase text before tokenising")
    max_length: int = _key(100, "longest source or target, in tokens", minimum=1)
    long_policy: Literal["filter", "truncate"] = _key(
        "filter", "what happens to longer training examples: `filter` drops them, `truncate` cuts them")
    empty_policy: Literal["error", "skip"] = _key(
        "error", "an empty source or target: `error` stops with file and line, `skip` drops and counts it")
    min_freq: int = _key(1, "tokens seen fewer times in training become <unk>", minimum=1)
    max_vocab_size: int | None = _key(None, "most tokens per vocabulary, specials excluded", minimum=1)


@dataclass(frozen=True)
class EncoderConfig:
    type: Literal["rnn", "transformer"] = _key("rnn", "`rnn` or `transformer`")
    cell: Literal["gru", "lstm"] = _key("gru", "recurrent cell for `rnn`: `gru` or `lstm`")
    hidden_size: int = _key(128, "RNN hidden size per direction, or transformer model size", minimum=1)
    layers: int = _key(1, "number of layers", minimum=1)
    bidirectional: bool = _key(True, "`rnn` only: read the source in both directions")
    heads: int = _key(4, "`transformer` only: attention heads", minimum=1)
    ff_size: int = _key(256, "`transformer` only: feed-forward inner size", minimum=1)
    dropout: float = _key(0.1, "dropout probability", minimum=0.0, below=1.0)


@dataclass(frozen=True)
class DecoderConfig:
    type: Literal["rnn", "transformer"] = _key("rnn", "`rnn` or `transformer`")
    cell: Literal["gru", "lstm"] = _key("gru", "recurrent cell for `rnn`: `gru` or `lstm`")
    hidden_size: int = _key(128, "RNN hidden size, or transformer model size", minimum=1)
    layers: int = _key(1, "number of layers", minimum=1)
    attention: Literal["additive", "dot", "general", "multihead"] = _key(
        "additive", "`rnn` only: `additive` (Bahdanau), `dot`/`general` (Luong) or `multihead`")
    heads: int = _key(4, "heads of `multihead` attention and of the transformer", minimum=1)
    ff_size: int = _key(256, "`transformer` only: feed-forward inner size", minimum=1)
    dropout: float = _key(0.1, "dropout probability", minimum=0.0, below=1.0)


@dataclass(frozen=True)
class ModelConfig:
    embedding_size: int = _key(64, "source and target embedding size", minimum=1)
    encoder: EncoderConfig = _key(EncoderConfig(), "encoder section")
    decoder: DecoderConfig = _key(DecoderConfig(), "decoder section")
    mask_padding: bool = _key(True, "methodology A: attention never sees padded keys (off only for ablations)")
    freeze_pad_embedding: bool = _key(
        True, "methodology B: the <pad> embedding row is zero and never changes (off only for ablations)")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = _key(10, "passes over the training data", minimum=1)
    batch_size: int | None = _key(
        None, "sentences per batch (default 64 when neither this nor batch_tokens is set)", minimum=1)
    batch_tokens: int | None = _key(
        None, "token budget per batch: batch size x longest side, padding included", minimum=1)
    optimizer: Literal["adam", "adamw"] = _key("adam", "`adam` or `adamw`")
    lr: float = _key(1e-3, "peak learning rate", minimum=0.0)
    weight_decay: float = _key(0.0, "weight decay (decoupled for adamw)", minimum=0.0)
    clip_grad_norm: float | None = _key(1.0, "clip the gradient's global norm to this (null: no clipping)",
                                        above=0.0)
    label_smoothing: float = _key(0.0, "label smoothing of the cross-entropy", minimum=0.0, below=1.0)
    scheduler: Literal["none", "plateau", "warmup_inverse_sqrt"] = _key(
        "none", "`none`, `plateau` (decay on a flat validation metric) or `warmup_inverse_sqrt`")
    warmup_steps: int = _key(1000, "`warmup_inverse_sqrt`: steps of linear warm-up", minimum=1)
    plateau_factor: float = _key(0.5, "`plateau`: multiply the lr by this", above=0.0, below=1.0)
    plateau_patience: int = _key(1, "`plateau`: validations without improvement before decaying", minimum=0)
    min_lr: float = _key(0.0, "floor for scheduled learning rates", minimum=0.0)
    max_steps: int | None = _key(None, "stop after this many optimiser steps in all (null: train all epochs)",
                                 minimum=1)
    validate_every: int | None = _key(None, "validate every N steps (null: once per epoch)", minimum=1)
    early_stopping_metric: Literal[
        "valid_loss", "valid_ppl", "valid_token_accuracy", "valid_sequence_accuracy", "valid_bleu", "valid_chrf",
        "loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf"] = _key(
        "valid_loss", "metric that picks the best checkpoint and drives early stopping and `plateau`: a name "
                      "metrics.jsonl writes (`valid_loss`, `valid_ppl`, `valid_token_accuracy`, "
                      "`valid_sequence_accuracy`, `valid_bleu`, `valid_chrf`); the `valid_` prefix may be left out")
    patience: int | None = _key(None, "stop after this many validations without improvement (null: never)",
                                minimum=1)
    checkpoint_every: int | None = _key(
        None, "also write a resumable checkpoint every N steps (null: at each validation)", minimum=1)
    resume: str | None = _key(None, "`auto` (the run's own last checkpoint, if any) or a checkpoint path",
                              path=True)
    overwrite: bool = _key(False, "start a new run in an output_dir that holds one, removing its best.pt, "
                                  "last.pt and metrics.jsonl (otherwise that is refused)")
    nan_policy: Literal["error", "skip"] = _key(
        "error", "NaN/Inf loss or gradient: `error` stops naming the batch, `skip` drops the batch and counts it")
    progress: bool = _key(True, "show a tqdm progress bar when stderr is a terminal (elsewhere, log lines)")
    log_every: int | None = _key(100, "without a bar, log step, loss, tokens/s, lr and time left every N steps "
                                      "(null: never)", minimum=1)
    num_threads: int | None = _key(None, "torch CPU threads (null: torch's default)", minimum=1)
    device: str = _key("auto", "`auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`")


@dataclass(frozen=True)
class EvaluationConfig:
    beam_size: int = _key(1, "1 is greedy search", minimum=1)
    length_penalty: float = _key(1.0, "beam: scores are divided by length ** this", minimum=0.0)
    max_length_ratio: float = _key(1.5, "outputs stop at ratio x source length + offset tokens", minimum=0.0)
    max_length_offset: int = _key(10, "see max_length_ratio", minimum=0)
    batch_size: int = _key(128, "sentences per decoding batch", minimum=1)


@dataclass(frozen=True)
class Config:
    name: str = _key("cronos", "run name")
    seed: int = _key(1234, "seed for initialisation, shuffling and dropout (0 to 2**31 - 1)", minimum=0)
    output_dir: str = _key("runs/cronos", "where checkpoints, metrics.jsonl and explanations go", path=True)
    data: DataConfig = _key(DataConfig(), "data section")
    model: ModelConfig = _key(ModelConfig(), "model section")
    training: TrainingConfig = _key(TrainingConfig(), "training section")
    evaluation: EvaluationConfig = _key(EvaluationConfig(), "evaluation section")

    def __post_init__(self) -> None:
        _check_consistency(self)


def check_device_name(name: str, source: str, key: str) -> None:
    """Raise a ``ConfigError`` naming ``key`` unless ``name`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE_NAMES.fullmatch(name):
        raise ConfigError(source, key, f"expected `auto`, `cpu`, `cuda` or `cuda:N`, got {name!r}")


def _check_consistency(cfg: Config) -> None:
    source = "config"
    if cfg.seed >= 2 ** 31:
        raise ConfigError(source, "seed", f"expected a value below 2**31, got {cfg.seed}")
    if cfg.training.batch_size is not None and cfg.training.batch_tokens is not None:
        raise ConfigError(source, "training.batch_tokens",
                          "set either training.batch_size or training.batch_tokens, not both")
    encoder, decoder = cfg.model.encoder, cfg.model.decoder
    if encoder.type == "transformer" and encoder.hidden_size % encoder.heads:
        raise ConfigError(source, "model.encoder.heads",
                          f"hidden_size {encoder.hidden_size} must be divisible by heads {encoder.heads}")
    if (decoder.type == "transformer" or decoder.attention == "multihead") and decoder.hidden_size % decoder.heads:
        raise ConfigError(source, "model.decoder.heads",
                          f"hidden_size {decoder.hidden_size} must be divisible by heads {decoder.heads}")
    memory_size = encoder.hidden_size * (2 if encoder.type == "rnn" and encoder.bidirectional else 1)
    if decoder.type == "rnn" and decoder.attention == "dot" and decoder.hidden_size != memory_size:
        raise ConfigError(source, "model.decoder.attention",
                          f"`dot` needs model.decoder.hidden_size ({decoder.hidden_size}) equal to the encoder's "
                          f"output size ({memory_size}); change a size or use `general`")
    check_device_name(cfg.training.device, source, "training.device")
    if cfg.training.overwrite and cfg.training.resume is not None:
        raise ConfigError(source, "training.overwrite",
                          "training.overwrite starts a new run and training.resume continues one: set only one")


# --------------------------------------------------------------------------------------------
# Loading


def load_config(path_or_dict: str | os.PathLike | Mapping[str, Any],
                overrides: Mapping[str, Any] | None = None, overrides_source: str = "overrides") -> Config:
    """Read a YAML file (or take a mapping), apply dotted ``overrides`` and validate.

    Relative paths resolve against the config file's folder (the working directory for a
    mapping), or against ``data.root`` for data files when it is set.  Paths given as
    ``overrides`` (``--set data.root=...``) resolve against the working directory, as paths on a
    command line do.  An error in an overridden key names ``overrides_source`` (the CLI: ``--set``),
    not the file.
    """
    overrides = overrides or {}
    if isinstance(path_or_dict, Mapping):
        check_size(path_or_dict, "config")
        raw, source, base = _deep_copy(path_or_dict), "config", Path.cwd()
    else:
        path = Path(path_or_dict)
        source, base = str(path), path.resolve().parent
        raw = _read_yaml(path)
    for key, value in overrides.items():
        check_size(value, overrides_source)
        if isinstance(value, str) and value != "auto" and _is_path_key(key):
            value = _absolute(value, Path.cwd())
        _set_dotted(raw, key, value, source=overrides_source)
    try:
        return config_from_dict(raw, source=source, base_dir=base)
    except ConfigError as error:
        if any(error.key == key or error.key.startswith(key + ".") for key in overrides):
            raise ConfigError(overrides_source, error.key, error.problem) from None
        raise


def _is_path_key(dotted: str) -> bool:
    """Whether ``dotted`` names a path field (``output_dir``, ``data.root``, ``data.train.src``, ...)."""
    *sections, name = dotted.split(".")
    owner: Any = Config
    for section in sections:
        hint = typing.get_type_hints(owner).get(section)
        if hint == DataFiles:  # data.train.src / data.train.tgt
            owner = ParallelFiles
        elif dataclasses.is_dataclass(hint):
            owner = hint
        else:
            return False
    field_ = {f.name: f for f in fields(owner)}.get(name)
    return bool(field_ and field_.metadata.get("path"))


def config_from_dict(raw: Any, source: str = "config", base_dir: Path | None = None) -> Config:
    """Validate a plain mapping into a ``Config``; paths resolve against ``base_dir``."""
    check_size(raw, source)
    try:
        config = _build(Config, raw, "", source)
    except ConfigError as error:
        raise ConfigError(source, error.key, error.problem) from None
    return _resolve_paths(config, base_dir or Path.cwd())


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON-safe) that ``config_from_dict`` reads back unchanged."""
    return _plain(config)


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.lr=3e-4"`` -> ``("training.lr", 0.0003)``; the value is read as a YAML scalar."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. --set training.epochs=2")
    return key.strip(), _parse_yaml(value, "--set", key.strip()) if value.strip() else None


def check_size(raw: Any, source: str) -> None:
    """Refuse a value that would expand to more than ``MAX_CONFIG_VALUES`` values (YAML aliases
    repeat one object many times over) or nest deeper than ``MAX_CONFIG_DEPTH``, without recursing."""
    stack, count = [(raw, 1)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(source, "", f"expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases that "
                                          "repeat each other?); a config holds a few dozen")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(source, "", f"nests more than {MAX_CONFIG_DEPTH} levels deep; a config has four")
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


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


def _read_yaml(path: Path) -> Any:
    try:
        if not (path.is_file() or stat.S_ISFIFO(path.stat().st_mode)):
            raise ConfigError(str(path), "", "is not a file; a config is a YAML file")
        with open(path, "rb") as file:  # a bounded read: the path may be /dev/zero or a pipe
            data = file.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), "", f"larger than {MAX_CONFIG_BYTES // (1 << 20)} MiB; a config is a few "
                                             "kilobytes of YAML")
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), "", f"cannot read config: {error}") from None
    raw = _parse_yaml(text, str(path), "")
    return {} if raw is None else raw


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last silently); keys brought in by a ``<<`` merge may still be overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            line, ident = key_node.start_mark.line + 1, (key_node.tag, key_node.value)
            if ident in first_lines:
                raise _DuplicateKey(f"line {line}: key {key_node.value!r} appears twice in one mapping "
                                    f"(first on line {first_lines[ident]}); keep one")
            first_lines[ident] = line
        return super().construct_mapping(node, deep)


class _DuplicateKey(yaml.YAMLError):
    pass


def _parse_yaml(text: str, source: str, key: str) -> Any:
    """YAML text -> Python values (safe: no Python objects); every failure is one ``ConfigError`` line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except _DuplicateKey as error:
        raise ConfigError(source, key, str(error)) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, key, f"not valid YAML{where}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(source, key, f"not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise ConfigError(source, key, "nested too deeply to read; a config has four levels") from None
    except (ValueError, OverflowError) as error:  # e.g. an integer of more digits than Python converts
        raise ConfigError(source, key, f"a value cannot be read: {str(error).split(':')[0]}") from None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    return value


def _set_dotted(raw: Any, dotted: str, value: Any, source: str) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "the config is not a mapping")
    parts = dotted.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(source, ".".join(parts[: i + 1]), "is not a section, cannot set a key inside it")
        node = child
    node[parts[-1]] = value


def _suggest(dotted: str) -> str:
    keys = [key for key, _, _ in all_keys()]
    sections = sorted({key.rsplit(".", 1)[0] for key in keys if "." in key})
    candidates = keys + sections
    leaf = dotted.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.6)
    if not close:  # a right key in the wrong section: `epochs` at the top level
        close = [key for key in keys if key.rsplit(".", 1)[-1] == leaf][:1]
    if not close:
        close = difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in keys], n=1, cutoff=0.75)
        close = [key for key in keys if close and key.endswith("." + close[0])][:1]
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(source, prefix.rstrip(".") or "(top level)",
                          f"expected a mapping of keys, got {_type_name(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if not isinstance(key, str) or key not in known:
            dotted = f"{prefix}{key}"
            raise ConfigError(source, dotted, f"unknown key{_suggest(dotted)}")
    values = {}
    for name, value in raw.items():
        dotted = f"{prefix}{name}"
        values[name] = _convert(hints[name], value, dotted, source)
        _check_range(values[name], known[name].metadata, dotted, source)
    try:
        return cls(**values)
    except ConfigError as error:  # raised by a __post_init__ with a key relative to this section
        raise ConfigError(source, prefix + error.key, error.problem) from None


def _check_range(value: Any, meta: Mapping[str, Any], dotted: str, source: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for bound, outside, relation in (("minimum", lambda v, b: v < b, ">="), ("above", lambda v, b: v <= b, ">"),
                                     ("below", lambda v, b: v >= b, "<")):
        limit = meta.get(bound)
        if limit is not None and outside(value, limit):
            raise ConfigError(source, dotted, f"expected a value {relation} {limit:g}, got {value!r}")


def _convert(hint: Any, value: Any, dotted: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:  # first the scalar forms, then mappings
            if not dataclasses.is_dataclass(option) and _accepts(option, value):
                return _convert(option, value, dotted, source)
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, Mapping):
                return _build(option, value, dotted + ".", source)
        raise ConfigError(source, dotted, f"expected {_describe(hint)}, got {_type_name(value)}")
    if origin is Literal:
        if value in args and isinstance(value, str):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint_text = f"; did you mean '{close[0]}'?" if close else ""
        return _raise(source, dotted, f"expected one of {', '.join(map(repr, args))}, got {_type_name(value)}"
                      f"{hint_text}")
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted + ".", source)
    if not _accepts(hint, value):
        _raise(source, dotted, f"expected {_describe(hint)}, got {_type_name(value)}")
    if hint is float and not math.isfinite(float(value)):
        _raise(source, dotted, f"expected a finite number, got {value!r}")
    return float(value) if hint is float else value


def _accepts(hint: Any, value: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _is_float_text(value)
    if hint is str:
        return isinstance(value, str)
    return False


def _is_float_text(value: Any) -> bool:
    """PyYAML reads ``3e-4`` (no dot) as a string; users mean a number."""
    try:
        return isinstance(value, str) and float(value) == float(value)
    except ValueError:
        return False


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return "a mapping {" + ", ".join(f.name + ": ..." for f in fields(hint)) + "}"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _raise(source: str, dotted: str, problem: str) -> Any:
    raise ConfigError(source, dotted, problem)


def _resolve_paths(obj: Any, base: Path, root: Path | None = None) -> Any:
    """Return ``obj`` with every path field made absolute (data files against ``data.root``)."""
    if isinstance(obj, Config):
        data_root = Path(expand_path(obj.data.root)) if obj.data.root else None
        if data_root is not None and not data_root.is_absolute():
            data_root = base / data_root
        data = _resolve_paths(obj.data, base, data_root)
        if data_root is not None:
            data = dataclasses.replace(data, root=str(data_root))
        return dataclasses.replace(
            obj, output_dir=_absolute(obj.output_dir, base), data=data,
            training=_resolve_paths(obj.training, base))
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not f.metadata.get("path") or value is None or f.name == "root":
            continue
        if isinstance(value, ParallelFiles):
            changes[f.name] = ParallelFiles(_absolute(value.src, root or base), _absolute(value.tgt, root or base))
        elif isinstance(value, str) and value != "auto":
            changes[f.name] = _absolute(value, root or base)
    return dataclasses.replace(obj, **changes)


_VARIABLE = re.compile(r"\$\{(\w+):-([^}]*)\}")


def expand_path(path: str) -> str:
    """Expand ``~``, ``$VAR``/``${VAR}``, and ``${VAR:-default}`` (the default when VAR is unset or empty)."""
    path = _VARIABLE.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), path)
    return os.path.expanduser(os.path.expandvars(path))


def _absolute(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        expanded = Path(expand_path(path))
        return str(expanded if expanded.is_absolute() else (base / expanded).resolve())
    except (ValueError, OSError) as error:  # e.g. an embedded NUL byte
        raise ConfigError("config", "", f"invalid path {path!r}: {error}") from None


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    return obj
