"""int8 linear layers (``Translator.load(..., quantize="int8")``, ``--quantize int8``): close to float32,
and an example's results still do not depend on its batch or its padding."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cronos.cli import main
from cronos.model import Cronos, Translator
from cronos.modules.quantized import Int8Linear
from helpers import DATES

PAIRS = [tuple(line.split("\t")) for line in (DATES / "test.tsv").read_text(encoding="utf-8").splitlines()[:24]]
SOURCES = [source for source, _ in PAIRS]


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 9), inputs=st.integers(1, 40), outputs=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_an_int8_layer_is_close_to_its_float_one_and_a_row_is_the_same_alone_and_in_a_batch(rows, inputs, outputs,
                                                                                             seed):
    torch.manual_seed(seed)
    linear = torch.nn.Linear(inputs, outputs)
    quantized = Int8Linear(linear)
    x = torch.randn(rows, inputs)
    x[0] = 0.0  # a row of zeros (padding's embedding) is quantized without dividing by zero
    given = x.clone()
    with torch.no_grad():
        expected, found = linear(x), quantized(x)
    assert torch.equal(x, given)  # the layer computes in place on its own results only
    assert torch.isfinite(found).all()
    assert (found - expected).abs().max() <= 0.03 * (1 + expected.abs().max())
    for i in range(rows):
        assert torch.equal(quantized(x[i:i + 1])[0], found[i])


@pytest.fixture(scope="module")
def checkpoints(trained_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    return {family: model.save(folder / f"{family}.pt") for family, model in trained_models.items()}


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_an_int8_model_translates_as_its_float_one_and_its_scores_are_close(checkpoints, family):
    exact, small = (Translator.load(checkpoints[family], "cpu", quantize) for quantize in (None, "int8"))
    same = sum(a == b for a, b in zip(exact.translate(SOURCES), small.translate(SOURCES)))
    assert same >= 0.75 * len(SOURCES)  # tiny, briefly trained models: near-ties abound
    for a, b in zip(exact.score(PAIRS), small.score(PAIRS)):
        assert b.mean_log_prob == pytest.approx(a.mean_log_prob, abs=0.05)


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_an_int8_models_results_do_not_depend_on_its_batch(checkpoints, family):
    model = Translator.load(checkpoints[family], "cpu", quantize="int8")
    alone = [model.score([pair])[0] for pair in PAIRS[:8]]
    assert model.score(PAIRS[:8], batch_size=8) == alone
    beam_alone = [model.translate([source], beam_size=3)[0] for source in SOURCES[:8]]
    assert model.translate(SOURCES[:8], beam_size=3, batch_size=8) == beam_alone


def test_an_int8_model_is_a_translator_it_decodes_and_is_neither_trained_nor_saved(checkpoints):
    model = Translator.load(checkpoints["transformer"], "cpu", quantize="int8")
    assert not isinstance(model, Cronos) and not hasattr(model, "fit") and not hasattr(model, "save")
    with pytest.raises(ValueError, match="int8 layers compute no gradients"):
        model.explain(SOURCES[:1], method="saliency")
    assert model.explain(SOURCES[:1])  # attention alone needs no gradient
    with pytest.raises(ValueError, match="quantize='int4' is not one cronos knows; choose int8 or None"):
        Translator.load(checkpoints["transformer"], "cpu", quantize="int4")
    with pytest.warns(DeprecationWarning, match=r"call Translator.load\(path, device, quantize\)"):
        old = Cronos.load(checkpoints["transformer"], "cpu", quantize="int8")
    assert type(old) is Translator and old.translate(SOURCES[:3]) == model.translate(SOURCES[:3])


def test_the_commands_take_quantize_int8(checkpoints, tmp_path, capsys):
    sources = tmp_path / "sources.txt"
    sources.write_text("\n".join(SOURCES[:3]) + "\n", encoding="utf-8")
    assert main(["translate", str(checkpoints["transformer"]), "--quantize", "int8", "--device", "cpu",
                 "--input", str(sources)]) == 0
    expected = Translator.load(checkpoints["transformer"], "cpu", "int8").translate(SOURCES[:3])
    assert capsys.readouterr().out.splitlines() == expected
