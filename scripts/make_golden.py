#!/usr/bin/env python3
"""Write the golden checkpoint that tests/regression/test_formats.py loads: a tiny dates model and
the outputs it gives (greedy and beam translations, teacher-forced log-probs).

Run it only when the checkpoint format changes on purpose (bump FORMAT_VERSION and say so in the
CHANGELOG): the test exists to notice when a checkpoint written by an earlier cronos stops
loading or starts giving other outputs.

    python scripts/make_golden.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import cronos  # noqa: E402
from helpers import tiny_config  # noqa: E402

OUT = ROOT / "tests" / "regression" / "data"
SOURCES = ["Thu 26 Nov 2026", "1/2/07", "Mittwoch, 3. März 1999", "the 21st of June 1950", "2000 01 01",
           "le 14 juillet 1789"]
TARGETS = ["2026-11-26", "2007-02-01", "1999-03-03", "1950-06-21", "2000-01-01", "1789-07-14"]


def golden_outputs(model: cronos.Cronos) -> dict:
    batch = model.prepare(SOURCES, TARGETS)
    model.eval()
    with torch.no_grad():
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        log_probs = torch.log_softmax(logits, -1).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)
        real = batch.tgt_out != 0
        sums = (log_probs * real).sum(-1)
    return {"sources": SOURCES, "targets": TARGETS, "greedy": model.translate(SOURCES, beam_size=1),
            "beam4": model.translate(SOURCES, beam_size=4), "target_log_prob": sums.tolist()}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        config = tiny_config(Path(folder), training={"epochs": 2, "progress": False})
        model = cronos.fit(cronos.load_config(config))
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "golden.pt")
    (OUT / "golden.json").write_text(json.dumps(golden_outputs(model), ensure_ascii=False, indent=1) + "\n",
                                     encoding="utf-8")
    print(f"wrote {OUT / 'golden.pt'} ({(OUT / 'golden.pt').stat().st_size} bytes) and golden.json")


if __name__ == "__main__":
    main()
