"""The command line, end to end on a tiny config: in this process through ``cronos.cli.main``, and in
subprocesses where being a process of its own matters (the entry point, a terminal, a closed pipe)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from cronos.storage.checkpoint import CheckpointError
from cronos.cli import main
from cronos.model import Cronos
from helpers import cronos_command, run_cli, tiny_config, write_config


def cronos(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cronos_command(*args), input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = write_config(folder / "tiny.yaml", tiny_config(folder))
    result = cronos("train", str(config), "--set", "training.epochs=1")
    assert result.returncode == 0, result.stderr
    return folder, config, result


def test_train_writes_checkpoints_and_reports(trained_run):
    folder, _, result = trained_run
    assert "best checkpoint:" in result.stdout and "trained 1 epoch, 25 steps" in result.stdout
    assert (folder / "run" / "best.pt").exists() and (folder / "run" / "metrics.jsonl").exists()


def test_evaluate(trained_run, tmp_path, capsys, monkeypatch):
    folder, _, _ = trained_run
    code, out, err = run_cli(["evaluate", str(folder / "run" / "best.pt"), "--data", "valid", "--out",
                              str(tmp_path / "s.json")], "", capsys, monkeypatch)
    assert code == 0, err
    scores = json.loads(out)
    assert {"loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf"} <= set(scores)
    assert json.loads((tmp_path / "s.json").read_text()) == scores


def test_translate_reads_stdin_in_batches(trained_run, capsys, monkeypatch):
    folder, _, _ = trained_run
    lines = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950"]
    code, out, err = run_cli(["translate", str(folder / "run" / "best.pt"), "--beam", "3", "--batch-size", "2"],
                             "\n".join(lines) + "\n", capsys, monkeypatch)
    assert code == 0, err
    assert out.splitlines() == Cronos.load(folder / "run" / "best.pt", "cpu").translate(lines, beam_size=3)


def test_explain_writes_json_and_png(trained_run, tmp_path, capsys, monkeypatch):
    folder, _, _ = trained_run
    code, _, err = run_cli(["explain", str(folder / "run" / "best.pt"), "Thu 26 Nov 2026", "1/2/07", "--out",
                            str(tmp_path)], "", capsys, monkeypatch)
    assert code == 0, err
    data = json.loads((tmp_path / "explanation_2.json").read_text())
    assert data["source_tokens"] == list("1/2/07") and (tmp_path / "explanation_1.png").stat().st_size > 1000


@pytest.mark.parametrize("args, code, message", [
    (("train", "{config}", "--set", "training.epcohs=2"), 2,
     "cronos: error: --set: training.epcohs: unknown key; did you mean 'training.epochs'?"),
    (("train", "{config}", "--set", "training.epochs=many"), 2, "--set: training.epochs: expected an integer"),
    (("evaluate", "{best}", "--data", "tset"), 2,
     "argument --data: 'tset' is neither a split name (train, valid, test) nor an existing file"),
    (("score", "{best}", "--data", "dev"), 2, "argument --data: 'dev' is neither a split name"),
    (("train", "{config}", "--set", "training.epochs"), 2, "expected KEY=VALUE"),
    (("train", "{config}", "--set", "training.epochs", "5"), 2,
     "argument --set: expected KEY=VALUE with no space around '=', e.g. --set training.epochs=VALUE"),
    (("train", "{config}", "--set", "trainig.epochs=5"), 2, "cronos: error: --set: trainig: unknown key; did you mean"),
    (("train", "missing.yaml"), 2, "config file not found"),
    (("evaluate", "missing.pt"), 1, "missing.pt: no such checkpoint"),
    (("evaluate", "missing.pt", "--out", "{config}"), 2, "tiny.yaml is a config; write the output elsewhere"),
    (("translate", "{best}", "--beam", "0"), 2, "expected a positive integer"),
    (("explain", "{best}", "a", "--target", "x", "--target", "y"), 2, "give one --target per TEXT"),
    (("translate", "{best}", "--device", "gpu"), 2, "--device: expected `auto`, `cpu`, `cuda` or `cuda:N`"),
    (("frobnicate",), 2, "invalid choice"),
    (("explain", "{best}", "a", "--method", "gradcam"), 2, "argument --method: invalid choice: 'gradcam'"),
    (("explain", "{best}", "a", "--html", "{folder}"), 2, "--html names the file to write"),
    (("explain", "{best}", "a", "--method", "integrated_gradients", "--steps", "0"), 2,
     "expected a positive integer"),
])
def test_errors_are_one_line_with_the_right_exit_code(trained_run, args, code, message, capsys):
    folder, config, _ = trained_run
    filled = [a.format(config=config, best=folder / "run" / "best.pt", folder=folder) for a in args]
    try:
        returned = main(filled)
    except SystemExit as exit_:  # argparse's usage errors
        returned = exit_.code
    stderr = capsys.readouterr().err
    assert returned == code
    assert message in stderr and "Traceback" not in stderr


def test_the_installed_entry_point_returns_the_exit_code(trained_run):
    _, config, _ = trained_run
    result = cronos("train", str(config), "--set", "training.epcohs=2")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "did you mean 'training.epochs'?" in result.stderr


def test_translate_keeps_line_alignment_empty_lines_give_empty_lines_and_one_warning(trained_run, capsys,
                                                                                      monkeypatch):
    best = str(trained_run[0] / "run" / "best.pt")
    lines = ["1/2/07", "", "Thu 26 Nov 2026", "   ", "\t", "2000 01 01"]
    code, out, err = run_cli(["translate", best, "--batch-size", "2"], "\n".join(lines) + "\n", capsys, monkeypatch)
    assert code == 0, err
    outputs = out.split("\n")[:-1]
    alone = Cronos.load(best, "cpu").translate(["1/2/07", "Thu 26 Nov 2026", "2000 01 01"])
    assert outputs == [alone[0], "", alone[1], "", "", alone[2]]
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == ["cronos: warning: 3 empty input line(s) gave empty output lines: line(s) 2, 4, 5"]


def test_translate_tokenises_each_input_line_once(trained_run, capsys, monkeypatch):
    from cronos.data.tokenizers import CharTokenizer

    best = str(trained_run[0] / "run" / "best.pt")
    read, tokenize = [], CharTokenizer.tokenize
    monkeypatch.setattr(CharTokenizer, "tokenize", lambda self, text: read.append(text) or tokenize(self, text))
    lines = ["1/2/07", "", "Thu 26 Nov 2026"]
    code, _, err = run_cli(["translate", best, "--beam", "2"], "\n".join(lines) + "\n", capsys, monkeypatch)
    assert code == 0, err
    assert read == lines


def test_translate_drops_a_byte_order_mark_and_reports_bad_bytes_by_line(trained_run, capsys, monkeypatch):
    best = str(trained_run[0] / "run" / "best.pt")
    plain = Cronos.load(best, "cpu").translate(["1/2/07"])[0] + "\n"
    code, out, _ = run_cli(["translate", best], b"\xef\xbb\xbf1/2/07\n", capsys, monkeypatch)
    assert code == 0 and out == plain
    code, out, err = run_cli(["translate", best], b"1/2/07\n\xff\xfe\n", capsys, monkeypatch)
    assert code == 1 and "stdin:2: not valid UTF-8 (byte 0xff at column 1)" in err
    assert out == plain  # the lines before it were written


def test_version(capsys, root):
    import tomllib

    import cronos as package

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(f"cronos {package.__version__} (torch ")
    with open(root / "pyproject.toml", "rb") as file:
        assert tomllib.load(file)["project"]["version"] == package.__version__  # one version, written twice


@pytest.mark.parametrize("out", ["best.pt", "last.pt"])
def test_evaluate_out_never_overwrites_a_checkpoint(trained_run, out, capsys):
    run = trained_run[0] / "run"
    before = (run / out).read_bytes()
    assert main(["evaluate", str(run / "best.pt"), "--out", str(run / out)]) == 2
    assert "cronos: error: --out: " in capsys.readouterr().err
    assert (run / out).read_bytes() == before


def test_explain_out_must_be_a_folder(trained_run, capsys):
    run = trained_run[0] / "run"
    assert main(["explain", str(run / "best.pt"), "1/2/07", "--out", str(run / "best.pt")]) == 2
    assert "--out names a folder" in capsys.readouterr().err


def test_debug_shows_the_traceback(trained_run, capsys):
    """Without ``--debug`` the error is one line; with it, the error itself leaves ``main`` (Python
    then prints its traceback)."""
    assert main(["evaluate", "missing.pt"]) == 1
    with pytest.raises(CheckpointError, match="missing.pt: no such checkpoint"):
        main(["--debug", "evaluate", "missing.pt"])


def test_typed_into_a_terminal_each_line_is_translated_before_the_next_is_read(trained_run):
    """stdin a terminal: the first line's translation shows while the input is still open."""
    import os
    import select

    folder, _, _ = trained_run
    expected = Cronos.load(folder / "run" / "best.pt", "cpu").translate(["1/2/07"])[0]
    primary, secondary = os.openpty()
    process = subprocess.Popen(cronos_command("translate", str(folder / "run" / "best.pt")), stdin=secondary,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(secondary)
    try:
        os.write(primary, b"1/2/07\n")
        ready, _, _ = select.select([process.stdout], [], [], 120)
        assert ready, "nothing printed while the terminal stays open"
        assert process.stdout.readline().decode().strip() == expected
        os.write(primary, b"\x04")  # Ctrl-D: end of input
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(primary)


def test_translate_reads_input_and_writes_output_files_and_replaces_one_only_when_told(trained_run, tmp_path,
                                                                                      capsys):
    import cronos as api

    folder, _, _ = trained_run
    best = str(folder / "run" / "best.pt")
    sources = tmp_path / "in.txt"
    sources.write_text("1/2/07\n\nThu 26 Nov 2026\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    assert main(["translate", best, "--input", str(sources), "--output", str(output)]) == 0
    lines = output.read_text(encoding="utf-8").splitlines()
    assert lines == [*api.Cronos.load(best).translate(["1/2/07"]), "", *api.Cronos.load(best).translate(
        ["Thu 26 Nov 2026"])]
    assert main(["translate", best, "--input", str(sources), "--output", str(output)]) == 2
    assert f"--output: {output} exists; add --overwrite to replace it" in capsys.readouterr().err
    output.write_text("old\n")
    assert main(["translate", best, "--input", str(sources), "--output", str(output), "--overwrite"]) == 0
    assert output.read_text(encoding="utf-8").splitlines() == lines
    assert main(["translate", best, "--input", str(tmp_path / "nope.txt")]) == 2
    assert f"--input: {tmp_path / 'nope.txt'}: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("flag_and_name", [
    ("evaluate", "--out", "metrics.jsonl"), ("explain", "--html", "metrics.jsonl"), ("evaluate", "--out", "last.pt"),
    ("explain", "--html", ".cronos.lock"), ("evaluate", "--out", "../tiny.yaml")])
