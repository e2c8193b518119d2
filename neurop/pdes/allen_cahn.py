"""1-D Allen–Cahn equation u_t = d u_xx + γ(u − u³), periodic in x: ETDRK4 spectral solver, physics problem.

The physics-informed benchmark (Raissi et al. 2019; PIG, Kang et al. 2025) takes d = 1e−4, γ = 5,
x ∈ [−1, 1], t ∈ [0, 1], ``u0 = x² cos πx``. The reference is computed with this module's Fourier
pseudo-spectral ETDRK4 solver (Kassam & Trefethen 2005, coefficients from :mod:`neurop.pdes.spectral`):
the linear part ``d ∂xx + γ`` is integrated exactly, the cubic term to fourth order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neurop.layers.jet import Jet
from neurop.pdes.base import check_positive
from neurop.pdes.physics import PROBLEMS, Condition, PhysicsProblem, Reference, Sampler, sample_face
from neurop.pdes.spectral import etdrk4_coefficients, etdrk4_step

__all__ = ["AllenCahn", "allen_cahn_pointwise_residual", "solve_allen_cahn"]


def allen_cahn_pointwise_residual(
    u: Tensor, u_t: Tensor, u_xx: Tensor, diffusion: float, gamma: float
) -> Tensor:
    """``u_t − d u_xx + γu³ − γu``, all of shape (N,)."""
    return u_t - diffusion * u_xx + gamma * u**3 - gamma * u


def solve_allen_cahn(
    u0: Tensor,
    times: Sequence[float] | np.ndarray,
    diffusion: float = 1e-4,
    gamma: float = 5.0,
    length: float = 2.0,
    dt: float = 1e-4,
) -> Tensor:
    """Solve ``u_t = d u_xx + γ(u − u³)`` on a periodic interval by Fourier ETDRK4.

    Parameters
    ----------
    u0 : Tensor, shape (n,)
        Initial values on ``n`` equispaced points of one period (computed in float64).
    times : sequence of float
        Non-decreasing output times >= 0.
    diffusion, gamma : float
        ``d > 0`` and ``γ``.
    length : float
        Period, > 0.
    dt : float
        Largest step; each interval between output times takes equal steps of at most ``dt``.

    Returns
    -------
    Tensor, shape (len(times), n), float64
    """
    check_positive("diffusion", diffusion)
    check_positive("length", length)
    check_positive("dt", dt)
    t_out = [float(t) for t in times]
    if any(t < 0 for t in t_out) or any(b < a for a, b in zip(t_out, t_out[1:], strict=False)):
        raise ValueError(f"times must be non-decreasing and >= 0, got {t_out}")
    u = u0.to(torch.float64).reshape(-1)
    n = u.shape[0]
    k = 2 * math.pi / length * torch.arange(n // 2 + 1, dtype=torch.float64)
    lin = -diffusion * k**2 + gamma
    u_hat = torch.fft.rfft(u)

    def nonlinear(v_hat: Tensor) -> Tensor:
        v = torch.fft.irfft(v_hat, n=n)
        return -gamma * torch.fft.rfft(v**3)

    out = torch.empty(len(t_out), n, dtype=torch.float64)
    t_prev = 0.0
    cache: dict[float, Any] = {}
    for i, t in enumerate(t_out):
        delta = t - t_prev
        if delta > 0:
            steps = max(1, math.ceil(delta / dt * (1 - 1e-12)))
            h = delta / steps
            key = round(h, 15)
            if key not in cache:
                cache[key] = etdrk4_coefficients(lin, h)
            for _ in range(steps):
                u_hat = etdrk4_step(u_hat, nonlinear, cache[key])
            t_prev = t
        out[i] = torch.fft.irfft(u_hat, n=n)
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError(f"Allen–Cahn solution became non-finite with dt={dt}; use a smaller dt")
    return out


@PROBLEMS.register("allen_cahn")
class AllenCahn(PhysicsProblem):
    """Allen–Cahn ``u_t − d u_xx + γu³ − γu = 0``, x ∈ [−1, 1] periodic, t ∈ [0, 1], ``u0 = x² cos πx``.

    Parameters
    ----------
    diffusion, gamma : float
        ``d = 1e−4`` and ``γ = 5`` in the benchmark.
    t_final : float
        T > 0.
    resolution : int
        Reference solver points on [−1, 1); the evaluation grid is every ``stride``-th of them.
    stride : int
        Must divide ``resolution``.
    n_t : int
        Evaluation times ``linspace(0, T, n_t)`` (the benchmark grid is 512 × 201).
    dt : float
        Solver step. The defaults (1024 points, 2e−4) agree with 2048 points / 2e−4 and 4096 / 5e−5 to
        2e−10 relative at t = 1.
    """

    name = "allen_cahn"
    coord_names = ("x", "t")
    time_axis = 1
    second_axes = (0,)

    def __init__(
        self,
        diffusion: float = 1e-4,
        gamma: float = 5.0,
        t_final: float = 1.0,
        resolution: int = 1024,
        stride: int = 2,
        n_t: int = 201,
        dt: float = 2e-4,
    ) -> None:
        self.diffusion = check_positive("diffusion", diffusion)
        self.gamma = float(gamma)
        self.t_final = check_positive("t_final", t_final)
        for key, val, low in (("resolution", resolution, 8), ("stride", stride, 1), ("n_t", n_t, 2)):
            if isinstance(val, bool) or int(val) != val or val < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {val!r}")
        if resolution % stride:
            raise ValueError(f"stride must divide resolution = {resolution}, got {stride!r}")
        self.resolution, self.stride, self.n_t = int(resolution), int(stride), int(n_t)
        self.dt = check_positive("dt", dt)
        self.bounds = ((-1.0, 1.0), (0.0, self.t_final))

    def params(self) -> dict[str, Any]:
        return {"diffusion": self.diffusion, "gamma": self.gamma, "t_final": self.t_final}

    @staticmethod
    def initial(x: Tensor) -> Tensor:
        """``u0 = x² cos πx``."""
        return x**2 * torch.cos(math.pi * x)

    def initial_value(self, x: Tensor) -> Tensor:
        """``u0`` at the spatial coordinate of ``x`` (N, 2), shape (N, 1)."""
        return self.initial(x[:, :1])

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        r = allen_cahn_pointwise_residual(jet.value(), jet.d(1), jet.dd(0), self.diffusion, self.gamma)
        return r[:, None]

    def conditions(
        self,
        n_initial: int,
        n_boundary: int,
        method: Sampler = "uniform",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Condition]:
        ic = sample_face(self.bounds, 1, 0.0, n_initial, method, generator, dtype)
        return {
            "ic": Condition("value", ic, target=self.initial(ic[:, :1])),
            "periodic": self._periodic(0, n_boundary, method, generator, dtype),
        }

    def compute_reference(self) -> Reference:
        x = np.linspace(-1.0, 1.0, self.resolution, endpoint=False)
        t = np.linspace(0.0, self.t_final, self.n_t)
        u = solve_allen_cahn(
            self.initial(torch.from_numpy(x)), t, self.diffusion, self.gamma, length=2.0, dt=self.dt
        )
        s = self.stride
        return Reference((x[::s], t), u[:, ::s].T.numpy())
