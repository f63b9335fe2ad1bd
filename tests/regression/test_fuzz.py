"""Fuzzing: arbitrary text into translate/explain, arbitrary YAML into load_config."""
from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

import cronos
from cronos.config import ConfigError, load_config
from cronos.data import UNK_INDEX

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@FUZZ
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=4))
def test_translate_and_explain_never_crash_on_any_text(trained_models, texts):
    model = trained_models["rnn"]
    if any(not t.strip() for t in texts):
        with pytest.raises(ValueError, match="empty source"):
            model.translate(texts)
        with pytest.raises(ValueError, match="empty source"):
            model.explain(texts)
        return
    outputs = model.translate(texts, beam_size=2)
    assert len(outputs) == len(texts) and all(isinstance(o, str) for o in outputs)
    for text, explanation in zip(texts, model.explain(texts)):
        assert explanation.source_tokens == list(text) and explanation.padding_attention == 0.0


@FUZZ
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
       .filter(str.strip))
def test_unknown_symbols_map_to_unk(trained_models, text):
    model = trained_models["rnn"]
    batch = model.prepare([text])
    for char, index in zip(text, batch.src[0].tolist()):
        assert index == (model.codec.src_vocab.stoi[char] if char in model.codec.src_vocab else UNK_INDEX)


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000"])
def test_empty_or_whitespace_input_is_the_clear_value_error(trained_models, text):
    with pytest.raises(ValueError, match=r"input 0: empty source .*needs at least one token"):
        trained_models["rnn"].translate([text])


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
keys = st.one_of(st.sampled_from(["name", "seed", "output_dir", "data", "model", "training", "decoding", "evaluation",
                                  "train",
                                  "tokenizer", "encoder", "decoder", "type", "epochs", "batch_size", "lr", "src",
                                  "tgt", "attention", "root", "resume"]), st.text(max_size=8), st.integers())
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=5)), max_leaves=20)


def _only_config_errors(path) -> None:
    try:
        load_config(path)
    except ConfigError as error:
        assert str(error).startswith(str(path)) and len(str(error)) > len(str(path)) + 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.sampled_from(["name", "seed", "output_dir", "data", "model", "training",
                                                 "decoding", "evaluation"]), documents, max_size=4) | documents)
def test_load_config_lets_only_config_errors_escape_for_any_yaml_document(tmp_path, document):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _only_config_errors(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_load_config_lets_only_config_errors_escape_for_any_text(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_config_errors(path)


def test_non_utf8_config_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)


@pytest.mark.parametrize("raw, fragment", [
    ({"training": {"lr": float("inf")}}, "training.lr: expected a finite number"),
    ({"training": {"lr": "1e400"}}, "training.lr: expected a finite number"),
    ({"seed": -1}, "seed: expected a value >= 0"),
    ({"seed": 2 ** 40}, "seed: expected a value <= 2,147,483,647"),
    ({"output_dir": "a\0b"}, "invalid path"),
])
def test_values_that_would_break_training_later_are_config_errors(raw, fragment):
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(raw)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, cronos.ConfigError)
