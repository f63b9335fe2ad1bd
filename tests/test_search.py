"""Greedy and beam search against independent references on a tiny vocabulary.

The reference enumerates every output up to the length limit and scores each with a teacher-forced
forward pass (no decoder state, no incremental steps): the exact best hypothesis under the length
penalty.  A beam wide enough to keep every candidate must return exactly that; greedy search must
follow the argmax of the same forward passes.
"""
from __future__ import annotations

import pytest
import torch

from cronos.config import load_config
from cronos.data import Batch, Vocabulary
from cronos.data.vocab import BOS_INDEX, EOS_INDEX
from cronos.model import Cronos
from cronos.decoding.inference import NonFiniteOutput
from cronos.decoding.search import Beam, Greedy, Sampling, SearchStopped, search_batch

VOCAB = Vocabulary(["<pad>", "<unk>", "<bos>", "<eos>", "a", "b"])
V = len(VOCAB)
LIMIT = 4  # output tokens at most, <eos> included
WIDE = (V - 1) ** (LIMIT - 1) * V  # a beam that keeps every candidate of every step
DECODERS = {"rnn": {"type": "rnn", "attention": "additive"},
            "transformer": {"type": "transformer", "layers": 1, "heads": 2, "ff_size": 16}}


def batch_of(src: torch.Tensor, lengths: list[int]) -> Batch:
    """Sources as a batch to search (no references)."""
    return Batch(src, torch.tensor(lengths), None, None, None, tuple(range(src.size(0))))


def limited(length_penalty: float):
    """Search settings: at most LIMIT output tokens for any source, the given length penalty."""
    return load_config({"decoding": {"max_length_ratio": 0.0, "max_length_offset": LIMIT,
                                       "length_penalty": length_penalty}}).decoding


def random_model(seed: int, decoder: str) -> Cronos:
    torch.manual_seed(seed)
    config = load_config({"seed": seed, "model": {
        "embedding_size": 8, "encoder": {"type": "rnn", "hidden_size": 8, "dropout": 0.0},
        "decoder": {"hidden_size": 16, "dropout": 0.0, **DECODERS[decoder]}}})
    model = Cronos(config, VOCAB, VOCAB).double().eval()
    with torch.no_grad():  # peaked, varied next-token distributions, <eos> more or less likely by seed:
        model.network.output_projection.weight.mul_(4.0)  # optimal outputs of every length
        model.network.output_projection.bias.normal_(0.0, 2.0)
        model.network.output_projection.bias[EOS_INDEX] = torch.empty(()).uniform_(-2.0, 4.0)
    return model


