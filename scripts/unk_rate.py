#!/usr/bin/env python3
"""How much of a test split a model's vocabulary cannot express: the share of ``<unk>`` among the
tokens of the test sources and references, and (given a checkpoint) of the model's outputs.

    python scripts/unk_rate.py configs/multi30k_transformer.yaml --set data.root=../shared/data/multi30k
    python scripts/unk_rate.py --checkpoint runs/multi30k_transformer_spm/best.pt --set data.root=...

With a config, the vocabularies are built from its training split as training builds them; with a
checkpoint, they are the checkpoint's, and its test translations (the config's beam) are counted too.
"""
from __future__ import annotations

import argparse
import json

from cronos.config import config_to_dict, load_config, parse_override
from cronos.data import TextCodec, load_split, load_training_data
from cronos.data.vocab import UNK_INDEX
from cronos.model import Cronos
from cronos.search import Beam, decode


def share_unknown(sequences) -> float:
    tokens = [token for sequence in sequences for token in sequence]
    return sum(token == UNK_INDEX for token in tokens) / max(len(tokens), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", default="test", help="split name [test]")
    args = parser.parse_args()
    overrides = dict(parse_override(o) for o in args.overrides)
    model = None
    if args.checkpoint:
        model = Cronos.load(args.checkpoint, device="cpu")
        config = load_config(config_to_dict(model.config), overrides=overrides)
        codec = model.codec
    else:
        config = load_config(args.config, overrides=overrides)
        data = load_training_data(config.data, seed=config.seed)
        codec = TextCodec.for_data(config.data, data.src_vocab, data.tgt_vocab, data.subwords)
    split = load_split(args.data, config.data, codec)
    result = {"tokenizer": config.data.tokenizer, "split": args.data,
              "source_vocabulary": len(codec.src_vocab), "target_vocabulary": len(codec.tgt_vocab),
              "source_unk_share": share_unknown(e.src for e in split.examples),
              "reference_unk_share": share_unknown(e.tgt for e in split.examples)}
    if model is not None:
        hypotheses = [found[0] for found in decode(model.network, split.examples, Beam(config.decoding.beam_size),
                                                   config.decoding)]
        result["output_unk_share"] = share_unknown(h.tokens for h in hypotheses)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
