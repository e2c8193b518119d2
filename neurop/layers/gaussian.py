"""Gaussian feature embedding of the Physics-Informed Gaussians (Kang et al., ICLR 2025).

``FE(x) = Σ_i f_i exp(−½ (x − μ_i)ᵀ Σ_i⁻¹ (x − μ_i))`` with trainable means ``μ_i``, covariances
``Σ_i`` (diagonal, or full through a Cholesky factor of the precision) and feature vectors
``f_i ∈ R^k``. Points × Gaussians are evaluated in chunks of points so that memory stays bounded for
many Gaussians; the derivatives needed by physics losses are computed in closed form
(``∇g = −Σ⁻¹(x − μ) g``, ``∂²g/∂x_j² = ((Σ⁻¹(x − μ))_j² − (Σ⁻¹)_jj) g``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neurop.layers.jet import Jet

Covariance = Literal["diagonal", "full"]
COVARIANCES: tuple[str, ...] = ("diagonal", "full")


class GaussianEmbedding(nn.Module):
    """``N`` trainable Gaussians with ``k``-channel features.

    Parameters
    ----------
    in_channels : int
        Dimension d of the points.
    n_gaussians : int
        N > 0.
    feature_channels : int
        k > 0.
    sigma0 : float
        Initial standard deviation along every axis, > 0.
    covariance : {"diagonal", "full"}
        Diagonal scales (``exp`` of a parameter, so always positive), or a full covariance through the
        lower-triangular Cholesky factor ``P`` of the precision ``Σ⁻¹ = P Pᵀ`` (positive diagonal).
    bounds : sequence of (lo, hi), optional
        Box the means are drawn uniformly from; default ``[−1, 1]`` per axis.
    chunk_size : int
        Points per chunk, > 0; each chunk holds ``chunk_size × N × d`` values.
    feature_std : float
        Standard deviation of the initial features.
    """

    def __init__(
        self,
        in_channels: int,
        n_gaussians: int,
        feature_channels: int = 4,
        sigma0: float = 0.1,
        covariance: Covariance = "diagonal",
        bounds: Sequence[Sequence[float]] | None = None,
        chunk_size: int = 4096,
        feature_std: float = 0.1,
    ) -> None:
        super().__init__()
        for key, val in (("n_gaussians", n_gaussians), ("feature_channels", feature_channels),
                         ("chunk_size", chunk_size), ("in_channels", in_channels)):  # fmt: skip
            if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
                raise ValueError(f"{key} must be > 0, got {val!r}")
        if not (math.isfinite(sigma0) and sigma0 > 0):
            raise ValueError(f"sigma0 must be > 0, got {sigma0!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        d = in_channels
        box = [(-1.0, 1.0)] * d if bounds is None else [(float(b[0]), float(b[1])) for b in bounds]
        if len(box) != d or any(not lo < hi for lo, hi in box):
            raise ValueError(f"bounds must be {d} pairs [lo, hi] with lo < hi, got {bounds!r}")
        lo = torch.tensor([b[0] for b in box])
        hi = torch.tensor([b[1] for b in box])
        self.in_channels, self.n_gaussians, self.feature_channels = d, n_gaussians, feature_channels
        self.covariance: Covariance = covariance
        self.chunk_size = chunk_size
        self.means = nn.Parameter(lo + (hi - lo) * torch.rand(n_gaussians, d))
        if covariance == "diagonal":
            self.log_scales = nn.Parameter(torch.full((n_gaussians, d), math.log(sigma0)))
        else:
            self.log_diag = nn.Parameter(torch.full((n_gaussians, d), -math.log(sigma0)))
            self.lower = nn.Parameter(torch.zeros(n_gaussians, d, d))
        self.features = nn.Parameter(feature_std * torch.randn(n_gaussians, feature_channels))

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, n_gaussians={self.n_gaussians}, "
            f"feature_channels={self.feature_channels}, covariance={self.covariance!r}, "
            f"chunk_size={self.chunk_size}"
        )

    def precision_factor(self) -> Tensor:
        """``P`` with ``Σ⁻¹ = P Pᵀ``, shape (N, d, d) (diagonal covariance: ``diag(1/σ)``)."""
        if self.covariance == "diagonal":
            return torch.diag_embed(torch.exp(-self.log_scales))
        return torch.tril(self.lower, -1) + torch.diag_embed(torch.exp(self.log_diag))

    def scales(self) -> Tensor:
        """Standard deviations along the axes ``sqrt(diag Σ)``, shape (N, d)."""
        if self.covariance == "diagonal":
            return torch.exp(self.log_scales)
        p = self.precision_factor()
        cov = torch.cholesky_inverse(p)  # (P Pᵀ)⁻¹
        return torch.diagonal(cov, dim1=-2, dim2=-1).sqrt()

    def _chunk(self, x: Tensor, second_axes: tuple[int, ...], with_derivatives: bool) -> tuple[Tensor, ...]:
        diff = x[:, None, :] - self.means[None]  # (n, N, d)
        if self.covariance == "diagonal":
            inv_var = torch.exp(-2 * self.log_scales)  # (N, d)
            q = diff * inv_var  # Σ⁻¹(x − μ)
            g = torch.exp(-0.5 * (diff * q).sum(-1))  # (n, N)
            diag_prec = inv_var
        else:
            p = self.precision_factor()
            r = torch.einsum("ngi,gij->ngj", diff, p)  # Pᵀ(x − μ)
            q = torch.einsum("ngj,gij->ngi", r, p)
            g = torch.exp(-0.5 * (r * r).sum(-1))
            diag_prec = (p * p).sum(-1)
        u = g @ self.features
        if not with_derivatives:
            return (u,)
        gq = (g[:, :, None] * q).transpose(1, 2)  # (n, d, N)
        du = -(gq @ self.features)
        if second_axes:
            ax = list(second_axes)
            qa = q[:, :, ax]
            h = g[:, :, None] * (qa * qa - diag_prec[None, :, ax])
            d2u = h.transpose(1, 2) @ self.features
        else:
            d2u = u.new_zeros(u.shape[0], 0, u.shape[1])
        return u, du, d2u

    def _chunked(self, x: Tensor, second_axes: tuple[int, ...], with_derivatives: bool) -> list[Tensor]:
        n = x.shape[0]
        if n <= self.chunk_size:
            return list(self._chunk(x, second_axes, with_derivatives))
        # Recompute each chunk in the backward pass: stored activations stay at one chunk's size.
        recompute = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        parts = []
        for start in range(0, n, self.chunk_size):
            xc = x[start : start + self.chunk_size]
            if recompute:
                parts.append(checkpoint(self._chunk, xc, second_axes, with_derivatives, use_reentrant=False))
            else:
                parts.append(self._chunk(xc, second_axes, with_derivatives))
        return [torch.cat(t, dim=0) for t in zip(*parts, strict=True)]

    def forward(self, x: Tensor) -> Tensor:
        """``FE(x)``.

        Parameters
        ----------
        x : Tensor, shape (n, d)

        Returns
        -------
        Tensor, shape (n, k)
        """
        return self._chunked(x, (), False)[0]

    def jet(self, x: Tensor, second_axes: Sequence[int] = ()) -> Jet:
        """``FE`` with first derivatives along every axis and second ones along ``second_axes``."""
        axes = tuple(int(a) for a in second_axes)
        u, du, d2u = self._chunked(x, axes, True)
        return Jet(u, du, d2u, axes)


__all__ = ["COVARIANCES", "Covariance", "GaussianEmbedding"]
