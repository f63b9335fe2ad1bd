"""An imported MarianMT model computes what transformers' ``MarianMTModel`` computes: tokens, log-
probabilities, greedy and beam outputs, on tiny models of several shapes made here with
transformers itself (tests/marian_models.py).

"What MarianMTModel computes" is its distribution over Marian's vocabulary: transformers' copy of a
Marian model has one more token, ``<pad>`` (its decoder start, which its generation settings ban as
an output); Marian itself and CTranslate2 have no such output, and cronos gives it probability 0
(docs/pretrained.md).  So log-probabilities compare with transformers' logits with that column
removed, and outputs with ``generate(bad_words_ids=[[pad]])``, as OPUS-MT's generation settings say.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import cronos
from cronos.cli import main
from cronos.data.vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX
from cronos.storage.checkpoint import read_model_file
from cronos.storage.marian import NEVER, MarianImportError, read_marian_folder
from marian_models import LANGUAGE_CODES, SHAPES, dates

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")  # MarianTokenizer's

AGREE = 1e-5  # teacher-forced log-probabilities, cronos against MarianMTModel, float32
SENTENCES = [  # what a tokenizer meets: digits, punctuation, letters the models never saw, spacing, accents
    "march 24th, 2095", "Le 5 octobre 1972 !", "  two   spaces  ", "Ça coûte 3,50 € (TTC).", "naïve café — déjà vu",
    "ÅNGSTRÖM 1/2/1999", "tab\there", "日本語 2020年", "x", "e-mail: someone@example.org?"]


@pytest.fixture(scope="module")
def marian(marian_folders) -> dict[str, tuple]:
    """Per shape: (folder, MarianMTModel, MarianTokenizer, the imported cronos Translator)."""
    made = {}
    for shape in SHAPES:
        folder, checkpoint = marian_folders(shape)
        made[shape] = (folder, transformers.MarianMTModel.from_pretrained(folder).eval(),
                       transformers.MarianTokenizer.from_pretrained(folder), cronos.Translator.load(checkpoint))
    return made


def _marian_log_probs(model, tokenizer, sources: list[str], targets: list[str]) -> list[torch.Tensor]:
    """MarianMTModel's teacher-forced log-probability of each target token (``</s>`` included),
    over Marian's vocabulary (its added ``<pad>`` column removed)."""
    batch = tokenizer(sources, text_target=targets, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits  # [B, T, V]
    logits[..., model.config.pad_token_id] = float("-inf")
    log_probs = torch.log_softmax(logits, dim=-1)
    found = []
    for row, labels in zip(log_probs, batch["labels"]):
        length = int((labels != model.config.pad_token_id).sum())
        found.append(row[torch.arange(length), labels[:length]])
    return found


@pytest.mark.parametrize("shape", SHAPES)
def test_teacher_forced_log_probs_equal_marians(marian, shape):
    _, model, tokenizer, ours = marian[shape]
    pairs = dates("valid", 64)
    expected = _marian_log_probs(model, tokenizer, pairs.sources, pairs.targets)
    scored = ours.score(list(zip(pairs.sources, pairs.targets)), per_token=True)
    for theirs, mine in zip(expected, scored):
        assert torch.tensor(mine.token_log_probs) == pytest.approx(theirs, abs=AGREE)


@pytest.mark.parametrize("shape", SHAPES)
def test_greedy_outputs_equal_generates(marian, shape):
    _, model, tokenizer, ours = marian[shape]
    sources = dates("test", 200).sources
    with torch.no_grad():
        generated = model.generate(**tokenizer(sources, return_tensors="pt", padding=True), num_beams=1,
                                   do_sample=False, max_new_tokens=60, bad_words_ids=[[model.config.pad_token_id]])
    theirs = tokenizer.batch_decode(generated, skip_special_tokens=True)
    mine = ours.translate(sources, beam_size=1)
    assert mine == theirs
    assert len(set(mine)) > 50  # the outputs depend on the inputs: the comparison compares something


@pytest.mark.parametrize("alpha", [1.0, 0.6])
@pytest.mark.parametrize("shape", SHAPES)
def test_beam_outputs_equal_generates(marian, shape, alpha):
    """Beam 4 with the length penalty ``log_prob / length ** alpha`` (transformers' ``length_penalty``,
    cronos's ``power`` form) and ``early_stopping=True``: the same outputs on at least 99% of inputs
    (all of them here; a near-tie may break otherwise, as the sums are taken in another order)."""
    _, model, tokenizer, ours = marian[shape]
    sources = dates("test", 200).sources
    with torch.no_grad():
        generated = model.generate(**tokenizer(sources, return_tensors="pt", padding=True), num_beams=4,
                                   do_sample=False, max_new_tokens=60, early_stopping=True, length_penalty=alpha,
                                   bad_words_ids=[[model.config.pad_token_id]])
    theirs = tokenizer.batch_decode(generated, skip_special_tokens=True)
    mine = ours.translate(sources, beam_size=4, decoding={"length_penalty": alpha})
    assert sum(a == b for a, b in zip(mine, theirs)) >= 0.99 * len(sources)


@pytest.mark.parametrize("shape", SHAPES)
def test_the_pieces_and_ids_equal_marian_tokenizers(marian, shape):
    """Sources and targets become the ids MarianTokenizer gives them, ``</s>`` ending each source
    (cronos's ``<eos>``), and a leading language code is the tag it is."""
    folder, _, tokenizer, ours = marian[shape]
    separate = (folder / "target_vocab.json").exists()
    source_ids = _marian_ids(folder / "vocab.json")
    target_ids = _marian_ids(folder / ("target_vocab.json" if separate else "vocab.json"))
    texts = SENTENCES + dates("test", 50).sources
    for text, example in zip(texts, ours.codec.encode(texts, texts)):
        assert [source_ids[ours.codec.src_vocab.itos[i]] for i in example.src] == tokenizer(text)["input_ids"]
        expected = tokenizer(text_target=text)["input_ids"]
        assert [target_ids[ours.codec.tgt_vocab.itos[i]] for i in example.tgt] + [0] == expected
    if not separate:
        (example,) = ours.codec.encode(["march 24th, 2095"], tag=LANGUAGE_CODES[0])
        expected = tokenizer(f"{LANGUAGE_CODES[0]} march 24th, 2095")["input_ids"]
        assert [source_ids[ours.codec.src_vocab.itos[i]] for i in example.src] == expected


def _marian_ids(path) -> dict[str, int]:
    """cronos's token -> Marian's id, from a Marian vocabulary file (``<eos>`` is ``</s>``)."""
    ids = json.loads(path.read_text())
    return {**ids, "<eos>": ids["</s>"], "<bos>": ids["<pad>"]}


def test_marians_decoder_start_is_bos_and_neither_it_nor_pad_is_ever_an_output(marian):
    folder, model, _, ours = marian["shared, swish, scaled, 2+2"]
    stored = read_marian_folder(folder)
    shared = model.model.shared.weight.detach()
    network = ours.network
    assert torch.equal(network.tgt_embedding.weight[BOS_INDEX], shared[model.config.pad_token_id])
    assert torch.equal(network.tgt_embedding.weight[EOS_INDEX], shared[model.config.eos_token_id])
    assert not network.tgt_embedding.weight[PAD_INDEX].any() and network.src_embedding.padding_idx == PAD_INDEX
    assert network.output_projection.bias[[PAD_INDEX, BOS_INDEX]].tolist() == [NEVER, NEVER]
    assert stored.src_vocab.tags == LANGUAGE_CODES
    pairs = dates("valid", 8)
    logits, _ = ours.network(*_batch(ours, pairs))
    assert not torch.softmax(logits, dim=-1)[..., [PAD_INDEX, BOS_INDEX]].any()  # probability exactly 0


def _batch(translator, pairs):
    from cronos.data.batch import collate

    batch = collate(translator.codec.encode(pairs.sources, pairs.targets))
    return batch.src, batch.src_lengths, batch.tgt_in


def test_the_command_imports_into_a_new_file_and_the_model_translates(marian, tmp_path, capsys):
    folder, _, _, ours = marian["own vocabularies, gelu, unscaled, untied, 1+3"]
    out = tmp_path / "imported.pt"
    assert main(["import", "--from", "marian", str(folder), str(out)]) == 0
    assert "1+3 layers" in capsys.readouterr().out
    imported = cronos.Translator.load(out)
    sources = dates("test", 20).sources
    assert imported.translate(sources) == ours.translate(sources)
    assert main(["import", "--from", "marian", str(folder), str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def _altered(folder, tmp_path, change) -> str:
    import shutil

    copy = tmp_path / "altered"
    shutil.copytree(folder, copy)
    change(copy)
    return str(copy)


def _set_config(key, value):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        config[key] = value
        (folder / "config.json").write_text(json.dumps(config))
    return change


class _RunsCode:
    def __reduce__(self):
        import os
        return os.system, ("touch ran",)


def _pickle_that_runs_code(folder):
    (folder / "model.safetensors").unlink()
    torch.save({"model.shared.weight": _RunsCode()}, folder / "pytorch_model.bin")


def _more_tokens(folder):
    vocabulary = json.loads((folder / "vocab.json").read_text())
    vocabulary["extra"] = len(vocabulary)
    (folder / "vocab.json").write_text(json.dumps(vocabulary))


def _learned_positions(folder):
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    state["model.encoder.embed_positions.weight"] = torch.randn(256, 32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("change, message", [
    (lambda folder: (folder / "vocab.json").unlink(), "vocab.json.*MarianMT folder holds it"),
    (lambda folder: (folder / "source.spm").unlink(), "source.spm"),
    (lambda folder: (folder / "model.safetensors").unlink(), "holds no weights"),
    (lambda folder: (folder / "model.safetensors").write_bytes(b"not weights"), "model.safetensors does not load"),
    (_set_config("model_type", "bart"), "'bart' model"),
    (_set_config("activation_function", "gelu_new"), "activation 'gelu_new'"),
    (_set_config("decoder_start_token_id", 0), "decoder starts from token 0"),
    (lambda folder: (folder / "vocab.json").write_text('{"</s>": 0, "<unk>": 3}'), "ids are not 0 to 1"),
    (_learned_positions, "not Marian's sinusoids"),
    (_pickle_that_runs_code, "pytorch_model.bin does not load as plain weights"),
    (_set_config("encoder_ffn_dim", 64), r"'encoder.layers.0.fc1.weight' has the shape \(48, 32\), and config.json "
                                         r"describes \(64, 32\)"),
    (_more_tokens, r"the source vocabulary has ids up to (\d+), and the weights have \1 rows"),
], ids=["no vocab.json", "no source.spm", "no weights", "not weights", "another model", "another activation",
        "another decoder start", "ids with gaps", "learned positions", "a pickle that runs code", "another shape",
        "more tokens than rows"])
def test_a_folder_cronos_cannot_run_alike_is_refused_with_the_reason(marian, tmp_path, change, message,
                                                                    monkeypatch):
    folder = _altered(marian["shared, swish, scaled, 2+2"][0], tmp_path, change)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MarianImportError, match=message):
        read_marian_folder(folder)
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_named_as_its_config_is_refused_before_anything_is_written(marian, tmp_path, capsys):
    folder = marian["shared, swish, scaled, 2+2"][0]
    assert main(["import", "--from", "marian", str(folder), str(tmp_path / "model.yaml")]) == 2
    assert "name the checkpoint OUT.pt" in capsys.readouterr().err and not (tmp_path / "model.yaml").exists()


def test_the_command_says_why_in_one_line(tmp_path, capsys):
    assert main(["import", "--from", "marian", str(tmp_path / "nothing"), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err and not (tmp_path / "out.pt").exists()


def test_an_imported_checkpoint_reads_back_with_every_check(marian):
    folder = marian["own vocabularies, gelu, unscaled, untied, 1+3"][0]
    stored = read_model_file(folder.parent / f"{folder.name}.pt")
    assert stored.src_vocab != stored.tgt_vocab and not stored.config.model.share_embeddings
    assert stored.config.data.source_eos and stored.config.model.decoder.activation == "gelu"
    assert stored.config.model.decoder.layers == 3 and not stored.config.model.tie_output_embedding
    assert stored.config.decoding.beam_size == 4  # OPUS-MT's generation settings give theirs; these give none
    config = dataclasses.asdict(stored.config.model.encoder)
    assert (config["normalize_before"], config["sinusoids"], config["scale_embeddings"]) == (False, "halves", False)


def test_weights_saved_by_torch_import_as_safetensors_do(marian, tmp_path):
    """Older folders hold ``pytorch_model.bin``: read with ``weights_only``, it gives the same model."""
    from safetensors.torch import load_file

    folder = marian["shared, swish, scaled, 2+2"][0]

    def as_torch_file(copy):
        torch.save(load_file(str(copy / "model.safetensors")), copy / "pytorch_model.bin")
        (copy / "model.safetensors").unlink()

    old = read_marian_folder(_altered(folder, tmp_path, as_torch_file))
    new = read_marian_folder(folder)
    assert old.weights.keys() == new.weights.keys()
    assert all(torch.equal(old.weights[name], new.weights[name]) for name in new.weights)


def test_the_beam_size_is_the_generation_settings(marian, tmp_path):
    def beams(folder):
        (folder / "generation_config.json").write_text(json.dumps({"num_beams": 6, "bad_words_ids": [[131]]}))

    folder = _altered(marian["shared, swish, scaled, 2+2"][0], tmp_path, beams)
    assert read_marian_folder(folder).config.decoding.beam_size == 6
