"""Darcy flow −∇·(a∇u) = f on (0,1)², u = 0 on the boundary, with a two-valued random coefficient.

The data set of the Fourier Neural Operator paper (Li et al., ICLR 2021): ``a = a_high`` where a Gaussian
random field ``g ~ N(0, σ²(−Δ + τ²I)^−α)`` (Neumann cosine expansion, zero mean, σ = τ^(α−1)) is ≥ 0 and
``a = a_low`` elsewhere; constant forcing ``f``. The equation is discretised by second-order 5-point finite
differences in flux form (:mod:`neurop.pdes.fd`) on ``resolution²`` nodes and the stored fields are every
``stride``-th node, boundary included.

Solvers (all reach the relative residual ``‖f − A u‖₂/‖f‖₂ ≤ tol`` on the solver grid, except ``direct``,
which is exact up to round-off):

* ``"cg"``: batched matrix-free conjugate gradients in torch (CPU or CUDA), preconditioned by the exact
  fast-sine-transform inverse of the constant-coefficient Laplacian. Since the preconditioned condition
  number is at most ``max(a)/min(a)`` at every resolution, the 12/3 coefficient needs 24-25 iterations to
  tol = 1e-10 (20-21 to 1e-8) on every grid from 85² to 421², each costing two 2-D sine transforms.
* ``"amg"``: pyamg smoothed-aggregation hierarchy per sample as the preconditioner of CG.
* ``"direct"``: ``scipy.sparse.linalg.spsolve`` per sample (the plain baseline).
* ``"auto"``: ``"cg"`` on every device when the contrast ``max(a)/min(a)`` is at most
  :data:`AUTO_CG_MAX_CONTRAST`, else ``"amg"`` on CPU (CG iterations grow with the contrast, 23 at 4 and
  145 at 1000, AMG's hardly do) and still ``"cg"`` on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyamg
import scipy.sparse.linalg as spla
import torch

from neurop.pdes.base import PDES, FieldSpec, PDEGenerator, check_positive
from neurop.pdes.fd import FACE_MEANS, FaceMean, assemble_matrix, pcg_solve
from neurop.pdes.grf import GaussianRandomField

__all__ = ["AUTO_CG_MAX_CONTRAST", "SOLVERS", "Darcy"]

Solver = Literal["auto", "direct", "amg", "cg"]
SOLVERS: tuple[str, ...] = ("auto", "direct", "amg", "cg")

# Above this coefficient contrast, CPU runs switch from Poisson-preconditioned CG to AMG. Measured at 421²
# (a = c or 1, one core, s/sample): c = 4: CG 0.16 (23 it) vs AMG 0.54; c = 100: 0.51 (93 it) vs 0.75;
# c = 1000: 1.18 (145 it) vs 1.12. CG iterations grow with the contrast, AMG's cost hardly does.
AUTO_CG_MAX_CONTRAST = 300.0


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@PDES.register("darcy")
class Darcy(PDEGenerator):
    """Generator of (coefficient, solution) pairs for steady Darcy flow.

    Parameters
    ----------
    resolution : int
        Solver nodes per side, boundary included (h = 1/(resolution − 1)); ≥ 3.
    stride : int
        Stored grid = every ``stride``-th solver node; must divide ``resolution − 1`` so that the stored
        grid keeps both boundaries. Stored size ``(resolution − 1) // stride + 1`` per side.
    alpha, tau : float
        GRF smoothness (α > 1) and inverse length scale (τ > 0); amplitude σ = τ^(α−1).
    a_high, a_low : float
        Coefficient where the GRF is ≥ 0 and < 0; both > 0.
    forcing : float
        Constant right-hand side f, finite and non-zero.
    solver : {"auto", "direct", "amg", "cg"}
        Linear solver, see the module docstring.
    tol : float
        Relative residual target of the iterative solvers, in (0, 1).
    face_mean : {"harmonic", "arithmetic"}
        Face conductivity average, see :func:`neurop.pdes.fd.face_coefficients`.
    max_iter : int
        Iteration cap of the iterative solvers; exceeding it raises ``RuntimeError``.
    """

    name = "darcy"

    def __init__(
        self,
        resolution: int = 421,
        stride: int = 5,
        alpha: float = 2.0,
        tau: float = 3.0,
        a_high: float = 12.0,
        a_low: float = 3.0,
        forcing: float = 1.0,
        solver: Solver = "auto",
        tol: float = 1e-10,
        face_mean: FaceMean = "harmonic",
        max_iter: int = 10_000,
    ) -> None:
        self.resolution = _check_int("resolution", resolution, 3)
        self.stride = _check_int("stride", stride, 1)
        if (self.resolution - 1) % self.stride:
            raise ValueError(
                f"stride must divide resolution - 1 = {self.resolution - 1} so the stored grid keeps the "
                f"boundary, got stride={stride!r}"
            )
        self.alpha = float(alpha)
        if not np.isfinite(self.alpha) or self.alpha <= 1.0:
            raise ValueError(f"alpha must be > 1 (a well-defined 2-D field), got {alpha!r}")
        self.tau = check_positive("tau", tau)
        self.a_high = check_positive("a_high", a_high)
        self.a_low = check_positive("a_low", a_low)
        self.forcing = float(forcing)
        if not np.isfinite(self.forcing) or self.forcing == 0.0:
            raise ValueError(f"forcing must be finite and non-zero, got {forcing!r}")
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        self.solver: Solver = solver
        self.tol = check_positive("tol", tol)
        if self.tol >= 1.0:
            raise ValueError(f"tol must be in (0, 1), got {tol!r}")
        if face_mean not in FACE_MEANS:
            raise ValueError(f"face_mean must be one of {FACE_MEANS}, got {face_mean!r}")
        self.face_mean: FaceMean = face_mean
        self.max_iter = _check_int("max_iter", max_iter, 1)
        self.grf = GaussianRandomField(
            2,
            self.resolution,
            alpha=self.alpha,
            tau=self.tau,
            sigma=self.tau ** (self.alpha - 1.0),
            boundary="neumann",
            zero_mean=True,
        )

    # ------------------------------------------------------------------ description
    @property
    def stored_size(self) -> int:
        """Stored nodes per side."""
        return (self.resolution - 1) // self.stride + 1

    def params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stride": self.stride,
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.grf.sigma,
            "a_high": self.a_high,
            "a_low": self.a_low,
            "forcing": self.forcing,
        }

    def solver_info(self) -> dict[str, Any]:
        return {
            "scheme": "5-point finite differences, flux form, homogeneous Dirichlet",
            "face_mean": self.face_mean,
            "solver": self.solver,
            "solver_cpu": self.resolve_solver("cpu"),
            "solver_cuda": self.resolve_solver("cuda"),
            "tol": self.tol,
            "max_iter": self.max_iter,
            "preconditioner": "fast-sine-transform Poisson (cg) / smoothed aggregation (amg)",
        }

    def coords(self) -> dict[str, np.ndarray]:
        x = np.linspace(0.0, 1.0, self.resolution)[:: self.stride]
        return {"x": x, "y": x.copy()}

    def fields(self) -> dict[str, FieldSpec]:
        m = self.stored_size
        return {"a": FieldSpec(("x", "y"), (m, m)), "u": FieldSpec(("x", "y"), (m, m))}

    def resolve_solver(self, device: str | torch.device) -> str:
        """The concrete solver ``solver="auto"`` uses on ``device``."""
        if self.solver != "auto":
            return self.solver
        contrast = max(self.a_high, self.a_low) / min(self.a_high, self.a_low)
        if torch.device(device).type == "cuda" or contrast <= AUTO_CG_MAX_CONTRAST:
            return "cg"
        return "amg"

    # ------------------------------------------------------------------ sampling and solving
    def sample_coefficient(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
        """Coefficient fields on the solver grid, shape (B, resolution, resolution), float64."""
        g = self.grf.sample(list(seeds), device=device, dtype=torch.float64)
        return torch.where(g >= 0, self.a_high, self.a_low).to(torch.float64)

    def solve(
        self, a: torch.Tensor, device: str | torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve −∇·(a∇u) = forcing for a batch of coefficients on the solver grid.

        Parameters
        ----------
        a : Tensor, shape (B, s, s)
            Coefficient on all nodes (any s ≥ 3; the generator uses ``resolution``).
        device : str or torch.device, optional
            Where ``"cg"`` runs and what ``"auto"`` is resolved for; default ``a.device``.

        Returns
        -------
        u : Tensor, shape (B, s, s), float64
            Solution, exactly 0 on the boundary.
        residual : Tensor, shape (B,)
            Relative residual ‖f − A u‖₂/‖f‖₂ on the interior nodes.
        """
        device = torch.device(device) if device is not None else a.device
        solver = self.resolve_solver(device)
        if solver == "cg":
            u, res, _ = pcg_solve(
                a.to(device=device, dtype=torch.float64),
                self.forcing,
                tol=self.tol,
                max_iter=self.max_iter,
                mean=self.face_mean,
            )
            return u, res
        a_np = a.detach().to("cpu", torch.float64).numpy()
        us, rs = [], []
        for a_i in a_np:
            u_i, r_i = self._solve_sparse(a_i, solver)
            us.append(u_i)
            rs.append(r_i)
        return torch.from_numpy(np.stack(us)), torch.tensor(rs, dtype=torch.float64)

    def _solve_sparse(self, a: np.ndarray, solver: str) -> tuple[np.ndarray, float]:
        mat = assemble_matrix(a, self.face_mean)
        b = np.full(mat.shape[0], self.forcing)
        bnorm = float(np.linalg.norm(b))
        if solver == "direct":
            x = spla.spsolve(mat, b)
            res = float(np.linalg.norm(b - mat @ x)) / bnorm
        else:
            # pyamg's CG stops on a preconditioned residual norm, so check the true residual and continue
            # from the current iterate until it meets tol.
            ml = pyamg.smoothed_aggregation_solver(mat, symmetry="symmetric", improve_candidates=None)
            x = np.zeros_like(b)
            used, res = 0, 1.0
            while used < self.max_iter:
                iters: list[float] = []
                x = ml.solve(b, x0=x, tol=self.tol, maxiter=self.max_iter - used, accel="cg", residuals=iters)
                used += max(len(iters) - 1, 1)
                res = float(np.linalg.norm(b - mat @ x)) / bnorm
                if res <= self.tol:
                    break
            else:
                raise RuntimeError(
                    f"AMG-CG did not reach tol={self.tol} in max_iter={self.max_iter} (residual {res:.2e})"
                )
        s = a.shape[0]
        u = np.zeros((s, s))
        u[1:-1, 1:-1] = x.reshape(s - 2, s - 2)
        return u, res

    def solve_batch(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Draw coefficients for ``seeds``, solve, and return ``a`` and ``u`` on the stored grid.

        Returns
        -------
        dict
            ``"a"`` and ``"u"``: Tensor, shape (B, m, m) with m = ``stored_size``, float64.
        """
        a = self.sample_coefficient(seeds, device)
        u, _ = self.solve(a, device)
        r = self.stride
        return {"a": a[:, ::r, ::r].contiguous(), "u": u[:, ::r, ::r].contiguous().to(a.device)}


# ---------------------------------------------------------------------------------------------- grid residual
def darcy_grid_operator(
    u: torch.Tensor, a: torch.Tensor, h: float, face_mean: FaceMean = "harmonic"
) -> torch.Tensor:
    """``−∇·(a∇u)`` by the generator's 5-point flux form at every node that has four neighbours.

    Parameters
    ----------
    u : Tensor, shape (..., s1, s2)
        Fields on (a block of) the node grid; leading axes broadcast against ``a``'s.
    a : Tensor, shape (..., s1, s2)
        Coefficient on the same nodes.
    h : float
        Node spacing (the same along both axes).
    face_mean : {"harmonic", "arithmetic"}

    Returns
    -------
    Tensor, shape (..., s1 − 2, s2 − 2)
        The operator at the inner nodes; linear in ``u``.
    """
    from neurop.pdes.fd import face_coefficients

    ax, ay = face_coefficients(a, face_mean)
    fx = ax * (u[..., 1:, :] - u[..., :-1, :])
    fy = ay * (u[..., :, 1:] - u[..., :, :-1])
    return (fx[..., :-1, 1:-1] - fx[..., 1:, 1:-1] + fy[..., 1:-1, :-1] - fy[..., 1:-1, 1:]) / (h * h)


def darcy_pointwise_residual(
    a: torch.Tensor,
    a_x: torch.Tensor,
    a_y: torch.Tensor,
    u_x: torch.Tensor,
    u_y: torch.Tensor,
    u_xx: torch.Tensor,
    u_yy: torch.Tensor,
    forcing: float | torch.Tensor,
) -> torch.Tensor:
    """``−∇·(a∇u) − f = −(a Δu + a_x u_x + a_y u_y) − f`` at points (physics-informed models).

    Parameters
    ----------
    a, a_x, a_y : Tensor, shape (N,)
        Coefficient and its gradient (a smooth coefficient; the two-valued one has no pointwise form).
    u_x, u_y, u_xx, u_yy : Tensor, shape (N,)
        Derivatives of the solution.
    forcing : float or Tensor of shape (N,)
        ``f``.

    Returns
    -------
    Tensor, shape (N,)
    """
    return -(a * (u_xx + u_yy) + a_x * u_x + a_y * u_y) - forcing
