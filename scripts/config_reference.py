#!/usr/bin/env python3
"""Print the config reference (every key, its default and meaning) as a markdown table for README.md."""
from cronos.config import all_keys


def main() -> None:
    print("| key | default | meaning |\n|---|---|---|")
    for key, default, doc in all_keys():
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        print(f"| `{key}` | `{shown}` | {doc} |")


if __name__ == "__main__":
    main()
