"""Three small models, one per architecture family, trained once per test session on 5,000
dates with a fixed seed. The floors in test_trained.py guard what they reach."""
from __future__ import annotations

import pytest

import cronos
from helpers import tiny_config, write_slices

RNN = {"type": "rnn", "cell": "gru", "hidden_size": 64, "dropout": 0.0}
FAMILIES = {
    "rnn-additive": {"model": {"embedding_size": 32, "encoder": RNN,
                               "decoder": {"type": "rnn", "hidden_size": 128, "attention": "additive", "dropout": 0.0}},
                     "training": {"epochs": 4, "batch_size": 64, "lr": 0.003, "progress": False}},
    "rnn-general": {"model": {"embedding_size": 32, "encoder": RNN,
                              "decoder": {"type": "rnn", "hidden_size": 128, "attention": "general", "dropout": 0.0}},
                    "training": {"epochs": 4, "batch_size": 64, "lr": 0.003, "progress": False}},
    "transformer": {"model": {"embedding_size": 64,
                              "encoder": {"type": "transformer", "hidden_size": 64, "layers": 1, "heads": 4,
                                          "ff_size": 128, "dropout": 0.0},
                              "decoder": {"type": "transformer", "hidden_size": 64, "layers": 1, "heads": 4,
                                          "ff_size": 128, "dropout": 0.0}},
                    "training": {"epochs": 4, "batch_size": 64, "lr": 0.005, "progress": False,
                                 "scheduler": "warmup_inverse_sqrt", "warmup_steps": 100}},
}


@pytest.fixture(scope="session")
def regression_runs(tmp_path_factory) -> dict[str, tuple[cronos.Cronos, dict]]:
    """family -> (trained model holding its best weights, its test scores)."""
    runs = {}
    for family, sections in FAMILIES.items():
        folder = tmp_path_factory.mktemp(family)
        config = tiny_config(folder, **sections)
        config["data"].update(write_slices(folder / "data", train=5000, valid=200, test=1000))
        model = cronos.fit(cronos.load_config(config))
        runs[family] = (model, model.evaluate("test"))
    return runs
