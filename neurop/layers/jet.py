"""Values with first and pure second derivatives (a "jet") propagated through pointwise networks.

Physics-informed losses need ``u``, ``∂u/∂x_j`` and ``∂²u/∂x_j²`` at collocation points. Nested
autograd computes them by differentiating the network's backward graph, which on a CPU costs several
full passes per derivative. Propagating the derivatives forward alongside the values (Taylor mode,
one matmul per layer for all of them) is exact, needs one backward pass for the loss, and is what
:class:`neurop.models.pinn.PINN` and :class:`neurop.models.pig.PIG` do. :func:`autograd_jet` is the
generic fallback (any callable) and the reference the fast paths are tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

JetActivation = Literal["tanh", "sin", "gelu"]
JET_ACTIVATIONS: tuple[str, ...] = ("tanh", "sin", "gelu")

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass
class Jet:
    """A field and its derivatives at ``N`` points of a ``d``-dimensional domain.

    Attributes
    ----------
    u : Tensor, shape (N, C)
        Values.
    du : Tensor, shape (N, d, C)
        First derivatives ``∂u/∂x_j`` along every input axis ``j``.
    d2u : Tensor, shape (N, len(second_axes), C)
        Pure second derivatives ``∂²u/∂x_j²`` for ``j`` in ``second_axes``.
    second_axes : tuple of int
        Input axes whose second derivatives are held.
    """

    u: Tensor
    du: Tensor
    d2u: Tensor
    second_axes: tuple[int, ...]

    def d(self, axis: int, channel: int = 0) -> Tensor:
        """``∂u_c/∂x_axis``, shape (N,)."""
        return self.du[:, axis, channel]

    def dd(self, axis: int, channel: int = 0) -> Tensor:
        """``∂²u_c/∂x_axis²``, shape (N,); the axis must be one of ``second_axes``."""
        try:
            k = self.second_axes.index(axis)
        except ValueError:
            raise KeyError(
                f"second derivative along axis {axis} was not computed; second_axes={self.second_axes}"
            ) from None
        return self.d2u[:, k, channel]

    def value(self, channel: int = 0) -> Tensor:
        """``u_c``, shape (N,)."""
        return self.u[:, channel]

    def rows(self, start: int, stop: int) -> Jet:
        """The jet of points ``start:stop``."""
        return Jet(self.u[start:stop], self.du[start:stop], self.d2u[start:stop], self.second_axes)


def input_jet(x: Tensor, second_axes: Sequence[int], scale: Tensor | None = None) -> Jet:
    """The jet of the (optionally rescaled) input coordinates themselves.

    Parameters
    ----------
    x : Tensor, shape (N, d)
        Points; pass already shifted coordinates when ``scale`` is given (``x̃ = scale·(x − lo) − 1``).
    second_axes : sequence of int
        Axes whose second derivatives are tracked (all zero here).
    scale : Tensor, shape (d,), optional
        ``dx̃_j/dx_j``; identity when omitted.

    Returns
    -------
    Jet
        ``u = x``, ``du[:, j, c] = scale_j δ_jc``, ``d2u = 0``.
    """
    n, d = x.shape
    diag = torch.ones(d, dtype=x.dtype, device=x.device) if scale is None else scale.to(x)
    du = torch.diag(diag).expand(n, d, d)
    d2u = x.new_zeros(n, len(second_axes), d)
    return Jet(x, du, d2u, tuple(int(a) for a in second_axes))


def jet_linear(jet: Jet, weight: Tensor, bias: Tensor | None) -> Jet:
    """``u ↦ u Wᵀ + b`` applied to the value and (without bias) to every derivative."""
    n, d, _ = jet.du.shape
    k = jet.d2u.shape[1]
    # One GEMM for the value and all derivatives: they are stacked along a row axis.
    stacked = torch.cat([jet.u[:, None], jet.du, jet.d2u], dim=1)
    out = stacked @ weight.t()
    # split, not slicing: the backward of three slices would zero-fill three full-size buffers.
    u, du, d2u = torch.split(out, [1, d, k], dim=1)
    u = u.squeeze(1)
    if bias is not None:
        u = u + bias
    return Jet(u, du, d2u, jet.second_axes)


def jet_input_linear(
    x: Tensor, scale: Tensor, weight: Tensor, bias: Tensor | None, second_axes: Sequence[int]
) -> Jet:
    """``jet_linear(input_jet(x, second_axes, scale), weight, bias)`` without materialising the input jet.

    The input's derivatives are constant (``diag(scale)``) and its second derivatives vanish, so the
    output's derivatives are the columns ``scale_j W[:, j]``, the same at every point (broadcast views).
    """
    n = x.shape[0]
    u = x @ weight.t()
    if bias is not None:
        u = u + bias
    cols = (weight * scale.to(weight)).t()  # (d, H): ∂(Wx̃)/∂x_j
    du = cols.unsqueeze(0).expand(n, -1, -1)
    d2u = u.new_zeros(1, len(second_axes), u.shape[1]).expand(n, -1, -1)
    return Jet(u, du, d2u, tuple(int(a) for a in second_axes))


def _act_derivs(name: str, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(f(z), f'(z), f''(z))`` for the jet activations."""
    if name == "tanh":
        h = torch.tanh(z)
        s = 1 - h * h
        return h, s, -2 * h * s
    if name == "sin":
        h = torch.sin(z)
        return h, torch.cos(z), -h
    if name == "gelu":
        pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))
        return z * cdf, cdf + z * pdf, pdf * (2 - z * z)
    raise ValueError(f"activation must be one of {JET_ACTIVATIONS}, got {name!r}")


