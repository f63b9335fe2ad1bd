import dataclasses
from pathlib import Path

import pytest

from cronos.config import (Config, ConfigError, DecodingConfig, ParallelFiles, all_keys, config_from_dict, config_to_dict,
                           load_config, parse_override, without_inapplicable_keys)


def test_defaults_fill_everything_a_user_omits():
    cfg = load_config({})
    assert cfg.training.epochs == 10 and cfg.data.tokenizer == "char"
    assert cfg.model.mask_padding is True and cfg.model.freeze_pad_embedding is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.epochs = 3


def test_shipped_dates_config_loads_and_resolves_paths_against_its_folder(root):
    cfg = load_config(root / "configs" / "dates.yaml")
    assert cfg.data.train == str(root / "data" / "dates" / "train.tsv")
    assert Path(cfg.output_dir).is_absolute()


def test_overrides_apply_dotted_keys(root):
    cfg = load_config(root / "configs" / "dates.yaml", overrides={"training.epochs": 2, "model.encoder.cell": "lstm"})
    assert cfg.training.epochs == 2 and cfg.model.encoder.cell == "lstm"


def test_override_paths_resolve_against_the_working_directory_like_command_line_paths(root, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(root / "configs" / "multi30k_gru.yaml",
                      overrides={"data.root": "corpus", "output_dir": "runs/x", "data.test.src": "t.de",
                                 "training.resume": "auto"})
    assert cfg.data.root == str(tmp_path / "corpus") and cfg.output_dir == str(tmp_path / "runs" / "x")
    assert cfg.data.train.src == str(tmp_path / "corpus" / "train.de")  # the file's own paths follow the root
    assert cfg.data.test.src == str(tmp_path / "t.de") and cfg.training.resume == "auto"


@pytest.mark.parametrize("text, expected", [
    ("training.epochs=2", ("training.epochs", 2)),
    ("training.lr=0.5", ("training.lr", 0.5)),
    ("model.mask_padding=false", ("model.mask_padding", False)),
    ("data.tokenizer=word", ("data.tokenizer", "word")),
    ("training.patience=null", ("training.patience", None)),
])
def test_parse_override_reads_yaml_scalars(text, expected):
    assert parse_override(text) == expected


def test_exponent_without_dot_is_a_number_despite_yaml_1_1():
    assert load_config({}, overrides=dict([parse_override("training.lr=3e-4")])).training.lr == 3e-4


def test_parse_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("training.epochs")


@pytest.mark.parametrize("raw, key, suggestion", [
    ({"training": {"epcohs": 2}}, "training.epcohs", "training.epochs"),
    ({"trainig": {"epochs": 2}}, "trainig", "training"),
    ({"epochs": 2}, "epochs", "training.epochs"),
    ({"data": {"tokeniser": "char"}}, "data.tokeniser", "data.tokenizer"),
    ({"model": {"encoder": {"bidirectonal": True}}}, "model.encoder.bidirectonal", "model.encoder.bidirectional"),
])
def test_unknown_keys_are_errors_that_suggest_the_right_key(raw, key, suggestion):
    with pytest.raises(ConfigError) as caught:
        load_config(raw)
    message = str(caught.value)
    assert f"{key}: unknown key" in message and f"did you mean '{suggestion}'" in message


def test_errors_name_the_file_key_expected_and_got(write):
    path = write("bad.yaml", "training:\n  epochs: many\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: training.epochs: expected an integer, got str 'many'"


@pytest.mark.parametrize("raw, fragment", [
    ({"data": {"tokenizer": "chars"}}, "expected one of 'char', 'whitespace', 'word', 'sentencepiece', got str 'chars'; did you mean 'char'?"),
    ({"training": {"epochs": 0}}, "training.epochs: expected a value >= 1, got 0"),
    ({"training": {"lr": "fast"}}, "training.lr: expected a number, got str 'fast'"),
    ({"model": {"mask_padding": "yes"}}, "model.mask_padding: expected true/false, got str 'yes'"),
    ({"training": {"batch_size": 8, "batch_tokens": 100}}, "not both"),
    ({"training": {"device": "gpu"}}, "training.device: expected `auto`, `cpu`, `cuda` or `cuda:N`, got 'gpu'"),
    ({"training": 3}, "training: expected a mapping of keys, got int 3"),
    ({"data": {"train": {"src": "a.de"}}}, "data.train.tgt: missing"),
    ({"data": {"train": 5}}, "data.train: expected a string or a mapping"),
    ({"model": {"decoder": {"type": "transformer", "hidden_size": 30, "heads": 4}}}, "divisible"),
])
def test_bad_values_are_reported_with_key_and_hint(raw, fragment):
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(raw)
    assert fragment in str(caught.value)


def test_missing_and_malformed_files(tmp_path, write):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write("broken.yaml", "training: [1,\n"))
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping"):
        load_config(write("list.yaml", "- 1\n- 2\n"))


def test_parallel_files_and_data_root(tmp_path, write):
    path = write("c/run.yaml", "data:\n  root: ${CRONOS_TEST_ROOT}\n  train: {src: train.de, tgt: train.en}\n")
    import os
    os.environ["CRONOS_TEST_ROOT"] = str(tmp_path / "corpus")
    try:
        cfg = load_config(path)
    finally:
        del os.environ["CRONOS_TEST_ROOT"]
    assert cfg.data.train == ParallelFiles(str(tmp_path / "corpus" / "train.de"), str(tmp_path / "corpus" / "train.en"))


def test_round_trip_through_plain_dict(root):
    cfg = load_config(root / "configs" / "dates.yaml")
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_every_key_is_documented_in_the_configuration_reference(root):
    reference = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key, _, _ in all_keys(Config) if f"`{key}`" not in reference]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_overrides_errors_name_their_source_not_the_file(root):
    path = root / "configs" / "dates.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides={"training.epcohs": 2}, overrides_source="--set")
    assert str(caught.value) == "--set: training.epcohs: unknown key; did you mean 'training.epochs'?"
    with pytest.raises(ConfigError) as caught:  # a misspelt section that only the override names
        load_config(path, overrides={"trainig.epochs": 5}, overrides_source="--set")
    assert str(caught.value) == "--set: trainig: unknown key; did you mean 'training'?"
    with pytest.raises(ConfigError, match=r"^overrides: training.lr: expected a number"):
        load_config(path, overrides={"training.lr": "fast"})


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
) + "name: *i\n"


