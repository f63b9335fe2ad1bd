"""training.tensorboard: curves and the attention image a user opens in TensorBoard."""
from __future__ import annotations

import sys

import pytest

import cronos
from helpers import DATES, run_cli, tiny_config, write_config

pytest.importorskip("tensorboard", reason="the tensorboard extra is part of the test install")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def events(folder) -> EventAccumulator:
    return EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0}).Reload()


def test_tensorboard_has_the_curves_and_the_attention_of_a_validation_example(tmp_path):
    cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"epochs": 2, "tensorboard": True})))
    board = events(tmp_path / "run" / "tensorboard")
    scalars = set(board.Tags()["scalars"])
    assert {"train/loss", "train/target_tokens_per_second", "train/lr", "train/epoch_loss", "train/padded_share",
            "valid/loss", "valid/bleu", "valid/sequence_accuracy"} <= scalars
    assert [event.step for event in board.Scalars("train/loss")] == list(range(1, 51))  # every step of 2 x 25
    assert [event.step for event in board.Scalars("valid/loss")] == [25, 50]
    images = board.Images("valid/attention")
    source, target = (DATES / "valid.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert [image.step for image in images] == [25, 50]
    assert (images[0].height, images[0].width) == (8 * len(target), 8 * len(source))  # output x source, 8 px a cell


def test_a_resumed_run_replaces_the_events_logged_after_its_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, training={"epochs": 2, "tensorboard": True, "checkpoint_every": 10})
    from cronos.training.trainer import Trainer

    original = Trainer._train_step

    def stop_at_step_33(self, update, loaded):  # an interrupted run: steps 31-33 logged, last.pt at step 30
        result = original(self, update, loaded)
        if self.progress.step == 33:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(Trainer, "_train_step", stop_at_step_33)
    with pytest.raises(KeyboardInterrupt):
        cronos.fit(cronos.load_config(config))
    monkeypatch.setattr(Trainer, "_train_step", original)
    cronos.fit(cronos.load_config(config), **{"training.resume": "auto"})
    steps = [event.step for event in events(tmp_path / "run" / "tensorboard").Scalars("train/loss")]
    assert steps == list(range(1, 51))  # steps 31-33 once, from the resumed run


def test_without_tensorboard_installed_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(cronos.ConfigError, match=r"training.tensorboard: needs the tensorboard package: "
                                                 r"pip install 'cronos\[tensorboard\]'"):
        cronos.fit(cronos.load_config(tiny_config(tmp_path, training={"epochs": 1, "tensorboard": True})))


def test_a_folder_tensorboard_cannot_write_into_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tensorboard").symlink_to(tmp_path / "nowhere" / "events")  # a dangling link
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, training={"epochs": 1, "tensorboard": True}))
    code, _, err = run_cli(["train", str(config)], "", capsys, monkeypatch)
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        "cronos: error: config: training.tensorboard: cannot write TensorBoard events into ")
    assert "Traceback" not in err and "step 1" not in err
