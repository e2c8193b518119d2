"""Relative Lp and H1 losses on gridded fields; the training losses and the reported metrics share them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
Derivative = Literal["spectral", "fd"]

_EPS = 1e-12


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim < 2:
        raise ValueError(f"expected at least (batch, ...) tensors, got shape {tuple(pred.shape)}")


def relative_lp(
    pred: Tensor, target: Tensor, p: float = 2.0, reduction: Reduction = "mean", eps: float = _EPS
) -> Tensor:
    """Relative Lp error ``‖pred − target‖_p / ‖target‖_p`` per sample, then reduced.

    All non-batch axes (channels and grid) are flattened into one vector per sample, as in the FNO
    paper's loss; grid-spacing factors cancel in the ratio, so the value does not depend on the grid.

    Parameters
    ----------
    pred, target : Tensor, shape (B, ...)
        Prediction and reference on the same grid.
    p : float
        Order of the norm, ``p >= 1``.
    reduction : {"mean", "sum", "none"}
        How per-sample errors are combined; ``"none"`` returns shape (B,).
    eps : float
        Guards a zero target.

    Returns
    -------
    Tensor
        Scalar, or shape (B,) for ``reduction="none"``.
    """
    _check_pair(pred, target)
    if not p >= 1:
        raise ValueError(f"p must be >= 1, got {p}")
    diff = (pred - target).flatten(1)
    ref = target.flatten(1)
    num = torch.linalg.vector_norm(diff, ord=p, dim=1)
    den = torch.linalg.vector_norm(ref, ord=p, dim=1)
    return _reduce(num / (den + eps), reduction)


def relative_l2(pred: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Relative L2 error per sample (see :func:`relative_lp`)."""
    return relative_lp(pred, target, p=2.0, reduction=reduction)


def spatial_gradient(
    u: Tensor, dim: int, derivative: Derivative = "fd", length: float = 1.0, periodic: bool = False
) -> list[Tensor]:
    """Partial derivatives of ``u`` along each of its last ``dim`` axes.

    Parameters
    ----------
    u : Tensor, shape (B, C, *spatial)
        Field on a uniform grid of the box ``[0, length]^dim``.
    dim : int
        Number of trailing spatial axes (1, 2 or 3).
    derivative : {"fd", "spectral"}
        ``"fd"``: second-order central differences (one-sided at the ends unless ``periodic``).
        ``"spectral"``: exact differentiation of the Fourier interpolant; only for periodic data.
    length : float
        Side length of the domain.
    periodic : bool
        Periodic grid (spacing ``length / n``, end point excluded) or one that includes both ends
        (spacing ``length / (n − 1)``).

    Returns
    -------
    list of Tensor
        ``dim`` tensors shaped like ``u``.
    """
    if dim < 1 or dim > u.ndim - 1:
        raise ValueError(
            f"dim must be in [1, {u.ndim - 1}] for a tensor of shape {tuple(u.shape)}, got {dim}"
        )
    axes = list(range(u.ndim - dim, u.ndim))
    if derivative == "spectral":
        if not periodic:
            raise ValueError("derivative='spectral' needs periodic data; use derivative='fd' otherwise")
        grads = []
        for ax in axes:
            n = u.shape[ax]
            uh = torch.fft.rfft(u, dim=ax)
            k = torch.fft.rfftfreq(n, d=length / n, device=u.device, dtype=u.dtype) * (2 * math.pi)
            if n % 2 == 0:
                # The Nyquist mode's derivative is not real-representable; drop it (standard practice).
                k[-1] = 0.0
            shape = [1] * u.ndim
            shape[ax] = k.numel()
            grads.append(torch.fft.irfft(uh * (1j * k.view(shape)), n=n, dim=ax))
        return grads
    if derivative == "fd":
        grads = []
        for ax in axes:
            n = u.shape[ax]
            if periodic:
                h = length / n
                grads.append((torch.roll(u, -1, dims=ax) - torch.roll(u, 1, dims=ax)) / (2 * h))
            else:
                if n < 3:
                    raise ValueError(f"finite differences need >= 3 points per axis, got {n} on axis {ax}")
                h = length / (n - 1)
                grads.append(torch.gradient(u, spacing=h, dim=ax, edge_order=2)[0])
        return grads
    raise ValueError(f"derivative must be 'fd' or 'spectral', got {derivative!r}")


def relative_h1(
    pred: Tensor,
    target: Tensor,
    dim: int,
    derivative: Derivative = "fd",
    periodic: bool = False,
    length: float = 1.0,
    seminorm: bool = False,
    reduction: Reduction = "mean",
    eps: float = _EPS,
) -> Tensor:
    """Relative H1 error per sample: ``‖e‖_H1 / ‖target‖_H1`` with ``‖v‖²_H1 = ‖v‖² + Σ_i ‖∂_i v‖²``.

    Parameters
    ----------
    pred, target : Tensor, shape (B, C, *spatial)
        ``dim`` trailing spatial axes on a uniform grid of ``[0, length]^dim``.
    dim : int
        Spatial dimension.
    derivative : {"fd", "spectral"}
        How derivatives are taken, see :func:`spatial_gradient`.
    periodic : bool
        Whether the grid is periodic (excludes the end point).
    length : float
        Domain side length; it sets the relative weight of the L2 and gradient terms.
    seminorm : bool
        Use only the gradient terms (relative H1 seminorm).
    reduction : {"mean", "sum", "none"}
        Combination of the per-sample values.

    Returns
    -------
    Tensor
        Scalar, or shape (B,) for ``reduction="none"``.
    """
    _check_pair(pred, target)
    err = pred - target

    def sq_norm(v: Tensor) -> Tensor:
        total = sum(
            g.flatten(1).pow(2).sum(1) for g in spatial_gradient(v, dim, derivative, length, periodic)
        )
        if not seminorm:
            total = total + v.flatten(1).pow(2).sum(1)
        return total

    return _reduce(torch.sqrt(sq_norm(err)) / (torch.sqrt(sq_norm(target)) + eps), reduction)


LossFn = Callable[..., Tensor]

LOSSES: dict[str, LossFn] = {"rel_l2": relative_l2, "rel_lp": relative_lp, "rel_h1": relative_h1}
"""Losses by name, as used in the model configs (``loss: rel_l2``)."""


def get_loss(name: str) -> LossFn:
    """Return the loss function registered as ``name``; unknown names list the choices."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}") from None