@pytest.mark.parametrize("text, fragment", [
    (ALIAS_BOMB, "expands to more than 10,000 values (YAML aliases that repeat each other?)"),
    ("name: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply to read"),
    ("name: " + "[" * 40 + "]" * 40 + "\n", "nests more than 32 levels deep"),
    ("training:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n",
     "line 4: key 'epochs' appears twice in one mapping (first on line 2); keep one"),
    ("training: {epochs: 2, epochs: 3}\n", "key 'epochs' appears twice"),
    ("training:\n  epochs: [1,\n", "not valid YAML at line 3, column 1: "),
    ("seed: " + "9" * 5000 + "\n", "a value cannot be read"),
])
def test_hostile_yaml_is_one_config_error_line_quickly(write, text, fragment):
    path = write("hostile.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message
    assert len(message) < 300


def test_merge_keys_may_still_be_overridden(write):
    path = write("merge.yaml", "training:\n  <<: {epochs: 2, lr: 0.1}\n  epochs: 3\n")
    config = load_config(path)
    assert config.training.epochs == 3 and config.training.lr == 0.1


def test_devices_and_huge_files_are_not_read_as_configs(tmp_path):
    with pytest.raises(ConfigError, match="/dev/zero: is a device or a socket, not a config file"):
        load_config("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(big)


def test_hostile_override_values_and_mappings_are_bounded():
    with pytest.raises(ConfigError, match=r"^--set: .*nest"):
        parse_override("name=" + "[" * 20000 + "]" * 20000)
    deep: dict = {}
    node = deep
    for _ in range(2000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ConfigError, match="nests more than 32 levels deep"):
        load_config(deep)


@pytest.mark.parametrize("raw, fragment", [
    ({"training": {"clip_grad_norm": 0}}, "training.clip_grad_norm: expected a value > 0, got 0"),
    ({"training": {"plateau_factor": 1.0}}, "training.plateau_factor: expected a value < 1, got 1.0"),
    ({"training": {"plateau_factor": 0}}, "training.plateau_factor: expected a value > 0, got 0"),
    ({"model": {"decoder": {"dropout": 1.0}}}, "model.decoder.dropout: expected a value < 1, got 1.0"),
    ({"training": {"label_smoothing": 1}}, "training.label_smoothing: expected a value < 1, got 1"),
])
def test_values_that_make_no_sense_are_refused_naming_the_key(raw, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config(raw)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("metric, lower_is_better", [
    ("valid_loss", True), ("valid_ppl", True), ("ppl", True), ("valid_token_accuracy", False),
    ("valid_sequence_accuracy", False), ("sequence_accuracy", False), ("valid_bleu", False), ("bleu", False),
    ("valid_chrf", False), ("chrf", False)])
def test_early_stopping_metric_takes_the_names_metrics_jsonl_writes(metric, lower_is_better, tmp_path):
    from helpers import tiny_config

    training = load_config(tiny_config(tmp_path, training={"early_stopping_metric": metric})).training
    assert training.lower_is_better is lower_is_better and training.metric.startswith("valid_")


@pytest.mark.parametrize("model, fragment", [
    ({"decoder": {"type": "transformer", "attention": "dot"}},
     "model.decoder.attention: means something only for type `rnn`, and model.decoder.type is `transformer`: "
     "remove the key"),
    ({"decoder": {"type": "transformer", "cell": "lstm"}}, "model.decoder.cell: means something only for type `rnn`"),
    ({"encoder": {"type": "transformer", "bidirectional": False}},
     "model.encoder.bidirectional: means something only for type `rnn`"),
    ({"encoder": {"ff_size": 512}}, "model.encoder.ff_size: means something only for type `transformer`, and "
                                    "model.encoder.type is `rnn`"),
    ({"encoder": {"heads": 8}}, "model.encoder.heads: means something only for type `transformer`"),
    ({"decoder": {"attention": "general", "heads": 8}},
     "model.decoder.heads: means something only for type `transformer` or attention `multihead`, and "
     "model.decoder.type is `rnn` and model.decoder.attention is `general`"),
])
def test_a_key_that_means_nothing_for_the_sections_type_is_refused(model, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config({"model": model})
    assert fragment in str(caught.value)


def test_type_specific_keys_are_taken_where_they_apply():
    cfg = load_config({"model": {"encoder": {"type": "transformer", "heads": 2, "ff_size": 64, "hidden_size": 32},
                                 "decoder": {"type": "rnn", "attention": "multihead", "heads": 8, "cell": "lstm"}}})
    assert (cfg.model.encoder.heads, cfg.model.encoder.ff_size, cfg.model.decoder.heads) == (2, 64, 8)


def test_plain_dicts_leave_out_keys_that_do_not_apply(root):
    cfg = load_config(root / "configs" / "multi30k_transformer.yaml")
    encoder = config_to_dict(cfg)["model"]["encoder"]
    assert "cell" not in encoder and "bidirectional" not in encoder and encoder["heads"] == 4
    assert config_from_dict(config_to_dict(cfg)) == cfg
    every_key = dataclasses.asdict(cfg)  # what cronos 0.1 stored in checkpoints: every key of every type
    assert config_from_dict(without_inapplicable_keys(every_key)) == cfg


@pytest.mark.parametrize("raw, fragment", [
    ({"seed": 2 ** 31}, "seed: expected a value <= 2,147,483,647, got 2147483648"),
    ({"seed": -1}, "seed: expected a value >= 0, got -1"),
    ({"training": {"plateau_factor": 1.0}}, "training.plateau_factor: expected a value < 1, got 1.0"),
])
def test_ranges_are_declared_beside_their_keys(raw, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config(raw)
    assert fragment in str(caught.value)


SHIPPED = ["dates.yaml", "dates_transformer.yaml", "multi30k_gru.yaml", "multi30k_gru_spm.yaml",
           "multi30k_transformer.yaml", "multi30k_transformer_spm.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_loads(root, name):
    assert sorted(path.name for path in (root / "configs").glob("*.yaml")) == SHIPPED
    load_config(root / "configs" / name)


def test_set_can_switch_a_type_and_the_files_keys_for_the_old_type_go_with_one_warning(root, caplog):
    """``configs/dates.yaml`` sets ``cell`` and ``bidirectional`` for its RNN encoder: switching the
    type from the command line means those to go, said once; the file's other keys stay."""
    path = root / "configs" / "dates.yaml"
    with caplog.at_level("WARNING", logger="cronos"):
        config = load_config(path, overrides={"model.encoder.type": "transformer", "model.encoder.heads": 4},
                             overrides_source="--set")
    assert config.model.encoder.type == "transformer" and config.model.encoder.hidden_size == 64
    assert caplog.messages == [f"--set switched a type: dropped model.encoder.cell, model.encoder.bidirectional, "
                               f"set by {path} for the type it switched away from"]
    with pytest.raises(ConfigError, match=r"^--set: model\.encoder\.cell: means something only for type `rnn`"):
        load_config(path, overrides={"model.encoder.type": "transformer", "model.encoder.cell": "lstm"},
                    overrides_source="--set")  # a key for the wrong type in the same source stays an error


def test_a_file_with_a_key_for_another_type_is_still_refused(write):
    path = write("mixed.yaml", "model:\n  encoder: {type: transformer, cell: gru}\n")
    with pytest.raises(ConfigError, match=r"mixed\.yaml: model\.encoder\.cell: means something only for type `rnn`"):
        load_config(path)


def test_a_config_of_cronos_0_1_with_an_evaluation_section_loads_as_decoding_with_one_warning(write, caplog):
    path = write("old.yaml", "evaluation:\n  beam_size: 3\n")
    with caplog.at_level("WARNING", logger="cronos"):
        config = load_config(path, overrides={"evaluation.batch_size": 7}, overrides_source="--set")
    assert (config.decoding.beam_size, config.decoding.batch_size) == (3, 7)
    assert caplog.messages == [f"{path}: the evaluation section is now called decoding; rename it (it is read as "
                               "decoding)", "--set: evaluation.batch_size is now decoding.batch_size"]
    both = write("both.yaml", "evaluation:\n  beam_size: 3\ndecoding:\n  beam_size: 4\n")
    with pytest.raises(ConfigError, match=r"both\.yaml: evaluation: is the old name of the decoding section, which "
                                          r"this config sets too; keep one \(decoding\)"):
        load_config(both)


def test_a_checkpoint_of_cronos_0_1_reads_its_evaluation_section_as_decoding_quietly(caplog):
    import torch
    stored = torch.load(Path(__file__).parent / "regression" / "data" / "golden.pt", weights_only=False)["config"]
    assert "evaluation" in stored and "decoding" not in stored  # written by cronos 0.1
    with caplog.at_level("WARNING", logger="cronos"):
        config = config_from_dict(without_inapplicable_keys(stored))  # as a checkpoint is read
    read = dataclasses.asdict(config.decoding)
    assert {key: read[key] for key in stored["evaluation"]} == stored["evaluation"] and not caplog.messages
    assert config.decoding == dataclasses.replace(DecodingConfig(), **stored["evaluation"])  # the rest as default
