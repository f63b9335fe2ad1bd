"""A prepared training split: a folder (``data.prepared``) of memory-mapped arrays, written once and
then read by every run and process, with a manifest of what it was made from.

    prepared = open_prepared(config, tokenizers, subwords, vocabularies)   # prepares it first when needed

The folder holds the ``ExampleTable`` arrays (``src_ids.npy``, ``src_offsets.npy``, ``tgt_ids.npy``,
``tgt_offsets.npy``), the examples' line numbers (``lines.npy``), the vocabularies
(``vocabularies.json``), the SentencePiece models (``source.model``, ``target.model``) and
``manifest.json`` (``manifest.py``: the settings that decide the arrays, the data files and the
folder's own files, with their digests).

It is used only when the manifest matches: a folder made from other data or settings, by another
version, or whose files were truncated or edited is prepared again (one line says why).  One
process prepares while the others wait (a POSIX lock on ``NAME.lock`` beside the folder: processes
of one machine, or of several sharing a file system that honours locks; the kernel lets go of it
when its process ends, however it ends), into a marked temporary folder renamed into place when
complete, so a kill or a full disk never leaves a folder that a later run would use.  A folder
cronos did not write (no manifest, another program's manifest, files beside the split) is never
replaced, and only cronos's own temporary folders are ever removed (``files.remove_abandoned``).

Several corpora (``data.train`` as a list) make a folder of prepared splits: ``corpora/NAME`` for
each corpus, with every token it holds as its vocabulary, and ``joined``, their examples one
corpus after the other under the run's vocabularies (``joined.py``).  A corpus whose folder
matches is not tokenised again; the join is made again whenever the list or the vocabularies
change.  SentencePiece models trained on the data change with every corpus added, and with them
every corpus's pieces: then every corpus is prepared again (a given model, or a model's own
from ``training.init_from``, keeps them).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import DataConfig
from ..files import TEMPORARY_MARK, holder_of, mark_temporary, note_holder, remove_abandoned, temporary_folder
from .manifest import file_facts, not_replaceable, stale_reason, write_manifest
from .joined import counted_vocabularies, join_parts
from .preparation import CorporaOrigins, LineOrigins, Prepared, prepare_split, training_files
from .preprocess import PreprocessStats
from .readers import DataError, split_paths
from .subwords import SubwordModels
from .table import ExampleTable
from .tokenizers import Tokenizer
from .codec import tokenizers_for
from .vocab import Vocabulary

__all__ = ["open_prepared"]

TEMPORARY_KINDS = ("partial", "old")  # NAME.partial-*: being prepared; NAME.old-*: a replaced split
CORPORA, JOINED = "corpora", "joined"  # with several corpora: each one's folder, and their join's

logger = logging.getLogger("cronos")


def open_prepared(config: DataConfig, seed: int, subwords: SubwordModels | None,
                  vocabularies: tuple[Vocabulary, Vocabulary] | None,
                  models_for: Callable[[], SubwordModels | None]) -> tuple[Prepared, SubwordModels | None]:
    """The training split prepared in ``config.prepared`` and its SentencePiece models: prepared
    there first when the folder is missing or does not match (``stale_reason``), with the given
    ``subwords`` or ``models_for()``'s (trained for ``seed``: only when the split is prepared),
    then memory-mapped.  Several corpora (``data.train`` as a list) are each prepared in a folder
    of their own, ``corpora/NAME``, and joined in ``joined``: a corpus prepared before is not
    tokenised again."""
    folder = _place(Path(config.prepared))
    several = isinstance(config.train, tuple)
    split = folder / JOINED if several else folder
    settings = _settings(config, seed, subwords, vocabularies)
    with _locked(folder) as held:
        reason = stale_reason(split, settings)
        if reason is not None:
            if not held:
                raise DataError(f"data.prepared: {folder} cannot be used ({reason}) and cannot be prepared again "
                                "here (no lock can be written beside it); prepare it where it can be written, or "
                                "point data.prepared at a folder of your own")
            (_refuse_foreign_corpora if several else _refuse_foreign)(folder)
            logger.info("preparing the training split in %s (%s)", split, reason)
            models = models_for() if subwords is None and config.tokenizer == "sentencepiece" else subwords
            if vocabularies is None and models is not None:
                vocabularies = models.vocabularies()  # the models' pieces, not counted ones
            tokenizers = tokenizers_for(config, models)
            if several:
                _prepare_corpora(folder, config, seed, tokenizers, models, vocabularies, settings)
            else:
                _prepare(folder, config, tokenizers, models, vocabularies, settings)
    return _read(split), subwords or _stored_subwords(split)


def _place(folder: Path) -> Path:
    """``data.prepared`` as an absolute path, refused with one line where no folder can be made."""
    folder = Path(os.path.abspath(folder))
    if folder.name == "":
        raise DataError(f"data.prepared: {folder} is the root of the file system; name a folder of its own for the "
                        "prepared split, such as /data/prepared")
    for above in folder.parents:
        if above.exists() or above.is_symlink():
            if not above.is_dir():
                raise DataError(f"data.prepared: {folder} is under {above}, which is a file, not a folder; point "
                                "data.prepared at a folder")
            break
    return folder


def _refuse_foreign_corpora(folder: Path) -> None:
    """The folder of several corpora holds ``corpora/`` and ``joined/`` (and their temporary
    folders) and nothing else; a prepared split of one corpus there is not replaced either."""
    if (folder / "manifest.json").exists():
        raise DataError(f"data.prepared: {folder} holds the prepared split of one corpus, and data.train lists "
                        "several; point data.prepared at a new folder, or delete this one")
    problem = None
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        problem = not_replaceable(folder)
    elif folder.is_dir():
        ours = re.compile(rf"{CORPORA}|{JOINED}(\.({'|'.join(TEMPORARY_KINDS)})-.+)?")
        foreign = sorted(path.name for path in folder.iterdir() if not ours.fullmatch(path.name))
        if foreign:
            problem = f"holds files cronos did not write beside the prepared corpora ({', '.join(foreign[:5])})"
    if problem is not None:
        raise DataError(f"data.prepared: {folder} {problem}; give a new or empty folder, or delete it")
    _refuse_foreign(folder / JOINED)


def _refuse_foreign(folder: Path) -> None:
    """A folder that holds anything but a prepared split is never replaced: it may be someone's data."""
    problem = not_replaceable(folder)
    if problem is not None:
        raise DataError(f"data.prepared: {folder} {problem}; give a new or empty folder, or delete it")


