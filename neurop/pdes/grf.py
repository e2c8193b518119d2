"""Gaussian random fields N(0, σ²(−Δ + τ²I)^−α) on the unit interval/square, drawn by KL expansion.

Two boundary conditions are supported:

* ``"periodic"`` on [0, 1)^d, grid ``x_j = j / n``: Fourier modes ``exp(2πi k·x)``, eigenvalues of
  −Δ equal to ``4π²|k|²``;
* ``"neumann"`` on [0, 1]^d, grid ``x_j = j / (n − 1)`` (boundary included): cosine modes
  ``√2 cos(πkx)`` (1 for k = 0), eigenvalues ``π²|k|²``.

The KL coefficient of mode k has variance ``λ_k = σ² (μ_k + τ²)^(−α)``. The three input measures of the
Fourier Neural Operator paper (Li et al., ICLR 2021) are available as presets, see :data:`PRESETS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from neurop.pdes.base import sample_generator

Boundary = Literal["periodic", "neumann"]


class GaussianRandomField:
    """Sampler for a Gaussian random field with covariance ``σ²(−Δ + τ²I)^−α``.

    Parameters
    ----------
    dim : {1, 2}
        Spatial dimension.
    size : int
        Grid points per axis (for ``"neumann"`` the boundary points are included).
    alpha, tau : float
        Smoothness exponent α > d/2 and inverse length scale τ > 0.
    sigma : float, optional
        Amplitude σ (default 1).
    boundary : {"periodic", "neumann"}
    zero_mean : bool
        Drop the constant mode (the field then has zero spatial mean).
    """

    def __init__(
        self,
        dim: int,
        size: int,
        alpha: float,
        tau: float,
        sigma: float = 1.0,
        boundary: Boundary = "periodic",
        zero_mean: bool = False,
    ) -> None:
        if dim not in (1, 2):
            raise ValueError(f"dim must be 1 or 2, got {dim!r}")
        if int(size) != size or size < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}")
        if not alpha > dim / 2:
            raise ValueError(f"alpha must be > dim/2 = {dim / 2} for a well-defined field, got {alpha!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        if boundary not in ("periodic", "neumann"):
            raise ValueError(f"boundary must be 'periodic' or 'neumann', got {boundary!r}")
        self.dim, self.size = int(dim), int(size)
        self.alpha, self.tau, self.sigma = float(alpha), float(tau), float(sigma)
        self.boundary: Boundary = boundary
        self.zero_mean = bool(zero_mean)

    # ------------------------------------------------------------------ spectrum
    def _mode_numbers(self) -> np.ndarray:
        n = self.size
        if self.boundary == "periodic":
            return np.fft.fftfreq(n, d=1.0 / n)  # 0, 1, ..., -1
        return np.arange(n, dtype=np.float64)

    def eigenvalues(self) -> np.ndarray:
        """KL variances λ_k on the mode grid, shape ``(size,)*dim`` (float64)."""
        k = self._mode_numbers()
        scale = (2 * math.pi) ** 2 if self.boundary == "periodic" else math.pi**2
        grids = np.meshgrid(*([k] * self.dim), indexing="ij")
        mu = scale * sum(g**2 for g in grids)
        lam = self.sigma**2 * (mu + self.tau**2) ** (-self.alpha)
        if self.zero_mean:
            lam[(0,) * self.dim] = 0.0
        return lam

    def coords(self) -> np.ndarray:
        """Grid coordinates along one axis."""
        n = self.size
        if self.boundary == "periodic":
            return np.arange(n) / n
        return np.linspace(0.0, 1.0, n)

    # ------------------------------------------------------------------ sampling
    def _noise(self, seeds: Sequence[int]) -> torch.Tensor:
        shape = (self.size,) * self.dim
        if self.boundary == "periodic":
            shape = shape + (2,)
        return torch.stack(
            [torch.randn(shape, generator=sample_generator(s), dtype=torch.float64) for s in seeds]
        )

    def sample(
        self,
        seeds: Sequence[int] | int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """Draw one field per seed.

        Parameters
        ----------
        seeds : sequence of int, or int
            One seed per sample (an int draws one sample). Noise is drawn on CPU, so the same
            seed gives the same field on every device.

        Returns
        -------
        Tensor, shape (B, size) or (B, size, size)
        """
        if isinstance(seeds, (int, np.integer)):
            seeds = [int(seeds)]
        xi = self._noise(seeds).to(device)
        sqrt_lam = torch.as_tensor(np.sqrt(self.eigenvalues()), device=device)
        n = self.size
        if self.boundary == "periodic":
            # u = √2 Re(ifft(N^d sqrt(λ) ζ)) with ζ standard complex normal has E|û_k|² = N^{2d} λ_k.
            zeta = torch.complex(xi[..., 0], xi[..., 1]) / math.sqrt(2.0)
            coef = zeta * sqrt_lam * (n**self.dim)
            axes = tuple(range(1, self.dim + 1))
            u = math.sqrt(2.0) * torch.fft.ifftn(coef, dim=axes).real
        else:
            k = torch.arange(n, device=device, dtype=torch.float64)
            x = torch.linspace(0.0, 1.0, n, device=device, dtype=torch.float64)
            phi = torch.cos(math.pi * x[:, None] * k[None, :]) * math.sqrt(2.0)
            phi[:, 0] = 1.0  # (n_points, n_modes), orthonormal cosine basis on [0, 1]
            coef = xi * sqrt_lam
            if self.dim == 1:
                u = coef @ phi.T
            else:
                u = phi @ coef @ phi.T
        return u.to(dtype)


def fno_burgers_grf(size: int = 8192) -> GaussianRandomField:
    """Burgers initial conditions of the FNO paper: N(0, 625(−Δ + 25I)^−2), periodic."""
    return GaussianRandomField(1, size, alpha=2.0, tau=5.0, sigma=25.0, boundary="periodic")


def fno_darcy_grf(size: int = 421) -> GaussianRandomField:
    """Darcy log-permeability of the FNO paper: N(0, (−Δ + 9I)^−2) with Neumann cosine modes, mean 0."""
    tau, alpha = 3.0, 2.0
    return GaussianRandomField(
        2, size, alpha=alpha, tau=tau, sigma=tau ** (alpha - 1), boundary="neumann", zero_mean=True
    )


def fno_navier_stokes_grf(size: int = 256) -> GaussianRandomField:
    """Initial vorticity of the FNO paper: α = 2.5, τ = 7, σ = τ^(α−1), periodic, zero mean."""
    tau, alpha = 7.0, 2.5
    return GaussianRandomField(
        2, size, alpha=alpha, tau=tau, sigma=tau ** (alpha - 1), boundary="periodic", zero_mean=True
    )


PRESETS = {
    "fno_burgers": fno_burgers_grf,
    "fno_darcy": fno_darcy_grf,
    "fno_navier_stokes": fno_navier_stokes_grf,
}
