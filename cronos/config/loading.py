"""Loading a config: YAML (or a mapping) -> a validated ``Config`` with absolute paths.

The schema (``schema.py``) declares each key; this module reads and checks.  Validation is strict:
an unknown key is an error that suggests the nearest valid key, a wrong type or a value outside
the key's range names the key, what was expected and what was found, a key given where its
section's type gives it no meaning (``model.decoder.attention`` for a transformer decoder) is an
error, and every message starts with the file it came from.  Untrusted input is bounded: size,
expansion (YAML aliases), depth, duplicate keys.

    cfg = load_config("configs/dates.yaml", overrides={"training.epochs": 2})
    key, value = parse_override("training.lr=3e-4")      # CLI --set key=value
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml

from ..files import UnreadableFile, read_bytes
from .schema import Config, ConfigError, DataFiles, ParallelFiles, all_keys, applies

__all__ = ["load_config", "parse_override", "config_from_dict", "config_to_dict", "with_changes", "without_inapplicable_keys",
           "check_size", "expand_path", "MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES", "MAX_CONFIG_DEPTH"]

logger = logging.getLogger("cronos")

# A config is a few dozen values four levels deep; anything far larger is refused before it is
# looked at (YAML aliases can make a few hundred bytes stand for billions of values).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 10_000
MAX_CONFIG_DEPTH = 32

RENAMED_SECTIONS = {"evaluation": "decoding"}  # a section's name in cronos 0.1 -> its name now


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
    raw = with_current_names(raw, source, warn=True)
    overrides = _overrides_with_current_names(overrides, overrides_source)
    created: set[str] = set()  # sections and keys that only the overrides name
    for key, value in overrides.items():
        check_size(value, overrides_source)
        if isinstance(value, str) and value != "auto" and _is_path_key(key):
            value = _absolute(value, Path.cwd())
        created |= _set_dotted(raw, key, value, source=overrides_source)
    switched = _switched_away(raw, overrides)
    for dotted in switched:
        _delete_dotted(raw, dotted)
    if switched:
        logger.warning("%s switched a type: dropped %s, set by %s for the type it switched away from",
                       overrides_source, ", ".join(switched), source)
    try:
        return config_from_dict(raw, source=source, base_dir=base)
    except ConfigError as error:
        if error.key in created or any(error.key == key or error.key.startswith(key + ".") for key in overrides):
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
    raw = with_current_names(raw, source, warn=False)
    try:
        config = _build(Config, raw, "", source)
    except ConfigError as error:
        raise ConfigError(source, error.key, error.problem) from None
    return _resolve_paths(config, base_dir or Path.cwd())


def with_current_names(raw: Any, source: str, warn: bool) -> Any:
    """``raw`` with each section of an old name (``RENAMED_SECTIONS``: cronos 0.1's ``evaluation``)
    under its current name, so old configs and checkpoints keep loading; ``warn``: ask the file to
    rename it.  Both names at once are an error."""
    if not isinstance(raw, Mapping) or not any(old in raw for old in RENAMED_SECTIONS):
        return raw
    renamed = dict(raw)
    for old, new in RENAMED_SECTIONS.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise ConfigError(source, old, f"is the old name of the {new} section, which this config sets too; "
                              f"keep one ({new})")
        renamed[new] = renamed.pop(old)
        if warn:
            logger.warning("%s: the %s section is now called %s; rename it (it is read as %s)", source, old, new, new)
    return renamed


def _overrides_with_current_names(overrides: Mapping[str, Any], source: str) -> dict[str, Any]:
    current = {}
    for key, value in overrides.items():
        section, dot, rest = key.partition(".")
        if section in RENAMED_SECTIONS:
            new = RENAMED_SECTIONS[section] + dot + rest
            logger.warning("%s: %s is now %s", source, key, new)
            key = new
        current[key] = value
    return current


def with_changes(section: Any, changes: Mapping[str, Any], name: str, source: str) -> Any:
    """``section`` (a config section, such as ``config.decoding``) with ``changes`` to its keys,
    checked as a config file's are (a message names ``name.KEY`` and ``source``)."""
    return _build(type(section), {**dataclasses.asdict(section), **changes}, f"{name}.", source)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON-safe) that ``config_from_dict`` reads back unchanged; keys that
    mean nothing for their section's type are left out (they would be refused)."""
    return _plain(config)


def without_inapplicable_keys(raw: Any) -> Any:
    """``raw`` without the keys that mean nothing for their section's type: configs stored in
    checkpoints by cronos 0.1 hold every key (``cell`` under a transformer encoder, too)."""
    kept = _deep_copy(raw)
    for dotted, _ in _inapplicable(Config, kept, ""):
        _delete_dotted(kept, dotted)
    return kept


