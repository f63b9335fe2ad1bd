"""Hugging Face MarianMT folders (OPUS-MT's published models) read as cronos models.

    stored = read_marian_folder(Path("opus-mt-en-de"))  # a StoredModel: config, vocabularies,
    save_checkpoint(path, stored_payload(stored))       # SentencePiece models and weights

A folder holds ``config.json``, the weights (``model.safetensors``, read with the safetensors
library, or ``pytorch_model.bin``, read with ``torch.load(weights_only=True)``: neither runs code
from the file), ``source.spm``, ``target.spm`` and ``vocab.json`` (``target_vocab.json`` too when
the two sides have vocabularies of their own).  What maps how:

- the network: a post-norm Transformer with the feed-forward activation, ``[sin | cos]``
  positions, embeddings scaled or not, shared and tied as the config says; the output bias is
  ``final_logits_bias``;
- ids: Marian's ``</s>`` is cronos's ``<eos>``, ``<unk>`` its ``<unk>``, and Marian's ``<pad>``,
  which is also where its decoder starts, is cronos's ``<bos>``: its embedding row is live.
  cronos's own ``<pad>`` is one more row, zero and frozen.  Neither is ever an output (their
  output biases are ``NEVER``): Marian's vocabulary has no padding token (the Hugging Face
  conversion added it, and its generation settings ban it), so their probability is 0, as in
  Marian and CTranslate2.  The other tokens follow in Marian's id order; tokens such as ``>>fra<<``
  (a multilingual model's target languages) are the source vocabulary's tags;
- text: each side's SentencePiece model and one vocabulary (or two), every source ending with
  ``<eos>`` (``data.source_eos``), as Marian reads its sources.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import StoredModel, model_payload, skeleton
from ..config import Config, load_config
from ..data import SubwordModels, TextCodec, Vocabulary
from ..data.vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX, SPECIALS, UNK_INDEX
from ..files import UnreadableFile, read_bytes
from ..data.subwords import MAX_MODEL_BYTES
from ..modules.encoders import sinusoids

__all__ = ["MarianImportError", "NEVER", "read_marian_folder", "stored_payload"]

NEVER = -1.0e4  # the output bias of a token that is never an output: probability 0 in float32 and float64
ACTIVATIONS = {"swish": "swish", "silu": "swish", "gelu": "gelu", "relu": "relu"}
LANGUAGE_CODE = re.compile(r">>.+<<")
MAX_JSON_BYTES = 64 << 20
MAX_POSITIONS_ERROR = 1e-4  # stored sinusoids against cronos's: float32 rounding, not another table


class MarianImportError(ValueError):
    """A folder that is not a MarianMT model cronos can run, with the reason."""


def read_marian_folder(folder: str | Path) -> StoredModel:
    """The Hugging Face MarianMT model in ``folder`` as a cronos ``StoredModel`` (weights mapped, ids
    reordered); ``MarianImportError`` for a missing file or a model cronos would not compute alike."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MarianImportError(f"{folder} is not a folder: give the folder a MarianMT model was saved or "
                                "downloaded to (config.json, the weights, source.spm, target.spm, vocab.json)")
    marian = _json(folder / "config.json")
    _check_supported(marian, folder)
    separate = not marian.get("share_encoder_decoder_embeddings", True)
    source_ids = _vocabulary_file(folder / "vocab.json")
    target_ids = _vocabulary_file(folder / "target_vocab.json") if separate else source_ids
    specials = _special_ids(marian, source_ids, folder)
    src_vocab, src_rows = _vocabulary(source_ids, specials, tags=True)
    tgt_vocab, tgt_rows = _vocabulary(target_ids, specials, tags=False)
    subwords = SubwordModels(_spm(folder / "source.spm"), _spm(folder / "target.spm"),
                             tuple(src_vocab.itos), tuple(tgt_vocab.itos))
    generation = _json(folder / "generation_config.json") if (folder / "generation_config.json").exists() else {}
    config = _config(marian, generation, len(src_vocab), len(tgt_vocab))
    weights = _weights(_state(folder), config, src_rows, tgt_rows, len(src_vocab), len(tgt_vocab))
    return StoredModel(config, src_vocab, tgt_vocab, weights, None, subwords)


def stored_payload(stored: StoredModel) -> dict[str, Any]:
    """What a checkpoint file of ``stored`` holds (``checkpoint.save_checkpoint`` writes it)."""
    codec = TextCodec.for_data(stored.config.data, stored.src_vocab, stored.tgt_vocab, stored.subwords)
    return model_payload(stored.config, codec, stored.weights)


