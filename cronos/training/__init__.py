"""Training a network: the loop (``trainer``) and its parts: the state it resumes from, validation,
stopping, checkpoints, the run folder, the record of metrics, processes and progress."""
from .trainer import Trainer, TrainingError, TrainingHistory, build_optimizer

__all__ = ["Trainer", "TrainingError", "TrainingHistory", "build_optimizer"]
