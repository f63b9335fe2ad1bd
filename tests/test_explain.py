"""explain on trained models: attention rows, padding that gets nothing, forced targets, heatmaps."""
from __future__ import annotations

import json

import pytest
import torch

import cronos

SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950", "2000 01 01"]
FAMILIES = ["rnn", "transformer"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beam", [1, 3])
def test_explain_rows_sum_to_one_and_padding_got_nothing(trained_models, family, beam):
    model = trained_models[family]
    explanations = model.explain(SOURCES, beam_size=beam)
    for source, explanation in zip(SOURCES, explanations):
        assert explanation.source_tokens == list(source)
        assert explanation.attention.shape == (len(explanation.output_tokens), len(source))
        assert explanation.padding_attention == 0.0  # the batch had padding; it got exactly zero
        if explanation.output_tokens:
            torch.testing.assert_close(explanation.attention.sum(-1), torch.ones(len(explanation.output_tokens)),
                                       atol=1e-5, rtol=0)
    assert [e.output for e in explanations] == model.translate(SOURCES, beam_size=beam)


def test_explain_with_forced_targets(trained_models):
    model = trained_models["transformer"]
    explanation = cronos.explain(model, ["1/2/07", "Thu 26 Nov 2026"], targets=["2007-02-01", "2026-11-26"])[0]
    assert explanation.forced and explanation.output_tokens == list("2007-02-01")
    assert explanation.attention.shape == (10, 6) and explanation.padding_attention == 0.0
    data = explanation.to_dict()
    assert set(data) == {"source", "source_tokens", "output", "output_tokens", "attention", "score",
                         "padding_attention", "forced", "method"}
    assert json.loads(json.dumps(data))["output"] == "2007-02-01"


def test_explain_plot_writes_a_png(trained_models, tmp_path):
    path = trained_models["rnn"].explain(["Thu 26 Nov 2026"])[0].plot(tmp_path / "heat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(trained_models, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'cronos\[plot\]'"):
        trained_models["rnn"].explain(["1/2/07"])[0].plot(tmp_path / "x.png")