def test_output_flags_never_replace_a_runs_files_or_a_config(trained_run, flag_and_name, capsys, monkeypatch):
    folder, _, _ = trained_run
    command, flag, name = flag_and_name
    target = folder / "run" / name
    before = target.read_bytes()
    extra = ["1/2/07"] if command == "explain" else []
    code, _, err = run_cli([command, str(folder / "run" / "best.pt"), *extra, flag, str(target), "--overwrite"], "",
                           capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1, err
    assert "where a training run keeps its own files" in err or "is a config" in err or "holds a checkpoint" in err
    assert target.read_bytes() == before


def test_evaluate_never_writes_its_scores_over_the_data_it_reads(trained_run, tmp_path, capsys, monkeypatch):
    folder, config, _ = trained_run
    data = tmp_path / "pairs.tsv"
    data.write_text("1/2/07\t2007-01-02\n", encoding="utf-8")
    code, _, err = run_cli(["evaluate", str(folder / "run" / "best.pt"), "--data", str(data), "--out", str(data),
                            "--overwrite"], "", capsys, monkeypatch)
    assert (code, err) == (2, f"cronos: error: --out: {data} is being read; write the output elsewhere\n")
    assert data.read_text(encoding="utf-8") == "1/2/07\t2007-01-02\n"
    test_file = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["data"]["test"])
    before = test_file.read_bytes()
    code, _, err = run_cli(["evaluate", str(folder / "run" / "best.pt"), "--out", str(test_file), "--overwrite"], "",
                           capsys, monkeypatch)  # the test split, named by the model's config
    assert (code, err) == (2, f"cronos: error: --out: {test_file} is being read; write the output elsewhere\n")
    assert test_file.read_bytes() == before


