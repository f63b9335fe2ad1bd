"""Tiny Hugging Face MarianMT models made here, as a real OPUS-MT folder is laid out: config.json,
model.safetensors, source.spm, target.spm, vocab.json (and target_vocab.json when the sides have
vocabularies of their own).  Each is trained for a few seconds on the dates data with
transformers' own model, so that its outputs end where it chooses (random weights repeat a token
up to the length limit, which compares nothing)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from helpers import DATES

SHAPES = {  # name: (MarianConfig settings, training steps that make its outputs depend on the input)
    "shared, swish, scaled, 2+2": ({}, 150),
    "own vocabularies, gelu, unscaled, untied, 1+3": ({
        "share_encoder_decoder_embeddings": False, "tie_word_embeddings": False, "activation_function": "gelu",
        "scale_embedding": False, "encoder_layers": 1, "decoder_layers": 3}, 150),
    "relu, 3+1, 8 heads": ({"activation_function": "relu", "encoder_layers": 3, "decoder_layers": 1,
                            "encoder_attention_heads": 8, "decoder_attention_heads": 8}, 450),
}


LANGUAGE_CODES = (">>iso<<", ">>us<<")  # the target "languages" a multilingual model's vocabulary lists


@dataclass
class Pairs:
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def dates(split: str, count: int) -> Pairs:
    pairs = Pairs()
    for line in (DATES / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:count]:
        source, target = line.split("\t")
        pairs.sources.append(source)
        pairs.targets.append(target)
    return pairs


def make_marian(folder: Path, shape: str = "shared, swish, scaled, 2+2", train: Pairs | None = None,
                pieces: tuple[int, int] = (120, 24), steps: int | None = None) -> Path:
    """A trained tiny MarianMT model of ``shape`` (``SHAPES``) saved in ``folder``: SentencePiece
    models of ``pieces`` (source, target) and ``steps`` of training (the shape's) on ``train``
    (3,000 dates pairs)."""
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    options, steps = SHAPES[shape][0], steps or SHAPES[shape][1]
    train = train or dates("train", 3000)
    for name, texts, size in (("source", train.sources, pieces[0]), ("target", train.targets, pieces[1])):
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=str(folder / name), vocab_size=size, model_type="unigram",
            unk_id=1, eos_id=0, bos_id=-1, pad_id=-1, unk_piece="<unk>", eos_piece="</s>", minloglevel=2,
            num_threads=1)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
        (folder / f"{name}.vocab").unlink()
    separate = not options.get("share_encoder_decoder_embeddings", True)
    sides = [["source"], ["target"]] if separate else [["source", "target"]]
    vocabularies = [_vocabulary(folder, names, pad_last=not separate) for names in sides]
    for name, vocabulary in zip(("vocab.json", "target_vocab.json"), vocabularies):
        (folder / name).write_text(json.dumps(vocabulary, ensure_ascii=False))
    size, pad = len(vocabularies[0]), vocabularies[0]["<pad>"]
    settings = {"d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                "decoder_attention_heads": 4, "encoder_ffn_dim": 48, "decoder_ffn_dim": 48,
                "activation_function": "swish", "scale_embedding": True, "max_position_embeddings": 256,
                "dropout": 0.0, **options}
    config = MarianConfig(vocab_size=size, decoder_vocab_size=len(vocabularies[-1]), pad_token_id=pad,
                          decoder_start_token_id=pad, eos_token_id=0, forced_eos_token_id=0, **settings)
    torch.manual_seed(0)
    model = MarianMTModel(config)
    tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"),
                                target_vocab_file=str(folder / "target_vocab.json") if separate else None,
                                separate_vocabs=separate)
    _train(model, tokenizer, train, steps)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _vocabulary(folder: Path, names: list[str], pad_last: bool) -> dict[str, int]:
    """Marian's layout: ``</s>`` 0, ``<unk>`` 1, the pieces of ``names``' models, ``<pad>`` last
    (or 2: two vocabularies share the padding token's id)."""
    import sentencepiece as spm

    vocabulary = {"</s>": 0, "<unk>": 1} if pad_last else {"</s>": 0, "<unk>": 1, "<pad>": 2}
    vocabulary.update((code, len(vocabulary)) for code in LANGUAGE_CODES)  # as a multilingual model's
    for name in names:
        model = spm.SentencePieceProcessor(model_file=str(folder / f"{name}.spm"))
        for i in range(model.get_piece_size()):
            vocabulary.setdefault(model.id_to_piece(i), len(vocabulary))
    vocabulary.setdefault("<pad>", len(vocabulary))
    return vocabulary


def _train(model, tokenizer, pairs: Pairs, steps: int, batch: int = 48) -> None:
    """Train as Marian does: its decoder starts from a zero vector, which the conversion to
    transformers makes the row of the added ``<pad>`` (zero, and kept zero here)."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pad = model.config.pad_token_id
    rows = [model.model.encoder.embed_tokens.weight, model.model.decoder.embed_tokens.weight, model.lm_head.weight]
    model.train()
    for step in range(steps):
        with torch.no_grad():
            for weight in rows:
                weight[pad] = 0.0
        start = (step * batch) % (len(pairs.sources) - batch)
        inputs = tokenizer(pairs.sources[start:start + batch], text_target=pairs.targets[start:start + batch],
                           return_tensors="pt", padding=True)
        inputs["labels"] = inputs["labels"].masked_fill(inputs["labels"] == pad, -100)
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        for weight in rows:
            weight[pad] = 0.0
        model.final_logits_bias[0, pad] = 0.0
    model.eval()
