"""Gradient attributions (``cronos.explain.attribution``, ``explain(method=...)``): padding gets exactly
nothing and an example's attributions are its own (alone vs mixed-length batch vs extra padding,
float64 to 1e-10) over every encoder x decoder combination; each method is what it says, checked
against autograd and against the model's own log-probs; the API, the word view and the errors."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import cronos
from cronos.explain.attribution import ATTRIBUTION_METHODS, AttributionDependencyError, attribute
from cronos.data.vocab import PAD_INDEX
from helpers import ROOT
from test_padding_inert import MODELS, batch_strategy, make_batch, tiny_model

FEW = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STEPS = 4  # integrated gradients: few path points (what is tested holds for any number)


# saliency (the gradient itself) over every combination; the methods built on it over the four
# tied combinations (GRU, LSTM and Transformer encoders; RNN and Transformer decoders)
CASES = ([("saliency", *model) for model in MODELS]
         + [(method, *model) for method in ATTRIBUTION_METHODS[1:] for model in MODELS if model[2]])


@pytest.mark.parametrize("method, encoder, decoder, tied", CASES, ids=lambda v: str(v))
@FEW
@given(drawn=batch_strategy)
def test_attributions_are_the_examples_own_and_padding_gets_exactly_nothing(method, encoder, decoder, tied, drawn):
    pairs, extra_padding = drawn
    network = tiny_model(encoder, decoder, tied=tied).network
    together = attribute(network, make_batch(pairs, extra_padding), method, steps=STEPS)
    for i, (src, tgt) in enumerate(pairs):
        alone = attribute(network, make_batch([(src, tgt)]), method, steps=STEPS)
        real_rows = len(tgt) + 1  # the tokens and <eos>
        assert torch.all(together.scores[i, :, len(src):] == 0.0)  # batch padding and the extra columns
        torch.testing.assert_close(together.scores[i, :real_rows, :len(src)], alone.scores[0, :real_rows],
                                   atol=1e-10, rtol=0)
        if method == "integrated_gradients":
            torch.testing.assert_close(together.gaps[i, :real_rows], alone.gaps[0, :real_rows], atol=1e-10, rtol=0)


def target_log_probs(network, batch, embedded):
    state = network.start_decoder(network.encode_embedded(embedded, batch.src_lengths))
    logits, _, _ = network.run_decoder(batch.tgt_in, state, need_weights=False)
    return torch.log_softmax(logits, -1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)  # [B, T]


@pytest.mark.parametrize("encoder, decoder", [("gru", "rnn-additive"), ("transformer", "transformer")])
def test_each_method_is_what_it_says(encoder, decoder):
    """Saliency is the gradient's norm and input x gradient its product with the embedding (both
    against autograd directly); integrated gradients' rows sum to the log-prob minus the
    baseline's (all-<pad> embeddings) up to the gap it reports, a gap that shrinks with steps."""
    network = tiny_model(encoder, decoder).network
    batch = make_batch([([4, 5, 6, 7], [8, 9, 10]), ([11, 5], [12])], extra_padding=1)
    embedded = network.src_embedding(batch.src).detach().requires_grad_()
    log_probs = target_log_probs(network, batch, embedded)
    for t in range(log_probs.size(1)):
        gradient, = torch.autograd.grad(log_probs[:, t].sum(), embedded, retain_graph=True)  # [B, S, E]
        torch.testing.assert_close(attribute(network, batch, "saliency").scores[:, t], gradient.norm(dim=-1),
                                   atol=1e-12, rtol=0)
        torch.testing.assert_close(attribute(network, batch, "input_x_gradient").scores[:, t],
                                   (gradient * embedded).sum(-1), atol=1e-12, rtol=0)
    baseline = network.src_embedding.weight[PAD_INDEX].expand_as(embedded)
    assert torch.all(baseline == 0)  # the <pad> embedding: zero and frozen
    difference = (log_probs - target_log_probs(network, batch, baseline)).detach()  # [B, T]
    gaps = []
    for steps in (4, 64):
        found = attribute(network, batch, "integrated_gradients", steps=steps)
        torch.testing.assert_close(found.scores.sum(-1) - found.gaps, difference, atol=1e-9, rtol=0)
        gaps.append(float(found.gaps[0, :4].abs().max()))
    assert gaps[1] < max(gaps[0] / 10, 1e-8) and gaps[1] < 1e-2  # (a near-linear model: tiny from the start)


