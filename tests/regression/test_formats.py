"""API and format stability: field names users parse, the checkpoint format, and a golden checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import cronos
from cronos.storage.checkpoint import FORMAT_VERSION, load_checkpoint

GOLDEN = Path(__file__).parent / "data"

EXPLANATION_FIELDS = {"source", "source_tokens", "output", "output_tokens", "attention", "score",
                      "padding_attention", "forced", "method"}
METRICS_FIELDS = {"epoch", "step", "train_loss", "lr", "seconds", "padded_share", "skipped_batches", "valid_loss",
                  "valid_ppl", "valid_token_accuracy", "valid_sequence_accuracy", "valid_bleu", "valid_chrf"}
EVALUATE_FIELDS = {"loss", "ppl", "token_accuracy", "sequence_accuracy", "bleu", "chrf", "bleu_signature",
                   "chrf_signature", "bleu_tokenized", "bleu_tokenized_signature", "beam_size", "examples"}


def test_explanation_to_dict_field_names(regression_runs):
    model, _ = regression_runs["rnn-additive"]
    assert set(model.explain(["1/2/07"])[0].to_dict()) == EXPLANATION_FIELDS


def test_metrics_jsonl_and_history_field_names(regression_runs):
    model, scores = regression_runs["transformer"]
    lines = (Path(model.config.output_dir) / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(set(json.loads(line)) == METRICS_FIELDS for line in lines)
    assert set(scores) == EVALUATE_FIELDS


def test_checkpoint_format_version_and_contents(regression_runs, tmp_path):
    model, _ = regression_runs["rnn-general"]
    payload = load_checkpoint(model.save(tmp_path / "m.pt"))
    assert FORMAT_VERSION == 1 and payload["format_version"] == 1 and payload["format"] == "cronos-checkpoint"
    assert {"config", "src_vocab", "tgt_vocab", "model"} <= set(payload)
    last = load_checkpoint(Path(model.config.output_dir) / "last.pt")
    assert set(last["training"]) == {"progress", "optimizer", "scheduler", "rng", "cuda_rng", "scaler", "world_size",
                                     "process_rng"}


def test_golden_checkpoint_loads_and_gives_the_recorded_outputs():
    """golden.pt was written by scripts/make_golden.py; a format or numerics change breaks this."""
    expected = json.loads((GOLDEN / "golden.json").read_text(encoding="utf-8"))
    model = cronos.Cronos.load(GOLDEN / "golden.pt", device="cpu")  # recorded on the CPU
    assert model.translate(expected["sources"], beam_size=1) == expected["greedy"]
    assert model.translate(expected["sources"], beam_size=4) == expected["beam4"]
    batch = model.prepare(expected["sources"], expected["targets"])
    with torch.no_grad():
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    log_probs = torch.log_softmax(logits, -1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)
    sums = (log_probs * (batch.tgt_out != 0)).sum(-1)
    torch.testing.assert_close(sums, torch.tensor(expected["target_log_prob"]), atol=1e-4, rtol=0)


def test_a_checkpoint_written_now_loads_with_identical_outputs(regression_runs, tmp_path):
    model, _ = regression_runs["transformer"]
    loaded = cronos.Cronos.load(model.save(tmp_path / "now.pt"), device="cpu")
    sources = ["Thu 26 Nov 2026", "le 14 juillet 1789"]
    assert loaded.translate(sources, beam_size=4) == model.translate(sources, beam_size=4)
    for a, b in zip(loaded.explain(sources), model.explain(sources)):
        assert torch.equal(a.attention, b.attention)