def _select_axes(du: Tensor, axes: tuple[int, ...]) -> Tensor:
    """``du[:, axes]``; a split when the axes are contiguous (gather's backward is slow on CPU)."""
    d = du.shape[1]
    if axes == tuple(range(d)):
        return du
    if axes == tuple(range(axes[0], axes[0] + len(axes))):
        sizes = [axes[0], len(axes), d - axes[0] - len(axes)]
        return torch.split(du, sizes, dim=1)[1]
    return du[:, list(axes)]


def jet_activation(jet: Jet, name: str) -> Jet:
    """Element-wise activation with the chain rule ``(f∘z)'' = f'(z) z'' + f''(z) z'²``."""
    f0, f1, f2 = _act_derivs(name, jet.u)
    f1_ = f1[:, None]
    du = f1_ * jet.du
    if jet.second_axes:
        first = _select_axes(jet.du, jet.second_axes)
        d2u = f1_ * jet.d2u + f2[:, None] * first * first
    else:
        d2u = jet.d2u
    return Jet(f0, du, d2u, jet.second_axes)


def jet_fourier(jet: Jet, frequencies: Tensor) -> Jet:
    """Random Fourier features ``[cos(2πBx), sin(2πBx)]`` of an input jet.

    Parameters
    ----------
    jet : Jet
        Input coordinates (``C = d``).
    frequencies : Tensor, shape (m, d)
        ``B``.

    Returns
    -------
    Jet
        ``C = 2m`` channels.
    """
    z = jet_linear(jet, 2 * math.pi * frequencies, None)
    c, s = torch.cos(z.u), torch.sin(z.u)
    u = torch.cat([c, s], dim=-1)
    du = torch.cat([-s[:, None] * z.du, c[:, None] * z.du], dim=-1)
    if jet.second_axes:
        first = _select_axes(z.du, jet.second_axes)
        sq = first * first
        d2u = torch.cat([-s[:, None] * z.d2u - c[:, None] * sq, c[:, None] * z.d2u - s[:, None] * sq], dim=-1)
    else:
        d2u = u.new_zeros(u.shape[0], 0, u.shape[1])
    return Jet(u, du, d2u, jet.second_axes)


def autograd_jet(fn: Callable[[Tensor], Tensor], x: Tensor, second_axes: Sequence[int]) -> Jet:
    """The jet of any differentiable ``fn`` by nested autograd (slow, generic).

    Parameters
    ----------
    fn : callable
        ``fn(x) -> Tensor`` of shape (N, C), pointwise in the rows of ``x``.
    x : Tensor, shape (N, d)
    second_axes : sequence of int

    Returns
    -------
    Jet
        Differentiable with respect to ``fn``'s parameters (``create_graph=True``).
    """
    second = tuple(int(a) for a in second_axes)
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        u = fn(x)
        firsts, seconds = [], []
        for c in range(u.shape[1]):
            # materialize_grads / the requires_grad checks: affine (or constant) fn give zeros, not errors.
            (g,) = _grad(u[:, c].sum(), x)
            firsts.append(g)
            col = []
            for j in second:
                (h,) = _grad(g[:, j].sum(), x)
                col.append(h[:, j])
            seconds.append(torch.stack(col, dim=1) if col else g.new_zeros(g.shape[0], 0))
    du = torch.stack(firsts, dim=-1)
    d2u = torch.stack(seconds, dim=-1)
    return Jet(u, du, d2u, second)


def _grad(out: Tensor, x: Tensor) -> tuple[Tensor]:
    if not out.requires_grad:
        return (torch.zeros_like(x),)
    return torch.autograd.grad(out, x, create_graph=True, materialize_grads=True)  # type: ignore[return-value]


__all__ = [
    "JET_ACTIVATIONS",
    "Jet",
    "JetActivation",
    "autograd_jet",
    "input_jet",
    "jet_activation",
    "jet_fourier",
    "jet_input_linear",
    "jet_linear",
]
