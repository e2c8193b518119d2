"""Second-order finite differences for −∇·(a∇u) on the unit square with a homogeneous Dirichlet boundary.

Grid convention: ``s`` nodes per side including the boundary, ``h = 1/(s − 1)``, arrays indexed
``[..., i, j]`` with ``i`` along x and ``j`` along y. The unknowns are the ``n = s − 2`` interior nodes per
side, numbered row-major (``k = (i − 1) n + (j − 1)``). The 5-point flux form

    (A u)_ij = h⁻² [ a_{i+½,j}(u_ij − u_{i+1,j}) + a_{i−½,j}(u_ij − u_{i−1,j})
                   + a_{i,j+½}(u_ij − u_{i,j+1}) + a_{i,j−½}(u_ij − u_{i,j−1}) ]

uses conductivities on the cell faces between two nodes. The same operator is available as a scipy
CSR matrix (for direct and algebraic-multigrid solvers) and as a matrix-free batched torch apply (for
batched conjugate gradients on CPU or CUDA); both are symmetric positive definite.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import scipy.fft
import scipy.sparse as sp
import torch

__all__ = [
    "FACE_MEANS",
    "StencilOperator",
    "apply_operator",
    "assemble_matrix",
    "dst1",
    "face_coefficients",
    "operator_diagonal",
    "pcg_solve",
    "relative_residual",
]

FaceMean = Literal["harmonic", "arithmetic"]
FACE_MEANS: tuple[str, ...] = ("harmonic", "arithmetic")

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _check_mean(mean: str) -> None:
    if mean not in FACE_MEANS:
        raise ValueError(f"face_mean must be one of {FACE_MEANS}, got {mean!r}")


def face_coefficients(a: ArrayT, mean: FaceMean = "harmonic") -> tuple[ArrayT, ArrayT]:
    """Conductivities on the cell faces between neighbouring nodes.

    The harmonic mean is the default because it is the exact effective conductivity of two equal
    half-cells in series: across a jump of ``a`` (the 12/3 Darcy coefficient) it keeps the normal flux
    continuous and lets the low-conductivity side limit the flux, as in the continuous problem, while the
    arithmetic mean lets the high side dominate and overestimates the flux through interfaces. Measured
    against a 1025² solution of the same scheme (12 in a disk, 3 outside), the harmonic mean's max error
    is 0.55-0.85x the arithmetic one on 33²-257² grids; for a layered 12/3 coefficient its error decreases
    monotonically under refinement while the arithmetic one oscillates (1.1e-2, 2.6e-3, 9.2e-3, 5.6e-4).
    For smooth ``a`` both are second order, and both are positive, so ``A`` stays symmetric positive
    definite either way.

    Parameters
    ----------
    a : ndarray or Tensor, shape (..., s, s)
        Nodal coefficient, > 0.
    mean : {"harmonic", "arithmetic"}

    Returns
    -------
    ax : shape (..., s − 1, s)
        ``ax[..., i, j] = a_{i+½, j}`` (faces normal to x).
    ay : shape (..., s, s − 1)
        ``ay[..., i, j] = a_{i, j+½}`` (faces normal to y).
    """
    _check_mean(mean)
    west, east = a[..., :-1, :], a[..., 1:, :]
    south, north = a[..., :, :-1], a[..., :, 1:]
    if mean == "harmonic":
        return 2 * west * east / (west + east), 2 * south * north / (south + north)
    return (west + east) / 2, (south + north) / 2


def assemble_matrix(a: np.ndarray, mean: FaceMean = "harmonic") -> sp.csr_matrix:
    """Sparse matrix of −∇·(a∇·) on the interior nodes (Dirichlet rows eliminated).

    Parameters
    ----------
    a : ndarray, shape (s, s)
        Nodal coefficient including the boundary nodes, s ≥ 3.
    mean : {"harmonic", "arithmetic"}
        Face average, see :func:`face_coefficients`.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n², n²) with n = s − 2
        Symmetric positive definite, sorted indices, float64.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(f"a must have shape (s, s) with s >= 3, got {a.shape}")
    s = a.shape[0]
    n = s - 2
    inv_h2 = float((s - 1) ** 2)
    ax, ay = face_coefficients(a, mean)
    east = ax[1:, 1:-1]  # face (i+½, j) for interior i, j: shape (n, n)
    west = ax[:-1, 1:-1]
    north = ay[1:-1, 1:]
    south = ay[1:-1, :-1]
    diag = (east + west + north + south).ravel() * inv_h2
    # Coupling k -> k + 1 (next y node); zero where j is the last interior node, so rows don't wrap.
    up1 = -north * inv_h2
    up1[:, -1] = 0.0
    up1 = up1.ravel()[:-1]
    # Coupling k -> k + n (next x node); the last x row of interior nodes has no interior neighbour.
    upn = (-east[:-1, :] * inv_h2).ravel()
    mat = sp.diags([upn, up1, diag, up1, upn], [-n, -1, 0, 1, n], shape=(n * n, n * n), format="csr")
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat


