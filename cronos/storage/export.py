"""A trained Transformer exported to CTranslate2, the C++ engine that many teams deploy
translation models with.

    export_ctranslate2(read_model_file("runs/x/best.pt"), Path("runs/x/ct2"))
    # runs/x/ct2: model.bin, source/target vocabularies, config.json, the SentencePiece model(s),
    # and cronos_export.json (how to make the model's input from raw text)

The model is described with CTranslate2's own specification classes (``TransformerSpec``) and saved
by its converter machinery, so the folder loads with ``ctranslate2.Translator(folder)``.  cronos's
Transformer is a pre-LayerNorm encoder-decoder with embeddings scaled by the square root of the
model size plus sinusoidal positions, or one of its variants (post-norm layers, a GELU or swish
feed-forward, unscaled embeddings): CTranslate2 runs each of them; the position table is stored
in the folder, in the layout the model was trained with.  Only Transformers export: CTranslate2
runs no RNNs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checkpoint import StoredModel
from ..config import Config, DecodingConfig
from ..data.vocab import BOS, EOS, UNK
from ..files import TEMPORARY_MARK, remove_abandoned, temporary_folder
from ..modules.encoders import sinusoids

__all__ = ["ExportError", "export_ctranslate2", "CTRANSLATE2_QUANTIZATIONS"]

CTRANSLATE2_QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16")
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's, which every cronos LayerNorm uses
SHORTEST_POSITION_TABLE = 1024


def _activations(specs) -> dict:
    return {"relu": specs.Activation.RELU, "gelu": specs.Activation.GELU, "swish": specs.Activation.SWISH}


class ExportError(ValueError):
    """A model that cannot be exported to the requested format, or a missing optional package."""


def export_ctranslate2(stored: StoredModel, out_dir: Path, quantization: str = "float32") -> Path:
    """Write ``stored`` (a checkpoint read by ``checkpoint.read_model_file``) as a CTranslate2 model
    into ``out_dir``, a folder that must not exist yet; ``quantization`` as CTranslate2 stores the
    weights (``int8``: a smaller folder; whether it decodes faster depends on the CPU, see
    docs/deployment.md)."""
    ctranslate2 = _import_ctranslate2()
    check_exportable(stored.config)
    if quantization not in CTRANSLATE2_QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r}; choose one of {', '.join(CTRANSLATE2_QUANTIZATIONS)}")
    if out_dir.is_symlink() and not out_dir.exists():
        raise ExportError(f"{out_dir} is a link to nothing ({os.readlink(out_dir)}); the export goes to a new folder")
    if out_dir.exists():
        raise ExportError(f"{out_dir} exists; the export goes to a new folder")
    spec = _transformer_spec(ctranslate2, stored)
    spec.validate()
    spec.optimize(quantization=quantization)
    remove_abandoned(out_dir, "partial")
    partial = temporary_folder(out_dir, "partial")
    try:
        spec.save(str(partial))
        _write_input_description(stored, partial)
        os.rename(partial, out_dir)  # complete or absent: never a half-written model folder
    except OSError as error:
        raise ExportError(f"cannot write {out_dir}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already when the export is in place
    (out_dir / TEMPORARY_MARK).unlink()
    return out_dir


def check_exportable(config: Config) -> None:
    """Refuse, with the reason, a model CTranslate2 would not run as cronos does."""
    model = config.model
    if model.encoder.type != "transformer" or model.decoder.type != "transformer":
        kinds = f"a {model.encoder.type} encoder and a {model.decoder.type} decoder"
        raise ExportError(f"CTranslate2 runs Transformer models only; this model has {kinds}")
    sizes = {model.embedding_size, model.encoder.hidden_size, model.decoder.hidden_size}
    if len(sizes) > 1:
        raise ExportError(f"CTranslate2 needs the embedding size ({model.embedding_size}) equal to the encoder's "
                          f"({model.encoder.hidden_size}) and decoder's ({model.decoder.hidden_size}) hidden size; "
                          "cronos projects between them, CTranslate2 cannot")
    if model.encoder.sinusoids != model.decoder.sinusoids:
        raise ExportError("CTranslate2 needs the encoder's and decoder's positions in one layout; this model has "
                          f"{model.encoder.sinusoids} and {model.decoder.sinusoids}")
    if not model.mask_padding:
        raise ExportError("this model was trained with model.mask_padding off (an ablation): CTranslate2 always "
                          "masks padding, so it would not compute what this model does")


def _import_ctranslate2():
    try:
        import ctranslate2
        import ctranslate2.specs  # noqa: F401 - the specification classes
    except ImportError:
        raise ExportError("exporting to CTranslate2 needs the ctranslate2 package: "
                          "pip install 'cronos[ctranslate2]'") from None
    return ctranslate2


def _transformer_spec(ctranslate2, stored: StoredModel):
    specs = ctranslate2.specs
    model, weights = stored.config.model, stored.weights
    encoder = specs.TransformerEncoderSpec(model.encoder.layers, model.encoder.heads,
                                           pre_norm=model.encoder.normalize_before,
                                           activation=_activations(specs)[model.encoder.activation])
    decoder = specs.TransformerDecoderSpec(model.decoder.layers, model.decoder.heads,
                                           pre_norm=model.decoder.normalize_before,
                                           activation=_activations(specs)[model.decoder.activation])
    encoder.scale_embeddings = model.encoder.scale_embeddings
    decoder.scale_embeddings = model.decoder.scale_embeddings
    positions = _position_table(stored.config)
    encoder.embeddings[0].weight = _array(weights["src_embedding.weight"])
    encoder.position_encodings.encodings = positions
    if model.encoder.normalize_before:  # a post-norm stack has no final norm
        _set_layer_norm(encoder.layer_norm, weights, "encoder.final_norm")
    for i, layer in enumerate(encoder.layer):
        prefix = f"encoder.layers.{i}"
        _set_layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.attention_norm")
        _set_self_attention(layer.self_attention, weights, f"{prefix}.attention")
        _set_feed_forward(layer.ffn, weights, prefix)
    decoder.embeddings.weight = _array(weights["tgt_embedding.weight"])
    decoder.position_encodings.encodings = positions
    if model.decoder.normalize_before:
        _set_layer_norm(decoder.layer_norm, weights, "decoder.final_norm")
    _set_linear(decoder.projection, weights, "output_projection")
    for i, layer in enumerate(decoder.layer):
        prefix = f"decoder.layers.{i}"
        _set_layer_norm(layer.self_attention.layer_norm, weights, f"{prefix}.self_norm")
        _set_self_attention(layer.self_attention, weights, f"{prefix}.self_attention")
        _set_layer_norm(layer.attention.layer_norm, weights, f"{prefix}.cross_norm")
        _set_cross_attention(layer.attention, weights, f"{prefix}.cross_attention")
        _set_feed_forward(layer.ffn, weights, prefix)
    spec = specs.TransformerSpec(encoder, decoder)
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = UNK, BOS, EOS
    spec.config.decoder_start_token = BOS
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.register_source_vocabulary(list(stored.src_vocab.itos))
    spec.register_target_vocabulary(list(stored.tgt_vocab.itos))
    return spec


def _position_table(config: Config) -> np.ndarray:
    """cronos's sinusoids for every position a source or an output can reach: ``[P, D]``."""
    data, decoding = config.data, config.decoding
    longest_output = int(decoding.max_length_ratio * (data.max_length + 1)) + decoding.max_length_offset + 2
    rows = max(SHORTEST_POSITION_TABLE, data.max_length + 1, longest_output)
    encoder = config.model.encoder
    return sinusoids(0, rows, encoder.hidden_size, layout=encoder.sinusoids).float().numpy()


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).cpu().numpy()


