"""Configs: the schema (``schema.py``: keys, defaults, docs, ranges) and loading (``loading.py``:
YAML -> a validated ``Config``, overrides, paths)."""
from .loading import (MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES, check_size, config_from_dict,
                      config_to_dict, expand_path, load_config, parse_override, with_changes,
                      without_inapplicable_keys)
from .schema import (MAX_BEAM_SIZE, Config, ConfigError, DataConfig, DataFiles, DecoderConfig, EncoderConfig,
                     Corpus, DecodingConfig, FilterConfig, ModelConfig, ParallelFiles, SentencePieceConfig, TrainingConfig, all_keys, applies, check_device_name)

__all__ = [
    "Config", "ConfigError", "DataConfig", "DataFiles", "DecoderConfig", "EncoderConfig", "DecodingConfig",
    "Corpus", "FilterConfig", "ModelConfig", "ParallelFiles", "SentencePieceConfig", "TrainingConfig", "all_keys", "applies", "check_device_name", "check_size",
    "config_from_dict", "config_to_dict", "with_changes", "expand_path", "load_config", "parse_override",
    "without_inapplicable_keys", "MAX_BEAM_SIZE", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "MAX_CONFIG_VALUES",
]
