"""cronos: sequence-to-sequence models with attention, where padding is inert.

    import cronos
    model = cronos.fit("configs/dates.yaml", **{"training.epochs": 2})
    model.translate(["Thu 26 Nov 2026"])            # ['2026-11-26']
    cronos.explain(model, ["Thu 26 Nov 2026"])[0].plot("attention.png")
"""
from . import moved
from .modules.invariance import use_reproducible_products

use_reproducible_products()  # before any matrix product: MKL reads it once (docs/batch_invariance.md)
moved.install()

from .api import evaluate, explain, fit, sample, score, translate  # noqa: E402 - after the MKL setting
from .storage.checkpoint import CheckpointError
from .config import Config, ConfigError, load_config
from .data import DataError
from .explain.explanation import Explanation
from .modules.masking import lengths_to_mask
from .model import Cronos, Translation, Translator
from .training.run_folder import RunFolderError
from .training.trainer import TrainingError, TrainingHistory
from .version import __version__

__all__ = ["CheckpointError", "Config", "ConfigError", "Cronos", "DataError", "Explanation", "RunFolderError",
           "TrainingError", "TrainingHistory", "Translation", "Translator", "evaluate", "explain", "fit", "lengths_to_mask", "load_config",
           "sample", "score", "translate", "__version__"]
