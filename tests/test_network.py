"""The network: forward is the training step, and what wraps a module sees it; eval mode is restored."""
from __future__ import annotations

import pytest
import torch

import cronos
from cronos.config import load_config
from cronos.data import Vocabulary, chunks, length_batches
from cronos.data.preprocess import Example
from cronos.data.vocab import BOS_INDEX, PAD_INDEX
from cronos.modules.loss import token_cross_entropy
from cronos.modules.attention import MultiHeadAttention
from cronos.modules.network import Seq2Seq, TokenLoss, evaluating
from helpers import tiny_config
from test_padding_inert import COMBINATIONS, VOCAB, make_batch, tiny_config as tiny_model_config


def test_a_forward_hook_on_the_network_fires_on_every_training_step(tmp_path):
    """What DDP, torch.compile and autocast wrap is the network's forward: training must go through it."""
    model = cronos.Cronos.from_config(load_config(tiny_config(tmp_path, training={"epochs": 2})))
    seen = []

    def hook(network, inputs, output):
        if network.training:
            seen.append(output)

    model.network.register_forward_hook(hook)
    history = model.fit()
    assert history.step == 50 and len(seen) == history.step  # 25 batches an epoch, one forward each
    assert all(isinstance(output, TokenLoss) and output.total.requires_grad for output in seen)
    assert sum(output.tokens for output in seen) == 2 * sum(len(line.split("\t")[1].rstrip("\n")) + 1
                                                            for line in open(tmp_path / "data" / "train.tsv"))


@pytest.mark.parametrize("encoder, decoder", COMBINATIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_forward_with_targets_is_the_cross_entropy_over_real_target_tokens(encoder, decoder, label_smoothing):
    """The loss path (projection on real positions only) equals cross-entropy over the full logits
    with padded targets ignored, and counts exactly the real target tokens."""
    torch.manual_seed(0)
    network = Seq2Seq(tiny_model_config(encoder, decoder).model, len(VOCAB), len(VOCAB)).double().eval()
    batch = make_batch([([4, 5, 6], [7, 8]), ([9], [10, 11, 12, 13]), ([4, 4, 5, 6, 7], [5])], extra_padding=2)
    loss = network(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, label_smoothing=label_smoothing)
    logits, _ = network(batch.src, batch.src_lengths, batch.tgt_in)
    expected, count = token_cross_entropy(logits, batch.tgt_out, label_smoothing)
    assert loss.tokens == count == int(batch.tgt_lengths.sum())
    torch.testing.assert_close(loss.total, expected, atol=1e-10, rtol=0)


def test_evaluating_restores_the_mode_even_when_the_block_raises():
    network = Seq2Seq(load_config({}).model, len(VOCAB), len(VOCAB)).train()
    with pytest.raises(RuntimeError, match="inside"):
        with evaluating(network):
            assert not network.training and not torch.is_grad_enabled()
            raise RuntimeError("inside")
    assert network.training and torch.is_grad_enabled()
    network.eval()
    with evaluating(network):
        pass
    assert not network.training


def test_attention_weights_are_for_cross_attention_only():
    attention = MultiHeadAttention(8, 8, heads=2)
    x = torch.randn(2, 3, 8)
    keys, values = attention.precompute(x, x)
    output, weights = attention(x, keys, values, None, causal=True, need_weights=False)
    assert output.shape == (2, 3, 8) and weights is None
    with pytest.raises(ValueError, match="cross-attention only"):
        attention(x, keys, values, None, causal=True, need_weights=True)


def test_chunks_read_a_stream_lazily_and_length_batches_cover_every_example_once():
    read = []

    def stream():
        for i in range(7):
            read.append(i)
            yield i

    first = next(chunks(stream(), 3))
    assert first == [0, 1, 2] and read == [0, 1, 2]  # nothing read ahead of the first chunk
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]] and list(chunks([], 3)) == []
    examples = [Example(i, (4,) * n, None, n, 0) for i, n in enumerate([5, 1, 3, 1, 4])]
    batches = list(length_batches(examples, 2))
    assert batches == [[1, 3], [2, 4], [0]]  # shortest first: little padding in each batch


def test_only_the_network_holds_weights():
    """``Cronos`` holds the network, the codec and the config; its parameters are the network's."""
    model = cronos.Cronos(load_config({}), Vocabulary.build([list("ab")]), Vocabulary.build([list("xy")]))
    assert [name for name, _ in model.named_children()] == ["network"]
    assert model.codec.src_vocab.itos[4:] == ["a", "b"] and model.codec.tgt_vocab.itos[4:] == ["x", "y"]


def test_label_smoothing_spreads_over_the_tokens_an_output_can_be():
    """eps / (V - 2) on every token but <pad> and <bos>, which no target is: their logits get only
    the softmax's gradient, never a push up."""
    from cronos.modules.loss import smoothed_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(5, len(VOCAB), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([4, 5, 3, 1, 9])
    loss = smoothed_cross_entropy(logits, targets, 0.1)
    log_probs = torch.log_softmax(logits, dim=-1)
    others = [i for i in range(len(VOCAB)) if i not in (PAD_INDEX, BOS_INDEX)]
    expected = -(0.9 * log_probs[range(5), targets] + 0.1 * log_probs[:, others].mean(dim=1)).sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    probabilities = torch.softmax(logits, dim=-1).detach()
    torch.testing.assert_close(logits.grad[:, [PAD_INDEX, BOS_INDEX]], probabilities[:, [PAD_INDEX, BOS_INDEX]])
