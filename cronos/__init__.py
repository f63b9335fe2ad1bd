"""cronos: sequence-to-sequence models with attention, where padding is inert."""
from .config import Config, ConfigError, load_config
from .data import DataError

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "DataError", "load_config", "__version__"]
