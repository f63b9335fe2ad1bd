from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def write(tmp_path):
    """write("name.tsv", text_or_bytes) -> path inside tmp_path."""
    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path
    return _write


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory):
    """One tiny RNN (additive attention) and one tiny Transformer, trained once per session on a
    slice of the dates data; keyed by family."""
    import cronos
    from helpers import tiny_config

    models = {}
    families = {
        "rnn": {},
        "transformer": {"model": {"embedding_size": 32,
                                  "encoder": {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4,
                                              "ff_size": 64, "dropout": 0.1},
                                  "decoder": {"type": "transformer", "hidden_size": 32, "layers": 1, "heads": 4,
                                              "ff_size": 64, "dropout": 0.1}},
                        "training": {"epochs": 3, "batch_size": 32, "lr": 0.003, "progress": False}},
    }
    for family, sections in families.items():
        folder = tmp_path_factory.mktemp(family)
        models[family] = cronos.fit(cronos.load_config(tiny_config(folder, **sections)))
    return models


@pytest.fixture(scope="session")
def marian_folders(tmp_path_factory):
    """``marian_folders(shape)``: a tiny trained MarianMT folder of that shape (tests/marian_models.py)
    and its import as a cronos checkpoint, made once per session when first asked for."""
    made = {}

    def folder_and_checkpoint(shape: str):
        if shape not in made:
            from cronos.storage.checkpoint import save_checkpoint
            from cronos.storage.marian import read_marian_folder, stored_payload
            from marian_models import make_marian

            folder = make_marian(tmp_path_factory.mktemp("marian"), shape)
            checkpoint = folder.parent / f"{folder.name}.pt"
            save_checkpoint(checkpoint, stored_payload(read_marian_folder(folder)))
            made[shape] = folder, checkpoint
        return made[shape]
    return folder_and_checkpoint
