"""``training.compile``: compiled blocks keep padding inert and the model's numbers what they were,
batches of new shapes do not recompile, and a compiled run trains as an eager one does."""
from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
import torch._dynamo
from hypothesis import given
from torch._dynamo.utils import counters

import cronos
from cronos.modules.network import Seq2Seq
from cronos.decoding.search import Beam, search_batch
from helpers import tiny_config
from test_padding_inert import PROPERTY, VOCAB, batch_strategy, gradients, make_batch, tiny_config as model_config

# the blocks compile_blocks compiles: additive attention (RNN decoder) and the loss head (both)
COMPILED = [("gru", "rnn-additive"), ("transformer", "transformer")]


@functools.lru_cache(maxsize=None)
def eager_and_compiled(encoder: str, decoder: str) -> tuple[Seq2Seq, Seq2Seq]:
    """Two float32 networks with the same weights, the second with its blocks compiled."""
    torch.manual_seed(0)
    eager = Seq2Seq(model_config(encoder, decoder).model, len(VOCAB), len(VOCAB)).eval()
    compiled = copy.deepcopy(eager)
    compiled.compile_blocks()
    return eager, compiled


def test_compiling_keeps_the_state_dict_keys():
    eager, compiled = eager_and_compiled(*COMPILED[0])
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints load either way


@PROPERTY
@given(data=batch_strategy)
def test_compiled_p1_p2_outputs_do_not_depend_on_padding_or_batch_mates(data):
    pairs, extra = data
    eager, compiled = eager_and_compiled("gru", "rnn-additive")  # its attention is compiled
    batch = make_batch(pairs, extra)
    with torch.no_grad():
        logits, attention = compiled(batch.src, batch.src_lengths, batch.tgt_in)
        eager_logits, _ = eager(batch.src, batch.src_lengths, batch.tgt_in)
        torch.testing.assert_close(logits, eager_logits, atol=1e-5, rtol=0)
        for i, (src, tgt) in enumerate(pairs):
            alone = make_batch([(src, tgt)])
            alone_logits, _ = compiled(alone.src, alone.src_lengths, alone.tgt_in)
            torch.testing.assert_close(torch.log_softmax(logits[i, : len(tgt) + 1], -1),
                                       torch.log_softmax(alone_logits[0], -1), atol=1e-5, rtol=0)
            assert torch.all(attention[i, :, len(src):] == 0.0)
    assert torch.isfinite(attention).all()


@pytest.mark.parametrize("encoder, decoder", COMPILED)
@PROPERTY
@given(data=batch_strategy)
def test_compiled_loss_and_gradients_are_the_eager_ones(encoder, decoder, data):
    """P5/P6 carry over: the compiled loss head sums the same real tokens, with the same gradients."""
    pairs, extra = data
    batch = make_batch(pairs, extra)
    results = []
    for network in eager_and_compiled(encoder, decoder):
        network.zero_grad(set_to_none=True)
        loss = network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, label_smoothing=0.1)
        loss.total.backward()
        results.append((loss, gradients(network)))
        assert torch.all(network.tgt_embedding.weight.grad[0] == 0)  # P4: the pad row learns nothing
        network.zero_grad(set_to_none=True)
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert compiled.tokens == eager.tokens == int(batch.tgt_lengths.sum())
    torch.testing.assert_close(compiled.total, eager.total, atol=1e-4, rtol=1e-6)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_compiled_search_decodes_what_eager_search_decodes():
    eager, compiled = eager_and_compiled("gru", "rnn-additive")
    batch = make_batch([([4, 5, 6, 7], [8]), ([9, 10], [11]), ([12, 13, 14, 15, 4, 5], [6])], extra_padding=1)
    options = cronos.load_config({}).decoding
    for beam in (1, 3):
        hypotheses = [[found[0] for found in search_batch(network, batch, Beam(beam), options, need_weights=True)]
                      for network in (eager, compiled)]
        assert [h.tokens for h in hypotheses[1]] == [h.tokens for h in hypotheses[0]]
        for hypothesis, length in zip(hypotheses[1], batch.src_lengths.tolist()):
            assert torch.all(hypothesis.attention[:, length:] == 0.0)


def test_batches_of_new_shapes_do_not_recompile():
    """Dynamic batch and length dimensions: 12 batches of 12 shapes compile a handful of graphs,
    not one per shape (0 and 1 are special sizes to torch.compile, hence a few)."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    network = Seq2Seq(model_config("gru", "rnn-additive").model, len(VOCAB), len(VOCAB))
    network.compile_blocks()
    shapes = set()
    for size in range(2, 14):
        pairs = [([4 + (i + j) % 12 for j in range(2 + (size + i) % 9)], [5] * (1 + (size * i) % 6))
                 for i in range(size)]
        batch = make_batch(pairs)
        shapes.add((tuple(batch.src.shape), tuple(batch.tgt_in.shape)))
        network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out).total.backward()
    assert len(shapes) == 12
    assert counters["stats"]["unique_graphs"] <= 4


def test_a_compiled_run_trains_as_an_eager_run_does(tmp_path):
    """Same seed, same batches: the validation loss after an epoch agrees to float32 rounding."""
    records = []
    for compile_blocks in (False, True):
        folder = tmp_path / str(compile_blocks)
        config = cronos.load_config(tiny_config(folder, training={"epochs": 1, "compile": compile_blocks}))
        model = cronos.fit(config)
        network = model.network
        assert torch.equal(network.tgt_embedding.weight[0], torch.zeros_like(network.tgt_embedding.weight[0]))
        records.append(json.loads((folder / "run" / "metrics.jsonl").read_text().splitlines()[-1]))
    eager, compiled = records
    assert compiled["skipped_batches"] == 0
    assert abs(compiled["valid_loss"] - eager["valid_loss"]) < 1e-3
    assert abs(compiled["train_loss"] - eager["train_loss"]) < 1e-3
