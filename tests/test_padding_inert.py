"""Padding is inert: property tests over every encoder x decoder/attention combination.

Each hypothesis example is a batch of random sequences (lengths >= 1) with random batch mates and
extra padding columns, run in eval mode (dropout off), in float64 and float32:

P1  each example's log-probs equal the same example run alone, unpadded
P2  attention on padded keys is exactly 0.0, rows sum to 1, nothing NaN/Inf
P4  the <pad> embedding rows get exactly zero gradient and stay bit-identical under AdamW + decay
P5  the batch loss equals the token-weighted mean of the per-example losses
P6  the batch gradient equals the sum of the per-example gradients
over every combination, and over tied models (one embedding shared by source, target and the
output projection: ``share_embeddings`` + ``tie_output_embedding``); and the switch switches: with model.mask_padding off, pads get attention and P1 fails.
"""
from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from cronos.config import load_config
from cronos.data import Vocabulary
from cronos.data.batch import collate
from cronos.data.preprocess import Example
from cronos.model import Cronos

VOCAB = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>"] + [chr(c) for c in range(ord("a"), ord("a") + 12)])

# the Transformer variants OPUS-MT's Marian models use: post-norm layers, [sin | cos] positions, unscaled embeddings
MARIAN_VARIANTS = {"type": "transformer", "layers": 2, "hidden_size": 16, "heads": 2, "ff_size": 16,
                   "normalize_before": False, "sinusoids": "halves", "scale_embeddings": False}
ENCODERS = {"gru": {"type": "rnn", "cell": "gru", "bidirectional": True},
            "lstm": {"type": "rnn", "cell": "lstm", "bidirectional": True},
            "transformer": {"type": "transformer", "layers": 2, "hidden_size": 16, "heads": 2, "ff_size": 16},
            "transformer-marian": {**MARIAN_VARIANTS, "activation": "swish"}}
DECODERS = {"rnn-additive": {"type": "rnn", "attention": "additive"},
            "rnn-dot": {"type": "rnn", "attention": "dot"},
            "rnn-general": {"type": "rnn", "attention": "general"},
            "rnn-multihead": {"type": "rnn", "attention": "multihead", "heads": 2},
            "transformer": {"type": "transformer", "layers": 2, "hidden_size": 16, "heads": 2, "ff_size": 16},
            "transformer-marian": {**MARIAN_VARIANTS, "activation": "gelu"}}
# the marian variants meet each other and the standard transformer only (not every RNN again)
COMBINATIONS = [(e, d) for e in ENCODERS for d in DECODERS if "marian" not in e + d] + [
    ("transformer-marian", "transformer-marian"), ("transformer-marian", "transformer"),
    ("transformer", "transformer-marian")]
TIED = [("gru", "rnn-additive"), ("lstm", "rnn-multihead"), ("transformer", "transformer"), ("gru", "transformer"),
        ("transformer-marian", "transformer-marian")]
# (encoder, decoder, tied): every combination, and the tied ones
MODELS = [(e, d, False) for e, d in COMBINATIONS] + [(e, d, True) for e, d in TIED]
TIED_MODEL = {"embedding_size": 16, "share_embeddings": True, "tie_output_embedding": True}
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def tiny_config(encoder: str, decoder: str, **model):
    enc = {"hidden_size": 8, "dropout": 0.1, **ENCODERS[encoder]}
    dec = {"hidden_size": 16, "dropout": 0.1, **DECODERS[decoder]}
    if enc["type"] == "rnn" and dec["type"] == "rnn":
        dec["cell"] = enc["cell"]
    return load_config({"seed": 0, "model": {"embedding_size": 8, "encoder": enc, "decoder": dec, **model}})


@functools.lru_cache(maxsize=None)
def tiny_model(encoder: str, decoder: str, dtype: torch.dtype = torch.float64, mask_padding: bool = True,
               freeze_pad_embedding: bool = True, tied: bool = False) -> Cronos:
    torch.manual_seed(0)
    config = tiny_config(encoder, decoder, mask_padding=mask_padding, freeze_pad_embedding=freeze_pad_embedding,
                         **(TIED_MODEL if tied else {}))
    return Cronos(config, VOCAB, VOCAB).to(dtype).eval()


