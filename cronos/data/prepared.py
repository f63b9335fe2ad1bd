"""A prepared training split: a folder (``data.prepared``) of memory-mapped arrays, written once and
then read by every run and process, with a manifest of what it was made from.

    prepared = open_prepared(config, tokenizers, subwords, vocabularies)   # prepares it first when needed

The folder holds the ``ExampleTable`` arrays (``src_ids.npy``, ``src_offsets.npy``, ``tgt_ids.npy``,
``tgt_offsets.npy``), the examples' line numbers (``lines.npy``), the vocabularies
(``vocabularies.json``), the SentencePiece models (``source.model``, ``target.model``) and
``manifest.json``: the format and cronos version, the settings that decide the arrays (tokenizer,
case, lengths, policies, vocabulary limits, the vocabularies' and models' digests), each data file
(size, modification time, SHA-256) and each array file (size, SHA-256).

It is used only when the manifest matches: a folder made from other data or settings, by another
version, or whose files were truncated or edited is prepared again (one line says why).  One
process prepares while the others wait (a lock beside the folder: processes of one machine, or
of several sharing a file system that honours locks), into a temporary folder renamed into place
when complete, so a kill or a full disk never leaves a folder that a later run would use.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..config import DataConfig
from ..version import __version__
from .preparation import LineOrigins, Prepared, prepare_split
from .preprocess import PreprocessStats
from .readers import DataError, split_paths
from .subwords import SubwordModels
from .table import ARRAYS, ExampleTable
from .tokenizers import Tokenizer
from .codec import tokenizers_for
from .vocab import Vocabulary

__all__ = ["open_prepared", "stale_reason", "FORMAT_VERSION"]

FORMAT = "cronos prepared training split"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = (*(f"{name}.npy" for name in ARRAYS), "lines.npy", "vocabularies.json")

logger = logging.getLogger("cronos")


def open_prepared(config: DataConfig, seed: int, subwords: SubwordModels | None,
                  vocabularies: tuple[Vocabulary, Vocabulary] | None,
                  models_for: Callable[[], SubwordModels | None]) -> tuple[Prepared, SubwordModels | None]:
    """The training split prepared in ``config.prepared`` and its SentencePiece models: prepared
    there first when the folder is missing or does not match (``stale_reason``), with the given
    ``subwords`` or ``models_for()``'s (trained for ``seed``: only when the split is prepared),
    then memory-mapped."""
    folder = Path(config.prepared)
    settings = _settings(config, seed, subwords, vocabularies)
    with _locked(folder) as held:
        reason = stale_reason(folder, settings)
        if reason is not None:
            if not held:
                raise DataError(f"data.prepared: {folder} cannot be used ({reason}) and cannot be prepared again "
                                "here (no lock can be written beside it); prepare it where it can be written, or "
                                "point data.prepared at a folder of your own")
            _refuse_foreign(folder)
            logger.info("preparing the training split in %s (%s)", folder, reason)
            models = models_for() if subwords is None and config.tokenizer == "sentencepiece" else subwords
            if vocabularies is None and models is not None:
                vocabularies = models.vocabularies()  # the models' pieces, not counted ones
            _prepare(folder, config, tokenizers_for(config, models), models, vocabularies, settings)
    return _read(folder), subwords or _stored_subwords(folder)


def stale_reason(folder: Path, settings: dict[str, Any]) -> str | None:
    """Why ``folder`` cannot be used for ``settings`` (None: it can)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no prepared split there yet"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "its manifest is unreadable"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "its manifest is not a cronos manifest"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"it has format {manifest.get('format_version')!r}, this cronos reads {FORMAT_VERSION}"
    changed = [key for key in settings if manifest.get("settings", {}).get(key) != settings[key]]
    if changed:
        return f"made with other settings: {', '.join(changed)}"
    data_change = _data_change(manifest.get("data", {}), settings)
    if data_change is not None:
        return data_change
    return _files_change(folder, manifest.get("files", {}))


def _refuse_foreign(folder: Path) -> None:
    """A folder that holds anything but a prepared split is never replaced: it may be someone's data."""
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MANIFEST).is_file())):
        raise DataError(f"data.prepared: {folder} holds files that are no prepared split (it has no {MANIFEST}); "
                        "give a new or empty folder, or delete it")


