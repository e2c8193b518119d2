"""Fixed partitions of a grid into equal blocks, one per expert, and the reshapes between grid and blocks.

An axis of n points is cut into K blocks of n/K points when K divides n. Node grids that include both
ends of an interval (n = K s + 1 points, e.g. the 33² Darcy grid) are cut into K blocks of s + 1 points
that share their interface node: each expert then covers a closed sub-interval, and a shared node takes
its value from the later block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _axis_layout(n: int, k: int) -> tuple[int, int]:
    """(block size, step) of an axis of ``n`` points cut into ``k`` blocks."""
    if n % k == 0:
        return n // k, n // k
    return (n - 1) // k + 1, (n - 1) // k


def check_partition(grid: Sequence[int], parts: Sequence[int] | None) -> tuple[int, ...]:
    """Validate a partition of ``grid`` into ``parts[a]`` equal blocks along each axis ``a``.

    Parameters
    ----------
    grid : sequence of int
        Grid points per axis.
    parts : sequence of int or None
        Blocks per axis; ``None`` means one block (the global constraint).

    Returns
    -------
    tuple of int
        The partition, one entry per axis.
    """
    grid = tuple(int(n) for n in grid)
    if parts is None:
        return (1,) * len(grid)
    parts = tuple(parts)
    if len(parts) != len(grid):
        raise ValueError(
            f"experts must give one block count per grid axis ({len(grid)} axes, grid {list(grid)}), "
            f"got {list(parts)}"
        )
    for axis, (n, p) in enumerate(zip(grid, parts, strict=True)):
        if isinstance(p, bool) or int(p) != p or p < 1:
            raise ValueError(f"experts[{axis}] must be an integer >= 1, got {p!r}")
        p = int(p)
        if p > 1 and n % p and ((n - 1) % p or (n - 1) // p < 2):
            raise ValueError(
                f"experts[{axis}]={p} divides neither grid axis {axis} of size {n} nor {n - 1} (grid "
                f"{list(grid)}, experts {list(parts)}); choose a divisor of {n} or of {n - 1}"
            )
        if p > 1 and n // p < 2:
            raise ValueError(
                f"experts[{axis}]={p} leaves fewer than 2 points per block on axis {axis} of size {n}"
            )
    return tuple(int(p) for p in parts)


def n_blocks(parts: Sequence[int]) -> int:
    """Number of experts of a partition."""
    return math.prod(parts)


def block_shape(grid: Sequence[int], parts: Sequence[int]) -> tuple[int, ...]:
    """Points per axis of every block."""
    return tuple(_axis_layout(n, p)[0] for n, p in zip(grid, parts, strict=True))


def to_blocks(x: Tensor, parts: Sequence[int]) -> Tensor:
    """Cut the grid axes of ``x`` into blocks and move the blocks into the batch axis.

    Parameters
    ----------
    x : Tensor, shape (B, C, *grid)
    parts : sequence of int
        Blocks per grid axis (validated by :func:`check_partition`).

    Returns
    -------
    Tensor, shape (B * K, C, *block)
        Block ``k`` of sample ``b`` at index ``b * K + k`` (blocks in row-major order of ``parts``).
    """
    b, c, *grid = x.shape
    d = len(grid)
    y = x
    for a, (n, p) in enumerate(zip(grid, parts, strict=True)):
        size, step = _axis_layout(n, p)
        y = y.unfold(2 + a, size, step)  # axis 2 + a becomes the block index, the window goes last
    # (B, C, K1, ..., Kd, s1, ..., sd) -> (B, K1, ..., Kd, C, s1, ..., sd)
    perm = [0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d)]
    return y.permute(perm).reshape(b * n_blocks(parts), c, *block_shape(grid, parts))


def from_blocks(x: Tensor, parts: Sequence[int], grid: Sequence[int] | None = None) -> Tensor:
    """Inverse of :func:`to_blocks`: (B * K, C, *block) -> (B, C, *grid).

    ``grid`` is needed only when blocks share interface nodes (it is then ambiguous from the blocks).
    """
    bk, c, *block = x.shape
    d = len(block)
    k = n_blocks(parts)
    b = bk // k
    if grid is None:
        grid = [p * s for p, s in zip(parts, block, strict=True)]
    y = x.reshape(b, *parts, c, *block)
    y = y.permute(0, 1 + d, *range(1, 1 + d), *range(2 + d, 2 + 2 * d))  # (B, C, K1..Kd, s1..sd)
    blocks_idx, local_idx = [], []
    for n, p in zip(grid, parts, strict=True):
        size, step = _axis_layout(int(n), p)
        i = torch.arange(int(n), device=x.device)
        kk = torch.clamp(i // step, max=p - 1)
        blocks_idx.append(kk)
        local_idx.append(i - kk * step)
    mesh_k = torch.meshgrid(*blocks_idx, indexing="ij")
    mesh_l = torch.meshgrid(*local_idx, indexing="ij")
    return y[(slice(None), slice(None), *mesh_k, *mesh_l)]


def block_mask(mask: Tensor, parts: Sequence[int]) -> Tensor:
    """Cut a grid mask (*grid) into per-block masks, shape (K, *block)."""
    return to_blocks(mask[None, None], parts)[:, 0]


def interface_jumps(fields: Tensor, weights: Tensor, parts: Sequence[int]) -> Tensor:
    """Disagreement of neighbouring experts where their blocks meet.

    Expert k's field ``u_k = Σ_n ω_{k,n} b_n`` is defined on the whole grid, so two neighbouring experts
    can be compared on the nodes where their blocks meet: the shared node of blocks that share one, or
    else the last node of the first block and the first node of the second.

    Parameters
    ----------
    fields : Tensor, shape (B, N, *grid)
        The basis functions.
    weights : Tensor, shape (B, K, N)
        Every expert's weights (experts in row-major order of ``parts``).
    parts : sequence of int
        Blocks per grid axis.

    Returns
    -------
    Tensor, shape (B, J)
        ``u_k − u_k'`` at every interface node of every pair of neighbouring blocks (J = 0 for one block).
    """
    b, n, *grid = fields.shape
    parts = check_partition(grid, parts)
    w = weights.reshape(b, *parts, n)
    out = []
    for a, (size_a, p) in enumerate(zip(grid, parts, strict=True)):
        if p == 1:
            continue
        size, step = _axis_layout(size_a, p)
        other = [q for i, q in enumerate(parts) if i != a]
        k_other = math.prod(other)
        for j in range(p - 1):
            nodes = [(j + 1) * step] if size != step else [(j + 1) * size - 1, (j + 1) * size]
            dw = (w.select(1 + a, j) - w.select(1 + a, j + 1)).reshape(b * k_other, n)
            for i in nodes:
                cross = fields.select(2 + a, i)  # (B, N, *grid without axis a)
                if other:
                    cross = to_blocks(cross, other)  # (B * K_other, N, *cross-section of a block)
                out.append(torch.einsum("kn,kn...->k...", dw, cross).reshape(b, -1))
    return torch.cat(out, dim=1) if out else fields.new_zeros(b, 0)


__all__ = [
    "block_mask",
    "block_shape",
    "check_partition",
    "from_blocks",
    "interface_jumps",
    "n_blocks",
    "to_blocks",
]
