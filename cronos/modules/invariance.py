"""The sizes at which the CPU's float32 kernels give an example the same bits in any batch.

Two facts, measured on the CPU in float32 (docs/batch_invariance.md):

- A matrix product picks its kernel by its number of rows: products of 1-3 rows take others, whose
  bits for a row change with the other dimensions; from 4 rows on, a row's bits do not depend on
  the rows beside it.  So the network's products (linear layers, attention's query rows, the
  recurrent cells' steps) widen 1-3 rows with zeros to ``ROW_MULTIPLE``, and a batch needs no
  filler rows.
- A softmax over keys, and a weighted sum of values, split their reduction by the number of keys.
  Attention over a multiple of ``KEY_MULTIPLE`` keys (the float32 lanes of an AVX-512 register),
  the added ones masked, gives a query's attention the same bits whatever its batch's longest source.

Both are read at call time (``invariance.ROW_MULTIPLE``), so a test can set them to 1 and watch the
bits move.

Both facts hold for MKL's matrix products only in its strict reproducible mode on some CPUs: on an
Intel Xeon with AVX-512 (Sapphire Rapids), MKL's default mode gave a row other bits at every row
count from 1 to 10 than in a 256-row product, for layers from 11 x 11 to 512 x 9,923, and P0 failed
for a GRU with additive attention and for ensembles; in strict mode (``MKL_CBWR=AUTO,STRICT``), no
row count from 1 to 64 differed, at one thread and at two, and products were no slower.  cronos
asks for that mode when it is imported (``use_reproducible_products``).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ROW_MULTIPLE", "KEY_MULTIPLE", "rows_to_add", "rows_short", "key_width", "matmul_by_rows", "use_reproducible_products"]

ROW_MULTIPLE = 4
KEY_MULTIPLE = 16
MKL_MODE = "AUTO,STRICT"  # MKL's best code for this CPU, each product's sums in a fixed order


def use_reproducible_products() -> None:
    """Ask MKL for its strict reproducible mode, unless the user chose a mode (``MKL_CBWR``).  MKL
    reads the setting at its first product, so this holds when cronos is imported before any
    matrix product is computed; the mode belongs to the process, as MKL allows only one."""
    os.environ.setdefault("MKL_CBWR", MKL_MODE)


def rows_to_add(rows: int) -> int:
    """How many filler rows make ``rows`` a multiple of ``ROW_MULTIPLE``."""
    return -rows % ROW_MULTIPLE


def rows_short(rows: int) -> int:
    """How many rows a product of ``rows`` lacks to be one of at least ``ROW_MULTIPLE`` rows (0
    from there on: a row's bits do not depend on the rows beside it)."""
    return max(ROW_MULTIPLE - rows, 0)


def key_width(keys: int) -> int:
    """``keys`` rounded up to a multiple of ``KEY_MULTIPLE``."""
    return -(-keys // KEY_MULTIPLE) * KEY_MULTIPLE


def matmul_by_rows(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for ``a [..., M, K]``, ``b [..., K, N]``, with 1-3 rows of ``a`` widened with zeros
    to ``ROW_MULTIPLE`` for the product and cut back after it: a greedy step's attention has one
    query per row (M = 1), a beam step's one per beam."""
    rows = a.size(-2)
    extra = rows_short(rows)
    if not extra:
        return torch.matmul(a, b)
    return torch.matmul(F.pad(a, (0, 0, 0, extra)), b)[..., :rows, :]
