"""``cronos prepare|train|evaluate|translate|explain|score|average|export|serve``: the command line over the
Python API.

    cronos train configs/dates.yaml --set training.epochs=2
    cronos evaluate runs/dates/best.pt --data test
    cronos average --last 5 runs/dates -o runs/dates/averaged.pt
    cronos export runs/dates_transformer/best.pt --format ctranslate2 runs/dates_transformer/ct2
    echo "Thu 26 Nov 2026" | cronos translate runs/dates/best.pt --beam 5
    cronos explain runs/dates/best.pt "Thu 26 Nov 2026" --out runs/dates/explanations
    cronos serve runs/dates/best.pt --port 8000


Exit codes: 0 success, 2 usage or config error (one line), 1 runtime error (one line);
``--debug`` shows the traceback instead.  Warnings go to stderr as ``cronos: warning: ...``.
"""
from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
from contextlib import ExitStack
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TextIO

import torch

from .version import __version__
from .config import MAX_BEAM_SIZE, ConfigError, load_config, parse_override, with_changes
from .data import SPLITS, chunks
from .data.readers import MAX_LINE_BYTES, DataError, split_paths, text_lines
from .files import UnreadableFile, bounded_lines, check_readable, read_bytes, read_lines
from .training.progress import epochs, is_terminal
from .explain.attribution import MAX_STEPS
from .explain.explanation import EXPLAIN_METHODS
from .storage.export import CTRANSLATE2_QUANTIZATIONS
from .modules.quantized import QUANTIZATIONS
from .outputs import check_output_file, check_output_folder
from .explain.report import VIEWS
from .decoding.alignment import moses

__all__ = ["main"]

logger = logging.getLogger("cronos")


class _Format(logging.Formatter):
    """Progress and results as they are; warnings marked, as the CLI's errors are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"cronos: warning: {text}" if record.levelno >= logging.WARNING else text


class _OncePerKind(logging.Filter):
    """Let each kind of warning (its message template) through once: ``translate`` warns per batch."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        first = record.msg not in self.seen
        self.seen.add(record.msg)
        return first


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
    parsers = [add(commands) for add in (_add_prepare, _add_train, _add_evaluate, _add_translate, _add_explain,
                                         _add_score, _add_average, _add_export, _add_serve)]
    _, _, evaluate, translate, explain, score, _, _, serve = parsers
    for command in (evaluate, translate, score, serve):
        command.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                             help="int8: every linear layer computes in int8 on the CPU (faster decoding; an "
                                  "example's results still do not depend on its batch; docs/deployment.md)")
    for command in (evaluate, translate, explain, score, serve):
        command.add_argument("--device", default="auto",
                             help="auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N [auto]")
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _add_prepare(commands) -> argparse.ArgumentParser:
    prepare = commands.add_parser("prepare", help="read the data, build vocabularies, print statistics; with "
                                  "data.prepared, prepare the training split there once for every later run")
    _add_config_args(prepare)
    prepare.add_argument("--workers", type=_positive, metavar="N",
                         help="processes that tokenise the training split [data.workers]")
    prepare.set_defaults(run=_prepare)
    return prepare


def _add_train(commands) -> argparse.ArgumentParser:
    train = commands.add_parser("train", help="train a model from a config")
    _add_config_args(train)
    train.set_defaults(run=_train)
    return train


