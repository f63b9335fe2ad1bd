"""cronos: sequence-to-sequence models with attention, where padding is inert."""
from .config import Config, ConfigError, load_config
from .data import DataError
from .masking import lengths_to_mask
from .model import Cronos

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "Cronos", "DataError", "lengths_to_mask", "load_config", "__version__"]
