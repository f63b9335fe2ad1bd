"""Padding stays inert in bfloat16 (``training.precision: bf16``: the forward pass under autocast):
padded keys get exactly 0 attention, nothing is NaN/Inf from the -inf fill, P1 holds within the
tolerance docs/training.md states, and the <pad> rows stay bit-identical through training."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given

import cronos
from cronos import precision
from helpers import tiny_config
from test_padding_inert import COMBINATIONS, PROPERTY, batch_strategy, make_batch, tiny_model

BF16_P1_TOLERANCE = 5e-2  # log-probs, absolute; the largest gap measured is 1.8e-2 (docs/training.md)


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


FP16_P1_TOLERANCE = 1e-2  # log-probs, absolute, fp16 autocast (on the CPU here; CUDA in test_device.py)


# oneDNN has no float16 LSTM on the CPU (fp16 training is for CUDA GPUs, where it has)
@pytest.mark.parametrize("encoder, decoder", [(e, d) for e, d in COMBINATIONS if e != "lstm"])
@PROPERTY
@given(data=batch_strategy)
def test_fp16_p1_p2_the_minus_inf_fill_gives_exact_zeros_and_no_nan(encoder, decoder, data):
    pairs, extra = data
    model = tiny_model(encoder, decoder, torch.float32)
    batch = make_batch(pairs, extra)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)
        alone = [model(*(lambda b: (b.src, b.src_lengths, b.tgt_in))(make_batch([pair])))[0] for pair in pairs]
    assert torch.isfinite(attention).all() and torch.isfinite(logits).all()
    batched = torch.log_softmax(logits.float(), dim=-1)
    for i, (src, tgt) in enumerate(pairs):
        assert torch.all(attention[i, :, len(src):] == 0.0)
        torch.testing.assert_close(batched[i, : len(tgt) + 1], torch.log_softmax(alone[i][0].float(), dim=-1),
                                   atol=FP16_P1_TOLERANCE, rtol=0)


def test_fp16_is_refused_where_there_is_no_gpu(tmp_path):
    with pytest.raises(cronos.ConfigError, match=r"training\.precision: fp16 trains on a CUDA GPU only.*use bf16"):
        cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"precision": "fp16"})))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_fp16_overflow_skips_the_update_halves_the_scale_and_training_goes_on(tmp_path, monkeypatch, caplog):
    """The gradient scaler's path, run on the CPU (fp16 autocast works there; cronos allows it on GPUs
    only, because it is not faster on CPUs): a loss scale of 2**24 overflows float16 gradients, so the
    first updates are skipped, each halving the scale, then training proceeds."""
    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(precision.MixedPrecision, "INITIAL_SCALE", 2.0 ** 24)
    layer = {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}
    config = cronos.load_config(tiny_config(tmp_path, training={"epochs": 1, "precision": "fp16"},
                                            model={"embedding_size": 32, "encoder": layer, "decoder": layer}))
    with caplog.at_level("INFO", logger="cronos"):
        history = cronos.Cronos.from_config(config).fit()
    record = history[-1]
    skipped = record["skipped_batches"]
    assert skipped >= 1 and "fp16: the gradients of step 1 overflowed" in caplog.text
    assert history.step == 25 - skipped  # 800 examples in batches of 32: all but the skipped ones updated the weights
    scale = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["training"]["scaler"]["scale"]
    assert scale == 2.0 ** 24 / 2 ** skipped  # halved once per skipped update, stored for a resumed run
    assert math.isfinite(record["valid_loss"]) and record["valid_loss"] < 2.8  # it learned (uniform: ~3.3)
    network = cronos.Cronos.load(tmp_path / "run" / "best.pt").network
    assert torch.equal(network.src_embedding.weight[0], torch.zeros_like(network.src_embedding.weight[0]))


def test_an_lstm_without_a_bf16_kernel_runs_its_recurrence_in_float32_and_the_rest_in_bf16(monkeypatch):
    """Where the CPU has no bfloat16 LSTM kernel (AVX2-only CPUs), the recurrence leaves autocast:
    its outputs are exactly the float32 LSTM's, and the layers after it still run in bfloat16."""
    from cronos.modules import recurrent

    monkeypatch.setattr(recurrent, "cpu_runs_bf16_lstm", lambda: False)
    lstm = recurrent.build_rnn("lstm", 4, 6, layers=2, dropout=0.0, bidirectional=True)
    inputs, hidden = torch.randn(3, 5, 4), (torch.randn(4, 3, 6).bfloat16(), torch.randn(4, 3, 6).bfloat16())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, _ = lstm(inputs, hidden)
    with torch.no_grad():
        expected, _ = torch.nn.LSTM.forward(lstm, inputs, tuple(h.float() for h in hidden))
    assert outputs.dtype == torch.float32 and torch.equal(outputs, expected)
    model = tiny_model("lstm", "rnn-additive", torch.float32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits, attention = model(*(lambda b: (b.src, b.src_lengths, b.tgt_in))(make_batch([([4, 5, 6], [7, 8])], 2)))
    assert attention.dtype == torch.bfloat16 and torch.all(attention[0, :, 3:] == 0.0)


def test_bf16_training_of_an_lstm_on_a_cpu_without_the_kernel_says_so_once(tmp_path):
    """``cronos train`` with an LSTM in bf16, in a process whose oneDNN is limited to AVX2 (as on a
    CPU without native bfloat16): it trains, and says once that the recurrence runs in float32."""
    import os
    import subprocess

    from helpers import cronos_command, write_config

    config = write_config(tmp_path / "lstm.yaml", tiny_config(tmp_path, training={"epochs": 1, "precision": "bf16"}))
    environment = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run(cronos_command("train", str(config), "--set", "model.encoder.cell=lstm",
                                           "--set", "model.decoder.cell=lstm"),
                            capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no bfloat16 LSTM kernel, so LSTMs run their recurrence in float32") == 1
    assert "trained 1 epoch" in result.stdout


def test_fp16_clips_the_unscaled_gradient(tmp_path, monkeypatch):
    """With a loss scale of 2**8 (no overflow) and clip_grad_norm 0.05, the gradient the optimiser
    steps with has norm 0.05: clipped after unscaling.  Clipping the scaled gradient would leave
    0.05 / 256, which Adam would hide (its steps do not depend on the gradient's scale)."""
    from cronos.data import load_training_data
    from cronos.training.trainer import Trainer

    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(precision.MixedPrecision, "INITIAL_SCALE", 2.0 ** 8)
    layer = {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}
    config = cronos.load_config(tiny_config(tmp_path, training={"epochs": 1, "max_steps": 2, "precision": "fp16",
                                                                "clip_grad_norm": 0.05},
                                            model={"embedding_size": 32, "encoder": layer, "decoder": layer}))
    model = cronos.Cronos.from_config(config)
    trainer = Trainer(model.network, model.codec, config, load_training_data(config.data), None)
    norms, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        grads = [p.grad for p in model.network.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step(*args, **kwargs)
    trainer.optimizer.step = recording_step
    history = trainer.run()
    assert history.step == 2 and len(norms) == 2
    assert norms == pytest.approx([0.05, 0.05], rel=1e-3)
