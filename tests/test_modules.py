"""Shapes of every module, and the mask's single definition."""
import pytest
import torch

from cronos.config import DecoderConfig, EncoderConfig
from cronos.modules.masking import check_lengths, lengths_to_mask, masked_softmax
from cronos.modules import (AdditiveAttention, DotAttention, GeneralAttention, MultiHeadAttention, RNNDecoder,
                            RNNEncoder, TransformerDecoder, TransformerEncoder)

B, S, T = 3, 5, 4
LENGTHS = torch.tensor([5, 2, 1])


def test_lengths_to_mask_is_true_on_real_tokens():
    mask = lengths_to_mask(LENGTHS)
    assert mask.dtype == torch.bool and mask.shape == (3, 5)
    assert mask.tolist()[1] == [True, True, False, False, False]
    assert lengths_to_mask(torch.tensor([2]), max_len=4).tolist() == [[True, True, False, False]]
    with pytest.raises(ValueError, match="exceeds max_len"):
        lengths_to_mask(torch.tensor([5]), max_len=3)


def test_masked_softmax_zeroes_pads_and_never_returns_nan():
    scores = torch.randn(2, 3, 4)
    weights = masked_softmax(scores, torch.tensor([[True, True, False, False], [False] * 4]))
    assert torch.all(weights[0, :, 2:] == 0) and torch.allclose(weights[0].sum(-1), torch.ones(3))
    assert torch.all(weights[1] == 0) and not torch.isnan(weights).any()  # an all-pad row: 0, not NaN
    torch.testing.assert_close(weights[0, :, :2], torch.softmax(scores[0, :, :2], -1))


def test_check_lengths_rejects_zero():
    check_lengths(LENGTHS)
    with pytest.raises(ValueError, match=r"position\(s\) \[0\] have length 0"):
        check_lengths(torch.tensor([0, 3]))


@pytest.mark.parametrize("attention", [AdditiveAttention(6, 10), DotAttention(10, 10), GeneralAttention(6, 10),
                                       MultiHeadAttention(6, 10, heads=2)])
def test_attention_shapes_and_mask(attention):
    query_size = 10 if isinstance(attention, DotAttention) and not isinstance(attention, GeneralAttention) else 6
    memory = torch.randn(B, S, 10)
    keys, values = attention.precompute(memory, memory)
    context, weights = attention(torch.randn(B, T, query_size), keys, values, lengths_to_mask(LENGTHS))
    assert context.shape == (B, T, attention.output_size) and weights.shape == (B, T, S)
    assert torch.all(weights[2, :, 1:] == 0)


def test_encoder_shapes():
    embedded = torch.randn(B, S, 8)
    rnn = RNNEncoder(8, EncoderConfig(hidden_size=6, bidirectional=True, cell="lstm", layers=2))
    assert rnn(embedded, LENGTHS, lengths_to_mask(LENGTHS)).shape == (B, S, 12) and rnn.output_size == 12
    transformer = TransformerEncoder(8, EncoderConfig(type="transformer", hidden_size=12, heads=3, layers=2))
    assert transformer(embedded, LENGTHS, lengths_to_mask(LENGTHS)).shape == (B, S, 12)


@pytest.mark.parametrize("decoder", [RNNDecoder(8, 12, DecoderConfig(hidden_size=6, attention="general")),
                                     TransformerDecoder(8, 12, DecoderConfig(type="transformer", hidden_size=6,
                                                                             heads=2, layers=2))])
def test_decoder_shapes_whole_target_and_step_by_step(decoder):
    decoder.eval()
    memory, mask = torch.randn(B, S, 12), lengths_to_mask(LENGTHS)
    state = decoder.start(memory, LENGTHS, mask)
    embedded = torch.randn(B, T, 8)
    output, weights, _ = decoder(embedded, state)
    assert output.shape == (B, T, 6) and weights.shape == (B, T, S)
    steps = []
    for t in range(T):  # one step at a time gives the same outputs as teacher forcing
        step_output, step_weights, state = decoder(embedded[:, t: t + 1], state)
        steps.append(step_output)
        assert step_weights.shape == (B, 1, S)
    torch.testing.assert_close(torch.cat(steps, 1), output, atol=1e-5, rtol=1e-5)
    reordered = state.select(torch.tensor([2, 2, 0]))  # beam search reorders the batch
    assert reordered.mask.tolist()[0] == mask.tolist()[2]



@pytest.mark.parametrize("decoder", [RNNDecoder(8, 12, DecoderConfig(hidden_size=6, attention="additive")),
                                     RNNDecoder(8, 12, DecoderConfig(hidden_size=6, cell="lstm", layers=2)),
                                     TransformerDecoder(8, 12, DecoderConfig(type="transformer", hidden_size=6,
                                                                             heads=2, layers=2))])