def _set_linear(spec, weights: dict[str, Tensor], name: str) -> None:
    spec.weight = _array(weights[f"{name}.weight"])
    if f"{name}.bias" in weights:
        spec.bias = _array(weights[f"{name}.bias"])


def _set_fused(spec, weights: dict[str, Tensor], names: list[str]) -> None:
    """One linear layer whose outputs are those of ``names`` one after the other (CTranslate2 fuses
    the query, key and value projections)."""
    spec.weight = np.concatenate([_array(weights[f"{name}.weight"]) for name in names])
    spec.bias = np.concatenate([_array(weights[f"{name}.bias"]) for name in names])


def _set_layer_norm(spec, weights: dict[str, Tensor], name: str) -> None:
    spec.gamma, spec.beta = _array(weights[f"{name}.weight"]), _array(weights[f"{name}.bias"])


def _set_self_attention(spec, weights: dict[str, Tensor], name: str) -> None:
    _set_fused(spec.linear[0], weights, [f"{name}.{p}_projection" for p in ("query", "key", "value")])
    _set_linear(spec.linear[1], weights, f"{name}.output_projection")


def _set_cross_attention(spec, weights: dict[str, Tensor], name: str) -> None:
    _set_linear(spec.linear[0], weights, f"{name}.query_projection")
    _set_fused(spec.linear[1], weights, [f"{name}.{p}_projection" for p in ("key", "value")])
    _set_linear(spec.linear[2], weights, f"{name}.output_projection")


def _set_feed_forward(spec, weights: dict[str, Tensor], prefix: str) -> None:
    _set_layer_norm(spec.layer_norm, weights, f"{prefix}.feed_forward_norm")
    _set_linear(spec.linear_0, weights, f"{prefix}.feed_forward.net.0")
    _set_linear(spec.linear_1, weights, f"{prefix}.feed_forward.net.3")


def translate_batch_options(decoding: DecodingConfig) -> dict:
    """The model's decoding settings as ``ctranslate2.Translator.translate_batch`` takes them; a
    GNMT length penalty, which CTranslate2 does not have, is left out and named instead."""
    options = {"beam_size": decoding.beam_size, "coverage_penalty": decoding.coverage_penalty,
               "min_decoding_length": decoding.min_length, "no_repeat_ngram_size": decoding.no_repeat_ngram_size}
    if decoding.length_penalty_form == "gnmt":
        return {**options, "not_in_ctranslate2": ["decoding.length_penalty_form: gnmt"]}
    return {**options, "length_penalty": 0.0 if decoding.length_penalty_form == "none" else decoding.length_penalty}


def _write_input_description(stored: StoredModel, folder: Path) -> None:
    """The SentencePiece model(s) beside the weights, and ``cronos_export.json``: what a caller does
    to raw text before CTranslate2 reads it, and to its output after."""
    data, decoding = stored.config.data, stored.config.decoding
    description = {"lowercase": data.lowercase, "tokenizer": data.tokenizer,
                   "max_source_tokens": data.max_length, "source_ends_with": EOS if data.source_eos else None,
                   "decoding": {
                       "max_length_ratio": decoding.max_length_ratio,
                       "max_length_offset": decoding.max_length_offset,
                       "length_penalty": decoding.length_penalty,
                       "translate_batch": translate_batch_options(decoding)}}
    if stored.subwords is not None:
        names = ("sentencepiece.model",) * 2 if stored.subwords.joint else ("source.spm", "target.spm")
        (folder / names[0]).write_bytes(stored.subwords.source)
        (folder / names[1]).write_bytes(stored.subwords.target)
        description["sentencepiece"] = {"source": names[0], "target": names[1]}
    (folder / "cronos_export.json").write_text(json.dumps(description, indent=2) + "\n")
