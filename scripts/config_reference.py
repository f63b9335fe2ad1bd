#!/usr/bin/env python3
"""Print the config reference (every key, its default and meaning) as a markdown table.

    python scripts/config_reference.py            # print it
    python scripts/config_reference.py --update   # rewrite the table in docs/configuration.md between its markers
"""
import argparse
from pathlib import Path

from cronos.config import all_keys

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def table() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, doc in all_keys():
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        rows.append(f"| `{key}` | `{shown}` | {doc} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite the table in docs/configuration.md")
    args = parser.parse_args()
    if not args.update:
        print(table())
        return
    text = REFERENCE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    REFERENCE.write_text(text[:start] + "\n" + table() + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