def _settings(config: DataConfig, seed: int, subwords: SubwordModels | None,
              vocabularies: tuple[Vocabulary, Vocabulary] | None) -> dict[str, Any]:
    """What decides a prepared split's arrays: equal settings, equal arrays."""
    trains_models = config.tokenizer == "sentencepiece" and subwords is None and config.sentencepiece.model is None
    options = asdict(config.sentencepiece) if config.tokenizer == "sentencepiece" else None
    if options is not None:
        del options["sampling_alpha"], options["nbest_size"]  # sampling is no part of the arrays
    return {
        "data": split_paths(config.train), "tokenizer": config.tokenizer, "lowercase": config.lowercase,
        "max_length": config.max_length, "long_policy": config.long_policy, "empty_policy": config.empty_policy,
        "min_freq": config.min_freq, "max_vocab_size": config.max_vocab_size, "sentencepiece": options,
        "seed": seed if trains_models else None,
        "subwords": None if subwords is None else [_digest(subwords.source), _digest(subwords.target)],
        "vocabularies": None if vocabularies is None else [_vocabulary_digest(v) for v in vocabularies],
    }


def _prepare(folder: Path, config: DataConfig, tokenizers: tuple[Tokenizer, Tokenizer],
             subwords: SubwordModels | None, vocabularies: tuple[Vocabulary, Vocabulary] | None,
             settings: dict[str, Any]) -> None:
    """Prepare into a temporary folder beside ``folder``, then put it in ``folder``'s place."""
    started = time.perf_counter()
    for left in [*folder.parent.glob(f"{folder.name}.partial-*"), *folder.parent.glob(f"{folder.name}.old-*")]:
        shutil.rmtree(left, ignore_errors=True)  # a killed preparation's (the lock is ours: none is running)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        data = {path: _file_facts(Path(path)) for path in settings["data"]}
        prepared = prepare_split(config, tokenizers, vocabularies, partial)
        for name in ("src_offsets", "tgt_offsets", "lines"):  # the ids went to their files as they were mapped
            array = prepared.origins.lines if name == "lines" else getattr(prepared.table, name)
            np.save(partial / f"{name}.npy", array, allow_pickle=False)
        (partial / "vocabularies.json").write_text(json.dumps({
            "source": prepared.src_vocab.to_list(), "target": prepared.tgt_vocab.to_list(),
            "origin": prepared.origins.name, "stats": asdict(prepared.stats)}), encoding="utf-8")
        if subwords is not None:
            (partial / "source.model").write_bytes(subwords.source)
            (partial / "target.model").write_bytes(subwords.target)
        files = {name: _file_facts(partial / name) for name in _files(subwords is not None)}
        _write_json(partial / MANIFEST, {"format": FORMAT, "format_version": FORMAT_VERSION, "cronos": __version__,
                                         "settings": settings, "data": data, "files": files,
                                         "examples": len(prepared.table)})
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
    stored = json.loads((folder / "vocabularies.json").read_text(encoding="utf-8"))
    lines = np.load(folder / "lines.npy", mmap_mode="r", allow_pickle=False)
    return Prepared(ExampleTable.open(folder), LineOrigins(stored["origin"], lines), Vocabulary(stored["source"]),
                    Vocabulary(stored["target"]), PreprocessStats(**stored["stats"]))


def _stored_subwords(folder: Path) -> SubwordModels | None:
    """The SentencePiece models stored with a prepared split, if any."""
    if not (folder / "source.model").is_file():
        return None
    return SubwordModels((folder / "source.model").read_bytes(), (folder / "target.model").read_bytes())


def _data_change(recorded: dict[str, Any], settings: dict[str, Any]) -> str | None:
    for path in settings["data"]:
        facts = recorded.get(path)
        if facts is None:
            return f"made from other data than {path}"
        try:
            stat = os.stat(path)
        except OSError:
            return None  # the data is gone: the prepared split is what is left of it
        if stat.st_size != facts["size"]:
            return f"{path} changed size since it was prepared"
        if stat.st_mtime_ns != facts["mtime_ns"] and _sha256(Path(path)) != facts["sha256"]:
            return f"{path} changed since it was prepared"
    return None


def _files_change(folder: Path, recorded: dict[str, Any]) -> str | None:
    for name, facts in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"its {name} is missing"
        if path.stat().st_size != facts["size"]:
            return f"its {name} was truncated or extended"
        if _sha256(path) != facts["sha256"]:
            return f"its {name} was changed since it was prepared"
    return None


def _files(with_subwords: bool) -> tuple[str, ...]:
    return FILES + (("source.model", "target.model") if with_subwords else ())


def _file_facts(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _vocabulary_digest(vocabulary: Vocabulary) -> str:
    return _digest(json.dumps(vocabulary.to_list()).encode("utf-8"))


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


def _replace(folder: Path, partial: Path) -> None:
    """Put the complete ``partial`` where ``folder`` is (an old one is moved aside, then deleted)."""
    for path in partial.iterdir():
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Hold the lock of ``folder`` (``NAME.lock`` beside it), saying so while another process holds
    it; yields False, holding nothing, where no lock can be written (a read-only place: a folder
    prepared there by others can still be used as it is)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = open(folder.with_name(f"{folder.name}.lock"), "a")
    except OSError:
        yield False
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process that is preparing %s", folder)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
