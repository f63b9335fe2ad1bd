"""What a prepared folder (``prepared.py``) records about itself, and whether it still holds what
a run asks for.

    write_manifest(folder, settings, data_facts, with_subwords=True, examples=800)
    stale_reason(folder, settings)       # None: use it; else why it must be prepared again
    not_replaceable(folder)              # None, or why cronos may not replace this folder

``manifest.json`` holds the format and cronos version, the settings that decide the arrays, each
data file (size, modification time, SHA-256) and each of the folder's files (size, SHA-256).  A
folder is used only when its manifest has that shape, lists exactly the files a prepared split has,
matches the settings and the data, its files have the recorded sizes and digests, and the arrays
themselves are what cronos writes (whole offsets that never decrease, ids inside the vocabulary): a
manifest that was edited cannot turn a check off.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..files import TEMPORARY_MARK, UnreadableFile, read_bytes
from ..version import __version__
from .preprocess import FILTERED, PreprocessStats
from .table import ARRAYS

__all__ = ["MANIFEST", "FORMAT", "FORMAT_VERSION", "write_manifest", "stale_reason", "not_replaceable", "file_facts",
           "folder_files"]

FORMAT = "cronos prepared training split"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = (*(f"{name}.npy" for name in ARRAYS), "lines.npy", "vocabularies.json")
SUBWORD_FILES = ("source.model", "target.model")
SHA256 = re.compile(r"[0-9a-f]{64}")
MANIFEST_LIMIT = 16 << 20  # bytes: cronos writes a few kilobytes (settings, digests, one entry per file)


def folder_files(with_subwords: bool) -> tuple[str, ...]:
    """The files a prepared folder holds beside its manifest."""
    return FILES + (SUBWORD_FILES if with_subwords else ())


def write_manifest(folder: Path, settings: dict[str, Any], data: dict[str, dict], with_subwords: bool,
                   examples: int) -> None:
    """``folder``'s manifest, written last (its files are complete) and flushed to the disk."""
    files = {name: file_facts(folder / name) for name in folder_files(with_subwords)}
    with open(folder / MANIFEST, "w", encoding="utf-8") as file:
        json.dump({"format": FORMAT, "format_version": FORMAT_VERSION, "cronos": __version__, "settings": settings,
                   "data": data, "files": files, "examples": examples}, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


def not_replaceable(folder: Path) -> str | None:
    """Why ``folder`` may not be replaced (None: it is empty, or a prepared split and nothing else)."""
    if folder.is_symlink():
        return ("is a link; a prepared split is replaced by renaming folders, which would replace the link: point "
                "data.prepared at the folder it links to")
    if not folder.exists():
        return None
    if not folder.is_dir():
        return "is a file, not a folder"
    names = {path.name for path in folder.iterdir()}
    if not names:
        return None
    if MANIFEST not in names:
        return f"holds files that are no prepared split (it has no {MANIFEST})"
    if not _is_cronos_manifest(folder / MANIFEST):
        return f"holds a {MANIFEST} that cronos did not write"
    foreign = sorted(names - {MANIFEST, TEMPORARY_MARK, *folder_files(True)})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"holds files cronos did not write beside its prepared split ({shown})"
    return None


def stale_reason(folder: Path, settings: dict[str, Any]) -> str | None:
    """Why ``folder`` cannot be used for ``settings`` (None: it can)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no prepared split there yet"
    manifest = _read_manifest(manifest_path)
    if manifest is None:
        return "its manifest is unreadable"
    if manifest.get("format") != FORMAT:
        return "its manifest is not a cronos manifest"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"it has format {manifest.get('format_version')!r}, this cronos reads {FORMAT_VERSION}"
    recorded = manifest.get("settings")
    if not isinstance(recorded, dict):
        return "its manifest holds no settings"
    changed = [key for key in settings if recorded.get(key) != settings[key]]
    if changed:
        return f"made with other settings: {', '.join(changed)}"
    shape = _shape_problem(manifest, settings["tokenizer"] == "sentencepiece")
    if shape is not None:
        return f"its manifest {shape}"
    return (_data_change(manifest["data"], settings) or _files_change(folder, manifest["files"])
            or _content_problem(folder, manifest["examples"]))


def file_facts(path: Path) -> dict[str, Any]:
    """What a manifest records of a file: size, modification time, SHA-256."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(read_bytes(path, "prepared split's manifest", limit=MANIFEST_LIMIT).decode("utf-8"))
    except (UnreadableFile, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _is_cronos_manifest(path: Path) -> bool:
    manifest = _read_manifest(path)
    return manifest is not None and manifest.get("format") == FORMAT


def _shape_problem(manifest: dict, with_subwords: bool) -> str | None:
    """What is wrong with the shape of a manifest of this format (None: nothing)."""
    data, files, examples = manifest.get("data"), manifest.get("files"), manifest.get("examples")
    if not isinstance(data, dict) or not all(isinstance(path, str) and _facts_problem(facts, dated=True) is None
                                             for path, facts in data.items()):
        return "does not record its data files as cronos does"
    if not isinstance(files, dict) or set(files) != set(folder_files(with_subwords)):
        return f"does not list the files of a prepared split ({', '.join(folder_files(with_subwords))})"
    for name, facts in files.items():
        problem = _facts_problem(facts, dated=False)
        if problem is not None:
            return f"records {name} without {problem}"
    if not _count(examples):
        return "does not record how many examples it holds"
    return None


def _facts_problem(facts: Any, dated: bool) -> str | None:
    if not isinstance(facts, dict) or not _count(facts.get("size")):
        return "its size"
    if dated and not _count(facts.get("mtime_ns")):
        return "its modification time"
    if not isinstance(facts.get("sha256"), str) or not SHA256.fullmatch(facts["sha256"]):
        return "its SHA-256"
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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


def _content_problem(folder: Path, examples: int) -> str | None:
    """Whether the files hold what cronos writes: the digests vouch for the bytes, not that the
    manifest recording them was cronos's."""
    try:
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                  for name in (*ARRAYS, "lines")}
        stored = json.loads((folder / "vocabularies.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):  # ValueError: not an .npy array, a pickle, not JSON
        return "its arrays or vocabularies are not files cronos wrote"
    problem = _vocabularies_problem(stored)
    if problem is not None:
        return f"its vocabularies.json {problem}"
    for name, array in arrays.items():
        if array.ndim != 1 or array.dtype.kind not in "iu":
            return f"its {name}.npy is not a list of whole numbers"
    if len(arrays["lines"]) != examples:
        return f"its lines.npy has {len(arrays['lines'])} entries for {examples} examples"
    if "corpora" in stored and sum(size for _, size in stored["corpora"]) != examples:
        return f"its vocabularies.json counts other examples per corpus than its {examples}"
    for side, vocabulary in (("src", stored["source"]), ("tgt", stored["target"])):
        problem = _side_problem(arrays[f"{side}_ids"], arrays[f"{side}_offsets"], examples, len(vocabulary))
        if problem is not None:
            return f"its {side}_{problem}"
    return None


def _vocabularies_problem(stored: Any) -> str | None:
    if not isinstance(stored, dict):
        return "is not what cronos writes"
    for side in ("source", "target"):
        tokens = stored.get(side)
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            return f"holds no {side} vocabulary"
    stats = stored.get("stats")
    if not isinstance(stored.get("origin"), str) or not isinstance(stats, dict) or \
            set(stats) != set(PreprocessStats.__dataclass_fields__) or not _counts(stats):
        return "is not what cronos writes"
    corpora = stored.get("corpora", [["", 0]])
    if not isinstance(corpora, list) or not corpora or not all(
            isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and _count(entry[1])
            for entry in corpora):
        return "does not say how many examples each corpus gave"
    return None


def _counts(stats: dict[str, Any]) -> bool:
    """Counts, and the filters' counts by name (``PreprocessStats.filtered``)."""
    filtered = stats["filtered"]
    return all(_count(value) for name, value in stats.items() if name != "filtered") and \
        isinstance(filtered, dict) and all(name in FILTERED and _count(n) for name, n in filtered.items())


def _side_problem(ids: np.ndarray, offsets: np.ndarray, examples: int, vocabulary_size: int) -> str | None:
    """What is wrong with one side's ids and offsets (named from ``ids``/``offsets`` on)."""
    if len(offsets) != examples + 1:
        return f"offsets.npy has {len(offsets)} entries for {examples} examples (one more is needed)"
    if offsets[0] != 0 or offsets[-1] != len(ids):
        return f"offsets.npy does not span its {len(ids)} ids (from {offsets[0]} to {offsets[-1]})"
    lengths = np.diff(offsets)
    if len(lengths) and lengths.min() <= 0:
        first = int(np.argmax(lengths <= 0))
        return f"offsets.npy gives example {first} {int(lengths[first])} tokens (offsets must increase)"
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary_size):
        return f"ids.npy holds ids outside its vocabulary of {vocabulary_size} ({int(ids.min())} to {int(ids.max())})"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
