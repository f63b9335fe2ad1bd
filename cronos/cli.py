"""``cronos prepare|train|evaluate|translate|explain``: the command line over the Python API.

Exit codes: 0 success, 2 usage or config error (one line), 1 runtime error (one line);
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .config import ConfigError, load_config, parse_override

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.run(args) or 0
    except ConfigError as error:
        if args.debug:
            raise
        print(f"cronos: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cronos: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI's one place that turns errors into a message
        if args.debug:
            raise
        print(f"cronos: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cronos", description="Sequence-to-sequence models where padding is inert.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="read the data, build vocabularies, print statistics")
    _add_config_args(prepare)
    prepare.set_defaults(run=_prepare)
    return parser


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set training.epochs=2 (repeatable)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _load(args: argparse.Namespace):
    return load_config(args.config, overrides=dict(parse_override(item) for item in args.overrides))


def _prepare(args: argparse.Namespace) -> int:
    from .data import BucketBatchSampler, RandomBatchSampler, load_training_data, padded_share

    config = _load(args)
    data = load_training_data(config.data)
    src = [e.src_length for e in data.examples]
    tgt = [e.tgt_length for e in data.examples]
    batching = dict(batch_size=config.training.batch_size, batch_tokens=config.training.batch_tokens,
                    seed=config.seed)
    bucketed = BucketBatchSampler(src, tgt, **batching)
    random_ = RandomBatchSampler(src, tgt, **batching)
    print(f"examples: {len(data.examples)} (read {data.stats.read}, skipped empty {data.stats.skipped_empty}, "
          f"filtered long {data.stats.filtered_long}, truncated {data.stats.truncated})")
    print(f"vocabulary: {len(data.src_vocab)} source, {len(data.tgt_vocab)} target tokens (specials included)")
    print(f"source length: min {min(src)}, mean {sum(src) / len(src):.1f}, max {max(src)}")
    print(f"target length (+eos): min {min(tgt)}, mean {sum(tgt) / len(tgt):.1f}, max {max(tgt)}")
    print(f"padded share, epoch 0: bucketed {padded_share(bucketed.batches(0), src, tgt):.2%} "
          f"({len(bucketed)} batches), random {padded_share(random_.batches(0), src, tgt):.2%}")
    return 0
