"""``cronos translate``: input lines to output lines, one for one, with n-best lists, scores,
sampling, prefixes, constraints, decoding controls and word alignments."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from ..config import MAX_BEAM_SIZE, ConfigError, with_changes
from ..data import chunks
from ..data.readers import MAX_LINE_BYTES, DataError, text_lines
from ..files import UnreadableFile, bounded_lines, read_lines
from ..training.progress import is_terminal
from ..outputs import check_output_file
from ..decoding.alignment import moses
from .options import beam_size_option, check_input, check_tag, load_models, positive_int, sampling_option

__all__ = ["add_translate"]

logger = logging.getLogger("cronos")


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


def add_translate(commands) -> argparse.ArgumentParser:
    translate = commands.add_parser("translate", help="translate stdin to stdout, one sentence per line")
    translate.add_argument("checkpoint", nargs="+", metavar="CHECKPOINT",
                           help="a model, or several: an ensemble (the mean of their probabilities)")
    translate.add_argument("--beam", type=beam_size_option, default=None,
                          help=f"beam size, 1 to {MAX_BEAM_SIZE} (default: the config's)")
    translate.add_argument("--input", type=Path, default=None, metavar="FILE",
                           help="read the sentences from FILE instead of stdin")
    translate.add_argument("--output", type=Path, default=None, metavar="FILE",
                           help="write the translations to FILE instead of stdout (an existing FILE needs --overwrite)")
    translate.add_argument("--batch-size", type=positive_int, default=None,
                           help="sentences per batch from a file or a pipe [decoding.batch_size]; typed into a "
                                "terminal, each line is translated as soon as it is entered")
    translate.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    translate.add_argument("--n-best", type=beam_size_option, default=None, metavar="M",
                           help="M hypotheses per sentence (at most the beam size): index<TAB>score<TAB>text lines; "
                                "score: the log-probability over the length penalty (docs/decoding.md), in every search")
    translate.add_argument("--scores", action="store_true",
                           help="1-best as score<TAB>text lines (score as for --n-best)")
    translate.add_argument("--sampling", type=sampling_option, default=None, metavar="top_k=K|top_p=P|all",
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


def _translate(args: argparse.Namespace) -> int:
    """Input lines -> output lines, one for one: an empty input line gives an empty output line."""
    _check_translate_options(args)
    if args.input is not None:
        check_input(args.input)
    for option, path in (("--prefix", args.prefix), ("--constraints", args.constraints)):
        if path is not None:
            check_input(path, option)
    if args.output is not None:
        inputs = [*args.checkpoint, *(path for path in (args.input, args.prefix, args.constraints) if path is not None)]
        check_output_file(args.output, "--output", args.overwrite, reading=inputs)
    model = load_models(args)
    check_tag(model, args.tag)
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