token = st.integers(4, len(VOCAB) - 1)
example = st.tuples(st.lists(token, min_size=1, max_size=7), st.lists(token, min_size=1, max_size=5))
batch_strategy = st.tuples(st.lists(example, min_size=1, max_size=4), st.integers(0, 3))
PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_batch(pairs, extra_padding: int = 0):
    """Collate ``pairs`` and append ``extra_padding`` all-pad columns to the source and target."""
    batch = collate([Example(i, tuple(s), tuple(t), len(s), len(t) + 1) for i, (s, t) in enumerate(pairs)])
    pad = lambda x: torch.nn.functional.pad(x, (0, extra_padding))  # noqa: E731
    return batch.__class__(pad(batch.src), batch.src_lengths, pad(batch.tgt_in), pad(batch.tgt_out),
                           batch.tgt_lengths, batch.indices)


def log_probs(model: Cronos, batch):
    logits, attention = model(batch.src, batch.src_lengths, batch.tgt_in)
    return torch.log_softmax(logits, dim=-1), attention


@pytest.mark.parametrize("encoder, decoder, tied", MODELS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@PROPERTY
@given(data=batch_strategy)
def test_p1_p2_outputs_do_not_depend_on_padding_or_batch_mates(encoder, decoder, tied, dtype, data):
    pairs, extra = data
    model = tiny_model(encoder, decoder, dtype, tied=tied)
    batch = make_batch(pairs, extra)
    with torch.no_grad():
        batched, attention = log_probs(model, batch)
        for i, (src, tgt) in enumerate(pairs):
            alone, _ = log_probs(model, make_batch([(src, tgt)]))
            real = len(tgt) + 1
            torch.testing.assert_close(batched[i, :real], alone[0], atol=TOLERANCE[dtype], rtol=0)
            # P2: padded keys get exactly zero weight, real keys all of it
            assert torch.all(attention[i, :, len(src):] == 0.0)
    assert torch.isfinite(attention).all() and torch.isfinite(batched).all()  # every position, padded or not
    torch.testing.assert_close(attention.sum(-1), torch.ones_like(attention.sum(-1)), atol=1e-6, rtol=0)


def summed_loss(model, pairs, extra=0):
    """The training step's loss, through forward: summed over real target tokens, and their count."""
    batch = make_batch(pairs, extra)
    return model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out)


def _inputs(batch):
    return batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("encoder, decoder, tied", MODELS)