def _settings(config: DataConfig, seed: int, subwords: SubwordModels | None,
              vocabularies: tuple[Vocabulary, Vocabulary] | None) -> dict[str, Any]:
    """What decides a prepared split's arrays: equal settings, equal arrays."""
    trains_models = config.tokenizer == "sentencepiece" and subwords is None and config.sentencepiece.model is None
    options = asdict(config.sentencepiece) if config.tokenizer == "sentencepiece" else None
    if options is not None:
        del options["sampling_alpha"], options["nbest_size"]  # sampling is no part of the arrays
    return {
        "data": [path for files in training_files(config) for path in split_paths(files)],
        "tokenizer": config.tokenizer, "lowercase": config.lowercase, "source_eos": config.source_eos,
        "max_length": config.max_length, "long_policy": config.long_policy, "empty_policy": config.empty_policy,
        "filters": asdict(config.filters),
        "min_freq": config.min_freq, "max_vocab_size": config.max_vocab_size, "sentencepiece": options,
        "seed": seed if trains_models else None,
        "subwords": None if subwords is None else [_digest(subwords.source), _digest(subwords.target)],
        "vocabularies": None if vocabularies is None else [_vocabulary_digest(v) for v in vocabularies],
    }


def _prepare(folder: Path, config: DataConfig, tokenizers: tuple[Tokenizer, Tokenizer],
             subwords: SubwordModels | None, vocabularies: tuple[Vocabulary, Vocabulary] | None,
             settings: dict[str, Any]) -> None:
    """Prepare ``data.train`` into a temporary folder beside ``folder``, then put it in ``folder``'s place."""
    _write_split(folder, settings, subwords, lambda partial: prepare_split(config, tokenizers, vocabularies, partial))


def _prepare_corpora(folder: Path, config: DataConfig, seed: int, tokenizers: tuple[Tokenizer, Tokenizer],
                     subwords: SubwordModels | None, vocabularies: tuple[Vocabulary, Vocabulary] | None,
                     settings: dict[str, Any]) -> None:
    """Each corpus of ``data.train`` in ``folder/corpora/NAME``, with every token it holds (tokenised
    only where that folder does not match), then their join under ``vocabularies`` (else counted
    over the corpora) in ``folder/joined``."""
    parts, kept = [], 0
    for corpus in config.train:
        part = folder / CORPORA / _folder_name(corpus.label)
        part_config = dataclasses.replace(config, train=corpus.files, min_freq=1, max_vocab_size=None)
        part_settings = _settings(part_config, seed, subwords, None)
        if stale_reason(part, part_settings) is None:
            kept += 1
        else:
            _refuse_foreign(part)
            logger.info("preparing the corpus %s in %s", corpus.label, part)
            _prepare(part, part_config, tokenizers, subwords, None, part_settings)
        parts.append(_read(part))
    if kept:
        logger.info("%d of %d corpora were prepared before: their text is not read again", kept, len(parts))
    if vocabularies is None:
        vocabularies = counted_vocabularies(parts, config.min_freq, config.max_vocab_size)
    _write_split(folder / JOINED, settings, subwords, lambda partial: join_parts(parts, vocabularies, partial))


