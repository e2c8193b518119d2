"""Model registry: every architecture registers itself under a short name, built by ``MODELS.build``."""

from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from neurop.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")

# Importing the model modules registers them: every module of this package is imported, so a new
# architecture only needs its own file with ``@MODELS.register("name")``.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

from neurop.models.fno import FNO  # noqa: E402

__all__ = ["FNO", "MODELS"]