@torch.no_grad()
def next_log_probs(model: Cronos, src: torch.Tensor, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
    """Teacher-forced log-probs of the token after each prefix: ``[len(prefixes), V]``."""
    tgt_in = torch.tensor([[BOS_INDEX, *prefix] for prefix in prefixes])
    logits, _ = model(src.expand(len(prefixes), -1), torch.full((len(prefixes),), src.size(1)), tgt_in)
    return torch.log_softmax(logits[:, -1], dim=-1)


def exhaustive_ranked(model: Cronos, src: torch.Tensor, length_penalty: float) -> list[tuple[float, tuple, float]]:
    """Every hypothesis, best first, as (score, tokens, summed log-prob): ended by <eos> within LIMIT
    tokens (counted with its <eos>), or LIMIT tokens long without one; score = summed log-prob /
    length ** length_penalty."""
    candidates, frontier = [], [((), 0.0)]
    for step in range(LIMIT):
        log_probs = next_log_probs(model, src, [prefix for prefix, _ in frontier])
        grown = []
        for (prefix, total), row in zip(frontier, log_probs.tolist()):
            candidates.append(((total + row[EOS_INDEX]) / (step + 1) ** length_penalty, prefix, total + row[EOS_INDEX]))
            grown += [(prefix + (token,), total + row[token]) for token in range(V) if token != EOS_INDEX]
        frontier = grown
    candidates += [(total / LIMIT ** length_penalty, prefix, total) for prefix, total in frontier]
    return sorted(candidates, key=lambda candidate: -candidate[0])


def exhaustive_best(model: Cronos, src: torch.Tensor, length_penalty: float) -> tuple[tuple[int, ...], float]:
    score, prefix, _ = exhaustive_ranked(model, src, length_penalty)[0]
    return prefix, score


def sources() -> list[torch.Tensor]:
    return [torch.tensor([[4, 5, 4]]), torch.tensor([[5]]), torch.tensor([[5, 5, 4, 4, 5]])]


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_wide_beam_finds_the_exact_best_hypothesis(decoder, length_penalty):
    lengths = set()
    for seed in range(4):
        model = random_model(seed, decoder)
        for src in sources():
            expected, expected_score = exhaustive_best(model, src, length_penalty)
            found = search_batch(model.network, batch_of(src, [src.size(1)]), Beam(WIDE), limited(length_penalty))[0][0]
            assert tuple(found.tokens) == expected, (seed, src.tolist())
            assert found.score == pytest.approx(expected_score, rel=1e-5)  # search scores in float32
            lengths.add(len(expected))
    assert len(lengths) >= 2, lengths  # the best outputs differ in length, so length handling is tested


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_the_length_penalty_changes_the_choice_as_the_reference_does(decoder):
    changed = 0
    for seed in range(8):
        model = random_model(seed, decoder)
        for src in sources():
            plain, normalised = (exhaustive_best(model, src, penalty)[0] for penalty in (0.0, 1.0))
            changed += plain != normalised
    assert changed > 0  # the cases above include some where dividing by length picks another output


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_a_wide_beam_over_a_padded_batch_gives_each_input_its_best(decoder):
    model = random_model(11, decoder)
    batch = torch.tensor([[4, 5, 4, 0, 0], [5, 0, 0, 0, 0], [5, 5, 4, 4, 5]])
    found = search_batch(model.network, batch_of(batch, [3, 1, 5]), Beam(WIDE), limited(1.0))
    for (hypothesis, *_), src in zip(found, sources()):
        assert tuple(hypothesis.tokens) == exhaustive_best(model, src, 1.0)[0]


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_greedy_follows_the_argmax_of_teacher_forced_passes(decoder):
    for seed in range(4):
        model = random_model(seed, decoder)
        for src in sources():
            prefix: tuple[int, ...] = ()
            while len(prefix) < LIMIT:
                token = int(next_log_probs(model, src, [prefix])[0].argmax())
                if token == EOS_INDEX:
                    break
                prefix += (token,)
            found = search_batch(model.network, batch_of(src, [src.size(1)]), Greedy(), limited(1.0))[0][0]
            assert tuple(found.tokens) == prefix


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_wide_beams_n_best_list_is_the_exact_top_n_with_its_scores(decoder, length_penalty):
    """A beam that keeps every candidate finishes every hypothesis: its n-best list must be the
    reference's top n, in order, with the same ranking scores and summed log-probs."""
    options = load_config({"decoding": {"max_length_ratio": 0.0, "max_length_offset": LIMIT,
                                          "length_penalty": length_penalty}}).decoding
    for seed in range(3):
        model = random_model(seed, decoder)
        for src in sources():
            expected = exhaustive_ranked(model, src, length_penalty)[:5]
            found = search_batch(model.network, batch_of(src, [src.size(1)]), Beam(WIDE, n_best=5), options)[0]
            assert [tuple(h.tokens) for h in found] == [tokens for _, tokens, _ in expected], (seed, src.tolist())
            for hypothesis, (score, _, log_prob) in zip(found, expected):
                assert hypothesis.score == pytest.approx(score, rel=1e-5)
                assert hypothesis.log_prob == pytest.approx(log_prob, rel=1e-5)


def reference_beam(model: Cronos, src: torch.Tensor, k: int, length_penalty: float) -> list[tuple[float, tuple, float]]:
    """Beam search for one example, written for clarity: every step scores each beam's next tokens
    with a teacher-forced pass, takes the best 2k continuations, finishes those of the top k that are
    <eos>, continues the best k others; it stops with k finished or at LIMIT (open beams then finish).
    Returns every finished (score, tokens, summed log-prob), best first."""
    beams, finished = [((), 0.0)], []
    for step in range(LIMIT):
        rows = next_log_probs(model, src, [prefix for prefix, _ in beams]).tolist()
        candidates = sorted(((total + row[token], prefix, token) for (prefix, total), row in zip(beams, rows)
                             for token in range(V)), key=lambda candidate: -candidate[0])[: 2 * k]
        beams = []
        for rank, (total, prefix, token) in enumerate(candidates):
            if token == EOS_INDEX:
                if rank < k:
                    finished.append((total / (step + 1) ** length_penalty, prefix, total))
            elif len(beams) < k:
                beams.append((prefix + (token,), total))
        if step + 1 == LIMIT:
            finished += [(total / LIMIT ** length_penalty, prefix, total) for prefix, total in beams]
        if len(finished) >= k:
            break
    return sorted(finished, key=lambda candidate: -candidate[0])


@pytest.mark.parametrize("decoder", list(DECODERS))
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_and_its_n_best_list_follow_the_one_example_reference(decoder, k, length_penalty):
    """A narrow beam prunes: its 1-best and n-best lists (tokens, scores, log-probs) must be those of
    the clear, one-example reference above, for outputs of several lengths."""
    options = load_config({"decoding": {"max_length_ratio": 0.0, "max_length_offset": LIMIT,
                                          "length_penalty": length_penalty}}).decoding
    lengths = set()
    for seed in range(4):
        model = random_model(seed, decoder)
        batch = torch.tensor([[4, 5, 4, 0, 0], [5, 0, 0, 0, 0], [5, 5, 4, 4, 5]])  # padded: batched as well
        found = search_batch(model.network, batch_of(batch, [3, 1, 5]), Beam(k, n_best=k), options)
        for hypotheses, src in zip(found, sources()):
            expected = reference_beam(model, src, k, length_penalty)[:k]
            assert [tuple(h.tokens) for h in hypotheses] == [tokens for _, tokens, _ in expected], (seed, src.tolist())
            assert [h.score for h in hypotheses] == pytest.approx([score for score, _, _ in expected], rel=1e-5)
            assert [h.log_prob for h in hypotheses] == pytest.approx([total for _, _, total in expected], rel=1e-5)
            lengths.update(len(h.tokens) for h in hypotheses)
    assert len(lengths) >= 2, lengths


@pytest.mark.parametrize("strategy", [Greedy(), Beam(3), Sampling(top_k=3)], ids=["greedy", "beam", "sampling"])
def test_a_search_asks_stop_before_every_step_and_ends_when_it_says_so(strategy):
    """What a server uses to stop decoding for clients that all went away: ``stop`` is asked once
    per step, and its first True ends the search with ``SearchStopped``, no outputs."""
    model = random_model(3, "transformer")
    src = torch.tensor([[4, 5, 4], [5, 5, 4]])
    options = load_config({"decoding": {"max_length_ratio": 0.0, "max_length_offset": 50}}).decoding
    model.network.output_projection.bias.data[EOS_INDEX] = -1e9  # never ends early: 50 steps to go
    asked = []
    with pytest.raises(SearchStopped):
        search_batch(model.network, batch_of(src, [3, 3]), strategy, options, stop=lambda: asked.append(1) or
                     len(asked) > 5)
    assert len(asked) == 6
    asked.clear()
    assert len(search_batch(model.network, batch_of(src, [3, 3]), strategy, options,
                            stop=lambda: asked.append(1) or False)) == 2
    assert len(asked) == 50


@pytest.mark.parametrize("strategy", [Greedy(), Beam(3), Beam(2, n_best=2), Sampling(top_k=3)],
                         ids=["greedy", "beam", "n-best", "sampling"])
@pytest.mark.parametrize("row", [0, 1])
def test_a_nan_anywhere_in_a_step_is_one_clear_error(strategy, row, monkeypatch):
    """One NaN logit, in any row and far from the best token, ends the search with
    ``NonFiniteOutput`` (it would otherwise rank first, or be drawn), not with outputs."""
    model = random_model(5, "transformer")
    src = torch.tensor([[4, 5, 4], [5, 5, 4]])
    run_decoder, calls = model.network.run_decoder, []

    def poisoned(tokens, state, need_weights=True):
        logits, attention, state = run_decoder(tokens, state, need_weights)
        calls.append(1)
        if len(calls) == 2:  # the second step
            logits = logits.clone()
            logits[min(row, logits.size(0) - 1), 0, logits[..., 4:].argmin() % (V - 4) + 4] = float("nan")
        return logits, attention, state

    monkeypatch.setattr(model.network, "run_decoder", poisoned)
    options = load_config({"decoding": {"max_length_ratio": 0.0, "max_length_offset": 6}}).decoding
    model.network.output_projection.bias.data[EOS_INDEX] = -1e9  # the search reaches its second step
    with pytest.raises(NonFiniteOutput):
        search_batch(model.network, batch_of(src, [3, 3]), strategy, options)
    assert len(calls) == 2
