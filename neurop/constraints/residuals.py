"""Grid residuals of the PDEs the hard constraint supports, registered by PDE name.

Each builder takes the PDE's generator parameters (the pde config's ``generator:`` section, after the data
overrides) and returns a :class:`~neurop.constraints.residual.GridResidual`; keys that are not generator
parameters of that PDE raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from neurop.constraints.residual import GridResidual, diff1, diff2
from neurop.pdes.darcy import darcy_grid_operator
from neurop.pdes.diffusion_sorption import DiffusionSorption, retardation
from neurop.pdes.navier_stokes import NavierStokes, vorticity_derivatives
from neurop.registry import Registry

GRID_RESIDUALS: Registry[Callable[..., GridResidual]] = Registry("grid residual")


def _check_keys(pde: str, params: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"parameters {unknown} are not {pde} generator parameters; known: {sorted(allowed)}")


def build_residual(pde: str, params: Mapping[str, Any] | None = None) -> GridResidual:
    """The grid residual of ``pde`` with its generator parameters.

    Raises
    ------
    ValueError
        When ``pde`` has no grid residual (naming the PDEs that have one).
    """
    if pde not in GRID_RESIDUALS:
        raise ValueError(
            f"pde {pde!r} has no grid residual, so it cannot be hard-constrained; pdes with one: "
            f"{', '.join(GRID_RESIDUALS.names())}"
        )
    return GRID_RESIDUALS.get(pde)(**dict(params or {}))


# ---------------------------------------------------------------------------------------------- Darcy
class DarcyResidual(GridResidual):
    """``−∇·(a∇u) − f`` by the generator's 5-point flux form on the nodes of [0, 1]², u = 0 on ∂Ω.

    Inputs: channel 0 is the coefficient ``a``.
    """

    name = "darcy"
    n_features = 1
    linear = True
    local = True
    periodic = (False, False)

    def __init__(self, forcing: float = 1.0, face_mean: str = "harmonic") -> None:
        self.forcing = float(forcing)
        self.face_mean = face_mean

    def spacing(self, grid: Sequence[int]) -> tuple[float, ...]:
        if grid[0] != grid[1]:
            raise ValueError(f"darcy grids are square, got {list(grid)}")
        return (1.0 / (grid[0] - 1),) * 2

    def interior(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        mask = torch.zeros(tuple(grid), dtype=torch.bool, device=device)
        mask[1:-1, 1:-1] = True
        return mask

    def features(
        self, u: Tensor, inputs: Tensor, spacing: Sequence[float], periodic: Sequence[bool]
    ) -> tuple[Tensor, Tensor]:
        a = inputs[:, :1]  # (B, 1, s1, s2) broadcasts over the basis channels
        inner = darcy_grid_operator(u, a, spacing[0], self.face_mean)  # type: ignore[arg-type]
        feats = u.new_zeros(u.shape)
        feats[..., 1:-1, 1:-1] = inner
        valid = torch.zeros(u.shape[2:], dtype=torch.bool, device=u.device)
        valid[1:-1, 1:-1] = True
        return feats.unsqueeze(2), valid

    def pointwise(self, features: Tensor, inputs: Tensor) -> Tensor:
        return features[:, 0] - self.forcing

    def boundary(self, u: Tensor, inputs: Tensor, spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
        edge = ~self.interior(u.shape[2:], u.device)
        rows = u[..., edge]
        return rows, rows.new_zeros(rows.shape[0], rows.shape[-1])

    def boundary_index(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        return torch.nonzero(~self.interior(grid, device).flatten()).flatten()


@GRID_RESIDUALS.register("darcy")
def _darcy(**params: Any) -> DarcyResidual:
    allowed = (
        "resolution",
        "stride",
        "alpha",
        "tau",
        "a_high",
        "a_low",
        "forcing",
        "solver",
        "tol",
        "face_mean",
        "max_iter",
    )
    _check_keys("darcy", params, allowed)
    return DarcyResidual(forcing=params.get("forcing", 1.0), face_mean=params.get("face_mean", "harmonic"))


# ----------------------------------------------------------------------------------------- diffusion–sorption
class DiffusionSorptionResidual(GridResidual):
    """``T (R(u) u_t − D u_xx)`` on the (t, x) node grid; rows for u(0, x) = u0, u(t, 0) = 1, u(t, 1) = D u_x.

    Scaled by the final time T so that residual rows and boundary rows are both of order one. Inputs:
    channel 0 holds the initial condition (its t = 0 row is used).
    """

    name = "diffusion_sorption"
    n_features = 3  # u, u_t, u_xx
    linear = False
    local = True
    periodic = (False, False)

    def __init__(
        self,
        t_final: float,
        diffusivity: float,
        porosity: float,
        rho_s: float,
        k_f: float,
        n_f: float,
        smooth_zero: float = 1e-3,
    ) -> None:
        self.t_final = float(t_final)
        self.diffusivity = float(diffusivity)
        self.smooth_zero = float(smooth_zero)
        self.kw = dict(porosity=float(porosity), rho_s=float(rho_s), k_f=float(k_f), n_f=float(n_f))

    def spacing(self, grid: Sequence[int]) -> tuple[float, ...]:
        return (self.t_final / (grid[0] - 1), 1.0 / (grid[1] - 1))

    def interior(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        mask = torch.zeros(tuple(grid), dtype=torch.bool, device=device)
        mask[1:, 1:-1] = True
        return mask

    def features(
        self, u: Tensor, inputs: Tensor, spacing: Sequence[float], periodic: Sequence[bool]
    ) -> tuple[Tensor, Tensor]:
        u_t = diff1(u, spacing[0], 2, False)
        u_xx = diff2(u, spacing[1], 3, False)
        valid = torch.ones(u.shape[2:], dtype=torch.bool, device=u.device)
        return torch.stack([u, u_t, u_xx], dim=2), valid

    def pointwise(self, features: Tensor, inputs: Tensor) -> Tensor:
        u, u_t, u_xx = features[:, 0], features[:, 1], features[:, 2]
        # A smooth positive part instead of max(u, 0): the least-squares iterations cross u = 0, where
        # the kink would stall Gauss–Newton; it differs from max(u, 0) only for |u| ≲ smooth_zero.
        d = self.smooth_zero
        pos = 0.5 * (u + torch.sqrt(u * u + d * d))
        # Multiplied through by R: dividing by it amplifies the isotherm's steep slope near u = 0.
        return self.t_final * (retardation(pos, **self.kw) * u_t - self.diffusivity * u_xx)

    def boundary(self, u: Tensor, inputs: Tensor, spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
        hx = spacing[1]
        initial = u[..., 0, :]  # (B, C, n_x)
        left = u[..., 1:, 0]
        right_end = u[..., 1:, -1]
        u_x = (3 * u[..., 1:, -1] - 4 * u[..., 1:, -2] + u[..., 1:, -3]) / (2 * hx)
        right = right_end - self.diffusivity * u_x
        rows = torch.cat([initial, left, right], dim=-1)
        b = u.shape[0]
        n_t = u.shape[-2]
        target = torch.cat(
            [inputs[:, 0, 0, :], inputs.new_ones(b, n_t - 1), inputs.new_zeros(b, n_t - 1)], dim=-1
        )
        return rows, target

    def boundary_index(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        n_t, n_x = int(grid[0]), int(grid[1])
        t = torch.arange(1, n_t, device=device)
        # Initial row (0, x); Dirichlet (t, 0); the Robin row sits at its node (t, n_x − 1).
        return torch.cat([torch.arange(n_x, device=device), t * n_x, t * n_x + n_x - 1])


@GRID_RESIDUALS.register("diffusion_sorption")
def _diffusion_sorption(**params: Any) -> DiffusionSorptionResidual:
    defaults = DiffusionSorption().params()
    allowed = (*defaults, "rtol", "atol")
    _check_keys("diffusion_sorption", params, allowed)
    p = {**defaults, **params}
    return DiffusionSorptionResidual(
        t_final=p["t_final"],
        diffusivity=p["diffusivity"],
        porosity=p["porosity"],
        rho_s=p["rho_s"],
        k_f=p["k_f"],
        n_f=p["n_f"],
    )


# ---------------------------------------------------------------------------------------------- Navier–Stokes
class NavierStokesResidual(GridResidual):
    """``w_t + u·∇w − νΔw`` (unforced) on the (t, x, y) grid, periodic in x and y; rows for w(0) = w0.

    The velocity is a global (spectral Poisson) operator of w, so the features are computed on the whole
    grid and each expert reads them on its block. Inputs: channel 0 holds w0 (its t = 0 slice is used).
    """

    name = "navier_stokes"
    n_features = 6  # w_t, w_x, w_y, Δw, u, v
    linear = False
    local = False
    periodic = (False, True, True)

    def __init__(self, viscosity: float, t_final: float) -> None:
        self.viscosity = float(viscosity)
        self.t_final = float(t_final)

    def spacing(self, grid: Sequence[int]) -> tuple[float, ...]:
        return (self.t_final / (grid[0] - 1), 1.0 / grid[1], 1.0 / grid[2])

    def interior(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        mask = torch.ones(tuple(grid), dtype=torch.bool, device=device)
        mask[0] = False
        return mask

    def features(
        self, u: Tensor, inputs: Tensor, spacing: Sequence[float], periodic: Sequence[bool]
    ) -> tuple[Tensor, Tensor]:
        d = vorticity_derivatives(u)
        w_t = diff1(u, spacing[0], 2, False)
        feats = torch.stack([w_t, d["w_x"], d["w_y"], d["lap"], d["u"], d["v"]], dim=2)
        return feats, torch.ones(u.shape[2:], dtype=torch.bool, device=u.device)

    def pointwise(self, features: Tensor, inputs: Tensor) -> Tensor:
        w_t, w_x, w_y, lap, vel_u, vel_v = features.unbind(1)
        return w_t + vel_u * w_x + vel_v * w_y - self.viscosity * lap

    def boundary(self, u: Tensor, inputs: Tensor, spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
        b, c = u.shape[:2]
        return u[:, :, 0].reshape(b, c, -1), inputs[:, 0, 0].reshape(b, -1)

    def boundary_index(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        return torch.arange(int(grid[1]) * int(grid[2]), device=device)  # the t = 0 slice


@GRID_RESIDUALS.register("navier_stokes")
def _navier_stokes(**params: Any) -> NavierStokesResidual:
    allowed = (
        "resolution",
        "stride",
        "viscosity",
        "t_final",
        "snapshot_interval",
        "forcing",
        "alpha",
        "tau",
        "scheme",
        "dt",
        "cfl",
    )
    _check_keys("navier_stokes", params, allowed)
    if params.get("forcing", "none") != "none":
        raise ValueError(
            f"the navier_stokes grid residual is for the unforced equation (forcing: none), got "
            f"forcing={params['forcing']!r}"
        )
    defaults = NavierStokes(forcing="none").params()
    p = {**defaults, **params}
    return NavierStokesResidual(viscosity=p["viscosity"], t_final=p["t_final"])


__all__ = [
    "GRID_RESIDUALS",
    "DarcyResidual",
    "DiffusionSorptionResidual",
    "NavierStokesResidual",
    "build_residual",
]
