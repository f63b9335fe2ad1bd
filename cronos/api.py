"""Module-level API: ``cronos.fit``, and ``cronos.evaluate``, ``explain``, ``translate``, ``sample`` and
``score``, each the ``Translator`` method of the same name, with every option, on a model (an
ensemble too) or a checkpoint path."""
from __future__ import annotations

import os
from typing import Any, Sequence

from .config import Config, config_to_dict, load_config
from .explain.explanation import Explanation
from .model import Cronos
from .decoding.scoring import PairScore
from .translator import Translation, Translator

__all__ = ["fit", "evaluate", "explain", "sample", "score", "translate"]

ModelOrCheckpoint = Translator | str | os.PathLike


def fit(config_or_path: Config | str | os.PathLike, **overrides: Any) -> Cronos:
    """Build a model from a config and train it; returns it holding the best validation weights.

    Overrides are dotted keys (``**{"training.epochs": 2}``) or the same with ``__`` for the dots
    (``training__epochs=2``).
    """
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    source = config_to_dict(config_or_path) if isinstance(config_or_path, Config) else config_or_path
    config = load_config(source, overrides=dotted)
    model = Cronos.from_config(config)
    model.fit()
    return model


def _model(model_or_checkpoint: ModelOrCheckpoint) -> Translator:
    return model_or_checkpoint if isinstance(model_or_checkpoint, Translator) else Translator.load(model_or_checkpoint)


def evaluate(model_or_checkpoint: ModelOrCheckpoint, data: str | Sequence[tuple[str, str]] = "test",
             beam_size: int | None = None, tag: str | None = None) -> dict:
    return _model(model_or_checkpoint).evaluate(data, beam_size, tag)


def explain(model_or_checkpoint: ModelOrCheckpoint, sources: Sequence[str], targets: Sequence[str] | None = None,
            beam_size: int | None = None, method: str = "attention", steps: int = 50) -> list[Explanation]:
    return _model(model_or_checkpoint).explain(sources, targets, beam_size, method, steps)


def translate(model_or_checkpoint: ModelOrCheckpoint, sources: Sequence[str], beam_size: int | None = None,
              batch_size: int | None = None, n_best: int | None = None) -> list[str] | list[list[Translation]]:
    return _model(model_or_checkpoint).translate(sources, beam_size, batch_size, n_best)


def sample(model_or_checkpoint: ModelOrCheckpoint, sources: Sequence[str], top_k: int | None = None,
           top_p: float | None = None, temperature: float = 1.0, seed: int = 0,
           batch_size: int | None = None) -> list[str]:
    return _model(model_or_checkpoint).sample(sources, top_k, top_p, temperature, seed, batch_size)


def score(model_or_checkpoint: ModelOrCheckpoint, data: str | Sequence[tuple[str, str]] = "test",
          per_token: bool = False, batch_size: int | None = None) -> list[PairScore]:
    return _model(model_or_checkpoint).score(data, per_token, batch_size)
