"""One-file checkpoints: config, vocabularies (with the SentencePiece models of a subword model),
weights, optional training state, and a format version.

``model_payload`` defines what every checkpoint holds (a run's ``last.pt`` adds the trainer's
``training`` state); ``read_model_file`` reads one back as a ``StoredModel``, its config,
vocabularies and SentencePiece models parsed and checked, and its weights checked against the names
and shapes of the network its config describes; ``check_same_model`` says what differs when a run resumes from a
checkpoint of another model.  Writes are atomic (a temporary file in the same folder, flushed to
disk, then renamed over the target), so a crash or a full disk mid-write leaves the previous
checkpoint intact.  Reading treats the file as untrusted: it is read with
``torch.load(weights_only=True)`` (tensors and plain data, never code), every entry is checked for
its type, and ``check_weights`` compares the stored weights with the shapes a model needs before
anything is built from them.  Errors say which file, which entry and what is wrong.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import Config, ConfigError, config_from_dict, config_to_dict, without_inapplicable_keys
from ..data import SubwordModels, TextCodec, Vocabulary
from ..files import UnreadableFile, check_readable
from ..modules.network import Seq2Seq

__all__ = ["CheckpointError", "FORMAT", "FORMAT_VERSION", "StoredModel", "architecture_differences",
           "check_same_model", "check_weights",
           "load_checkpoint", "model_payload", "read_model_file", "save_checkpoint"]

FORMAT = "cronos-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("config", "src_vocab", "tgt_vocab", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit; the message names the file."""


@dataclass(frozen=True)
class StoredModel:
    """What a checkpoint holds, checked: the model's config, vocabularies and weights, and a run's
    training state (``last.pt`` only, else None)."""

    config: Config
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    weights: dict[str, torch.Tensor]
    training: dict[str, Any] | None
    subwords: SubwordModels | None = None