def _add_evaluate(commands) -> argparse.ArgumentParser:
    evaluate = commands.add_parser("evaluate", help="score a checkpoint: loss, ppl, accuracies, BLEU, chrF")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", type=_split_or_file, default="test",
                          help="split name (train/valid/test) or a TSV file [test]")
    evaluate.add_argument("--beam", type=_beam_size, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    evaluate.add_argument("--tag", default=None, metavar="TAG",
                          help="start every source with this corpus tag, such as <2fr> (the direction to score)")
    evaluate.add_argument("--out", type=Path, default=None, help="also write the scores to this JSON file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    evaluate.set_defaults(run=_evaluate)
    return evaluate


def _add_translate(commands) -> argparse.ArgumentParser:
    translate = commands.add_parser("translate", help="translate stdin to stdout, one sentence per line")
    translate.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT",
                           help="a model, or several: an ensemble (the mean of their probabilities)")
    translate.add_argument("--beam", type=_beam_size, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    translate.add_argument("--input", type=Path, default=None, metavar="FILE",
                           help="read the sentences from FILE instead of stdin")
    translate.add_argument("--output", type=Path, default=None, metavar="FILE",
                           help="write the translations to FILE instead of stdout (an existing FILE needs --overwrite)")
    translate.add_argument("--batch-size", type=_positive, default=None,
                           help="sentences per batch from a file or a pipe [decoding.batch_size]; typed into a "
                                "terminal, each line is translated as soon as it is entered")
    translate.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    translate.add_argument("--n-best", type=_beam_size, default=None, metavar="M",
                           help="M hypotheses per sentence (at most the beam size): index<TAB>score<TAB>text lines; "
                                "score: the log-probability over length ** decoding.length_penalty, in every search")
    translate.add_argument("--scores", action="store_true",
                           help="1-best as score<TAB>text lines (score as for --n-best)")
    translate.add_argument("--sampling", type=_sampling, default=None, metavar="top_k=K|top_p=P|all",
                           help="sample instead of search (e.g. for back-translation)")
    translate.add_argument("--temperature", type=float, default=None, help="with --sampling [1.0]")
    translate.add_argument("--seed", type=int, default=0, help="with --sampling: the samples' seed [0]")
    translate.add_argument("--tag", default=None, metavar="TAG",
                           help="start every sentence with this corpus tag, such as <2fr> (a model trained on "
                                "several corpora with tags: the direction to translate into)")
    translate.add_argument("--prefix", type=Path, default=None, metavar="FILE",
                           help="a file of one line per input line: the text its translation must start with (an "
                                "empty line: none)")
    translate.add_argument("--constraints", type=Path, default=None, metavar="FILE",
                           help="a file of one line per input line: a JSON list of the phrases its translation must "
                                "hold, such as [\"der Hund\"] (an empty line: none)")
    translate.add_argument("--alignments", action="store_true",
                           help="add a column of word alignments: source-output word pairs i-j (Moses' format), "
                                "from the attention")
    _add_decoding_controls(translate)
    translate.set_defaults(run=_translate)
    return translate


def _add_decoding_controls(parser: argparse.ArgumentParser) -> None:
    """The options that change the config's decoding section for one command (docs/decoding.md)."""
    controls = parser.add_argument_group("decoding controls (default: the model config's decoding section)")
    controls.add_argument("--min-length", type=int, default=None, metavar="N", help="no output ends before N tokens")
    controls.add_argument("--no-repeat-ngram-size", type=int, default=None, metavar="N",
                          help="no output repeats an n-gram of N tokens")
    controls.add_argument("--length-penalty", type=float, default=None, metavar="ALPHA",
                          help="alpha of the length penalty")
    controls.add_argument("--length-penalty-form", choices=("power", "gnmt", "none"), default=None,
                          help="power: length ** alpha; gnmt: ((5 + length) / 6) ** alpha; none")
    controls.add_argument("--coverage-penalty", type=float, default=None, metavar="BETA",
                          help="weight of the GNMT coverage penalty")


DECODING_CONTROLS = ("min_length", "no_repeat_ngram_size", "length_penalty", "length_penalty_form",
                     "coverage_penalty")


def _decoding_changes(args: argparse.Namespace) -> dict:
    """The decoding controls given on the command line, as changes to the config's decoding section."""
    return {name: getattr(args, name) for name in DECODING_CONTROLS if getattr(args, name) is not None}


def _check_decoding_changes(model, args: argparse.Namespace) -> None:
    """A control out of its range is one line naming the option as typed."""
    try:
        with_changes(model.config.decoding, _decoding_changes(args), "decoding", "command line")
    except ConfigError as error:
        raise ConfigError(f"--{error.key.removeprefix('decoding.').replace('_', '-')}", "", error.problem) from None


def _add_explain(commands) -> argparse.ArgumentParser:
    explain = commands.add_parser("explain", help="attention and gradient attributions as JSON, PNG heatmaps "
                                                   "and an HTML report")
    explain.add_argument("checkpoint")
    explain.add_argument("texts", nargs="+", metavar="TEXT", help="source sentences")
    explain.add_argument("--target", dest="targets", action="append", default=None, metavar="TEXT",
                         help="force this output instead of decoding (once per TEXT, in order)")
    explain.add_argument("--beam", type=_beam_size, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    explain.add_argument("--out", type=Path, default=None,
                         help="output folder [explanations/ beside the checkpoint]")
    explain.add_argument("--method", choices=EXPLAIN_METHODS, default="attention",
                         help="attention alone, or a gradient attribution beside it (needs cronos[attributions]) "
                              "[attention]")
    explain.add_argument("--steps", type=_path_points, default=50,
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
    score.add_argument("--data", type=_split_or_file, default="test",
                       help="split name (train/valid/test) or a TSV file [test]")
    score.add_argument("--per-token", action="store_true", help="add each token's log-probability")
    score.add_argument("--batch-size", type=_positive, default=None, help="pairs per batch")
    score.set_defaults(run=_score)
    return score


def _add_average(commands) -> argparse.ArgumentParser:
    average = commands.add_parser("average", help="average the weights of checkpoints into a new one")
    average.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                         help="checkpoints of one model; with --last, the run's output_dir")
    average.add_argument("--last", type=_positive, default=None, metavar="N",
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


def _add_serve(commands) -> argparse.ArgumentParser:
    serve = commands.add_parser("serve", help="a translation server (HTTP, JSON) that batches concurrent requests "
                                "(needs cronos[serve])")
    serve.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT", help="a model, or several: an ensemble")
    serve.add_argument("--host", default="127.0.0.1",
                       help="the address to listen on; '' or 0.0.0.0 is every interface (put a reverse proxy and "
                            "--api-key-file in front: docs/deployment.md) [127.0.0.1]")
    serve.add_argument("--port", type=_port, default=8000, help="the port to listen on; 0 takes a free one [8000]")
    serve.add_argument("--max-batch-tokens", type=_positive, default=4096, metavar="N",
                       help="source tokens decoded together at most [4096]")
    serve.add_argument("--max-wait-ms", type=float, default=100.0, metavar="MS",
                       help="how long a batch waits at most for the clients just answered to send again [100]")
    serve.add_argument("--max-queue", type=_positive, default=1024, metavar="N",
                       help="sentences waiting at most; past that, requests get 503 [1024]")
    serve.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds a request waits for its answer; past that it gets 504 and its decoding stops [60]")
    serve.add_argument("--max-beam", type=_beam_size, default=16, metavar="N",
                       help="the largest beam_size (and n_best) a request may ask for [16]")
    serve.add_argument("--max-body-bytes", type=_positive, default=4 << 20, metavar="N",
                       help="the largest request body read; larger ones get 413 [4194304]")
    serve.add_argument("--client-timeout", type=float, default=30.0, metavar="S",
                       help="seconds a connection has to send a whole request; idle and slow ones are closed [30]")
    serve.add_argument("--max-connections", type=_positive, default=512, metavar="N",
                       help="connections open at once; past that, new ones get 503 [512]")
    serve.add_argument("--api-key-file", type=Path, default=None, metavar="FILE",
                       help="require the key in FILE (or in the environment variable CRONOS_API_KEY) as "
                            "Authorization: Bearer KEY on every request but /health and /docs")
    serve.set_defaults(run=_serve)
    return serve


def _sampling(text: str) -> dict:
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


def _split_or_file(text: str) -> str:
    if text not in SPLITS and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a split name ({', '.join(SPLITS)}) nor an existing file")
    return text


def _at_most(limit: int, what: str) -> Callable[[str], int]:
    """An argparse type: a positive integer of at most ``limit`` (``what`` says why, in the refusal)."""
    def parse(text: str) -> int:
        value = _positive(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"at most {limit:,} {what}, got {value:,}")
        return value
    return parse


_path_points = _at_most(MAX_STEPS, "path points (each a forward and backward pass per output token)")
_beam_size = _at_most(MAX_BEAM_SIZE, "(each beam is a copy of the decoder's state for every sentence)")


def _positive(text: str) -> int:
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


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                        help="override a config key, e.g. --set training.epochs=2 (repeatable)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _load(args: argparse.Namespace, options: dict[str, object] | None = None):
    """The config with ``--set``'s overrides and a command's own ``options`` (config keys it sets)."""
    overrides = dict(parse_override(item) for item in args.overrides) | (options or {})
    return load_config(args.config, overrides=overrides, overrides_source="--set")


def _prepare(args: argparse.Namespace) -> int:
    from .data import BucketBatchSampler, RandomBatchSampler, load_training_data, padded_share
    from .training.start import start_from

    config = _load(args, None if args.workers is None else {"data.workers": args.workers})
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
    from .training.distributed import Processes
    from .model import Cronos
    from .training.run_folder import RunFolder

    main_process = Processes.from_environment().main
    if not main_process:  # under torchrun, rank 0 reports; the other processes only warn
        logging.getLogger().setLevel(logging.WARNING)
    config = _load(args)
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


def _device(args: argparse.Namespace):
    from .device import resolve_device

    return resolve_device(args.device, "--device", "")


def _load_model(args: argparse.Namespace, checkpoint: str | None = None):
    """The model at ``checkpoint`` (``args.checkpoint`` by default) on ``--device``, int8 with ``--quantize``."""
    from .translator import Translator

    device, quantize = _device(args), getattr(args, "quantize", None)
    if quantize is not None and device.type != "cpu":
        raise ConfigError("--quantize", "", f"int8 linear layers run on the CPU, not on {device}; add --device cpu")
    return Translator.load(checkpoint or args.checkpoint, device, quantize)


def _load_models(args: argparse.Namespace):
    """``args.checkpoint``'s one model, or the ensemble of several."""
    from .model import Cronos

    members = [_load_model(args, checkpoint) for checkpoint in args.checkpoint]
    return Cronos.ensemble(members, _device(args)) if len(members) > 1 else members[0]


def _evaluate(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out", args.overwrite, reading=[args.checkpoint, args.data])
    model = _load_model(args)
    if args.out is not None and args.data in SPLITS:  # the split's files, as the model's config names them
        check_output_file(args.out, "--out", args.overwrite, reading=split_paths(getattr(model.config.data, args.data)
                                                                                 or ()))
    _check_tag(model, args.tag)
    scores = model.evaluate(args.data, beam_size=args.beam, tag=args.tag)
    text = json.dumps({name: _json_number(value) for name, value in scores.items()}, indent=2, allow_nan=False)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _check_tag(model, tag: str | None) -> None:
    """``--tag``: one of the model's tags, or one clear line."""
    try:
        model.codec.check_tag(tag)
    except ValueError as error:
        raise ConfigError("--tag", "", str(error)) from None


def _json_number(value):
    """JSON has no NaN or infinity: such a score would be written as null (the model's own log-probs
    are checked to be numbers, ``inference.NonFiniteOutput``; this keeps the output JSON whatever
    a metric gives)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _score(args: argparse.Namespace) -> int:
    """One line per pair, in order: index, log-prob (sum), per-token mean, tokens[, per-token log-probs]."""
    model = _load_model(args)
    for index, score in enumerate(model.score(args.data, per_token=args.per_token, batch_size=args.batch_size)):
        fields = [str(index), f"{score.log_prob:.6f}", f"{score.mean_log_prob:.6f}", str(score.tokens)]
        if args.per_token:
            fields.append(" ".join(f"{p:.6f}" for p in score.token_log_probs))
        print("\t".join(fields))
    return 0


def _translate(args: argparse.Namespace) -> int:
    """Input lines -> output lines, one for one: an empty input line gives an empty output line."""
    _check_translate_options(args)
    if args.input is not None:
        _check_input(args.input)
    for option, path in (("--prefix", args.prefix), ("--constraints", args.constraints)):
        if path is not None:
            _check_input(path, option)
    if args.output is not None:
        inputs = [*args.checkpoint, *(path for path in (args.input, args.prefix, args.constraints) if path is not None)]
        check_output_file(args.output, "--output", args.overwrite, reading=inputs)
    model = _load_models(args)
    _check_tag(model, args.tag)
    _check_decoding_changes(model, args)
    batch_size = args.batch_size or model.config.decoding.batch_size
    beam = args.beam or model.config.decoding.beam_size
    if args.n_best is not None and args.n_best > beam:
        raise ConfigError("--n-best", "", f"{args.n_best} hypotheses need a beam of at least {args.n_best} (the beam "
                          f"is {beam}); raise --beam")
    lines = _InputLines(args.input)
    typed = args.input is None and is_terminal(sys.stdin)  # a person waits for each line's translation
    with ExitStack() as stack:
        if args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)  # checked to be makeable, as evaluate makes it
        out = sys.stdout if args.output is None else stack.enter_context(
            open(args.output, "w", encoding="utf-8"))
        once = _OncePerKind()
        logger.addFilter(once)
        stack.callback(logger.removeFilter, once)
        empty_lines = _translate_lines(model, lines, 1 if typed else batch_size, batch_size, args, out)
    if empty_lines:
        shown = ", ".join(map(str, empty_lines[:10])) + (f" and {len(empty_lines) - 10} more" if len(empty_lines) > 10
                                                         else "")
        logger.warning("%d empty input line(s) gave empty output lines: line(s) %s", len(empty_lines), shown)
    if lines.error is not None:  # raised after the lines before the bad one were translated
        raise lines.error
    return 0


def _check_translate_options(args: argparse.Namespace) -> None:
    """Options that mean nothing together are refused, not silently ignored."""
    if args.sampling is not None and (args.n_best or args.scores or args.beam):
        raise ConfigError("--sampling", "", "samples are drawn, not searched: leave out --beam, --n-best and --scores")
    if args.sampling is None and args.temperature is not None:
        raise ConfigError("--temperature", "", "shapes the distribution samples are drawn from; add --sampling")
    if args.scores and args.n_best:
        raise ConfigError("--scores", "", "--n-best prints every hypothesis's score already; leave out --scores")
    if args.sampling is not None and args.alignments:
        raise ConfigError("--alignments", "", "aligns the outputs of a search; leave out --sampling")
    if args.sampling is not None and args.constraints is not None:
        raise ConfigError("--constraints", "", "constraints are met by beam search, and samples are drawn; leave out "
                          "--sampling or --constraints")


def _check_input(path: Path, option: str = "--input") -> None:
    try:
        check_readable(path, "text")
    except UnreadableFile as error:
        raise ConfigError(option, "", str(error)) from None


def _translate_lines(model, lines: Iterable[tuple[int, str]], chunk_size: int, batch_size: int,
                     args: argparse.Namespace, out: TextIO) -> list[int]:
    """Translate ``lines`` ``chunk_size`` at a time into ``out``; return the numbers of the empty ones."""
    write = _writer(args, out)
    empty_lines: list[int] = []
    aligned = (_AlignedLines(args.prefix, "--prefix", _prefix_line),
               _AlignedLines(args.constraints, "--constraints", _constraints_line))
    for chunk in chunks(lines, chunk_size):  # a stream: translated as it comes
        examples = model.codec.encode_lines([text for _, text in chunk], args.tag)  # None: an empty line
        real = [i for i, example in enumerate(examples) if example is not None]
        args.prefixes, args.constraints_given = (None if found is None else [found[i] for i in real]
                                                 for found in (file.take(chunk, model.codec) for file in aligned))
        decoded = _decode(model, [examples[i] for i in real], args, batch_size) if real else []
        translated = dict(zip(real, decoded))
        for i, (number, _) in enumerate(chunk):
            write(number - 1, translated.get(i))
        empty_lines.extend(number for i, (number, _) in enumerate(chunk) if i not in translated)
        out.flush()
    for file in aligned:
        file.check_finished()
    return empty_lines


def _decode(model, examples: list, args: argparse.Namespace, batch_size: int) -> list:
    """``translate``'s outputs for ``examples`` (of the input lines): searched (1-best, n-best, scored) or sampled."""
    if args.sampling is not None:
        try:
            temperature = 1.0 if args.temperature is None else args.temperature
            return model.sample(examples, temperature=temperature, seed=args.seed, batch_size=batch_size,
                                prefixes=args.prefixes, decoding=_decoding_changes(args), **args.sampling)
        except ValueError as error:  # top_k < 1, top_p outside (0, 1], a temperature <= 0
            raise ConfigError("--sampling", "", str(error)) from None
    n_best = args.n_best or (1 if args.scores else None)
    return model.translate(examples, beam_size=args.beam, batch_size=batch_size, n_best=n_best,
                           prefixes=args.prefixes, constraints=args.constraints_given, decoding=_decoding_changes(args),
                           alignments=args.alignments)


def _writer(args: argparse.Namespace, out: TextIO):
    """How ``translate`` writes an input's result (None for an empty input line) to ``out``; with
    ``--alignments``, each hypothesis's Moses pairs in one more column."""
    def aligned(hypothesis) -> str:
        return f"\t{moses(hypothesis.alignment)}" if args.alignments else ""

    def plain(index: int, result) -> None:
        if args.alignments:
            print(f"{result[0].text}{aligned(result[0])}" if result else "", file=out)
        else:
            print(result or "", file=out)

    def scored(index: int, result) -> None:
        print(f"{result[0].score:.6f}\t{result[0].text}{aligned(result[0])}" if result else "", file=out)

    def n_best(index: int, result) -> None:
        for hypothesis in result or []:  # an empty input line has no hypotheses
            print(f"{index}\t{hypothesis.score:.6f}\t{hypothesis.text}{aligned(hypothesis)}", file=out)
    return n_best if args.n_best else scored if args.scores else plain


class _InputLines:
    """``(line number, text)`` for each line of ``path`` (None: stdin), read as it comes (the data
    readers' rules: ``text_lines``, each line at most ``MAX_LINE_BYTES``).  A bad line ends the
    iteration and is kept in ``error``, so that the lines before it are still handed out."""

    def __init__(self, path: Path | None):
        self.path, self.error = path, None

    def __iter__(self) -> Iterator[tuple[int, str]]:
        raw_lines = (bounded_lines(sys.stdin.buffer, "stdin", MAX_LINE_BYTES) if self.path is None
                     else read_lines(self.path, "text", MAX_LINE_BYTES))
        try:
            yield from text_lines(raw_lines, "stdin" if self.path is None else str(self.path))
        except (DataError, UnreadableFile) as error:
            self.error = error


class _AlignedLines:
    """A file of one line per input line (``--prefix``, ``--constraints``), read in step with the
    input; ``parse(text, what, codec)`` turns a line into what ``translate`` takes, checked to be
    text the model can write (``ValueError`` otherwise)."""

    def __init__(self, path: Path | None, option: str, parse):
        self.path, self.option, self.parse, self.taken = path, option, parse, 0
        self.lines = None if path is None else iter(text_lines(read_lines(path, "text", MAX_LINE_BYTES), str(path)))

    def take(self, chunk: list[tuple[int, str]], codec) -> list | None:
        """What ``chunk``'s lines take from the file (None without the option)."""
        if self.lines is None:
            return None
        found = []
        for _ in chunk:
            try:
                number, text = next(self.lines, (None, None))
                if number is not None:
                    found.append(self.parse(text, f"line {number}", codec))
            except (ValueError, UnreadableFile) as error:  # DataError is a ValueError
                raise ConfigError(self.option, "", f"{self.path}: {error}") from None
            if number is None:
                raise ConfigError(self.option, "", f"{self.path} has {self.taken} lines and the input more; give one "
                                  "line per input line (an empty one for none)")
            self.taken += 1
        return found

    def check_finished(self) -> None:
        if self.lines is not None and next(self.lines, None) is not None:
            raise ConfigError(self.option, "", f"{self.path} has more lines than the input's {self.taken}; give one "
                              "line per input line")


def _prefix_line(text: str, what: str, codec) -> str | None:
    """A ``--prefix`` line: the text an output starts with, or None for an empty line."""
    if not text.strip():
        return None
    codec.output_ids(text, f"the prefix of {what}")
    return text


def _constraints_line(text: str, what: str, codec) -> list[str]:
    """A ``--constraints`` line: a JSON list of phrases (an empty line: none)."""
    if not text.strip():
        return []
    try:
        phrases = json.loads(text)
    except json.JSONDecodeError:
        phrases = None
    if not isinstance(phrases, list) or not all(isinstance(phrase, str) for phrase in phrases):
        raise ValueError(f"{what} is not a JSON list of phrases, such as [\"der Hund\", \"im Park\"]")
    for number, phrase in enumerate(phrases, 1):
        codec.output_ids(phrase, f"phrase {number} of {what}")
    return phrases


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
    model = _load_model(args)
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
        from .explain.report import html_report

        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(html_report(explanations, view=args.view), encoding="utf-8")
        print(f"report\t{args.html}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .storage.export import ExportError, export_ctranslate2
    from .storage.checkpoint import read_model_file

    check_output_folder(args.out_dir.parent, "OUT_DIR")
    try:
        folder = export_ctranslate2(read_model_file(args.checkpoint), args.out_dir, args.quantization)
    except ExportError as error:
        raise ConfigError(str(args.checkpoint), "", str(error)) from None
    print(f"exported {args.checkpoint} to {folder} (CTranslate2, {args.quantization} weights)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if any(find_spec(name) is None for name in ("fastapi", "uvicorn", "prometheus_client")):
        raise ConfigError("serve", "", "needs the serve extra: pip install 'cronos[serve]'")
    from .server import LimitError, Limits, listen, serve
    from .server.connections import raise_file_limit

    try:
        limits = Limits(max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                        timeout=args.timeout, max_beam=args.max_beam, max_body_bytes=args.max_body_bytes,
                        client_timeout=args.client_timeout, max_connections=args.max_connections)
        raise_file_limit(limits.max_connections)
    except LimitError as error:
        raise ConfigError(error.option, "", str(error)) from None
    except ValueError as error:
        raise ConfigError("--max-connections", "", str(error)) from None
    api_key = _api_key(args.api_key_file)
    try:
        sock = listen(args.host, args.port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ConfigError("--port", "", f"{args.host}:{args.port} is in use (another server?); choose "
                              "another port") from None
        raise ConfigError("--host", "", f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    with sock:
        model = _load_models(args)
        if model.config.decoding.beam_size > limits.max_beam:
            raise ConfigError("--max-beam", "", f"{limits.max_beam} is below the model's beam size "
                              f"({model.config.decoding.beam_size}, decoding.beam_size); raise --max-beam")
        _say_where(args.checkpoint, sock.getsockname(), api_key is not None)
        serve(model, sock, limits, api_key)
    return 0


def _say_where(checkpoints: list[str], address: tuple, keyed: bool) -> None:
    """Where the server listens (the port it got, for --port 0), and who can reach it."""
    from .server import is_loopback

    host, port = address[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {', '.join(checkpoints)} on {url} (POST /translate, POST /score, GET /health, GET /metrics; "
          f"what each takes: {url}/docs)", file=sys.stderr, flush=True)
    if not is_loopback(host):
        reach = "every interface of this machine" if host in ("0.0.0.0", "::") else host
        logger.warning("listening on %s: anyone who can reach it can use this server%s; see docs/deployment.md, "
                       "Exposing a server", reach, "" if keyed else ", and it asks for no API key (--api-key-file)")


def _api_key(path: Path | None) -> str | None:
    """The key clients must send: ``--api-key-file``'s content, else ``CRONOS_API_KEY``, else none."""
    if path is None:
        key = os.environ.get("CRONOS_API_KEY")
        source = "CRONOS_API_KEY"
    else:
        try:
            key = read_bytes(path, "API key", limit=4096).decode("utf-8")
        except (UnreadableFile, UnicodeDecodeError) as error:
            raise ConfigError("--api-key-file", "", str(error)) from None
        source = f"--api-key-file {path}"
    if key is not None and not key.strip():
        raise ConfigError(source.split()[0], "", f"{source} holds no key")
    return None if key is None else key.strip()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number, 0 to 65535, got {port}")
    return port


def _average(args: argparse.Namespace) -> int:
    from .storage.averaging import average_checkpoints
    from .storage.checkpoint import save_checkpoint
    from .training.run_folder import RunFolder

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