def _inapplicable(cls: type, raw: Any, prefix: str) -> list[tuple[str, list[str]]]:
    """The keys in ``raw`` that mean nothing for their section's settings (``only_for``): each
    dotted name, with the dotted names of the sibling keys that decide it (``model.encoder.type``);
    unknown keys are left for validation to report."""
    if not isinstance(raw, Mapping):
        return []
    hints, known, defaults = typing.get_type_hints(cls), {f.name: f for f in fields(cls)}, cls()
    found = []
    for name, value in raw.items():
        if name not in known:
            continue
        only_for = known[name].metadata.get("only_for", ())
        if only_for and not any(raw.get(sibling, getattr(defaults, sibling)) == wanted
                                for sibling, wanted in only_for):
            found.append((prefix + name, [prefix + sibling for sibling, _ in only_for]))
        elif dataclasses.is_dataclass(hints[name]):
            found += _inapplicable(hints[name], value, f"{prefix}{name}.")
    return found


def _switched_away(raw: Any, overrides: Mapping[str, Any]) -> list[str]:
    """The keys the file sets for a type (or attention) that an override switched away from, such
    as the RNN's ``cell`` after ``--set model.encoder.type=transformer``: not errors, but dropped.
    A key an override sets itself, or that no override made inapplicable, stays (and is refused)."""
    return [dotted for dotted, deciding in _inapplicable(Config, raw, "")
            if dotted not in overrides and any(sibling in overrides for sibling in deciding)]


def _delete_dotted(raw: dict, dotted: str) -> None:
    *sections, name = dotted.split(".")
    node = raw
    for section in sections:
        node = node[section]
    del node[name]


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


def _read_yaml(path: Path) -> Any:
    try:
        text = read_bytes(path, "config", MAX_CONFIG_BYTES).decode("utf-8")
    except UnreadableFile as error:
        raise ConfigError(str(path), "", "config file not found" if error.missing else error.problem) from None
    except UnicodeDecodeError as error:
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


def _set_dotted(raw: Any, dotted: str, value: Any, source: str) -> set[str]:
    """Set ``dotted`` in ``raw``; return the dotted names of the sections and key this created."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "the config is not a mapping")
    parts = dotted.split(".")
    node, created = raw, set()
    for i, part in enumerate(parts):
        if part not in node:
            created.add(".".join(parts[: i + 1]))
        if i == len(parts) - 1:
            break
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(source, ".".join(parts[: i + 1]), "is not a section, cannot set a key inside it")
        node = child
    node[parts[-1]] = value
    return created


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
        section = cls(**values)
    except ConfigError as error:  # raised by a __post_init__ with a key relative to this section
        raise ConfigError(source, prefix + error.key, error.problem) from None
    for name in raw:
        if not applies(section, name):
            _refuse_inapplicable(section, name, prefix, source)
    return section


def _refuse_inapplicable(section: Any, name: str, prefix: str, source: str) -> None:
    """A key given where its section's settings make it mean nothing: silently ignoring it would
    hide a mistake (``attention: dot`` under a transformer decoder trains no dot attention)."""
    meta = {f.name: f for f in fields(section)}[name].metadata
    wanted = " or ".join(f"{sibling} `{value}`" for sibling, value in meta["only_for"])
    have = " and ".join(f"{prefix}{sibling} is `{getattr(section, sibling)}`" for sibling in dict(meta["only_for"]))
    raise ConfigError(source, prefix + name, f"means something only for {wanted}, and {have}: remove the key")


_BOUNDS = (("minimum", lambda value, limit: value < limit, ">="), ("maximum", lambda value, limit: value > limit, "<="),
           ("above", lambda value, limit: value <= limit, ">"), ("below", lambda value, limit: value >= limit, "<"))


def _check_range(value: Any, meta: Mapping[str, Any], dotted: str, source: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for bound, outside, relation in _BOUNDS:
        limit = meta.get(bound)
        if limit is not None and outside(value, limit):
            shown = f"{limit:g}" if isinstance(limit, float) else f"{limit:,}"
            raise ConfigError(source, dotted, f"expected a value {relation} {shown}, got {value!r}")


def _convert(hint: Any, value: Any, dotted: str, source: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:  # tuple[X, ...]: a YAML list of X
        if not isinstance(value, list):
            _raise(source, dotted, f"expected a list, got {_type_name(value)}")
        return tuple(_convert(args[0], item, f"{dotted}.{index}", source) for index, item in enumerate(value))
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:  # first the scalar forms, then lists, then mappings
            if not dataclasses.is_dataclass(option) and _accepts(option, value):
                return _convert(option, value, dotted, source)
        for option in options:
            if typing.get_origin(option) is tuple and isinstance(value, list):
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
    if origin is tuple:
        return f"a list of {_describe(args[0])}"
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
        elif isinstance(value, tuple):  # corpora: their files, as the data files resolve
            changes[f.name] = tuple(_resolve_paths(corpus, root or base) for corpus in value)
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
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj) if applies(obj, f.name)}
    if isinstance(obj, tuple):
        return [_plain(item) for item in obj]
    return obj
