"""Where a run computes: ``training.device``, ``Cronos.load(device=...)`` and the CLI's ``--device``.

The GPU tests run only where torch sees a CUDA GPU (``scripts/gpu_check.sh`` runs them on one);
everywhere else the errors for asking one are what is pinned.
"""
from __future__ import annotations

import copy

import pytest
import torch

import cronos
from cronos.config import ConfigError
from cronos.data.vocab import PAD_INDEX
from cronos.device import resolve_device
from helpers import tiny_config

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950"]


def test_auto_takes_a_gpu_only_where_torch_sees_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_unknown_device_names_are_config_errors_with_the_choices(name):
    with pytest.raises(ConfigError, match="training.device: expected `auto`, `cpu`, `cuda` or `cuda:N`"):
        cronos.load_config({"training": {"device": name}})


def test_a_gpu_index_torch_cannot_see_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="training.device: 'cuda:99' asked for, but torch"):
        resolve_device("cuda:99")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_training_on_cuda_without_a_gpu_stops_before_training(tmp_path):
    config = cronos.load_config(tiny_config(tmp_path, training={"device": "cuda"}))
    with pytest.raises(ConfigError, match="sees no CUDA GPU; use `cpu`, or `auto`"):
        cronos.fit(config)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_load_puts_the_model_on_the_device_asked_for(trained_models, tmp_path):
    path = trained_models["rnn"].save(tmp_path / "model.pt")
    assert cronos.Cronos.load(path, device="cpu").device == torch.device("cpu")
    with pytest.raises(ConfigError, match="Cronos.load: device: expected `auto`"):
        cronos.Cronos.load(path, device="gpu")


@needs_gpu
@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_a_run_on_the_gpu_trains_resumes_and_keeps_padding_inert(tmp_path, family):
    sections = {"training": {"device": "cuda", "epochs": 1}}
    if family == "transformer":
        layer = {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}
        sections["model"] = {"embedding_size": 32, "encoder": layer, "decoder": layer}
    config = cronos.load_config(tiny_config(tmp_path, **sections))
    model = cronos.fit(config)
    assert model.device.type == "cuda"
    network = model.network
    assert not network.src_embedding.weight[PAD_INDEX].any() and not network.tgt_embedding.weight[PAD_INDEX].any()
    together = model.translate(SOURCES)
    assert together == [model.translate([s])[0] for s in SOURCES]
    for explanation in model.explain(SOURCES):
        assert explanation.padding_attention == 0.0
    # the checkpoint a GPU run writes loads on the CPU and scores the same within float tolerance
    on_cpu = cronos.Cronos.load(tmp_path / "run" / "best.pt", device="cpu")
    gpu_loss, cpu_loss = model.evaluate("valid", beam_size=1)["loss"], on_cpu.evaluate("valid", beam_size=1)["loss"]
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-3)
    # and a GPU run resumes from its last.pt, CUDA random state included
    resumed = cronos.fit(config, **{"training.epochs": 2, "training.resume": "auto"})
    assert resumed.device.type == "cuda"
    # a checkpoint goes onto the GPU through the same checks; an over-long input is cut there too
    on_gpu = cronos.Cronos.load(tmp_path / "run" / "best.pt", device="cuda")
    on_cpu = cronos.Cronos.load(tmp_path / "run" / "best.pt", device="cpu")  # the resumed run's best
    assert on_gpu.device.type == "cuda" and on_gpu.translate(SOURCES) == on_cpu.translate(SOURCES)
    long = "Thu 26 Nov 2026 " * 1250
    assert on_gpu.translate([long], beam_size=5) == on_gpu.translate([long[:config.data.max_length]], beam_size=5)


@needs_gpu
def test_positions_past_the_cached_table_on_the_gpu():
    from cronos.modules.encoders import PositionalEncoding, sinusoids

    encoding = PositionalEncoding(8, cached=16).to("cuda")
    out = encoding(torch.zeros(1, 40, 8, device="cuda"))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out[0].cpu(), sinusoids(0, 40, 8).float(), atol=1e-6, rtol=0)


@needs_gpu
@pytest.mark.parametrize("precision, tolerance", [("bf16", 5e-2), ("fp16", 1e-2)])
@pytest.mark.parametrize("encoder, decoder", [("gru", "rnn-additive"), ("lstm", "rnn-multihead"),
                                              ("transformer", "transformer")])
def test_half_precision_on_the_gpu_keeps_padding_inert(precision, tolerance, encoder, decoder):
    """P1/P2 on CUDA under autocast: exact zeros on padded keys, nothing NaN, P1 within the tolerance of docs/training.md."""
    from test_padding_inert import make_batch, tiny_model

    model = tiny_model(encoder, decoder, torch.float32)
    network = copy.deepcopy(model.network).cuda()
    pairs = [([4, 5, 6, 7, 8], [9, 10]), ([11], [12, 13, 14, 15]), ([4, 6, 8], [5])]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16

    def log_probs(batch):
        batch = batch.to("cuda")
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
            logits, attention = network(batch.src, batch.src_lengths, batch.tgt_in)
        return torch.log_softmax(logits.float(), dim=-1), attention

    batched, attention = log_probs(make_batch(pairs, extra_padding=3))
    assert torch.isfinite(batched).all() and torch.isfinite(attention).all()
    for i, (src, tgt) in enumerate(pairs):
        assert torch.all(attention[i, :, len(src):] == 0.0)
        alone, _ = log_probs(make_batch([(src, tgt)]))
        torch.testing.assert_close(batched[i, : len(tgt) + 1], alone[0], atol=tolerance, rtol=0)


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_half_precision_compiled_run_on_the_gpu_trains_and_keeps_the_pad_rows(tmp_path, precision):
    layer = {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4, "ff_size": 64, "dropout": 0.1}
    config = cronos.load_config(tiny_config(tmp_path, training={"device": "cuda", "epochs": 1, "precision": precision,
                                                               "compile": True},
                                            model={"embedding_size": 32, "encoder": layer, "decoder": layer}))
    history = cronos.Cronos.from_config(config).fit()
    network = cronos.Cronos.load(tmp_path / "run" / "best.pt", device="cuda").network
    assert not network.src_embedding.weight[PAD_INDEX].any() and not network.tgt_embedding.weight[PAD_INDEX].any()
    assert history[-1]["valid_loss"] < 2.8 and history.step + history[-1]["skipped_batches"] == 25


@needs_gpu
@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_attributions_on_the_gpu_match_the_cpu_and_give_padding_nothing(trained_models, tmp_path, family):
    """On CUDA the RNNs differentiate in eval mode without cuDNN (whose RNN backward needs
    training mode); the attributions are the CPU's, to float rounding."""
    path = trained_models[family].save(tmp_path / "model.pt")
    on_cpu = cronos.Cronos.load(path, device="cpu").explain(SOURCES, method="integrated_gradients", steps=16)
    on_gpu = cronos.Cronos.load(path, device="cuda").explain(SOURCES, method="integrated_gradients", steps=16)
    for cpu, gpu in zip(on_cpu, on_gpu):
        assert gpu.output == cpu.output and gpu.padding_attribution == 0.0
        torch.testing.assert_close(gpu.attribution, cpu.attribution, atol=1e-3, rtol=1e-3)
