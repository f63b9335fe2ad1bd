"""The command line's entry point (``main``: exit codes, one-line errors), its parser, and the
commands other than ``translate`` (``translate.py``) and ``serve`` (``serve.py``)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..version import __version__
from ..config import MAX_BEAM_SIZE, ConfigError
from ..data import SPLITS
from ..data.readers import split_paths
from ..training.progress import epochs
from ..explain.attribution import MAX_STEPS
from ..explain.explanation import EXPLAIN_METHODS
from ..storage.export import CTRANSLATE2_QUANTIZATIONS
from ..modules.quantized import QUANTIZATIONS
from ..outputs import check_output_file, check_output_folder
from ..explain.report import VIEWS
from .options import (add_config_args, beam_size_option, check_tag, config_from_args, load_model, path_points_option,
                      positive_int, split_or_file)
from .translate import add_translate
from .serve import add_serve
from .importing import add_import

__all__ = ["main"]

logger = logging.getLogger("cronos")


class _Format(logging.Formatter):
    """Progress and results as they are; warnings marked, as the CLI's errors are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"cronos: warning: {text}" if record.levelno >= logging.WARNING else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        code = args.run(args) or 0
        sys.stdout.flush()  # here, where a closed pipe is still ours to handle
        return code
    except BrokenPipeError:  # the reader went away (`cronos evaluate ... | head -1`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 128 + signal.SIGPIPE
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
    parser.add_argument("--version", action="version", version=f"cronos {__version__} (torch {torch.__version__})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parsers = [add(commands) for add in (_add_prepare, _add_train, _add_evaluate, add_translate, _add_explain,
                                         _add_score, _add_average, _add_export, add_serve, add_import)]
    _, _, evaluate, translate, explain, score, _, _, serve, _ = parsers
    for command in (evaluate, translate, score, serve):
        command.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                             help="int8: every linear layer computes in int8 on the CPU (faster decoding for "
                                  "larger models; an example's results still do not depend on its batch; "
                                  "docs/deployment.md)")
    for command in (evaluate, translate, explain, score, serve):
        command.add_argument("--device", default="auto",
                             help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N [auto]")
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _add_prepare(commands) -> argparse.ArgumentParser:
    prepare = commands.add_parser("prepare", help="read the data, build vocabularies, print statistics; with "
                                  "data.prepared, prepare the training split there once for every later run")
    add_config_args(prepare)
    prepare.add_argument("--workers", type=positive_int, metavar="N",
                         help="processes that tokenise the training split [data.workers]")
    prepare.set_defaults(run=_prepare)
    return prepare


def _add_train(commands) -> argparse.ArgumentParser:
    train = commands.add_parser("train", help="train a model from a config")
    add_config_args(train)
    train.set_defaults(run=_train)
    return train


def _add_evaluate(commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser("evaluate", help="score a checkpoint: loss, ppl, accuracies, BLEU, chrF")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", type=split_or_file, default="test",
                          help="split name (train/valid/test) or a TSV file [test]")
    evaluate.add_argument("--beam", type=beam_size_option, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    evaluate.add_argument("--tag", default=None, metavar="TAG",
                          help="start every source with this corpus tag, such as <2fr> (the direction to score)")
    evaluate.add_argument("--out", type=Path, default=None, help="also write the scores to this JSON file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    evaluate.set_defaults(run=_evaluate)
    return evaluate


def _add_explain(commands) -> argparse.ArgumentParser:
    explain = commands.add_parser("explain", help="attention and gradient attributions as JSON, PNG heatmaps "
                                                   "and an HTML report")
    explain.add_argument("checkpoint")
    explain.add_argument("texts", nargs="+", metavar="TEXT", help="source sentences")
    explain.add_argument("--target", dest="targets", action="append", default=None, metavar="TEXT",
                         help="force this output instead of decoding (once per TEXT, in order)")
    explain.add_argument("--beam", type=beam_size_option, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    explain.add_argument("--out", type=Path, default=None,
                         help="output folder [explanations/ beside the checkpoint]")
    explain.add_argument("--method", choices=EXPLAIN_METHODS, default="attention",
                         help="attention alone, or a gradient attribution beside it (needs cronos[attributions]) "
                              "[attention]")
    explain.add_argument("--steps", type=path_points_option, default=50,
                         help=f"integrated gradients' path points, 1 to {MAX_STEPS:,} (time grows linearly) [50]")
    explain.add_argument("--html", type=Path, default=None, metavar="PATH",
                         help="also write one self-contained HTML page of all the explanations")
    explain.add_argument("--overwrite", action="store_true", help="replace an existing --html page")
    explain.add_argument("--view", choices=VIEWS, default="auto",
                         help="subword models, in the HTML page: pieces, whole words, or auto (words, but pieces "
                              "for an example with a side written as one word, such as 1,234) [auto]")
    explain.set_defaults(run=_explain)
    return explain


def _add_score(commands) -> argparse.ArgumentParser:
    score = commands.add_parser("score", help="log-probability of each target given its source (TSV lines)")
    score.add_argument("checkpoint")
    score.add_argument("--data", type=split_or_file, default="test",
                       help="split name (train/valid/test) or a TSV file [test]")
    score.add_argument("--per-token", action="store_true", help="add each token's log-probability")
    score.add_argument("--batch-size", type=positive_int, default=None, help="pairs per batch")
    score.set_defaults(run=_score)
    return score


def _add_average(commands) -> argparse.ArgumentParser:
    average = commands.add_parser("average", help="average the weights of checkpoints into a new one")
    average.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                         help="checkpoints of one model; with --last, the run's output_dir")
    average.add_argument("--last", type=positive_int, default=None, metavar="N",
                         help="the run's last N kept checkpoints (training.keep_checkpoints)")
    average.add_argument("-o", "--out", type=Path, required=True, help="the averaged checkpoint (a new file)")
    average.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    average.set_defaults(run=_average)
    return average


def _add_export(commands) -> argparse.ArgumentParser:
    export = commands.add_parser("export", help="write a Transformer checkpoint as a CTranslate2 model folder "
                                 "(needs cronos[ctranslate2])")
    export.add_argument("checkpoint")
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the model folder (a new one)")
    export.add_argument("--format", choices=("ctranslate2",), required=True, help="the engine to export for")
    export.add_argument("--quantization", choices=CTRANSLATE2_QUANTIZATIONS, default="float32",
                        help="how the weights are stored: int8 makes the folder smaller; whether CTranslate2 "
                             "then decodes faster depends on the CPU (docs/deployment.md) [float32]")
    export.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    export.set_defaults(run=_export)
    return export


def _prepare(args: argparse.Namespace) -> int:
    from ..data import BucketBatchSampler, RandomBatchSampler, load_training_data, padded_share
    from ..training.start import start_from

    config = config_from_args(args, None if args.workers is None else {"data.workers": args.workers})
    if config.training.init_from is not None:  # read with the vocabulary the run will train with
        data = start_from(config).data
    else:
        data = load_training_data(config.data, seed=config.seed)
    src, tgt = data.examples.src_lengths, data.examples.tgt_lengths  # int32 [N] each
    batching = dict(batch_size=config.training.batch_size, batch_tokens=config.training.batch_tokens,
                    seed=config.seed)
    bucketed = BucketBatchSampler(src, tgt, **batching).batches(0)
    random_ = RandomBatchSampler(src, tgt, **batching).batches(0)
    filtered = "".join(f", filtered by {name} {count}" for name, count in sorted(data.stats.filtered.items()))
    print(f"examples: {len(data.examples)} (read {data.stats.read}, skipped empty {data.stats.skipped_empty}, "
          f"filtered long {data.stats.filtered_long}{filtered}, truncated {data.stats.truncated})")
    print(f"vocabulary: {len(data.src_vocab)} source, {len(data.tgt_vocab)} target tokens (specials included)")
    for side, lengths in (("source length", src), ("target length (+eos)", tgt)):
        print(f"{side}: min {int(lengths.min())}, mean {int(lengths.sum()) / len(lengths):.1f}, max {int(lengths.max())}")
    print(f"padded share, epoch 0: bucketed {padded_share(bucketed, src, tgt):.2%} "
          f"({len(bucketed)} batches), random {padded_share(random_, src, tgt):.2%}")
    if config.data.prepared is not None:
        print(f"prepared training split: {config.data.prepared}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..training.distributed import Processes
    from ..model import Cronos
    from ..training.run_folder import RunFolder

    main_process = Processes.from_environment().main
    if not main_process:  # under torchrun, rank 0 reports; the other processes only warn
        logging.getLogger().setLevel(logging.WARNING)
    config = config_from_args(args)
    model = Cronos.from_config(config)
    history = model.fit()
    if not main_process:  # rank 0 says how the run went
        return 0
    folder = RunFolder(Path(config.output_dir))
    if history.stopped_by:
        print(f"stopped by {history.stopped_by} at step {history.step} ({epochs(history.epochs_completed)} "
              f"completed); continue with --set training.resume=auto")
    else:
        print(f"trained {epochs(history.epochs_completed)}, {history.step} steps")
    last = history.last_validation
    if last is not None:
        summary = ", ".join(f"{k} {last[k]:.4g}" for k in ("train_loss", "valid_loss", "valid_sequence_accuracy",
                                                           "valid_bleu") if k in last)
        print(f"last validation (step {last['step']}): {summary}")
    print(f"best checkpoint: {folder.best}" if folder.best.exists() else
          f"no validation yet, so no best checkpoint; the run is in {folder.last}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out", args.overwrite, reading=[args.checkpoint, args.data])
    model = load_model(args)
    if args.out is not None and args.data in SPLITS:  # the split's files, as the model's config names them
        check_output_file(args.out, "--out", args.overwrite, reading=split_paths(getattr(model.config.data, args.data)
                                                                                 or ()))
    check_tag(model, args.tag)
    scores = model.evaluate(args.data, beam_size=args.beam, tag=args.tag)
    text = json.dumps({name: _json_number(value) for name, value in scores.items()}, indent=2, allow_nan=False)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _json_number(value):
    """JSON has no NaN or infinity: such a score would be written as null (the model's own log-probs
    are checked to be numbers, ``inference.NonFiniteOutput``; this keeps the output JSON whatever
    a metric gives)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _score(args: argparse.Namespace) -> int:
    """One line per pair, in order: index, log-prob (sum), per-token mean, tokens[, per-token log-probs]."""
    model = load_model(args)
    for index, score in enumerate(model.score(args.data, per_token=args.per_token, batch_size=args.batch_size)):
        fields = [str(index), f"{score.log_prob:.6f}", f"{score.mean_log_prob:.6f}", str(score.tokens)]
        if args.per_token:
            fields.append(" ".join(f"{p:.6f}" for p in score.token_log_probs))
        print("\t".join(fields))
    return 0


def _explain(args: argparse.Namespace) -> int:
    if args.targets is not None and len(args.targets) != len(args.texts):
        raise ConfigError("--target", "", f"give one --target per TEXT ({len(args.texts)}), got {len(args.targets)}")
    out = args.out or Path(args.checkpoint).resolve().parent / "explanations"
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", "", f"{out} is a file; --out names a folder for the explanations")
    check_output_folder(out, "--out")
    for number in range(1, len(args.texts) + 1):  # the folder's own explanation files are replaced
        for suffix in (".json", ".png", "_words.png"):
            check_output_file(out / f"explanation_{number}{suffix}", "--out", True, reading=[args.checkpoint])
    if args.html is not None:
        check_output_file(args.html, "--html", args.overwrite, reading=[args.checkpoint])
    model = load_model(args)
    out.mkdir(parents=True, exist_ok=True)
    explanations = model.explain(args.texts, args.targets, beam_size=args.beam, method=args.method,
                                 steps=args.steps)
    for number, explanation in enumerate(explanations, start=1):
        stem = out / f"explanation_{number}"
        stem.with_suffix(".json").write_text(json.dumps(explanation.to_dict(), ensure_ascii=False, indent=1) + "\n",
                                             encoding="utf-8")
        explanation.plot(stem.with_suffix(".png"))
        if explanation.word_pieces:  # subwords: also the heatmap over whole words
            explanation.to_words().plot(stem.parent / f"{stem.name}_words.png")
        print(f"{explanation.source}\t{explanation.output}\t{stem}.json\t{stem}.png")
    if args.html is not None:
        from ..explain.report import html_report

        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html_report(explanations, view=args.view), encoding="utf-8")
        print(f"report\t{args.html}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..storage.export import ExportError, export_ctranslate2
    from ..storage.checkpoint import read_model_file

    check_output_folder(args.out_dir.parent, "OUT_DIR")
    try:
        folder = export_ctranslate2(read_model_file(args.checkpoint), args.out_dir, args.quantization)
    except ExportError as error:
        raise ConfigError(str(args.checkpoint), "", str(error)) from None
    print(f"exported {args.checkpoint} to {folder} (CTranslate2, {args.quantization} weights)")
    return 0


def _average(args: argparse.Namespace) -> int:
    from ..storage.averaging import average_checkpoints
    from ..storage.checkpoint import save_checkpoint
    from ..training.run_folder import RunFolder

    if args.out.exists():
        raise ConfigError("--out", "", f"{args.out} exists; the average goes to a new file")
    check_output_file(args.out, "--out", overwrite=False, reading=args.checkpoints)
    paths = [Path(p) for p in args.checkpoints]
    if args.last is not None:
        if len(paths) != 1 or not paths[0].is_dir():
            raise ConfigError("--last", "", "takes one run folder (a run's output_dir), got "
                              + ", ".join(map(str, paths)))
        kept = RunFolder(paths[0]).kept_checkpoints()
        if len(kept) < args.last:
            raise ConfigError("--last", "", f"{paths[0]} keeps {len(kept)} checkpoint(s) in checkpoints/, fewer than "
                              f"{args.last}; train with training.keep_checkpoints >= {args.last}")
        paths = kept[-args.last:]
    if len(paths) < 2:
        raise ConfigError("CHECKPOINT", "", f"averaging needs at least two checkpoints, got {len(paths)}; give more, "
                          "or a run folder with --last N (N >= 2)")
    save_checkpoint(args.out, average_checkpoints(paths))
    print(f"averaged {len(paths)} checkpoints into {args.out}: {', '.join(map(str, paths))}")
    return 0
