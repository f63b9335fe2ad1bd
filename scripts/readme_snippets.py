#!/usr/bin/env python3
"""Run every ```python block of README.md and then of docs/*.md, in order, the way a user pastes
them, and check that
the main job's run (runs/dates/, written by scripts/main.sh) is left exactly as it was.

    bash scripts/main.sh && python scripts/readme_snippets.py

The blocks run in a scratch folder that sees the repository's configs/ (so their relative paths
work and what they write stays out of the repository); they train for real, so this takes a
minute or two on a CPU.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN_RUN = ROOT / "runs" / "dates"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [(page.relative_to(ROOT), block) for page in pages
              for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)]
    before = digest(MAIN_RUN) if MAIN_RUN.exists() else None
    if before is None:
        print(f"note: {MAIN_RUN} does not exist; run scripts/main.sh first to check that it stays unchanged")
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "configs").symlink_to(ROOT / "configs")
        os.chdir(scratch)
        for number, (page, block) in enumerate(blocks, start=1):
            started = time.perf_counter()
            exec(compile(block, f"{page} python block {number}", "exec"), {"__name__": "__readme__"})  # noqa: S102
            print(f"{page} python block {number}: ran in {time.perf_counter() - started:.1f} s")
    if before is not None:
        after = digest(MAIN_RUN) if MAIN_RUN.exists() else {}
        if after != before:
            changed = sorted(set(before) ^ set(after) | {k for k in before if after.get(k) != before[k]})
            print(f"FAILED: the snippets changed {MAIN_RUN}: {', '.join(changed)}")
            return 1
        print(f"{MAIN_RUN} unchanged ({len(before)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
