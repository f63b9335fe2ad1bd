"""What the commands share: argument types, the config a command reads, the model it loads, checks
of its tag and input files."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Callable

from ..config import MAX_BEAM_SIZE, ConfigError, load_config, parse_override
from ..data import SPLITS
from ..files import UnreadableFile, check_readable
from ..explain.attribution import MAX_STEPS

__all__ = ["sampling_option", "config_from_args", "positive_int", "beam_size_option", "path_points_option",
           "split_or_file", "check_tag", "check_input", "load_model", "load_models", "add_config_args"]

logger = logging.getLogger("cronos")


def sampling_option(text: str) -> dict:
    """``top_k=K``, ``top_p=P`` or ``all`` -> keyword arguments of ``Cronos.sample``."""
    if text == "all":
        return {}
    name, _, value = text.partition("=")
    try:
        if name == "top_k":
            return {"top_k": int(value)}
        if name == "top_p":
            return {"top_p": float(value)}
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected top_k=K, top_p=P or all, got {text!r}")


def split_or_file(text: str) -> str:
    if text not in SPLITS and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a split name ({', '.join(SPLITS)}) nor an existing file")
    return text


def _at_most(limit: int, what: str) -> Callable[[str], int]:
    """An argparse type: a positive integer of at most ``limit`` (``what`` says why, in the refusal)."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit:,} {what}, got {value:,}")
        return value
    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _key_value(text: str) -> str:
    """``--set`` takes one ``KEY=VALUE`` word: ``--set training.epochs 5`` is refused here, naming the
    option, before argparse would call the ``5`` an unrecognized argument."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with no space around '=', e.g. --set "
                                          f"{text or 'KEY'}=VALUE, got {text!r}")
    return text

path_points_option = _at_most(MAX_STEPS, "path points (each a forward and backward pass per output token)")

beam_size_option = _at_most(MAX_BEAM_SIZE, "(each beam is a copy of the decoder's state for every sentence)")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                        help="override a config key, e.g. --set training.epochs=2 (repeatable)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace, options: dict[str, object] | None = None):
    """The config with ``--set``'s overrides and a command's own ``options`` (config keys it sets)."""
    overrides = dict(parse_override(item) for item in args.overrides) | (options or {})
    return load_config(args.config, overrides=overrides, overrides_source="--set")


def _device(args: argparse.Namespace):
    from ..device import resolve_device

    return resolve_device(args.device, "--device", "")


def load_model(args: argparse.Namespace, checkpoint: str | None = None):
    """The model at ``checkpoint`` (``args.checkpoint`` by default) on ``--device``, int8 with ``--quantize``."""
    from ..translator import Translator

    device, quantize = _device(args), getattr(args, "quantize", None)
    if quantize is not None and device.type != "cpu":
        raise ConfigError("--quantize", "", f"int8 linear layers run on the CPU, not on {device}; add --device cpu")
    return Translator.load(checkpoint or args.checkpoint, device, quantize)


def load_models(args: argparse.Namespace):
    """``args.checkpoint``'s one model, or the ensemble of several."""
    from ..model import Cronos

    members = [load_model(args, checkpoint) for checkpoint in args.checkpoint]
    return Cronos.ensemble(members, _device(args)) if len(members) > 1 else members[0]


def check_tag(model, tag: str | None) -> None:
    """``--tag``: one of the model's tags, or one clear line."""
    try:
        model.codec.check_tag(tag)
    except ValueError as error:
        raise ConfigError("--tag", "", str(error)) from None


def check_input(path: Path, option: str = "--input") -> None:
    try:
        check_readable(path, "text")
    except UnreadableFile as error:
        raise ConfigError(option, "", str(error)) from None
