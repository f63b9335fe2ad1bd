"""Modules that moved in cronos 0.2 stay importable by their old names for one release.

``import cronos.search`` gives ``cronos.decoding.search`` itself (one module, not a copy), with a
``DeprecationWarning`` that names the new place; ``cronos.explain`` and ``cronos.training`` are
packages now and keep the public names of the modules they were.  To be removed in cronos 0.3.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED = {  # old name -> where it lives now
    "cronos.network": "cronos.modules.network", "cronos.masking": "cronos.modules.masking",
    "cronos.loss": "cronos.modules.loss", "cronos.invariance": "cronos.modules.invariance",
    "cronos.search": "cronos.decoding.search", "cronos.inference": "cronos.decoding.inference",
    "cronos.ensemble": "cronos.decoding.ensemble", "cronos.scoring": "cronos.decoding.scoring",
    "cronos.evaluation": "cronos.decoding.evaluation",
    "cronos.attribution": "cronos.explain.attribution", "cronos.report": "cronos.explain.report",
    "cronos.checkpoint": "cronos.storage.checkpoint", "cronos.model_file": "cronos.storage.checkpoint",
    "cronos.averaging": "cronos.storage.averaging", "cronos.export": "cronos.storage.export",
    "cronos.training_state": "cronos.training.state", "cronos.validation": "cronos.training.validation",
    "cronos.stopping": "cronos.training.stopping", "cronos.run_folder": "cronos.training.run_folder",
    "cronos.distributed": "cronos.training.distributed", "cronos.board": "cronos.training.board",
    "cronos.progress": "cronos.training.progress", "cronos.batching": "cronos.server.batching",
}
class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module at its new place."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new} in cronos 0.2; the old name goes in 0.3",
                      DeprecationWarning, stacklevel=2)  # the import machinery's frames are skipped
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new place is already loaded."""


def install() -> None:
    """Let the old names be found (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