def apply_operator(ax: torch.Tensor, ay: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Matrix-free batched ``A u`` on the full node grid.

    Parameters
    ----------
    ax, ay : Tensor, shapes (B, s − 1, s) and (B, s, s − 1)
        Face conductivities from :func:`face_coefficients`.
    u : Tensor, shape (B, s, s)
        Values on all nodes; the boundary values are treated as 0 whatever they hold.

    Returns
    -------
    Tensor, shape (B, s, s)
        ``A u`` on the interior nodes, 0 on the boundary (so it equals the sparse product there).
    """
    s = u.shape[-1]
    inv_h2 = float((s - 1) ** 2)
    ui = torch.zeros_like(u)
    ui[..., 1:-1, 1:-1] = u[..., 1:-1, 1:-1]
    fx = ax * (ui[..., 1:, :] - ui[..., :-1, :])  # flux a ∂u/∂x·h on x-faces
    fy = ay * (ui[..., :, 1:] - ui[..., :, :-1])
    out = torch.zeros_like(u)
    out[..., 1:-1, 1:-1] = (
        fx[..., :-1, 1:-1] - fx[..., 1:, 1:-1] + fy[..., 1:-1, :-1] - fy[..., 1:-1, 1:]
    ) * inv_h2
    return out


def operator_diagonal(ax: torch.Tensor, ay: torch.Tensor) -> torch.Tensor:
    """Diagonal of ``A`` on the full node grid, shape (B, s, s), with 1 on the boundary nodes."""
    s = ay.shape[-2]
    inv_h2 = float((s - 1) ** 2)
    d = torch.ones(ay.shape[:-2] + (s, s), dtype=ax.dtype, device=ax.device)
    d[..., 1:-1, 1:-1] = (
        ax[..., :-1, 1:-1] + ax[..., 1:, 1:-1] + ay[..., 1:-1, :-1] + ay[..., 1:-1, 1:]
    ) * inv_h2
    return d


def relative_residual(
    a: torch.Tensor, u: torch.Tensor, f: torch.Tensor | float, mean: FaceMean = "harmonic"
) -> torch.Tensor:
    """Relative residual ``‖f − A u‖₂ / ‖f‖₂`` over the interior nodes, per sample.

    Parameters
    ----------
    a, u : Tensor, shape (B, s, s)
        Coefficient and solution on all nodes (the boundary of ``u`` is taken as 0).
    f : Tensor of shape (B, s, s) or (s, s), or float
        Right-hand side (only interior values are used).

    Returns
    -------
    Tensor, shape (B,)
    """
    ax, ay = face_coefficients(a, mean)
    r = apply_operator(ax, ay, u)[..., 1:-1, 1:-1]
    f_int = torch.as_tensor(f, dtype=u.dtype, device=u.device).expand(u.shape)[..., 1:-1, 1:-1]
    r = f_int - r
    return torch.linalg.vector_norm(r, dim=(-2, -1)) / torch.linalg.vector_norm(f_int, dim=(-2, -1))


# ---------------------------------------------------------------------------------------------- batched PCG
def dst1(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unnormalised type-I discrete sine transform along ``dim``, via a real FFT of the odd extension.

    ``X_k = Σ_{j=1..n} x_j sin(π j k / (n + 1))``; applying it twice multiplies by ``(n + 1) / 2``.

    Parameters
    ----------
    x : Tensor, shape (..., n, ...)
        Real input; ``n`` is the size of ``dim``.
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    zero = x.new_zeros(x.shape[:-1] + (1,))
    # Odd extension of length 2(n + 1): its FFT is −2i times the DST-I of x in bins 1..n.
    y = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    out = torch.fft.rfft(y, dim=-1).imag[..., 1 : n + 1] * -0.5
    return out.movedim(-1, dim)


class StencilOperator:
    """Batched matrix-free 5-point operator on the interior nodes, with its preconditioners.

    Parameters
    ----------
    a : Tensor, shape (B, s, s)
        Nodal coefficient (> 0) on all nodes, float64 recommended; the operator lives on its device.
    mean : {"harmonic", "arithmetic"}
        Face average, see :func:`face_coefficients`.
    """

    def __init__(self, a: torch.Tensor, mean: FaceMean = "harmonic") -> None:
        if a.ndim != 3 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 3:
            raise ValueError(f"a must have shape (B, s, s) with s >= 3, got {tuple(a.shape)}")
        s = a.shape[-1]
        self.s, self.n = s, s - 2
        inv_h2 = float((s - 1) ** 2)
        ax, ay = face_coefficients(a, mean)
        # Interior-node views of the four face conductivities, scaled by 1/h² once here.
        self.east = (ax[:, 1:, 1:-1] * inv_h2).contiguous()
        self.west = (ax[:, :-1, 1:-1] * inv_h2).contiguous()
        self.north = (ay[:, 1:-1, 1:] * inv_h2).contiguous()
        self.south = (ay[:, 1:-1, :-1] * inv_h2).contiguous()
        self.diag = self.east + self.west + self.north + self.south
        n = self.n
        k = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
        lam1 = 4.0 * inv_h2 * torch.sin(torch.pi * k / (2 * (n + 1))) ** 2
        # Eigenvalues of the unit-coefficient Dirichlet 5-point Laplacian, with the DST-I scale folded in.
        self._inv_lam = (2.0 / (n + 1)) ** 2 / (lam1[:, None] + lam1[None, :])
        # scipy's DST-I is twice ours, so its inverse needs another factor 1/4 per transform pair.
        self._inv_lam_np = (self._inv_lam / 16.0).cpu().numpy()

    def matvec(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for interior values ``u`` of shape (B, n, n) (boundary = 0)."""
        p = torch.nn.functional.pad(u, (1, 1, 1, 1))
        out = self.diag * u
        out.addcmul_(self.east, p[:, 2:, 1:-1], value=-1.0)
        out.addcmul_(self.west, p[:, :-2, 1:-1], value=-1.0)
        out.addcmul_(self.north, p[:, 1:-1, 2:], value=-1.0)
        out.addcmul_(self.south, p[:, 1:-1, :-2], value=-1.0)
        return out

    def poisson_precondition(
        self, r: torch.Tensor, backend: Literal["auto", "torch", "scipy"] = "auto"
    ) -> torch.Tensor:
        """Exact inverse of the unit-coefficient Laplacian, by fast sine transforms (O(n² log n)).

        With it, the preconditioned operator's condition number is at most max(a)/min(a) on the faces,
        whatever the resolution, so PCG needs a resolution-independent number of iterations.

        Parameters
        ----------
        r : Tensor, shape (B, n, n)
        backend : {"auto", "torch", "scipy"}
            ``"auto"``: scipy on CPU (pocketfft's native DST-I is ~1.5x faster there than the
            odd-extension FFT in torch), torch elsewhere.
        """
        if backend == "scipy" or (backend == "auto" and r.device.type == "cpu"):
            workers = torch.get_num_threads()
            out = scipy.fft.dstn(r.cpu().numpy(), type=1, axes=(-2, -1), workers=workers)
            out *= self._inv_lam_np
            out = scipy.fft.dstn(out, type=1, axes=(-2, -1), workers=workers, overwrite_x=True)
            return torch.from_numpy(out).to(r.device)
        return dst1(dst1(dst1(dst1(r, -1), -2) * self._inv_lam, -1), -2)

    def jacobi_precondition(self, r: torch.Tensor) -> torch.Tensor:
        """Diagonal (Jacobi) preconditioner; iterations then grow like the grid size."""
        return r / self.diag


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vecdot(x.flatten(1), y.flatten(1))


def pcg_solve(
    a: torch.Tensor,
    f: torch.Tensor | float,
    tol: float = 1e-10,
    max_iter: int = 10_000,
    mean: FaceMean = "harmonic",
    preconditioner: Literal["poisson", "jacobi"] = "poisson",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Solve −∇·(a∇u) = f, u = 0 on the boundary, for a batch by preconditioned conjugate gradients.

    Each sample has its own step sizes and stops when ``‖f − A u‖₂ ≤ tol ‖f‖₂`` on the interior nodes.

    Parameters
    ----------
    a : Tensor, shape (B, s, s)
        Coefficient on all nodes; the solve runs on its device and dtype (float64 is required for
        tol < 1e-6).
    f : Tensor of shape (B, s, s) or (s, s), or float
        Right-hand side (interior values are used).
    tol : float
        Relative residual target.
    max_iter : int
        Iteration cap; reaching it raises ``RuntimeError`` naming the residual reached.
    preconditioner : {"poisson", "jacobi"}
        Fast-sine-transform inverse of the constant-coefficient Laplacian, or the diagonal.

    Returns
    -------
    u : Tensor, shape (B, s, s)
        Solution with exact zeros on the boundary.
    residual : Tensor, shape (B,)
        Relative residual recomputed from ``u`` (not the CG recurrence).
    iterations : int
        Iterations of the slowest sample.
    """
    if preconditioner not in ("poisson", "jacobi"):
        raise ValueError(f"preconditioner must be 'poisson' or 'jacobi', got {preconditioner!r}")
    if a.dtype != torch.float64 and tol < 1e-6:
        raise ValueError(f"tol={tol} needs float64 coefficients, got a.dtype={a.dtype}")
    op = StencilOperator(a, mean)
    prec = op.poisson_precondition if preconditioner == "poisson" else op.jacobi_precondition
    b = torch.as_tensor(f, dtype=a.dtype, device=a.device).expand(a.shape)[:, 1:-1, 1:-1].contiguous()
    bnorm = torch.linalg.vector_norm(b, dim=(-2, -1))
    thresh = tol * bnorm
    x = torch.zeros_like(b)
    r = b.clone()
    z = prec(r)
    p = z.clone()
    rz = _dot(r, z)
    active = torch.linalg.vector_norm(r, dim=(-2, -1)) > thresh
    it = 0
    while bool(active.any()):
        if it >= max_iter:
            worst = float((torch.linalg.vector_norm(r, dim=(-2, -1)) / bnorm).max())
            raise RuntimeError(f"PCG did not reach tol={tol} in max_iter={max_iter} (residual {worst:.2e})")
        it += 1
        ap = op.matvec(p)
        # Converged samples get a zero step, which freezes them without 0/0 divisions.
        alpha = torch.where(active, rz / torch.where(active, _dot(p, ap), 1.0), 0.0)[:, None, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        active = active & (torch.linalg.vector_norm(r, dim=(-2, -1)) > thresh)
        z = prec(r)
        rz_new = _dot(r, z)
        beta = torch.where(active, rz_new / torch.where(active, rz, 1.0), 0.0)[:, None, None]
        p.mul_(beta).add_(z)
        rz = rz_new
    u = torch.nn.functional.pad(x, (1, 1, 1, 1))
    res = torch.linalg.vector_norm(b - op.matvec(x), dim=(-2, -1)) / bnorm
    return u, res, it
