"""Data pipeline: read -> tokenise -> vocabulary -> examples with lengths -> batches of (tokens, lengths)."""
from .batch import Batch, chunks, collate, length_batches
from .codec import TextCodec, tokenizers_for
from .subwords import SubwordModels
from .loader import batch_loader
from .corpus import SPLITS, EvalSplit, TrainingData, load_eval_split, load_split, load_training_data, train_subword_models
from .preprocess import Example, PreprocessStats, TextRules, TokenizedPair
from .readers import DataError, read_pairs
from .sampler import Batches, BucketBatchSampler, RandomBatchSampler, Update, padded_share, plan_updates, tokens_in
from .tokenizers import Tokenizer, build_tokenizer
from .vocab import BOS_INDEX, EOS_INDEX, PAD_INDEX, UNK_INDEX, Vocabulary

__all__ = [
    "Batch", "chunks", "collate", "length_batches", "batch_loader", "TextCodec", "tokenizers_for", "SubwordModels", "SPLITS", "EvalSplit",
    "TrainingData", "load_eval_split", "load_split", "load_training_data", "train_subword_models",
    "Example", "PreprocessStats", "TextRules", "TokenizedPair", "DataError", "read_pairs", "BucketBatchSampler",
    "RandomBatchSampler", "padded_share", "plan_updates", "tokens_in", "Batches", "Update", "Tokenizer", "build_tokenizer", "Vocabulary", "PAD_INDEX",
    "UNK_INDEX", "BOS_INDEX", "EOS_INDEX",
]
