"""The grid-residual interface the hard-constraint layer imposes, and finite-difference helpers for it.

A grid residual is ``r = g(D_1 u, ..., D_F u; a)`` at every grid point, where the ``D_k`` are linear
operators on the grid (derivatives, or a Poisson solve for a velocity) and ``g`` acts point by point on
the F feature values and the inputs ``a`` there. Since ``u = Σ_n ω_n b_n`` is linear in the weights, the
features of ``u`` are the same combination of the features of the basis functions, so the least-squares
problem for ω only needs the features of each basis function at the sampled points; boundary and initial
conditions are linear rows ``Σ_n ω_n (B b_n)(q) = h(q)``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor

from neurop.constraints.partition import block_mask, check_partition, to_blocks


class GridResidual(abc.ABC):
    """A PDE residual of a scalar field on a uniform grid (see the module docstring).

    Attributes
    ----------
    name : str
        The PDE's name (as in ``neurop.pdes.PDES``).
    n_features : int
        F, the number of linear features ``D_k u``.
    linear : bool
        ``g`` is affine in the features (a single linear least-squares solve suffices).
    local : bool
        The features at a point depend only on values near it, so they can be computed on any block of
        the grid alone; experts of a local residual see nothing outside their block.
    periodic : tuple of bool
        Per grid axis, whether the domain is periodic along it.
    """

    name: str = ""
    n_features: int = 1
    linear: bool = True
    local: bool = True
    periodic: tuple[bool, ...] = ()

    @property
    def dim(self) -> int:
        """Number of grid axes."""
        return len(self.periodic)

    @abc.abstractmethod
    def spacing(self, grid: Sequence[int]) -> tuple[float, ...]:
        """Grid step per axis for a grid of ``grid`` points."""

    @abc.abstractmethod
    def interior(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Bool mask (*grid) of the points where the PDE residual is imposed (boundary rows elsewhere)."""

    @abc.abstractmethod
    def features(
        self, u: Tensor, inputs: Tensor, spacing: Sequence[float], periodic: Sequence[bool]
    ) -> tuple[Tensor, Tensor]:
        """Linear features of every channel of ``u``.

        Parameters
        ----------
        u : Tensor, shape (B, C, *grid)
            Fields (the basis functions, C = N) on a grid or a block of it.
        inputs : Tensor, shape (B, C_in, *grid)
            The PDE's inputs on the same points (e.g. the Darcy coefficient).
        spacing : sequence of float
            Grid step per axis.
        periodic : sequence of bool
            Whether each axis of *this* grid wraps around (false for an axis cut into blocks).

        Returns
        -------
        features : Tensor, shape (B, C, F, *grid)
            Linear in ``u``.
        valid : Tensor, bool, shape (*grid)
            Where the features are defined (e.g. not on the edge row of a stencil that needs neighbours).
        """

    @abc.abstractmethod
    def pointwise(self, features: Tensor, inputs: Tensor) -> Tensor:
        """The residual from the features of ``u`` at P points.

        Parameters
        ----------
        features : Tensor, shape (B, F, P)
        inputs : Tensor, shape (B, C_in, P)

        Returns
        -------
        Tensor, shape (B, P)
            Must act point by point (point p of the output depends only on point p of the inputs).
        """

    @abc.abstractmethod
    def boundary(self, u: Tensor, inputs: Tensor, spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
        """Linear initial/boundary rows on the whole grid.

        Parameters
        ----------
        u : Tensor, shape (B, C, *grid)
        inputs : Tensor, shape (B, C_in, *grid)
        spacing : sequence of float

        Returns
        -------
        rows : Tensor, shape (B, C, Q)
            The row functional applied to every channel of ``u``.
        target : Tensor, shape (B, Q)
            Its required value.
        """

    def boundary_index(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor | None:
        """Flat grid index (row-major) of where each boundary row of :meth:`boundary` sits, shape (Q,).

        Experts with ``expert_boundary="local"`` keep the rows inside their block. ``None`` (the default)
        means the rows have no location, so only global rows are possible.
        """
        return None

    def field_residual(self, u: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """The residual of a field at all interior points and its boundary-row mismatch.

        Parameters
        ----------
        u : Tensor, shape (B, 1, *grid)
        inputs : Tensor, shape (B, C_in, *grid)

        Returns
        -------
        interior : Tensor, shape (B, P)
            PDE residual at the interior points (P = number of interior points).
        boundary : Tensor, shape (B, Q)
            ``rows(u) − target``.
        """
        grid = tuple(u.shape[2:])
        h = self.spacing(grid)
        feats, valid = self.features(u, inputs, h, self.periodic)
        mask = self.interior(grid, u.device) & valid
        f = feats[:, 0][..., mask]  # (B, F, P)
        r = self.pointwise(f, inputs[..., mask])
        rows, target = self.boundary(u, inputs, h)
        return r, rows[:, 0] - target

    def block_residual(
        self, blocks: Tensor, inputs: Tensor, parts: Sequence[int], grid: Sequence[int]
    ) -> Tensor:
        """The residual each expert imposes: its own field on its own block, with the block's stencils.

        Unlike :meth:`field_residual` of the assembled field, this does not see the jumps between
        neighbouring blocks (nothing in the experts' problems does either).

        Parameters
        ----------
        blocks : Tensor, shape (B * K, 1, *block)
            Expert k's field on block k at index ``b * K + k`` (as returned by
            :meth:`~neurop.constraints.layer.HardConstraint.forward` with ``return_experts=True``, as
            ``ExpertFields.blocks``).
        inputs : Tensor, shape (B, C_in, *grid)
        parts : sequence of int
            Blocks per grid axis.
        grid : sequence of int
            The whole grid.

        Returns
        -------
        Tensor, shape (B, P)
            The residual at the interior points of every block, block after block (a node shared by two
            blocks counts once for each).
        """
        if not self.local:
            raise ValueError(
                f"the grid residual of pde {self.name!r} is not local (its features need the whole grid), "
                "so it has no per-block residual; use the residual of the assembled field"
            )
        parts = check_partition(grid, parts)
        h = self.spacing(grid)
        periodic = [p and k == 1 for p, k in zip(self.periodic, parts, strict=True)]
        blocks_in = to_blocks(inputs, parts)
        feats, valid = self.features(blocks, blocks_in, h, periodic)
        mask = block_mask(self.interior(grid, blocks.device), parts) & valid  # (K, *block)
        bk = blocks.shape[0]
        r = self.pointwise(
            feats[:, 0].reshape(bk, feats.shape[2], -1), blocks_in.reshape(bk, inputs.shape[1], -1)
        )
        k = mask.shape[0]
        return r.reshape(bk // k, -1)[:, mask.reshape(-1)]


# ---------------------------------------------------------------------------------------------- stencils
def diff1(f: Tensor, h: float, dim: int, periodic: bool) -> Tensor:
    """Second-order first derivative along ``dim``: central inside, one-sided (3 points) at open ends."""
    if periodic:
        return (f.roll(-1, dim) - f.roll(1, dim)) / (2 * h)
    n = f.shape[dim]
    if n < 3:
        raise ValueError(f"a first derivative needs >= 3 points along axis {dim}, got {n}")
    return torch.gradient(f, spacing=h, dim=dim, edge_order=2)[0]


def diff2(f: Tensor, h: float, dim: int, periodic: bool) -> Tensor:
    """Second-order second derivative along ``dim``: 3-point inside, 4-point one-sided at open ends."""
    if periodic:
        return (f.roll(-1, dim) - 2 * f + f.roll(1, dim)) / (h * h)
    n = f.shape[dim]
    if n < 4:
        raise ValueError(f"a second derivative needs >= 4 points along axis {dim}, got {n}")
    x = f.movedim(dim, -1)
    inner = x[..., :-2] - 2 * x[..., 1:-1] + x[..., 2:]
    # 2u_0 − 5u_1 + 4u_2 − u_3 is the second-order one-sided second difference.
    first = 2 * x[..., :1] - 5 * x[..., 1:2] + 4 * x[..., 2:3] - x[..., 3:4]
    last = 2 * x[..., -1:] - 5 * x[..., -2:-1] + 4 * x[..., -3:-2] - x[..., -4:-3]
    return (torch.cat([first, inner, last], dim=-1) / (h * h)).movedim(-1, dim)


__all__ = ["GridResidual", "diff1", "diff2"]
