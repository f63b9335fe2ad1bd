#!/usr/bin/env python3
"""Download Multi30k (task 1, de-en, raw text) from the official multi30k/dataset repository into
data/multi30k/, gunzip it, and check every file's SHA-256 against the published snapshot.

The data are for non-commercial research and education (Flickr terms); never commit them.
Cite: Elliott, Frank, Sima'an, Specia. "Multi30K: Multilingual English-German Image Descriptions",
VL 2016, doi:10.18653/v1/W16-3210.

    python scripts/download_multi30k.py                # -> data/multi30k/
    python scripts/download_multi30k.py --out DIR
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import urllib.request
from pathlib import Path

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw"
SHA256 = {  # of the gunzipped files (snapshot a3d2e0d of multi30k/dataset)
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "val.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "val.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "test_2016_flickr.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test_2016_flickr.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
}


def fetch(name: str, base_url: str, out: Path) -> None:
    target = out / name
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256[name]:
        print(f"{target}: already there, checksum ok")
        return
    url = f"{base_url}/{name}.gz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = gzip.decompress(response.read())
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[name]:
        raise SystemExit(f"{url}: checksum mismatch (got {digest}, expected {SHA256[name]}); not written")
    temporary = target.with_suffix(target.suffix + ".part")
    temporary.write_bytes(data)
    temporary.replace(target)
    lines = data.count(b"\n")
    print(f"{target}: {lines} lines, checksum ok")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "multi30k")
    parser.add_argument("--base-url", default=BASE_URL, help="where the .gz files are (a mirror, or file://...)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in SHA256:
        try:
            fetch(name, args.base_url.rstrip("/"), args.out)
        except OSError as error:
            print(f"download_multi30k: {name}: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