@pytest.mark.parametrize("command", [["translate", "--beam"], ["translate", "--n-best"], ["evaluate", "--beam"],
                                     ["explain", "1/2/07", "--beam"]])
@pytest.mark.parametrize("value, message", [("1000000000", "at most 1,000 (each beam is a copy"),
                                            (str(2 ** 63), "at most 1,000 (each beam is a copy"),
                                            ("1e9", "expected a positive integer, got '1e9'")])
def test_a_beam_past_the_limit_is_one_line_before_anything_loads(command, value, message, tmp_path, capsys):
    name, *options = command
    with pytest.raises(SystemExit) as exited:
        main([name, str(tmp_path / "absent.pt"), *options, value])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"error: argument {options[-1]}: {message}" in err, err


def test_the_api_and_the_config_bound_the_beam_as_the_command_line_does(trained_run, tmp_path):
    folder, _, _ = trained_run
    model = Cronos.load(folder / "run" / "best.pt")
    with pytest.raises(ValueError, match=r"the beam size must be between 1 and 1000, got 9223372036854775808"):
        model.translate(["1/2/07"], beam_size=2 ** 63)
    from cronos.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"decoding\.beam_size"):
        load_config(tiny_config(tmp_path, decoding={"beam_size": 1001}))


def test_translate_writes_into_a_folder_it_makes(trained_run, tmp_path, capsys, monkeypatch):
    folder, _, _ = trained_run
    output = tmp_path / "new" / "deeper" / "out.txt"
    code, _, err = run_cli(["translate", str(folder / "run" / "best.pt"), "--output", str(output)], "1/2/07\n",
                           capsys, monkeypatch)
    assert code == 0, err
    assert len(output.read_text(encoding="utf-8").splitlines()) == 1


