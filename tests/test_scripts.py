"""Smoke tests that keep the scripts under scripts/ working (a few steps each, not the real runs)."""
from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, tiny_config, write_config

SCRIPTS = ROOT / "scripts"
MULTI30K = Path(os.environ.get("MULTI30K_ROOT", ROOT.parent / "shared" / "data" / "multi30k"))
needs_multi30k = pytest.mark.skipif(not (MULTI30K / "train.de").exists(), reason=f"no Multi30k at {MULTI30K}")


def script(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The script run as a process of its own (for scripts that time or compile what they run)."""
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture
def run_script(capsys, monkeypatch):
    """``run_script(name, *args) -> (exit code, stdout, stderr)``: the script run in this process as
    ``python scripts/NAME ARGS`` would run it (a process start is most of a small script's time);
    the thread count it may set is put back."""
    import runpy

    import torch

    def run(name: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", [str(SCRIPTS / name), *args])
        threads, code = torch.get_num_threads(), 0
        try:
            runpy.run_path(str(SCRIPTS / name), run_name="__main__")
        except SystemExit as exit_:  # as Python ends a script: a message goes to stderr, exit code 1
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
        finally:
            torch.set_num_threads(threads)
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def test_benchmark_reports_every_measure_and_the_compiled_network_beside_the_eager_one(tmp_path):
    """One run in bf16 with ``--compile``: the eager network's measures and the compiled copy's."""
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    out = tmp_path / "bench.json"
    result = script("benchmark.py", str(config), "--warmup", "1", "--steps", "3", "--mask-pairs", "1",
                    "--decode", "10", "--compile", "--set", "training.precision=bf16", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in ("train_target_tokens_per_s", "train_source_tokens_per_s", "achieved_flops", "matmul_peak_flops",
                "share_of_matmul_peak", "padded_share_bucketed", "padded_share_random", "mask_overhead_ratio",
                "decode_beam1_sentences_per_s", "decode_beam5_sentences_per_s", "peak_rss_mib"):
        assert report[key] > 0, key
    assert report["padded_share_bucketed"] < report["padded_share_random"]
    assert "| training target tokens/s |" in result.stdout
    assert report["precision"] == "bf16" and report["device"] == "cpu"
    compiled = report["compiled"]
    for key in ("speedup", "train_target_tokens_per_s", "eager_train_target_tokens_per_s", "first_two_steps_s",
                "achieved_flops", "mask_overhead_ratio", "decode_beam1_sentences_per_s", "decode_beam5_sentences_per_s"):
        assert compiled[key] > 0, key
    assert "| compiled: eager / compiled step time (alternating, medians) |" in result.stdout


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="compares against a commit: needs a git checkout")
def test_compare_benchmark_measures_a_commit_and_this_tree_in_turn(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    out = tmp_path / "compare.json"
    result = script("compare_benchmark.py", "HEAD", str(config), "--rounds", "1", "--json", str(out), "--",
                    "--warmup", "1", "--steps", "2", "--mask-pairs", "1", "--decode", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert len(report["base"]) == len(report["this tree"]) == 1
    assert report["base"][0]["model_flops_per_step"] > 0 and report["this tree"][0]["train_target_tokens_per_s"] > 0
    assert "cronos-base-" in report["base"][0]["package"]  # each side measured its own checkout's package
    assert report["this tree"][0]["package"] == str(ROOT / "cronos")
    assert "| training target tokens/s |" in result.stdout
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "cronos-base-" not in worktrees  # the base's checkout is removed again


def test_ablation_runs_every_setting_and_measures_what_the_mask_and_the_freeze_do(tmp_path, run_script):
    transformer = {"type": "transformer", "hidden_size": 16, "heads": 2, "ff_size": 32, "dropout": 0.0}
    config = write_config(tmp_path / "tiny.yaml", tiny_config(
        tmp_path, training={"epochs": 1, "max_steps": 5},
        model={"embedding_size": 16, "encoder": transformer, "decoder": transformer}))
    out = tmp_path / "ablation.md"
    result = script("ablation.py", str(config), "--seeds", "1", "--probe", "8", "--work", str(tmp_path / "w"),
                    "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = out.read_text().splitlines()[2:]
    assert [row.split("|")[1:3] for row in rows] == [[" on ", " on "], [" on ", " off "], [" off ", " on "],
                                                    [" off ", " off "]]
    results = json.loads(out.with_suffix(".json").read_text())
    masked = [r for r in results if r["mask_padding"]]
    assert all(r["padding_attention_share"] == 0.0 and r["outputs_changed"] == 0.0 for r in masked)
    assert all(r["padding_attention_share"] > 0.0 and r["max_log_prob_gap"] > 1e-6
               for r in results if not r["mask_padding"])
    # the <pad> row moves only when it is read (mask off) and not frozen
    assert {(r["mask_padding"], r["freeze_pad_embedding"]): r["pad_row_changed"] for r in results} == {
        (True, True): False, (True, False): False, (False, True): False, (False, False): True}
    # runs made in separate processes (one seed each, say) are tabulated from their printed JSON lines
    log = tmp_path / "seed1.log"
    log.write_text(result.stdout + result.stderr)
    code, _, err = run_script("ablation.py", "--merge", str(log), "--out", str(tmp_path / "merged.md"))
    assert code == 0, err
    assert (tmp_path / "merged.md").read_text() == out.read_text()
    assert run_script("ablation.py")[0] == 2  # neither a config nor --merge
    # run again into the same --work folder: it replaces its own runs and measures the same
    again = script("ablation.py", str(config), "--seeds", "1", "--probe", "8", "--work", str(tmp_path / "w"),
                   "--out", str(tmp_path / "again.md"))
    assert again.returncode == 0, again.stderr
    assert [r["valid_loss"] for r in json.loads((tmp_path / "again.json").read_text())] == [
        r["valid_loss"] for r in results]


def test_make_dates_reproduces_the_committed_files(tmp_path, run_script):
    code, _, err = run_script("make_dates.py", "--out", str(tmp_path))
    assert code == 0, err
    for split in ("train", "valid", "test"):
        assert (tmp_path / f"{split}.tsv").read_bytes() == (ROOT / "data" / "dates" / f"{split}.tsv").read_bytes()


def test_padding_report_measures_inert_padding_in_every_combination(tmp_path, run_script):
    code, out, err = run_script("padding_report.py", "--batches", "1")
    assert code == 0, err
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "e-" in line]
    assert len(rows) == 15  # every encoder x decoder/attention combination
    for encoder, decoder, p1_64, p1_32, p6_64, p6_32 in rows:
        assert float(p1_64) < 1e-12 and float(p6_64) < 1e-12, (encoder, decoder)  # float64: rounding only
        assert float(p1_32) < 1e-4 and float(p6_32) < 1e-3, (encoder, decoder)  # float32: rounding only
    largest = dict(re.findall(r"(P[16] torch\.float\d\d) ([\d.e+-]+)", out.split("largest:")[1]))
    assert max(float(largest["P1 torch.float64"]), float(largest["P6 torch.float64"])) < 1e-12


@needs_multi30k
def test_download_multi30k_checks_what_it_fetches(tmp_path, run_script):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for path in MULTI30K.glob("*.[de][en]"):
        (mirror / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    code, _, err = run_script("download_multi30k.py", "--out", str(tmp_path / "data"), "--base-url", mirror.as_uri())
    assert code == 0, err
    assert (tmp_path / "data" / "val.en").read_bytes() == (MULTI30K / "val.en").read_bytes()
    (mirror / "val.de.gz").write_bytes(gzip.compress(b"tampered\n"))
    (tmp_path / "data" / "val.de").unlink()
    code, _, err = run_script("download_multi30k.py", "--out", str(tmp_path / "data"), "--base-url", mirror.as_uri())
    assert code != 0 and "checksum mismatch" in err and not (tmp_path / "data" / "val.de").exists()


@needs_multi30k
@pytest.mark.parametrize("name", ["multi30k_gru", "multi30k_transformer"])
def test_multi30k_configs_read_the_data_from_the_environment(name, capsys, monkeypatch):
    monkeypatch.setenv("MULTI30K_ROOT", str(MULTI30K))
    code, out, err = run_cli(["prepare", str(ROOT / "configs" / f"{name}.yaml")], "", capsys, monkeypatch)
    assert code == 0, err
    assert "examples: 29000" in out


def test_decode_speed_runs_on_a_checkpoint(trained_models, tmp_path, run_script):
    data = tmp_path / "pairs.tsv"
    data.write_text("Thu 26 Nov 2026\t2026-11-26\n1/2/07\t2007-02-01\n", encoding="utf-8")
    checkpoint = str(trained_models["rnn"].save(tmp_path / "model.pt"))
    code, out, err = run_script("decode_speed.py", checkpoint, "--data", str(data), "--beams", "1", "2", "--breakdown")
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("beam")] == [
        "beam 1", "beam 1 breakdown", "beam 2", "beam 2 breakdown"]
    shares = re.findall(r"^  ([a-z ]+): [\d.]+ s \(([\d.]+)%\)$", out, flags=re.MULTILINE)
    assert [name for name, _ in shares[:4]] == ["encoder", "decoder layers", "output projection", "search and batching"]
    assert abs(sum(float(share) for _, share in shares[:4]) - 100) < 0.5


def test_compare_joeynmt_times_both_commands_on_the_same_sources(trained_models, tmp_path, run_script):
    """The comparison runs cronos and "JoeyNMT" (here a stand-in that echoes its input and logs
    its generation time as JoeyNMT does) per beam, checks their line counts and reports both."""
    checkpoint = str(trained_models["rnn"].save(tmp_path / "model.pt"))
    sources, references = tmp_path / "test.src", tmp_path / "test.ref"
    sources.write_text("Thu 26 Nov 2026\n1/2/07\n", encoding="utf-8")
    references.write_text("2026-11-26\n2007-02-01\n", encoding="utf-8")
    stand_in = tmp_path / "joey-python"
    stand_in.write_text("#!/bin/sh\ncat\necho 'INFO - joeynmt.prediction - Generation took 0.5000[sec].' >&2\n")
    stand_in.chmod(0o755)
    config = tmp_path / "joey.yaml"
    config.write_text("testing: {beam_size: 5}\n")
    code, out, err = run_script("compare_joeynmt.py", "--cronos", checkpoint, "--joey-python", str(stand_in),
                                "--joey-config", str(config), "--src", str(sources), "--ref", str(references),
                                "--beams", "2")
    assert code == 0, err
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [(row[0], row[1]) for row in rows[1:]] == [("| 2", "cronos"), ("| 2", "joeynmt")]
    assert all(row[4] == "0.5" for row in rows[1:] if row[1] == "joeynmt")  # its own decoding time
    assert all(0 <= float(row[5]) <= 100 and float(row[6].rstrip(" |")) > 0 for row in rows[1:])  # BLEU, length


def test_compare_ctranslate2_measures_every_engine(tmp_path, run_script):
    """A tiny untrained subword Transformer: the script runs end to end and reports every row."""
    pytest.importorskip("ctranslate2")
    import cronos

    transformer = {"type": "transformer", "hidden_size": 16, "layers": 1, "heads": 2, "ff_size": 32, "dropout": 0.0}
    config = tiny_config(tmp_path, data={"tokenizer": "sentencepiece", "sentencepiece": {"vocab_size": 100}},
                         model={"embedding_size": 16, "encoder": transformer, "decoder": transformer,
                                "share_embeddings": True})
    checkpoint = str(cronos.Cronos.from_config(cronos.load_config(config)).save(tmp_path / "model.pt"))
    out = tmp_path / "compare.json"
    code, _, err = run_script("compare_ctranslate2.py", checkpoint, "--limit", "4", "--repeats", "1", "--beams", "1",
                              "--json", str(out))
    assert code == 0, err
    rows = json.loads(out.read_text())["beams"]["1"]
    for engine in ("cronos float32", "cronos int8", "CTranslate2 float32", "CTranslate2 int8"):
        assert rows[engine]["sentences_per_s"] > 0 and rows[engine]["peak_rss_mib"] > 0, engine
    assert rows["cronos float32"]["equal_to_cronos_float32"] == 4


def test_serve_benchmark_measures_a_real_server_beside_offline_decoding(tmp_path, run_script):
    """A tiny untrained model, 6 sentences, 1 and 3 clients: every row, every answer identical."""
    pytest.importorskip("fastapi")
    import cronos

    checkpoint = str(cronos.Cronos.from_config(cronos.load_config(tiny_config(tmp_path))).save(tmp_path / "model.pt"))
    out = tmp_path / "serve.json"
    code, stdout, err = run_script("serve_benchmark.py", checkpoint, "--limit", "6", "--clients", "1", "3",
                                   "--threads", "1", "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert [run["clients"] for run in report["runs"]] == [1, 3]
    for run in report["runs"]:
        assert run["errors"] == 0 and run["identical"] == 1.0 and run["sentences_per_second"] > 0, run
        assert run["batches"] >= 2 and run["p99_ms"] >= run["p50_ms"] > 0, run
    assert all(speed > 0 for speed in report["offline_sentences_per_second"] + report["in_order_sentences_per_second"])
    assert "| offline, 3 at a time in order |" in stdout


def test_transfer_benchmark_trains_a_parent_and_both_children_and_reports_them(tmp_path, run_script):
    """A tiny stand-in for Multi30k: "de" and "xx" are the dates' sources, "en" their ISO forms."""
    from helpers import DATES

    root = tmp_path / "multi30k"
    root.mkdir()
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr")):
        pairs = [line.split("\t") for line in (DATES / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:300]]
        for language in ("de", "xx"):
            (root / f"{name}.{language}").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (root / f"{name}.en").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    config = tiny_config(tmp_path, data={"train": {"src": "train.de", "tgt": "train.en"},
                                         "valid": {"src": "val.de", "tgt": "val.en"}, "test": None})
    parent_config = write_config(tmp_path / "parent.yaml", config)
    out = tmp_path / "runs"
    code, stdout, err = run_script("transfer_benchmark.py", "--root", str(root), "--out", str(out),
                                   "--parent-config", str(parent_config), "--parent-epochs", "1", "--source", "xx",
                                   "--pairs", "100", "--child-steps", "4", "--validate-every", "2",
                                   "--json", str(tmp_path / "t.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["scratch"]["steps"] == report["from_parent"]["steps"] == 4  # the same steps
    assert report["gain"] == pytest.approx(report["from_parent"]["test_bleu"] - report["scratch"]["test_bleu"])
    assert "| from_parent |" in stdout and (out / "from_parent" / "best.pt").exists()


def test_multilingual_benchmark_trains_each_direction_and_the_tagged_model_with_their_steps(tmp_path, run_script):
    """A tiny stand-in for Multi30k: "en" holds the dates, "de" and "fr" two renderings of them."""
    from helpers import DATES

    root = tmp_path / "multi30k"
    root.mkdir()
    for split, name in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr"), ("test", "test_2017")):
        pairs = [line.split("\t") for line in (DATES / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:120]]
        (root / f"{name}.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (root / f"{name}.de").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
        (root / f"{name}.fr").write_text("".join(t.replace("-", "/") + "\n" for _, t in pairs), encoding="utf-8")
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path, training={"batch_size": 40}))
    code, stdout, err = run_script("multilingual_benchmark.py", "--root", str(root), "--out", str(tmp_path / "runs"),
                                   "--config", str(config), "--epochs", "1", "--warmup-steps", "1",
                                   "--tests", "test_2016_flickr", "test_2017", "--json", str(tmp_path / "m.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["tagged"]["steps"] == report["en-de"]["steps"] + report["en-fr"]["steps"] == 6  # 3 batches each
    assert set(report["tagged"]["scores"]["fr"]) == {"test_2016_flickr", "test_2017"}
    assert "| en->fr | test_2017 |" in stdout


def test_feature_cost_measures_every_variant_and_the_preparation(tmp_path, run_script):
    config = write_config(tmp_path / "config.yaml", tiny_config(tmp_path, training={"batch_size": 16}))
    code, stdout, err = run_script("feature_cost.py", str(config), "--steps", "6", "--skip", "2", "--log-every", "2",
                                   "--rounds", "1", "--json", str(tmp_path / "cost.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "cost.json").read_text())
    assert set(report["training"]) == {"baseline", "weight averaging (ema_decay 0.999)", "two tagged corpora"}
    assert all(speeds[0] > 0 for speeds in report["training"].values())
    assert "| two tagged corpora |" in stdout and "| with filters |" in stdout


def test_controls_benchmark_reports_terminology_prefixes_and_controls(tmp_path, run_script):
    from helpers import DATES

    root = tmp_path / "data"
    root.mkdir()
    pairs = [line.split("\t") for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:12]]
    (root / "t.de").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (root / "t.en").write_text("".join(t.replace("-", " ") + "\n" for _, t in pairs), encoding="utf-8")
    import cronos

    model = cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"epochs": 1})))
    model.save(tmp_path / "model.pt")
    code, stdout, err = run_script("controls_benchmark.py", str(tmp_path / "model.pt"), "--root", str(root),
                                   "--tests", "t", "--beam", "2", "--prefix-words", "1", "--min-length", "4",
                                   "--json", str(tmp_path / "c.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "c.json").read_text())["t"]
    assert report["terminology"]["terms"] > 0 and report["terminology"]["met_share"] == 1.0
    assert report["prefixes"]["1"]["starts_with_prefix"] == 1.0
    assert set(report["controls"]) == {"none", "no_repeat_ngram_size 3", "min_length 4", "gnmt length penalty 0.6",
                                       "coverage penalty 0.2"}
    assert "met 100.0%" in stdout


def test_ctranslate2_parity_reports_each_control_greedy_and_beam(tmp_path, run_script):
    pytest.importorskip("ctranslate2")
    from helpers import DATES
    import cronos

    transformer = {"type": "transformer", "hidden_size": 36, "layers": 1, "heads": 3, "ff_size": 40, "dropout": 0.0}
    config = tiny_config(tmp_path, model={"embedding_size": 36, "encoder": transformer, "decoder": transformer},
                         training={"epochs": 3})  # outputs that end before either engine's length limit
    cronos.fit(cronos.load_config(config)).save(tmp_path / "model.pt")
    pairs = [line.split("\t") for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:20]]
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (tmp_path / "ref.txt").write_text("".join(t.replace("-", " ") + "\n" for _, t in pairs), encoding="utf-8")
    code, stdout, err = run_script("ctranslate2_parity.py", str(tmp_path / "model.pt"), "--sources",
                                   str(tmp_path / "src.txt"), "--references", str(tmp_path / "ref.txt"), "--beams", "1",
                                   "3", "--prefix-words", "1", "--min-length", "6", "--json", str(tmp_path / "p.json"))
    assert code == 0, err
    report = json.loads((tmp_path / "p.json").read_text())
    assert set(report) == {f"beam {b}, {name}" for b in (1, 3) for name in (
        "none", "prefix of 1 words", "min_length 6", "no_repeat_ngram_size 3", "length_penalty 0.6")}
    assert all(share == 1.0 for share in report.values()), report


def test_marian_benchmark_times_every_engine_on_outputs_of_one_length(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("ctranslate2")
    done = script("marian_benchmark.py", "--out", str(tmp_path / "bench"), "--size", "tiny", "--sentences", "8",
                  "--length", "6", "--batch", "4", "--threads", "1", "--train-steps", "4",
                  "--json", str(tmp_path / "marian.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "marian.json").read_text())
    assert [engine["engine"] for engine in report["engines"]] == ["cronos float32", "cronos int8", "transformers",
                                                                  "ctranslate2"]
    assert all(engine["tokens"] == 8 * 6 and engine["peak_memory_mib"] > 0 for engine in report["engines"])
    assert report["fine_tuning_tokens_per_second"] > 0


def test_in_flight_benchmark_decodes_four_ways_and_finds_the_same(tmp_path, run_script):
    """A tiny untrained Transformer over the dates data: each way's speed, and every sentence's
    output the same in the four (a search in flight finds what it finds alone, and so does a
    sentence that joins one)."""
    import cronos

    transformer = {"type": "transformer", "hidden_size": 16, "layers": 1, "heads": 2, "ff_size": 32, "dropout": 0.0}
    config = tiny_config(tmp_path, model={"embedding_size": 16, "encoder": transformer, "decoder": transformer},
                         decoding={"max_length_offset": 3, "max_length_ratio": 1.0})
    checkpoint = str(cronos.Cronos.from_config(cronos.load_config(config)).save(tmp_path / "model.pt"))
    out = tmp_path / "flight.json"
    code, said, err = run_script("in_flight_benchmark.py", checkpoint, "--sentences", "23", "--beam", "3",
                                 "--clients", "8", "--group", "3", "--threads", "1", "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report["sentences_per_second"]) == {"sorted", "in order", "in flight", "joining"}
    assert all(speed > 0 for speed in report["sentences_per_second"].values())
    assert report["same_as_sorted"] == {"sorted": 23, "in order": 23, "in flight": 23, "joining": 23}, said
