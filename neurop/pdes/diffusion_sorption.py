"""1-D diffusion–sorption (PDEBench): u_t = D / R(u) u_xx with a Freundlich retardation factor.

The PDEBench set-up (Takamoto et al., NeurIPS 2022 Datasets and Benchmarks; the equation from Praditia et
al.'s FINN): ``R(u) = 1 + ((1 − φ)/φ) ρ_s k_f n_f (u + 1e−6)^(n_f − 1)`` with φ = 0.29, ρ_s = 2880,
k_f = 3.5e−4, n_f = 0.874, D = 5e−4 on x ∈ (0, 1), t ∈ (0, 500], with ``u(0, t) = 1`` and
``u(1, t) = D u_x(1, t)``. Concentrations are clipped at 0 inside ``R`` (the Robin outflow makes the last
node slightly negative, where the power is undefined).

Method of lines: second-order finite differences on the nodes ``x_i = i/(n − 1)``, the boundary values
eliminated (``u_0 = 1``; the Robin condition with a first-order one-sided difference gives
``u_{n−1} = −(D/h)/(1 − D/h) u_{n−2}``), and the stiff ODE system integrated by the implicit variable-order
BDF method (``scipy.integrate.solve_ivp``) with its exact sparse Jacobian, all samples of a batch in one
block-diagonal system. Initial conditions: ``"uniform"`` draws every node from U(0, 0.2) as PDEBench does;
``"smooth"`` (default) maps a Gaussian random field into (0, 0.2), which keeps the fields resolvable by the
grid-based hard constraint and by convergence checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.integrate import solve_ivp

from neurop.pdes.base import PDES, FieldSpec, PDEGenerator, check_positive, sample_generator
from neurop.pdes.grf import GaussianRandomField

Initial = Literal["smooth", "uniform"]
INITIALS: tuple[str, ...] = ("smooth", "uniform")


def retardation(
    u: torch.Tensor | np.ndarray,
    porosity: float,
    rho_s: float,
    k_f: float,
    n_f: float,
) -> Any:
    """Freundlich retardation factor ``1 + ((1 − φ)/φ) ρ_s k_f n_f (max(u, 0) + 1e−6)^(n_f − 1)``."""
    coef = (1.0 - porosity) / porosity * rho_s * k_f * n_f
    if isinstance(u, torch.Tensor):
        return 1.0 + coef * (u.clamp_min(0.0) + 1e-6) ** (n_f - 1.0)
    return 1.0 + coef * (np.maximum(u, 0.0) + 1e-6) ** (n_f - 1.0)


def robin_factor(diffusivity: float, h: float) -> float:
    """``c`` in ``u_{n−1} = c u_{n−2}`` from ``u(1) = D u_x(1)`` with a backward difference."""
    r = diffusivity / h
    if r >= 1.0:
        raise ValueError(f"the grid step h={h} must exceed the diffusivity D={diffusivity} for the Robin row")
    return -r / (1.0 - r)


@PDES.register("diffusion_sorption")
class DiffusionSorption(PDEGenerator):
    """Generator of diffusion–sorption trajectories ``u(t, x)`` from random initial conditions.

    Parameters
    ----------
    resolution : int
        Nodes in x, both ends included (h = 1/(resolution − 1)); ≥ 5.
    stride : int
        Stored nodes: every ``stride``-th (must divide ``resolution − 1``, so both ends are kept).
    n_t : int
        Stored times ``linspace(0, t_final, n_t)``; ≥ 2.
    t_final : float
        Final time (PDEBench: 500).
    diffusivity, porosity, rho_s, k_f, n_f : float
        D, φ, ρ_s, Freundlich k_f and exponent n_f (PDEBench values by default).
    initial : {"smooth", "uniform"}
        Initial condition family, see the module docstring.
    u0_max : float
        Initial values lie in (0, u0_max) (PDEBench: 0.2).
    alpha, tau : float
        Smoothness and inverse length scale of the GRF of ``"smooth"`` initial conditions.
    rtol, atol : float
        BDF tolerances.
    """

    name: ClassVar[str] = "diffusion_sorption"

    def __init__(
        self,
        resolution: int = 1024,
        stride: int = 1,
        n_t: int = 101,
        t_final: float = 500.0,
        diffusivity: float = 5e-4,
        porosity: float = 0.29,
        rho_s: float = 2880.0,
        k_f: float = 3.5e-4,
        n_f: float = 0.874,
        initial: Initial = "smooth",
        u0_max: float = 0.2,
        alpha: float = 2.0,
        tau: float = 5.0,
        rtol: float = 1e-8,
        atol: float = 1e-10,
    ) -> None:
        for key, value, low in (("resolution", resolution, 5), ("stride", stride, 1), ("n_t", n_t, 2)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        self.resolution, self.stride, self.n_t = int(resolution), int(stride), int(n_t)
        if (self.resolution - 1) % self.stride:
            raise ValueError(
                f"stride must divide resolution - 1 = {self.resolution - 1} so both ends are stored, "
                f"got stride={stride!r}"
            )
        self.t_final = check_positive("t_final", t_final)
        self.diffusivity = check_positive("diffusivity", diffusivity)
        self.porosity = check_positive("porosity", porosity)
        if self.porosity >= 1:
            raise ValueError(f"porosity must be in (0, 1), got {porosity!r}")
        self.rho_s = check_positive("rho_s", rho_s)
        self.k_f = check_positive("k_f", k_f)
        self.n_f = check_positive("n_f", n_f)
        if initial not in INITIALS:
            raise ValueError(f"initial must be one of {INITIALS}, got {initial!r}")
        self.initial: Initial = initial
        self.u0_max = check_positive("u0_max", u0_max)
        self.rtol = check_positive("rtol", rtol)
        self.atol = check_positive("atol", atol)
        robin_factor(self.diffusivity, 1.0 / (self.resolution - 1))
        self.grf = GaussianRandomField(1, self.resolution, alpha=alpha, tau=tau, boundary="neumann")

    # ------------------------------------------------------------------ description
    @property
    def stored_size(self) -> int:
        return (self.resolution - 1) // self.stride + 1

    def params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stride": self.stride,
            "n_t": self.n_t,
            "t_final": self.t_final,
            "diffusivity": self.diffusivity,
            "porosity": self.porosity,
            "rho_s": self.rho_s,
            "k_f": self.k_f,
            "n_f": self.n_f,
            "initial": self.initial,
            "u0_max": self.u0_max,
            "alpha": self.grf.alpha,
            "tau": self.grf.tau,
        }

    def solver_info(self) -> dict[str, Any]:
        return {
            "method": "method of lines, 2nd-order finite differences on nodes, boundary values eliminated",
            "integrator": "scipy solve_ivp BDF (implicit, variable order), exact sparse Jacobian",
            "rtol": self.rtol,
            "atol": self.atol,
        }

    def coords(self) -> dict[str, np.ndarray]:
        return {
            "t": np.linspace(0.0, self.t_final, self.n_t),
            "x": np.linspace(0.0, 1.0, self.resolution)[:: self.stride],
        }

    def fields(self) -> dict[str, FieldSpec]:
        return {"u": FieldSpec(("t", "x"), (self.n_t, self.stored_size))}

    # ------------------------------------------------------------------ sampling and solving
    def sample_initial(self, seeds: Sequence[int]) -> np.ndarray:
        """Initial conditions on all nodes, shape (B, resolution), values in (0, u0_max)."""
        if self.initial == "uniform":
            rows = [
                torch.rand(self.resolution, generator=sample_generator(s), dtype=torch.float64) for s in seeds
            ]
            return self.u0_max * torch.stack(rows).numpy()
        g = self.grf.sample(list(seeds)).numpy()
        g = g / g.std(axis=1, keepdims=True).clip(1e-12)
        return self.u0_max * 0.5 * (1.0 + np.tanh(g))

    def solve(self, u0: np.ndarray | torch.Tensor) -> np.ndarray:
        """Integrate from initial conditions on the nodes (any node count ≥ 5).

        Parameters
        ----------
        u0 : array, shape (B, n)
            Initial values on the nodes ``i/(n − 1)``; the boundary values are set by the conditions.

        Returns
        -------
        ndarray, shape (B, n_t, n)
            float64; row 0 is ``u0`` as given.
        """
        u0 = np.asarray(u0, dtype=np.float64)
        if u0.ndim != 2 or u0.shape[1] < 5:
            raise ValueError(f"u0 must have shape (B, n) with n >= 5, got {u0.shape}")
        b, n = u0.shape
        m = n - 2
        h = 1.0 / (n - 1)
        c = robin_factor(self.diffusivity, h)
        d, inv_h2 = self.diffusivity, 1.0 / (h * h)
        kw = dict(porosity=self.porosity, rho_s=self.rho_s, k_f=self.k_f, n_f=self.n_f)
        coef = (1.0 - self.porosity) / self.porosity * self.rho_s * self.k_f * self.n_f

        def laplacian(y: np.ndarray) -> np.ndarray:
            left = np.concatenate([np.ones((b, 1)), y[:, :-1]], axis=1)
            right = np.concatenate([y[:, 1:], c * y[:, -1:]], axis=1)
            return (left - 2 * y + right) * inv_h2

        def rhs(_t: float, flat: np.ndarray) -> np.ndarray:
            y = flat.reshape(b, m)
            return (d * laplacian(y) / retardation(y, **kw)).ravel()

        def jac(_t: float, flat: np.ndarray) -> sp.csr_matrix:
            y = flat.reshape(b, m)
            r = retardation(y, **kw)
            pos = np.maximum(y, 0.0) + 1e-6
            dr = np.where(y > 0, coef * (self.n_f - 1.0) * pos ** (self.n_f - 2.0), 0.0)
            lap = laplacian(y)
            self_coef = np.full((b, m), -2.0 * inv_h2)
            self_coef[:, -1] = (c - 2.0) * inv_h2
            diag = d * self_coef / r - d * lap * dr / r**2
            off = d * inv_h2 / r  # ∂f_i/∂u_{i±1}
            lower = off[:, 1:].copy()  # row i, column i − 1
            upper = off[:, :-1].copy()  # row i, column i + 1
            # No coupling across samples: zero the entries that would join sample s to s + 1.
            lower = np.concatenate([lower, np.zeros((b, 1))], axis=1).ravel()[:-1]
            upper = np.concatenate([upper, np.zeros((b, 1))], axis=1).ravel()[:-1]
            return sp.diags([lower, diag.ravel(), upper], [-1, 0, 1], format="csc")

        times = np.linspace(0.0, self.t_final, self.n_t)
        sol = solve_ivp(
            rhs,
            (0.0, self.t_final),
            u0[:, 1:-1].ravel(),
            method="BDF",
            t_eval=times,
            jac=jac,
            rtol=self.rtol,
            atol=self.atol,
        )
        if not sol.success:
            raise RuntimeError(f"diffusion-sorption BDF integration failed: {sol.message}")
        inner = sol.y.T.reshape(self.n_t, b, m).transpose(1, 0, 2)
        out = np.empty((b, self.n_t, n))
        out[:, :, 1:-1] = inner
        out[:, :, 0] = 1.0
        out[:, :, -1] = c * inner[:, :, -1]
        out[:, 0] = u0
        return out

    def solve_batch(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Draw initial conditions for ``seeds`` and integrate; ``u`` has shape (B, n_t, stored_size)."""
        u = self.solve(self.sample_initial(seeds))[:, :, :: self.stride]
        return {"u": torch.from_numpy(np.ascontiguousarray(u))}