def _check_supported(marian: dict, folder: Path) -> None:
    kind = marian.get("model_type")
    if kind != "marian":
        raise MarianImportError(f"{folder}/config.json describes a {kind!r} model; cronos imports MarianMT "
                                "models (model_type: marian), as OPUS-MT publishes them")
    activation = marian.get("activation_function", "gelu")
    if activation not in ACTIVATIONS:
        raise MarianImportError(f"{folder}: the feed-forward activation {activation!r} is not one cronos has "
                                f"({', '.join(sorted(ACTIVATIONS))})")
    if marian.get("d_model", 1024) % marian.get("encoder_attention_heads", 16) or (
            marian.get("d_model", 1024) % marian.get("decoder_attention_heads", 16)):
        raise MarianImportError(f"{folder}: d_model is not divisible by the attention heads")
    if marian.get("pad_token_id", 58100) != marian.get("decoder_start_token_id", 58100):
        raise MarianImportError(f"{folder}: the decoder starts from token {marian.get('decoder_start_token_id')}, "
                                f"not from the padding token {marian.get('pad_token_id')} as Marian's models do")


def _json(path: Path) -> Any:
    try:
        return json.loads(read_bytes(path, path.name, MAX_JSON_BYTES))
    except UnreadableFile as error:
        raise MarianImportError(f"{error}: a MarianMT folder holds it") from None
    except ValueError as error:
        raise MarianImportError(f"{path}: not JSON ({error})") from None


def _spm(path: Path) -> bytes:
    try:
        return read_bytes(path, path.name, MAX_MODEL_BYTES)
    except UnreadableFile as error:
        raise MarianImportError(f"{error}: a MarianMT folder holds it") from None


def _vocabulary_file(path: Path) -> dict[str, int]:
    ids = _json(path)
    if not isinstance(ids, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in ids.items()):
        raise MarianImportError(f"{path}: expected an object of tokens and their ids")
    if sorted(ids.values()) != list(range(len(ids))):
        raise MarianImportError(f"{path}: the ids are not 0 to {len(ids) - 1}, each once")
    return ids


def _special_ids(marian: dict, ids: dict[str, int], folder: Path) -> dict[int, int]:
    """Marian's special ids -> cronos's: ``</s>`` -> ``<eos>``, ``<unk>``, ``<pad>`` -> ``<bos>``."""
    if "<unk>" not in ids:
        raise MarianImportError(f"{folder}/vocab.json has no <unk>")
    eos, pad = marian.get("eos_token_id", 0), marian.get("pad_token_id", 58100)
    return {eos: EOS_INDEX, ids["<unk>"]: UNK_INDEX, pad: BOS_INDEX}


def _vocabulary(ids: dict[str, int], specials: dict[int, int], tags: bool) -> tuple[Vocabulary, torch.Tensor]:
    """cronos's vocabulary of a Marian one, and for each cronos id the Marian row it takes (-1: none,
    ``<pad>``'s zero row)."""
    ordinary = sorted((i, token) for token, i in ids.items() if i not in specials)
    clashing = [token for _, token in ordinary if token in SPECIALS]
    if clashing:
        raise MarianImportError(f"the vocabulary holds {clashing[0]!r} as an ordinary token, which is one of cronos's "
                                "special tokens")
    tokens = list(SPECIALS) + [token for _, token in ordinary]
    rows = [-1] * len(SPECIALS) + [i for i, _ in ordinary]
    for marian_id, cronos_id in specials.items():
        rows[cronos_id] = marian_id
    codes = [token for token in tokens if LANGUAGE_CODE.fullmatch(token)] if tags else []
    return Vocabulary(tokens, tags=codes), torch.tensor(rows)


def _config(marian: dict, generation: dict, src_size: int, tgt_size: int) -> Config:
    """cronos's config of a Marian model: its network, its text settings, its beam size (the
    generation settings', else the config's, else 4)."""
    shared = marian.get("share_encoder_decoder_embeddings", True)
    size = marian.get("d_model", 1024)

    def stack(side: str) -> dict:
        return {"type": "transformer", "hidden_size": size, "layers": marian.get(f"{side}_layers", 12),
                "heads": marian.get(f"{side}_attention_heads", 16), "ff_size": marian.get(f"{side}_ffn_dim", 4096),
                "dropout": marian.get("dropout", 0.1), "normalize_before": False,
                "activation": ACTIVATIONS[marian.get("activation_function", "gelu")],
                "scale_embeddings": bool(marian.get("scale_embedding", False)), "sinusoids": "halves"}

    return load_config({
        "name": "marian",
        "data": {"tokenizer": "sentencepiece", "source_eos": True, "max_length": 512,
                 "sentencepiece": {"joint": shared, "vocab_size": max(src_size, tgt_size)}},
        "model": {"embedding_size": size, "encoder": stack("encoder"), "decoder": stack("decoder"),
                  "share_embeddings": shared, "tie_output_embedding": bool(marian.get("tie_word_embeddings", True))},
        "decoding": {"beam_size": int(generation.get("num_beams") or marian.get("num_beams") or 4)}})