def test_reorder_among_one_inputs_hypotheses_decodes_as_select(decoder):
    """Beam search moves only the decoder's own state between an input's hypotheses: rows 0-1 and
    2-3 are two inputs' beams (same memory and mask), and a reorder within each pair then decodes
    as a full ``select`` (to float rounding: the copied memory's layout differs), leaving the
    memory where it is."""
    decoder.eval()
    memory = torch.randn(2, S, 12).repeat_interleave(2, dim=0)  # [4, S, 12]: two beams per input
    lengths = torch.tensor([5, 5, 2, 2])
    state = decoder.start(memory, lengths, lengths_to_mask(lengths))
    _, _, state = decoder(torch.randn(4, 1, 8), state)  # the beams now differ
    index, step = torch.tensor([1, 1, 3, 2]), torch.randn(4, 1, 8)
    reordered, selected = state.reorder(index), state.select(index)
    assert reordered.mask is state.mask  # not copied
    output, weights, _ = decoder(step, reordered)
    expected_output, expected_weights, _ = decoder(step, selected)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(weights, expected_weights)

def test_positions_have_no_length_limit():
    from cronos.modules.encoders import PositionalEncoding, sinusoids

    encoding = PositionalEncoding(8, cached=16)
    expected = sinusoids(0, 40, 8).float()  # [40, 8]
    torch.testing.assert_close(encoding(torch.zeros(1, 40, 8))[0], expected, atol=0, rtol=0)  # past the table
    torch.testing.assert_close(encoding(torch.zeros(1, 10, 8))[0], expected[:10], atol=0, rtol=0)  # inside it
    torch.testing.assert_close(encoding(torch.zeros(1, 1, 8), offset=30)[0, 0], expected[30], atol=0, rtol=0)
    assert expected[3, 0] == torch.sin(torch.tensor(3.0)) and expected[3, 1] == torch.cos(torch.tensor(3.0))


@pytest.mark.parametrize("size", [8, 9])
def test_halves_put_every_sine_before_every_cosine_as_marian_does(size):
    """Marian's table (transformers' ``MarianSinusoidalPositionalEmbedding``, written out here):
    position p, feature j has angle p / 10000^(2 (j // 2) / size); the sines of the even j come
    first, then the cosines of the odd j."""
    import numpy as np
    from cronos.modules.encoders import PositionalEncoding, sinusoids

    angles = np.array([[p / np.power(10000, 2 * (j // 2) / size) for j in range(size)] for p in range(50)])
    marian = np.concatenate([np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])], axis=1)
    np.testing.assert_allclose(sinusoids(0, 50, size, layout="halves").numpy(), marian, atol=1e-12)
    encoding = PositionalEncoding(size, "halves", cached=16)
    torch.testing.assert_close(encoding(torch.zeros(1, 50, size))[0], torch.from_numpy(marian).float())
    interleaved = sinusoids(0, 50, size)
    assert not torch.equal(interleaved, sinusoids(0, 50, size, layout="halves"))
    torch.testing.assert_close(interleaved[:, 0::2], torch.from_numpy(marian[:, : (size + 1) // 2]))


@pytest.mark.parametrize("normalize_before", [True, False], ids=["pre-norm", "post-norm"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "swish"])
def test_an_encoder_layer_computes_the_block_its_settings_name(normalize_before, activation):
    """Pre-norm ``x + f(LN(x))``, post-norm ``LN(x + f(x))``, with the activation asked for."""
    from cronos.config import EncoderConfig
    from cronos.modules.encoders import TransformerLayer

    torch.manual_seed(0)
    config = EncoderConfig(type="transformer", hidden_size=8, heads=2, ff_size=12, dropout=0.0,
                           normalize_before=normalize_before, activation=activation)
    layer = TransformerLayer(config).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu, "swish": torch.nn.functional.silu}[activation]

    def attend(h):
        keys, values = layer.attention.precompute(h, h)
        return layer.attention(h, keys, values, mask, need_weights=False)[0]

    def feed(h):
        net = layer.feed_forward.net
        return net[3](act(net[0](h)))

    if normalize_before:
        h = x + attend(layer.attention_norm(x))
        expected = h + feed(layer.feed_forward_norm(h))
    else:
        h = layer.attention_norm(x + attend(x))
        expected = layer.feed_forward_norm(h + feed(h))
    torch.testing.assert_close(layer(x, mask), expected)


def test_a_post_norm_stack_has_no_final_norm_and_its_state_keeps_the_pre_norm_names():
    from cronos.config import load_config
    from cronos.model import Cronos
    from cronos.data import Vocabulary

    vocab = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"])
    stack = {"type": "transformer", "hidden_size": 8, "heads": 2, "ff_size": 8}
    pre = Cronos(load_config({"model": {"encoder": stack, "decoder": stack}}), vocab, vocab).network.state_dict()
    post_stack = {**stack, "normalize_before": False}
    post = Cronos(load_config({"model": {"encoder": post_stack, "decoder": post_stack}}), vocab,
                  vocab).network.state_dict()
    assert set(pre) - set(post) == {f"{side}.final_norm.{p}" for side in ("encoder", "decoder")
                                    for p in ("weight", "bias")}
    assert set(post) <= set(pre)
