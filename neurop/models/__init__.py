"""Model registry: every architecture registers itself under a short name, built by ``MODELS.build``."""

from __future__ import annotations

from torch import nn

from neurop.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")

# Importing the model modules registers them; add new architectures to this list.
from neurop.models import fno  # noqa: E402, F401
from neurop.models.fno import FNO  # noqa: E402

__all__ = ["FNO", "MODELS"]