def _write_split(folder: Path, settings: dict[str, Any], subwords: SubwordModels | None,
                 make: Callable[[Path], Prepared]) -> None:
    """``make``'s split (its ids written to the folder it is given) and its manifest, written in a
    temporary folder beside ``folder`` and then put in ``folder``'s place."""
    started = time.perf_counter()
    remove_abandoned(folder, *TEMPORARY_KINDS)  # a killed preparation's
    try:
        partial = temporary_folder(folder, "partial")
    except OSError as error:
        raise DataError(f"data.prepared: cannot write the prepared split beside {folder}: "
                        f"{error.strerror or error}; point data.prepared at a folder you can write") from None
    try:
        data = {path: file_facts(Path(path)) for path in settings["data"]}
        prepared = make(partial)
        parts = prepared.origins.parts if isinstance(prepared.origins, CorporaOrigins) else [prepared.origins]
        for name in ("src_offsets", "tgt_offsets"):  # the ids went to their files as they were mapped
            np.save(partial / f"{name}.npy", getattr(prepared.table, name), allow_pickle=False)
        np.save(partial / "lines.npy", np.concatenate([part.lines for part in parts]), allow_pickle=False)
        (partial / "vocabularies.json").write_text(json.dumps({
            "source": prepared.src_vocab.to_list(), "target": prepared.tgt_vocab.to_list(),
            "origin": parts[0].name, "corpora": [[part.name, len(part)] for part in parts],
            "stats": asdict(prepared.stats)}), encoding="utf-8")
        if subwords is not None:
            (partial / "source.model").write_bytes(subwords.source)
            (partial / "target.model").write_bytes(subwords.target)
        write_manifest(partial, settings, data, subwords is not None, len(prepared.table))
        _replace(folder, partial)
    except OSError as error:  # a full disk, a quota: said with the place, nothing left that looks prepared
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"data.prepared: cannot write the prepared split beside {folder}: "
                        f"{error.strerror or error}; free some space or point data.prepared elsewhere") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("prepared %d examples in %s in %.1f s", len(prepared.table), folder, time.perf_counter() - started)


def _read(folder: Path) -> Prepared:
    """The split in ``folder``, memory-mapped; each corpus's examples one after the other."""
    stored = json.loads((folder / "vocabularies.json").read_text(encoding="utf-8"))
    lines = np.load(folder / "lines.npy", mmap_mode="r", allow_pickle=False)
    corpora = stored.get("corpora") or [[stored["origin"], len(lines)]]
    ends = np.cumsum([size for _, size in corpora])
    parts = [LineOrigins(name, lines[end - size: end]) for (name, size), end in zip(corpora, ends)]
    return Prepared(ExampleTable.open(folder), parts[0] if len(parts) == 1 else CorporaOrigins(parts),
                    Vocabulary(stored["source"]), Vocabulary(stored["target"]), PreprocessStats(**stored["stats"]),
                    sizes=[size for _, size in corpora])


def _folder_name(label: str) -> str:
    """A corpus's folder: its name, made safe (with a digest of the name when it had to change)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", label)
    return safe if safe == label and not label.startswith(".") else f"{safe}-{_digest(label.encode())[:8]}"


def _stored_subwords(folder: Path) -> SubwordModels | None:
    """The SentencePiece models stored with a prepared split, if any."""
    if not (folder / "source.model").is_file():
        return None
    return SubwordModels((folder / "source.model").read_bytes(), (folder / "target.model").read_bytes())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _vocabulary_digest(vocabulary: Vocabulary) -> str:
    return _digest(json.dumps(vocabulary.to_list()).encode("utf-8"))


def _replace(folder: Path, partial: Path) -> None:
    """Put the complete ``partial`` where ``folder`` is (an old one is marked, moved aside, then deleted)."""
    for path in partial.iterdir():
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    old = None
    if folder.exists():
        old = folder.with_name(f"{folder.name}.old-{partial.name.removeprefix(f'{folder.name}.partial-')}")
        mark_temporary(folder)  # checked to hold a prepared split only (_refuse_foreign)
        os.replace(folder, old)
    os.replace(partial, folder)
    (folder / TEMPORARY_MARK).unlink()  # a prepared split now, no longer something to remove
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Hold the lock of ``folder`` (``NAME.lock`` beside it), saying so while another process holds
    it; yields False, holding nothing, where no lock can be written (a read-only place: a folder
    prepared there by others can still be used as it is).

    A POSIX record lock (``lockf``): it belongs to this process alone, so the workers a preparation
    forks never hold it, and the kernel releases it when the process ends, a ``kill -9`` included.
    Processes are excluded, not threads of one process."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder.with_name(f"{folder.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            logger.info("waiting for %s, which is preparing %s", holder_of(descriptor), folder)
            fcntl.lockf(descriptor, fcntl.LOCK_EX)
        note_holder(descriptor)
        yield True
    finally:
        os.close(descriptor)  # releases the lock