def model_payload(config: Config, codec: TextCodec, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The entries every checkpoint holds (a run's ``last.pt`` adds ``training``): the config,
    ``codec``'s vocabularies and SentencePiece models (``subwords``, when it has them), the weights."""
    payload = {"config": config_to_dict(config), "src_vocab": codec.src_vocab.to_list(),
               "tgt_vocab": codec.tgt_vocab.to_list(), "model": dict(weights)}
    if codec.src_vocab.tags:  # the tags of several corpora (data.train), which sources start with
        payload["tags"] = list(codec.src_vocab.tags)
    if codec.subwords is not None:
        payload["subwords"] = codec.subwords.to_dict()
    return payload


def read_model_file(path: str | os.PathLike) -> StoredModel:
    """The model stored at ``path``, every check passed (``CheckpointError`` naming the file otherwise):
    what ``Cronos.load``, averaging, resuming a run and a run's reload of its ``best.pt`` read."""
    stored = _read_model(path)
    check_weights(stored.weights, skeleton(stored.config, len(stored.src_vocab), len(stored.tgt_vocab)), path)
    return stored


def skeleton(config: Config, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq:
    """The network ``config`` describes, on the meta device: its weights' names and shapes, with
    nothing allocated (a few KB of config could otherwise ask for gigabytes)."""
    with torch.device("meta"):
        return Seq2Seq(config.model, src_vocab_size, tgt_vocab_size)


def _read_model(path: str | Path) -> StoredModel:
    """``load_checkpoint``, then the config and vocabularies it stores parsed and validated, and its
    layer counts checked against the weights it holds (``check_weights`` checks the rest)."""
    payload = load_checkpoint(path)
    try:
        # checkpoints of cronos 0.1 stored every key, those of the other encoder/decoder type too
        config = config_from_dict(without_inapplicable_keys(payload["config"]), source=f"{path} (config)")
        vocabularies = _vocabularies(payload)
    except (ConfigError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: incompatible checkpoint: {error}") from None
    _check_layer_counts(config, payload["model"], path)
    subwords = _subwords(payload, config, vocabularies, path)
    return StoredModel(config, *vocabularies, payload["model"], payload.get("training"), subwords)


def _vocabularies(payload: dict[str, Any]) -> tuple[Vocabulary, Vocabulary]:
    """Both vocabularies, with their tags: the source's, and the target's when it is the same vocabulary."""
    tags = payload.get("tags", [])
    if not isinstance(tags, list):
        raise TypeError(f"tags: expected a list of tokens, got {type(tags).__name__}")
    source, target = payload["src_vocab"], payload["tgt_vocab"]
    return Vocabulary(source, tags), Vocabulary(target, tags if target == source else ())


def _check_layer_counts(config: Config, weights: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """The file is untrusted: before even a shape-only model is built from its config (to check the
    weights against), the config may not ask for more layers than the file has tensors (a few KB
    could otherwise ask for a model of gigabytes, or for hours of building one)."""
    for section in ("encoder", "decoder"):
        layers = getattr(config.model, section).layers
        if layers > len(weights):  # every layer has weights of its own
            raise CheckpointError(f"{path}: weights do not fit the model its config describes: "
                                  f"model.{section}.layers is {layers}, but the file holds {len(weights)} tensors")


def _subwords(payload: dict[str, Any], config: Config, vocabularies: tuple[Vocabulary, Vocabulary],
              path: str | Path) -> SubwordModels | None:
    """The SentencePiece models a subword model's checkpoint carries (it tokenises with nothing else),
    checked against its vocabularies: other pieces would give the model other ids than it learned."""
    if config.data.tokenizer != "sentencepiece":
        if "subwords" in payload:
            raise CheckpointError(f"{path}: its config's tokenizer is {config.data.tokenizer}, but it holds "
                                  "SentencePiece models (entry 'subwords'): the file was altered")
        return None
    entry = payload.get("subwords")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(side), bytes) for side in ("source", "target")):
        raise CheckpointError(f"{path}: the config's tokenizer is sentencepiece, but the checkpoint holds no "
                              "SentencePiece models (entry 'subwords')")
    try:
        subwords = SubwordModels.from_dict(entry)
        theirs_both = subwords.vocabularies()
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: its SentencePiece models do not load: {str(error).splitlines()[0]}") from None
    for side, theirs, stored in zip(("source", "target"), theirs_both, vocabularies):
        if theirs.with_tags(stored.tags) != stored:  # the pieces, then the corpora's tags (data.train)
            raise CheckpointError(f"{path}: its {side} SentencePiece model's pieces differ from its {side} vocabulary "
                                  f"({len(theirs)} pieces, {len(stored)} tokens, or the same number in another "
                                  "order): the file was altered or assembled from two models")
    return subwords


def check_same_model(stored: StoredModel, config: Config, codec: TextCodec, path: str | Path,
                     reference: str | Path | None = None) -> None:
    """Raise ``CheckpointError`` naming what differs when ``stored`` was made for another model than
    the one of ``config`` and ``codec`` (how it reads and writes text, ``TextCodec.differences``):
    those of this config and its data, or of the checkpoint ``reference``."""
    ours = "this config" if reference is None else str(reference)
    built = "the one built from this config's data" if reference is None else f"that of {reference}"
    hint = "; use the data the checkpoint was trained on" if reference is None else ""
    label = "config" if reference is None else "the first checkpoint"
    theirs = TextCodec.for_data(stored.config.data, stored.src_vocab, stored.tgt_vocab, stored.subwords)
    for difference in codec.differences(theirs):
        if difference.part == "vocabulary":
            raise CheckpointError(f"{path}: the {difference.side} vocabulary differs from {built} (checkpoint "
                                  f"{difference.theirs} tokens, {label} {difference.ours}){hint}")
        if difference.part == "SentencePiece model":
            raise CheckpointError(f"{path}: its SentencePiece models differ from those of {ours} (the same pieces, "
                                  f"other scores or settings, segment text differently){hint}")
        raise CheckpointError(f"{path}: its {difference.side} tokenizer differs from that of {ours} "
                              f"(data.tokenizer, data.lowercase){hint}")
    differing = architecture_differences(config, stored.config, label)
    if differing:
        raise CheckpointError(f"{path}: architecture differs from {ours} at {', '.join(differing)}")


def architecture_differences(config: Config, stored: Config, label: str = "config",
                             ignored: tuple[str, ...] = ()) -> list[str]:
    """Where the ``model`` sections of ``config`` and a checkpoint's ``stored`` config differ, as
    ``model.KEY (checkpoint X, LABEL Y)``; keys named ``ignored`` (``dropout``, say) do not count."""
    differing = _differences(config_to_dict(config)["model"], config_to_dict(stored)["model"], "model", label)
    return sorted(d for d in differing if d.split(" ")[0].rsplit(".", 1)[-1] not in ignored)


def _differences(ours: Any, theirs: Any, prefix: str, label: str) -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        keys = set(ours) | set(theirs)
        return [d for k in keys for d in _differences(ours.get(k), theirs.get(k), f"{prefix}.{k}", label)]
    return [] if ours == theirs else [f"{prefix} (checkpoint {theirs!r}, {label} {ours!r})"]


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
    """Read and check a checkpoint written by ``save_checkpoint``: its format and the type of each entry."""
    path = Path(path)
    try:
        check_readable(path, "checkpoint", pipes=False)  # torch.load seeks: a regular file only
    except UnreadableFile as error:
        raise CheckpointError(f"{path}: no such checkpoint" if error.missing else str(error)) from None
    with open(path, "rb") as file:
        if file.read(4) != ZIP_MAGIC:
            raise CheckpointError(f"{path}: not a checkpoint (cronos checkpoints are the zip files torch.save "
                                  "writes)")
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign file's pickle protocol
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types on damaged bytes
        text = str(error)
        if isinstance(error, pickle.UnpicklingError) and "GLOBAL bytes was not an allowed global" in text:
            raise CheckpointError(f"{path}: not a cronos checkpoint: an entry is an empty byte string, which a "
                                  "cronos checkpoint never holds (an empty SentencePiece model?)") from None
        if isinstance(error, pickle.UnpicklingError) and "weights_only" in text:
            raise CheckpointError(f"{path}: not a cronos checkpoint: it holds Python objects other than tensors and "
                                  "plain data, which cronos never loads (loading them could run code)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                              f"{text.splitlines()[0] if text else type(error).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cronos checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported "
                              f"(this cronos reads version {FORMAT_VERSION})")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
    _check_entries(payload, path)
    return payload


ZIP_MAGIC = b"PK\x03\x04"


def _check_entries(payload: dict[str, Any], path: Path) -> None:
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: config: expected a mapping, got {type(payload['config']).__name__}")
    for key in ("src_vocab", "tgt_vocab"):
        tokens = payload[key]
        if not isinstance(tokens, list):
            raise CheckpointError(f"{path}: {key}: expected a list of tokens, got {type(tokens).__name__}")
        for index, token in enumerate(tokens):
            if not isinstance(token, str):
                raise CheckpointError(f"{path}: {key}[{index}]: expected a token string, got {type(token).__name__}")
    weights = payload["model"]
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: model: expected a mapping of weight names to tensors, "
                              f"got {type(weights).__name__}")
    for name, value in weights.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: model[{str(name)[:80]!r}]: expected a tensor under a name, "
                                  f"got {type(value).__name__}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: model[{name[:80]!r}] holds NaN or infinite values: the weights were "
                                  "damaged (a diverged run saves none); use an earlier checkpoint")
    if "training" in payload and not isinstance(payload["training"], dict):
        raise CheckpointError(f"{path}: training: expected a mapping, got {type(payload['training']).__name__}")


def check_weights(stored: Mapping[str, torch.Tensor], model: torch.nn.Module, path: str | Path) -> None:
    """Raise ``CheckpointError`` naming the first entries where ``stored`` weights differ from the
    names and shapes of ``model``'s state dict (``model`` may live on the meta device, which
    allocates nothing)."""
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    problems = [f"model[{name!r}] is missing" for name in expected if name not in stored]
    problems += [f"model[{name[:80]!r}] belongs to no part of the model" for name in stored if name not in expected]
    problems += [f"model[{name!r}] has shape {list(stored[name].shape)}, the config needs {list(shape)}"
                 for name, shape in expected.items() if name in stored and stored[name].shape != shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: weights do not fit the model its config describes: "
                              f"{'; '.join(problems[:3])}{more}")
