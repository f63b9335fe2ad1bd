"""Padding stays inert in bfloat16 (``training.precision: bf16``: the forward pass under autocast):
padded keys get exactly 0 attention, nothing is NaN/Inf from the -inf fill, P1 holds within the
tolerance the README states, and the <pad> rows stay bit-identical through training."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given

import cronos
from helpers import tiny_config
from test_padding_inert import COMBINATIONS, PROPERTY, batch_strategy, make_batch, tiny_model

BF16_P1_TOLERANCE = 5e-2  # log-probs, absolute; measured at most 2.2e-2 (README)


def bf16_log_probs(model, batch):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)
    return torch.log_softmax(logits.float(), dim=-1), attention


@pytest.mark.parametrize("encoder, decoder", COMBINATIONS)
@PROPERTY
@given(data=batch_strategy)
def test_bf16_p1_p2_padded_keys_get_exactly_nothing_and_outputs_stay_within_tolerance(encoder, decoder, data):
    pairs, extra = data
    model = tiny_model(encoder, decoder, torch.float32)
    batched, attention = bf16_log_probs(model, make_batch(pairs, extra))
    assert attention.dtype == torch.bfloat16  # autocast did run the attention in bfloat16
    assert torch.isfinite(attention).all() and torch.isfinite(batched).all()
    for i, (src, tgt) in enumerate(pairs):
        assert torch.all(attention[i, :, len(src):] == 0.0)
        alone, _ = bf16_log_probs(model, make_batch([(src, tgt)]))
        torch.testing.assert_close(batched[i, : len(tgt) + 1], alone[0], atol=BF16_P1_TOLERANCE, rtol=0)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_training_in_bf16_keeps_the_pad_rows_and_float32_weights(tmp_path, family):
    sections = {"training": {"epochs": 1, "precision": "bf16"}}
    if family == "transformer":
        layer = {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}
        sections["model"] = {"embedding_size": 32, "encoder": layer, "decoder": layer}
    model = cronos.fit(cronos.load_config(tiny_config(tmp_path, **sections)))
    network = model.network
    assert all(p.dtype == torch.float32 for p in network.parameters())
    assert torch.equal(network.src_embedding.weight[0], torch.zeros_like(network.src_embedding.weight[0]))
    assert torch.equal(network.tgt_embedding.weight[0], torch.zeros_like(network.tgt_embedding.weight[0]))
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["valid_loss"] < 2.5 and record["skipped_batches"] == 0  # it trained, in finite steps
