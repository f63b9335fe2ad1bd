"""The layers call downwards only: nothing below the high-level object reaches back up into it.

A module may import from packages of lower layers (and from its own package); docs/ARCHITECTURE.md
draws the same picture.
"""
from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from cronos.moved import MOVED

PACKAGE = Path(__file__).resolve().parent.parent / "cronos"

# lowest first: packages (and the few top-level modules) by job; a unit imports only from layers
# before its own, and freely within itself
LAYERS = [
    {"files", "version", "moved"},
    {"config"},
    {"data", "device", "precision"},
    {"modules"},  # attention, encoders, decoders, the network, its mask and loss
    {"decoding", "storage"},  # searches, scoring, evaluation | checkpoints, averaging, export
    {"explain"},
    {"training", "translator"},
    {"model", "outputs", "server"},
    {"api", "cli"},
    {"__init__", "__main__"},
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def top_level(path: Path) -> str:
    """``cronos/data/batch.py`` -> ``data``; ``cronos/model.py`` -> ``model``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def cronos_imports(path: Path) -> set[str]:
    """The top-level cronos modules that ``path`` imports (relative or absolute imports)."""
    own_depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for cronos/x.py, 1 for cronos/data/x.py
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to the package root, then take the first name
                up = node.level - 1 - own_depth
                inside = [] if up > 0 else list(path.relative_to(PACKAGE).parts[: own_depth - (node.level - 1)])
                names = inside + (node.module.split(".") if node.module else [])
                if names:
                    found.add(names[0])
                else:  # ``from . import x``
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "cronos":
                found.add(node.module.split(".")[1] if "." in node.module else "__init__")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert {top_level(path) for path in MODULES} == set(LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_import_only_from_lower_layers(path):
    own = top_level(path)
    upward = {name for name in cronos_imports(path) - {own} if LAYER[name] >= LAYER[own]}
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {LAYER[own]}) imports {sorted(upward)} from its own " \
                       "layer or above"


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_a_module_that_moved_imports_by_its_old_name_with_a_warning_at_the_importing_line(old, new, monkeypatch):
    """cronos 0.1's flat names keep working for one release: the same module, and a warning that
    names the new place and points at the user's import."""
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new} in cronos 0.2") as caught:
        __import__(old)
    assert sys.modules[old] is importlib.import_module(new)
    assert caught[0].filename == __file__


def test_the_packages_that_kept_an_old_modules_name_keep_its_public_names():
    from cronos.explain import EXPLAIN_METHODS, Explanation, explain_decoded, explain_forced  # noqa: F401
    from cronos.training import Trainer, TrainingError, TrainingHistory, build_optimizer  # noqa: F401
