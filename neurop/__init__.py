"""neurop: neural PDE solvers and operator learning."""

__version__ = "0.1.0"