def test_explain_gives_the_attribution_beside_the_attention(trained_models):
    model = trained_models["transformer"]
    sources, targets = ["Thu 26 Nov 2026", "1/2/07"], ["2026-11-26", "2007-02-01"]
    plain, = model.explain(sources[:1])
    assert plain.method == "attention" and plain.attribution is None and "attribution" not in plain.to_dict()
    for method in ATTRIBUTION_METHODS:
        decoded = model.explain(sources, method=method, steps=8)
        forced = model.explain(sources, targets, method=method, steps=8)
        for explanation in decoded + forced:
            assert explanation.method == method
            assert explanation.attribution.shape == explanation.attention.shape
            assert explanation.attribution.shape == (len(explanation.output_tokens), len(explanation.source_tokens))
            assert explanation.padding_attribution == 0.0 and explanation.padding_attention == 0.0
            assert (explanation.completeness_gaps is not None) == (method == "integrated_gradients")
        # the decoded output, forced, has the attributions of the decoded one
        again = model.explain(sources, [e.output for e in decoded], method=method, steps=8)
        for first, second in zip(decoded, again):
            torch.testing.assert_close(first.attribution, second.attribution, atol=1e-5, rtol=1e-4)
        # one at a time, the same
        alone = model.explain(sources[1:], targets[1:], method=method, steps=8)[0]
        torch.testing.assert_close(alone.attribution, forced[1].attribution, atol=1e-6, rtol=1e-5)
    entry = forced[1].to_dict()
    assert entry["method"] == "integrated_gradients" and len(entry["attribution"]) == len(entry["output_tokens"])


def test_explanation_errors(trained_models, monkeypatch):
    model = trained_models["rnn"]
    with pytest.raises(ValueError, match="unknown explanation method 'gradcam'; expected one of attention, saliency"):
        model.explain(["1/2/07"], method="gradcam")
    with pytest.raises(TypeError, match="an ensemble decodes only; it is not explained by gradients"):
        cronos.Cronos.ensemble([model, model]).explain(["1/2/07"], method="saliency")
    monkeypatch.setitem(sys.modules, "captum", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(AttributionDependencyError, match=r"pip install 'cronos\[attributions\]'"):
        model.explain(["1/2/07"], method="saliency")
    assert model.explain(["1/2/07"])[0].attribution is None  # attention needs no Captum


def test_without_the_mask_padding_does_get_attribution():
    """The control: the zero above is the mask's doing (masking off: padded keys are attended,
    so gradient reaches them and the padded columns' saliency is not zero).  A Transformer encoder:
    an RNN encoder packs its input, so padded positions never reach it, mask or not."""
    network = tiny_model("transformer", "transformer", mask_padding=False).network
    found = attribute(network, make_batch([([4, 5, 6, 7], [8, 9]), ([11], [12])], extra_padding=2), "saliency")
    assert float(found.scores[1, :, 1:].abs().sum()) > 0


@pytest.mark.timeout(120)
def test_integrated_gradients_costs_linear_memory_in_its_steps_and_refuses_absurd_counts():
    """4,000 path points on a tiny model: a quadrature whose set-up is quadratic in memory (Captum's
    default, Gauss-Legendre: 246 MB more for 4,000 points, measured; gigabytes for 15,000) would show
    in the process's peak; the trapezoidal rule adds nothing measurable.  Past MAX_STEPS: a clear error."""
    program = textwrap.dedent("""
        import resource, sys
        sys.path.insert(0, "tests")
        import torch
        from test_padding_inert import make_batch, tiny_model
        from cronos.explain.attribution import attribute
        network = tiny_model("gru", "rnn-additive").network.eval()
        batch = make_batch([([4, 5, 6], [])])
        attribute(network, batch, "saliency")  # everything imported and allocated once
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found = attribute(network, batch, "integrated_gradients", steps=4000)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, float(found.gaps.abs().max()))
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT, timeout=110)
    assert result.returncode == 0, result.stderr
    grown_mb, gap = result.stdout.split()
    assert int(grown_mb) < 100 and float(gap) < 1e-4
    network = tiny_model("gru", "rnn-additive").network
    with pytest.raises(ValueError, match=r"integrated gradients takes 1 to 10,000 steps .* got 100,000"):
        attribute(network, make_batch([([4, 5], [6])]), "integrated_gradients", steps=100_000)


@pytest.mark.parametrize("encoder, decoder", [("gru", "rnn-additive"), ("transformer", "transformer")])
def test_the_baseline_is_the_networks_pad_embedding_even_when_it_is_trained(encoder, decoder):
    """With ``freeze_pad_embedding: false`` the <pad> row is trained and no longer zero: integrated
    gradients' rows still add up to the log-prob minus that of the all-<pad> input (its baseline),
    not of an all-zero one."""
    network = tiny_model(encoder, decoder, freeze_pad_embedding=False).network
    with torch.no_grad():
        network.src_embedding.weight[PAD_INDEX] = torch.randn_like(network.src_embedding.weight[PAD_INDEX])
    batch = make_batch([([4, 5, 6, 7], [8, 9, 10]), ([11, 5], [12])], extra_padding=1)
    embedded = network.src_embedding(batch.src).detach()
    pads = network.src_embedding(torch.full_like(batch.src, PAD_INDEX)).detach()
    zeros = torch.zeros_like(embedded)
    with torch.no_grad():
        from_pads = target_log_probs(network, batch, embedded) - target_log_probs(network, batch, pads)
        from_zeros = target_log_probs(network, batch, embedded) - target_log_probs(network, batch, zeros)
    assert not torch.allclose(from_pads, from_zeros, atol=1e-3)  # the two baselines do differ here
    found = attribute(network, batch, "integrated_gradients", steps=32)
    torch.testing.assert_close(found.scores.sum(-1) - found.gaps, from_pads, atol=1e-9, rtol=0)
