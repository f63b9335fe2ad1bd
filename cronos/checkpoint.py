"""One-file checkpoints: config, vocabularies, weights, optional training state, and a format version.

Writes are atomic (a temporary file in the same folder, flushed to disk, then renamed over the
target), so a crash or a full disk mid-write leaves the previous checkpoint intact.  Reading checks
everything a model needs and says which file and what is wrong.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint"]

FORMAT = "cronos-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("config", "src_vocab", "tgt_vocab", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit; the message names the file."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format markers) to ``path`` atomically."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot write checkpoint: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write checkpoint ({error.strerror or error}); "
                              "the previous checkpoint, if any, is unchanged") from None
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types on damaged bytes
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cronos checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported "
                              f"(this cronos reads version {FORMAT_VERSION})")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    return payload
