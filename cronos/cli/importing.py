"""``cronos import --from marian FOLDER OUT.pt``: a published model as a cronos checkpoint."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..config import Config, ConfigError
from ..outputs import check_output_file

__all__ = ["add_import"]


def add_import(commands) -> argparse.ArgumentParser:
    importing = commands.add_parser("import", help="a Hugging Face MarianMT (OPUS-MT) model folder as a cronos "
                                                   "checkpoint (docs/pretrained.md)")
    importing.add_argument("folder", type=Path, metavar="FOLDER", help="the model's folder (config.json, weights, "
                                                                       "source.spm, target.spm, vocab.json)")
    importing.add_argument("out", type=Path, metavar="OUT", help="the checkpoint (a new file)")
    importing.add_argument("--from", dest="kind", choices=("marian",), required=True,
                           help="what the folder holds: marian (transformers' MarianMTModel)")
    importing.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    importing.set_defaults(run=_import)
    return importing


def _import(args: argparse.Namespace) -> int:
    from ..storage.checkpoint import save_checkpoint
    from ..storage.marian import MarianImportError, read_marian_folder, stored_payload

    config_path = args.out.with_suffix(".yaml")
    if config_path == args.out:
        raise ConfigError("OUT", "", f"{args.out} would be the checkpoint and its fine-tuning config both; name the "
                                     "checkpoint OUT.pt")
    for path in (args.out, config_path):
        if path.exists():
            raise ConfigError("OUT", "", f"{path} exists; the import goes to a new file")
        check_output_file(path, "OUT", overwrite=False, reading=[args.folder])
    try:
        stored = read_marian_folder(args.folder)
    except MarianImportError as error:
        raise ConfigError(str(args.folder), "", str(error)) from None
    save_checkpoint(args.out, stored_payload(stored))
    config_path.write_text(_fine_tuning_config(stored.config, args.out), encoding="utf-8")
    model = stored.config.model
    shared = "one vocabulary" if model.share_embeddings else "a vocabulary per side"
    print(f"imported {args.folder} into {args.out}: a Transformer of {model.encoder.layers}+{model.decoder.layers} "
          f"layers (size {model.encoder.hidden_size}, {model.encoder.heads} heads), {shared} of "
          f"{len(stored.tgt_vocab):,} tokens; {config_path} fine-tunes it (set data.train and data.valid)")
    return 0


def _fine_tuning_config(config: Config, checkpoint: Path) -> str:
    """A config that fine-tunes the imported model: its own model and text settings (which a run
    from it must keep), ``training.init_from`` the checkpoint, the data left for the user."""
    import yaml

    from ..config import config_to_dict

    raw = config_to_dict(dataclasses.replace(
        config, training=dataclasses.replace(config.training, init_from=checkpoint.name, vocabulary="keep")))  # beside this file
    raw.pop("output_dir", None)
    return ("# cronos train THIS_FILE --set data.train=PAIRS.tsv --set data.valid=VALID.tsv: fine-tunes the model\n"
            f"# imported into {checkpoint}; its model and text settings are the model's own (keep them)\n"
            + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
