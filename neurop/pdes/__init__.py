"""PDE families: input samplers, numerical solvers and residuals. Importing registers them."""

# The solver modules are imported for their registration in PDES.
from neurop.pdes import burgers, darcy, diffusion_sorption, navier_stokes
from neurop.pdes.base import PDES, FieldSpec, PDEGenerator

__all__ = ["PDES", "FieldSpec", "PDEGenerator", "burgers", "darcy", "diffusion_sorption", "navier_stokes"]
