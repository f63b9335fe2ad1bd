"""The command line, end to end in subprocesses on a tiny config."""
from __future__ import annotations

import json
import subprocess

import pytest

from cronos.cli import main
from helpers import cronos_command, tiny_config, write_config


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


def test_evaluate(trained_run, tmp_path):
    folder, _, _ = trained_run
    result = cronos("evaluate", str(folder / "run" / "best.pt"), "--data", "valid", "--out", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf"} <= set(scores)
    assert json.loads((tmp_path / "s.json").read_text()) == scores


def test_translate_reads_stdin_in_batches(trained_run):
    folder, _, _ = trained_run
    lines = ["Thu 26 Nov 2026", "1/2/07", "the 21st of June 1950"]
    result = cronos("translate", str(folder / "run" / "best.pt"), "--beam", "3", "--batch-size", "2",
                    stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_explain_writes_json_and_png(trained_run, tmp_path):
    folder, _, _ = trained_run
    result = cronos("explain", str(folder / "run" / "best.pt"), "Thu 26 Nov 2026", "1/2/07", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
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


def test_translate_keeps_line_alignment_empty_lines_give_empty_lines_and_one_warning(trained_run):
    best = str(trained_run[0] / "run" / "best.pt")
    lines = ["1/2/07", "", "Thu 26 Nov 2026", "   ", "\t", "2000 01 01"]
    result = cronos("translate", best, "--batch-size", "2", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split("\n")[:-1]
    alone = cronos("translate", best, stdin="1/2/07\nThu 26 Nov 2026\n2000 01 01\n").stdout.splitlines()
    assert outputs == [alone[0], "", alone[1], "", "", alone[2]]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["cronos: warning: 3 empty input line(s) gave empty output lines: line(s) 2, 4, 5"]


def test_translate_drops_a_byte_order_mark_and_reports_bad_bytes_by_line(trained_run):
    best = str(trained_run[0] / "run" / "best.pt")
    plain = cronos("translate", best, stdin="1/2/07\n")
    marked = subprocess.run(cronos_command("translate", best), input=b"\xef\xbb\xbf1/2/07\n", capture_output=True,
                            timeout=300)
    assert marked.returncode == 0 and marked.stdout.decode() == plain.stdout
    bad = subprocess.run(cronos_command("translate", best), input=b"1/2/07\n\xff\xfe\n", capture_output=True,
                         timeout=300)
    assert bad.returncode == 1 and b"stdin line 2: not valid UTF-8 (at column 1)" in bad.stderr
    assert bad.stdout.decode() == plain.stdout  # the lines before it were written


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


def test_debug_shows_the_traceback(trained_run):
    result = cronos("--debug", "evaluate", "missing.pt")
    assert result.returncode != 0 and "Traceback" in result.stderr