def test_output_that_cannot_be_written_is_refused_before_any_work(trained_run, tmp_path, monkeypatch, capsys):
    folder, _, _ = trained_run
    a_file = tmp_path / "file.json"
    a_file.write_text("{}")
    assert main(["evaluate", str(folder / "run" / "best.pt"), "--out", str(a_file / "sub.json")]) == 2
    assert f"{a_file} is a file, so nothing can be written under it" in capsys.readouterr().err
    from cronos import outputs

    monkeypatch.setattr(outputs.os, "access", lambda path, mode: False)  # as a read-only folder is to a user
    assert main(["evaluate", str(folder / "run" / "best.pt"), "--out", str(tmp_path / "new" / "s.json")]) == 2
    assert f"{tmp_path} is not writable; write elsewhere" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("--temperature", "0.5"), "--temperature: shapes the distribution samples are drawn from; add --sampling"),
    (("--scores", "--n-best", "2", "--beam", "2"), "--scores: --n-best prints every hypothesis's score already"),
])
def test_translate_options_that_would_be_ignored_are_refused(trained_run, args, message, capsys, monkeypatch):
    folder, _, _ = trained_run
    code, _, err = run_cli(["translate", str(folder / "run" / "best.pt"), *args], "1/2/07\n", capsys, monkeypatch)
    assert code == 2 and message in err


def test_a_reader_that_goes_away_ends_translate_quietly(trained_run, tmp_path):
    folder, _, _ = trained_run
    sources = tmp_path / "many.txt"
    sources.write_text("1/2/07\n" * 300, encoding="utf-8")
    command = " ".join(cronos_command("translate", str(folder / "run" / "best.pt"), "--batch-size", "1",
                                      "--input", str(sources)))
    result = subprocess.run(f"{command} | head -1", shell=True, capture_output=True, text=True, timeout=300)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
