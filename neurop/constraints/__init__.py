"""Differentiable hard PDE constraints on grid models, global or split among a mixture of experts."""

from neurop.constraints.layer import ExpertFields, HardConstraint
from neurop.constraints.partition import check_partition, from_blocks, interface_jumps, to_blocks
from neurop.constraints.residual import GridResidual
from neurop.constraints.residuals import GRID_RESIDUALS, build_residual
from neurop.constraints.solve import ConstraintSolveError, SolveInfo, solve_weights

__all__ = [
    "GRID_RESIDUALS",
    "ConstraintSolveError",
    "ExpertFields",
    "GridResidual",
    "HardConstraint",
    "SolveInfo",
    "build_residual",
    "check_partition",
    "from_blocks",
    "interface_jumps",
    "solve_weights",
    "to_blocks",
]
