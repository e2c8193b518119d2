"""PDE families: input samplers, numerical solvers and residuals. Importing registers them."""

from neurop.pdes.base import PDES, FieldSpec, PDEGenerator

__all__ = ["PDES", "FieldSpec", "PDEGenerator"]
