"""Data pipeline: read -> tokenise -> vocabulary -> examples with lengths -> batches of (tokens, lengths)."""
from .batch import Batch, collate
from .corpus import EvalSplit, TrainingData, load_eval_split, load_training_data, tokenizer_for
from .preprocess import Example, PreprocessStats, encode_sources
from .readers import DataError, read_pairs
from .sampler import BucketBatchSampler, RandomBatchSampler, padded_share
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, Vocabulary

__all__ = [
    "Batch", "collate", "EvalSplit", "TrainingData", "load_eval_split", "load_training_data", "tokenizer_for",
    "Example", "PreprocessStats", "encode_sources", "DataError", "read_pairs", "BucketBatchSampler",
    "RandomBatchSampler", "padded_share", "Tokenizer", "build_tokenizer", "Vocabulary", "PAD_INDEX",
    "UNK_INDEX", "BOS_INDEX", "EOS_INDEX",
]
