"""Grid-coordinate embeddings and domain-padding helpers for grid-based neural operators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def grid_coords(
    shape: tuple[int, ...] | list[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """One 1-D coordinate vector per axis of a uniform grid on the unit cube.

    Point ``j`` of an axis with ``n`` points sits at ``j / n``, i.e. coordinates lie in ``[0, 1)``: the
    same physical point keeps the same coordinate when the grid is refined by an integer factor, which
    is what zero-shot super-resolution needs on periodic data.

    Parameters
    ----------
    shape : sequence of int
        Grid size per axis, each ``>= 1``.

    Returns
    -------
    list of Tensor
        ``len(shape)`` tensors; tensor ``i`` has shape ``(shape[i],)``.
    """
    for i, n in enumerate(shape):
        if n < 1:
            raise ValueError(f"grid size along axis {i} must be >= 1, got {n}")
    return [torch.arange(n, device=device, dtype=dtype) / n for n in shape]


def grid_embedding(
    shape: tuple[int, ...] | list[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Dense coordinate channels of a grid, channels first.

    Returns
    -------
    Tensor, shape (len(shape), *shape)
        Channel ``i`` holds the axis-``i`` coordinate (see :func:`grid_coords`) at every grid point.
    """
    return torch.stack(torch.meshgrid(*grid_coords(shape, device, dtype), indexing="ij"), dim=0)


def padding_sizes(shape: tuple[int, ...] | list[int], fraction: float) -> list[int]:
    """Number of zero points appended to each axis for a domain-padding ``fraction``.

    Parameters
    ----------
    shape : sequence of int
        Spatial size per axis.
    fraction : float
        Padding as a fraction of each axis' size, ``>= 0``; rounded to the nearest integer per axis.

    Returns
    -------
    list of int
        Points appended on the right of each axis.
    """
    if not fraction >= 0:
        raise ValueError(f"domain_padding must be >= 0, got {fraction}")
    return [int(round(n * fraction)) for n in shape]


def pad_right(x: Tensor, pads: list[int]) -> Tensor:
    """Zero-pad the spatial axes of a channels-first tensor on the right.

    Parameters
    ----------
    x : Tensor, shape (B, C, *spatial)
    pads : list of int
        Points appended per spatial axis (``len(pads) == x.ndim - 2``).

    Returns
    -------
    Tensor, shape (B, C, *(spatial + pads))
    """
    if not any(pads):
        return x
    # F.pad lists (left, right) pairs from the last axis backwards.
    spec: list[int] = []
    for p in reversed(pads):
        spec += [0, p]
    return F.pad(x, spec)


def crop(x: Tensor, shape: tuple[int, ...] | list[int]) -> Tensor:
    """Undo :func:`pad_right`: keep the first ``shape`` points of each spatial axis.

    Parameters
    ----------
    x : Tensor, shape (B, C, *padded)
    shape : sequence of int
        The unpadded spatial size.

    Returns
    -------
    Tensor, shape (B, C, *shape)
        A view of ``x`` (``x`` itself when nothing was padded).
    """
    if list(x.shape[2:]) == list(shape):
        return x
    return x[(slice(None), slice(None)) + tuple(slice(0, n) for n in shape)]