@PROPERTY
@given(data=batch_strategy)
def test_p4_p5_p6_losses_and_gradients_are_per_example_sums(encoder, decoder, tied, data):
    pairs, extra = data
    model = tiny_model(encoder, decoder, torch.float64, tied=tied)
    model.zero_grad(set_to_none=True)
    loss, count = summed_loss(model, pairs, extra)
    loss.backward()
    batched = gradients(model)
    # P4: the pad rows receive exactly zero gradient
    network = model.network
    assert torch.all(network.src_embedding.weight.grad[0] == 0) and torch.all(network.tgt_embedding.weight.grad[0] == 0)

    per_example, per_example_grads = [], []
    for pair in pairs:
        model.zero_grad(set_to_none=True)
        single, single_count = summed_loss(model, [pair])
        single.backward()
        per_example.append((single.item() / single_count, single_count))
        per_example_grads.append(gradients(model))
    model.zero_grad(set_to_none=True)
    # P5: mean over the batch's real tokens == token-weighted mean of per-example means
    weighted = sum(mean * n for mean, n in per_example) / sum(n for _, n in per_example)
    assert count == sum(n for _, n in per_example)
    assert abs(loss.item() / count - weighted) <= 1e-10
    # P6: d(sum over batch) == sum of d(sum over each example)
    for name, grad in batched.items():
        expected = sum(g[name] for g in per_example_grads if name in g)
        torch.testing.assert_close(grad, expected, atol=1e-10, rtol=0, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("mask_padding", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("encoder, decoder", [("gru", "rnn-additive"), ("transformer", "transformer")])
def test_p4_pad_rows_stay_bit_identical_under_adamw_with_weight_decay(encoder, decoder, tied, mask_padding):
    """Methodology B holds on its own: with the mask off, attention reads padded positions, and the
    frozen <pad> rows must still not move; tied, the output projection must not move them either."""
    torch.manual_seed(0)
    config = tiny_config(encoder, decoder, mask_padding=mask_padding, **(TIED_MODEL if tied else {}))
    model = Cronos(config, VOCAB, VOCAB).double().train()
    before = (model.network.src_embedding.weight[0].clone(), model.network.tgt_embedding.weight[0].clone())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    batch = make_batch([([4, 5, 6], [7, 8]), ([9], [10, 11, 12])], extra_padding=2)
    for _ in range(3):
        optimizer.zero_grad()
        loss, count = model(*_inputs(batch))
        (loss / count).backward()
        optimizer.step()
    assert torch.equal(model.network.src_embedding.weight[0], before[0])
    assert torch.equal(before[0], torch.zeros_like(before[0]))
    assert torch.equal(model.network.tgt_embedding.weight[0], before[1])
    assert not torch.equal(model.network.src_embedding.weight[4], torch.zeros_like(before[0]))  # the others trained


def test_tied_without_the_projection_guard_the_pad_row_would_move():
    """The control for the tied case above: the output projection's softmax gives the <pad> row of
    a tied weight a gradient, so without OutputProjection's guard the frozen row moves."""
    torch.manual_seed(0)
    model = Cronos(tiny_config("transformer", "transformer", **TIED_MODEL), VOCAB, VOCAB).double().train()
    network = model.network
    assert network.output_projection.weight is network.tgt_embedding.weight is network.src_embedding.weight
    network.output_projection.pad_row_frozen = False
    batch = make_batch([([4, 5, 6], [7, 8]), ([9], [10, 11, 12])], extra_padding=2)
    loss, count = model(*_inputs(batch))
    (loss / count).backward()
    assert network.tgt_embedding.weight.grad[0].abs().sum() > 0


def test_without_freeze_the_pad_row_is_not_protected():
    torch.manual_seed(0)
    model = Cronos(tiny_config("gru", "rnn-additive", freeze_pad_embedding=False), VOCAB, VOCAB).double()
    before = model.network.tgt_embedding.weight[0].clone()
    assert not torch.equal(before, torch.zeros_like(before))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    batch = make_batch([([4, 5, 6], [7, 8]), ([9], [10, 11, 12])])
    loss, count = model(*_inputs(batch))
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.network.tgt_embedding.weight[0], before)


def test_with_the_mask_off_an_unfrozen_pad_row_is_read_and_drifts():
    """The control for the test above: without frozen <pad> rows, the unmasked Transformer's <pad>
    row gets gradient (no weight decay here) and moves, so a row left unfrozen is caught."""
    torch.manual_seed(0)
    config = tiny_config("transformer", "transformer", mask_padding=False, freeze_pad_embedding=False)
    model = Cronos(config, VOCAB, VOCAB).double().train()
    before = model.network.src_embedding.weight[0].clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = make_batch([([4, 5, 6], [7, 8]), ([9], [10, 11, 12])], extra_padding=2)
    loss, count = model(*_inputs(batch))
    (loss / count).backward()
    assert model.network.src_embedding.weight.grad[0].abs().sum() > 0
    optimizer.step()
    assert not torch.equal(model.network.src_embedding.weight[0], before)


def test_reset_parameters_keeps_the_pad_rows_zero():
    model = tiny_model("transformer", "transformer")
    fresh = Cronos(model.config, VOCAB, VOCAB)
    with torch.no_grad():
        fresh.network.src_embedding.weight.fill_(1.0)
    fresh.network.reset_parameters()
    network = fresh.network
    assert torch.all(network.src_embedding.weight[0] == 0) and torch.all(network.tgt_embedding.weight[0] == 0)


@pytest.mark.parametrize("encoder, decoder", COMBINATIONS)
def test_switching_mask_padding_off_lets_padding_leak(encoder, decoder):
    model = tiny_model(encoder, decoder, torch.float64, mask_padding=False)
    short, long = ([4, 5], [6, 7]), ([4, 5, 6, 7, 8, 9, 10], [11])
    with torch.no_grad():
        batched, attention = log_probs(model, make_batch([short, long], extra_padding=2))
        alone, _ = log_probs(model, make_batch([short]))
    assert attention[0, :, 2:].sum() > 0  # attention mass on the short example's padding
    assert (batched[0, :3] - alone[0]).abs().max() > 1e-6  # P1 fails


@pytest.mark.parametrize("encoder, decoder", [("gru", "rnn-additive"), ("transformer", "transformer")])
def test_a_length_zero_source_is_rejected_with_a_clear_error(encoder, decoder):
    model = tiny_model(encoder, decoder)
    batch = make_batch([([4, 5], [6]), ([7], [8])])
    with pytest.raises(ValueError, match=r"position\(s\) \[1\] have length 0"):
        model(batch.src, torch.tensor([2, 0]), batch.tgt_in)
    with pytest.raises(ValueError, match="empty source"):
        model.prepare(["ab", ""])