def _state(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        try:
            return load_file(str(folder / "model.safetensors"))
        except Exception as error:  # safetensors raises its own errors, with no common base
            raise MarianImportError(f"{folder}/model.safetensors does not load: {error}") from None
    path = folder / "pytorch_model.bin"
    if not path.exists():
        raise MarianImportError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle's many errors, and weights_only refusing code
        raise MarianImportError(f"{path} does not load as plain weights: {str(error).splitlines()[0]}") from None


def _weights(state: dict[str, torch.Tensor], config: Config, src_rows: torch.Tensor, tgt_rows: torch.Tensor,
             src_size: int, tgt_size: int) -> dict[str, torch.Tensor]:
    """cronos's state dict, each tensor taken from ``state`` (Marian's names, rows reordered) and
    checked against the shape the network has."""
    state = {name.removeprefix("model."): tensor.float() for name, tensor in state.items()}
    _check_positions(state, config)
    shared = state.get("shared.weight")
    source = _rows(_tensor(state, "encoder.embed_tokens.weight", shared), src_rows, "source")
    target = _rows(_tensor(state, "decoder.embed_tokens.weight", shared), tgt_rows, "target")
    bias = _rows(_tensor(state, "final_logits_bias").reshape(-1, 1), tgt_rows, "target").reshape(-1)
    bias[[PAD_INDEX, BOS_INDEX]] = NEVER
    names = {"src_embedding.weight": source, "tgt_embedding.weight": target, "output_projection.bias": bias,
             "output_projection.weight": target if config.model.tie_output_embedding
             else _rows(_tensor(state, "lm_head.weight"), tgt_rows, "target")}
    weights = {}
    for name, expected in skeleton(config, src_size, tgt_size).state_dict().items():
        weights[name] = names[name] if name in names else _tensor(state, _marian_name(name))
        if weights[name].shape != expected.shape:
            raise MarianImportError(f"the weights' {_marian_name(name)!r} has the shape {tuple(weights[name].shape)}, "
                                    f"and config.json describes {tuple(expected.shape)}")
    return weights


def _rows(table: torch.Tensor, rows: torch.Tensor, side: str) -> torch.Tensor:
    """``table [V, D]``'s rows in cronos's order; row -1 (``<pad>``) zero."""
    if int(rows.max()) >= table.size(0):
        raise MarianImportError(f"the {side} vocabulary has ids up to {int(rows.max())}, and the weights have "
                                f"{table.size(0)} rows for it")
    return torch.cat([table, table.new_zeros(1, table.size(1))])[rows]


def _tensor(state: dict[str, torch.Tensor], name: str, fallback: torch.Tensor | None = None) -> torch.Tensor:
    found = state.get(name, fallback)
    if found is None:
        raise MarianImportError(f"the weights have no {name!r}: not a MarianMT model, or saved by a version cronos "
                                "does not know")
    return found


LAYER_PARTS = {"attention.": "self_attn.", "self_attention.": "self_attn.", "cross_attention.": "encoder_attn.",
               "attention_norm.": "self_attn_layer_norm.", "self_norm.": "self_attn_layer_norm.",
               "cross_norm.": "encoder_attn_layer_norm.", "feed_forward_norm.": "final_layer_norm.",
               "feed_forward.net.0.": "fc1.", "feed_forward.net.3.": "fc2."}
PROJECTIONS = {"query_projection": "q_proj", "key_projection": "k_proj", "value_projection": "v_proj",
               "output_projection": "out_proj"}


def _marian_name(name: str) -> str:
    """A cronos layer weight's name in Marian's state dict: ``encoder.layers.0.attention.query_projection.weight``
    -> ``encoder.layers.0.self_attn.q_proj.weight``."""
    side, layers, index, rest = name.split(".", 3)
    for ours, theirs in LAYER_PARTS.items():
        if rest.startswith(ours):
            rest = theirs + rest[len(ours):]
            break
    for ours, theirs in PROJECTIONS.items():
        rest = rest.replace(ours, theirs)
    return f"{side}.{layers}.{index}.{rest}"


def _check_positions(state: dict[str, torch.Tensor], config: Config) -> None:
    """Stored position tables must be Marian's sinusoids (which cronos computes): learned ones are refused."""
    for side in ("encoder", "decoder"):
        table = state.get(f"{side}.embed_positions.weight")
        if table is None:
            continue
        expected = sinusoids(0, table.size(0), table.size(1), layout="halves").float()
        if (table - expected).abs().max() > MAX_POSITIONS_ERROR:
            raise MarianImportError(f"the {side}'s position table is not Marian's sinusoids (learned positions?): "
                                    "cronos computes sinusoids and would not compute what this model does")
