"""``cronos prepare|train|evaluate|translate|explain``: the command line over the Python API.

    cronos train configs/dates.yaml --set training.epochs=2
    cronos evaluate runs/dates/best.pt --data test
    echo "Thu 26 Nov 2026" | cronos translate runs/dates/best.pt --beam 5
    cronos explain runs/dates/best.pt "Thu 26 Nov 2026" --out runs/dates/explanations


Exit codes: 0 success, 2 usage or config error (one line), 1 runtime error (one line);
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Iterator, Sequence

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

    train = commands.add_parser("train", help="train a model from a config")
    _add_config_args(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint: loss, ppl, accuracies, BLEU, chrF")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", default="test", help="split name (train/valid/test) or a TSV file [test]")
    evaluate.add_argument("--beam", type=_positive, default=None, help="beam size (default: the config's)")
    evaluate.add_argument("--out", type=Path, default=None, help="also write the scores to this JSON file")
    evaluate.set_defaults(run=_evaluate)

    translate = commands.add_parser("translate", help="translate stdin to stdout, one sentence per line")
    translate.add_argument("checkpoint")
    translate.add_argument("--beam", type=_positive, default=None, help="beam size (default: the config's)")
    translate.add_argument("--batch-size", type=_positive, default=None, help="sentences per batch")
    translate.set_defaults(run=_translate)

    explain = commands.add_parser("explain", help="attention explanations as JSON and PNG heatmaps")
    explain.add_argument("checkpoint")
    explain.add_argument("texts", nargs="+", metavar="TEXT", help="source sentences")
    explain.add_argument("--target", dest="targets", action="append", default=None, metavar="TEXT",
                         help="force this output instead of decoding (once per TEXT, in order)")
    explain.add_argument("--beam", type=_positive, default=None, help="beam size (default: the config's)")
    explain.add_argument("--out", type=Path, default=None,
                         help="output folder [explanations/ beside the checkpoint]")
    explain.set_defaults(run=_explain)
    for command in (evaluate, translate, explain):
        command.add_argument("--device", default="auto",
                             help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N [auto]")
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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


def _train(args: argparse.Namespace) -> int:
    from .model import Cronos

    config = _load(args)
    model = Cronos.from_config(config)
    history = model.fit()
    best = Path(config.output_dir) / "best.pt"
    if history:
        last = history[-1]
        summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("train_loss", "valid_loss", "valid_sequence_accuracy",
                                                           "valid_bleu") if k in last)
        print(f"trained {last['epoch']} epochs, {last['step']} steps: {summary}")
    print(f"best checkpoint: {best}" if best.exists() else
          f"no validation yet, so no best checkpoint; the run is in {best.parent / 'last.pt'}")
    return 0


def _load_model(args: argparse.Namespace):
    from .device import resolve_device
    from .model import Cronos

    return Cronos.load(args.checkpoint, resolve_device(args.device, "--device", ""))


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args)
    scores = model.evaluate(args.data, beam_size=args.beam)
    text = json.dumps(scores, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _translate(args: argparse.Namespace) -> int:
    model = _load_model(args)
    batch_size = args.batch_size or model.config.evaluation.batch_size
    for first_line, chunk in _chunks(sys.stdin, batch_size):
        for offset, text in enumerate(chunk):
            if not model.tokenizer.tokenize(text):
                raise ValueError(f"stdin line {first_line + offset}: empty input; every line needs a sentence")
        for output in model.translate(chunk, beam_size=args.beam, batch_size=batch_size):
            print(output)
        sys.stdout.flush()
    return 0


def _chunks(lines, size: int) -> Iterator[tuple[int, list[str]]]:
    chunk, first = [], 1
    for number, line in enumerate(lines, start=1):
        chunk.append(line.rstrip("\n").rstrip("\r"))
        if len(chunk) == size:
            yield first, chunk
            chunk, first = [], number + 1
    if chunk:
        yield first, chunk


def _explain(args: argparse.Namespace) -> int:
    if args.targets is not None and len(args.targets) != len(args.texts):
        raise ConfigError("--target", "", f"give one --target per TEXT ({len(args.texts)}), got {len(args.targets)}")
    model = _load_model(args)
    out = args.out or Path(args.checkpoint).resolve().parent / "explanations"
    out.mkdir(parents=True, exist_ok=True)
    explanations = model.explain(args.texts, args.targets, beam_size=args.beam)
    for number, explanation in enumerate(explanations, start=1):
        stem = out / f"explanation_{number}"
        stem.with_suffix(".json").write_text(json.dumps(explanation.to_dict(), ensure_ascii=False, indent=1) + "\n",
                                             encoding="utf-8")
        explanation.plot(stem.with_suffix(".png"))
        print(f"{explanation.source}\t{explanation.output}\t{stem}.json\t{stem}.png")
    return 0
