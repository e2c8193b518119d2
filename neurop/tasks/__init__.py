"""LightningModules that train models: supervised operator learning (and, later, physics-informed tasks)."""

from neurop.tasks.operator import OperatorTask

__all__ = ["OperatorTask"]
