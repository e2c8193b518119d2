"""Batched regularised least squares for the constraint weights: Levenberg–Marquardt, implicit gradients.

For every problem of a batch (a sample, or a sample's expert) the weights ω ∈ R^N minimise

    Φ(ω) = ½ w_i² Σ_p g(Σ_n ω_n F_n(p); a(p))² + ½ w_b² ‖A ω − h‖² + ½ λ ‖ω‖²,

the PDE residual at P sampled points (features ``F`` of the N basis functions, pointwise function ``g``),
the linear initial/boundary rows ``A`` with targets ``h``, and a ridge λ = ``ridge`` · mean(diag JᵀJ) at
ω = 0 (scale-free; treated as a constant, also by the gradients). When ``g`` is affine one Gauss–Newton
step from 0 is the exact minimiser (a single linear solve); otherwise Levenberg–Marquardt iterates, all
problems in one batch. The backward pass differentiates the optimality condition ∇_ω Φ(ω*, θ) = 0 (the
implicit function theorem): dL/dθ = −(∂∇_ωΦ/∂θ)ᵀ H⁻¹ dL/dω* with the exact Hessian H, never unrolling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

Pointwise = Callable[[Tensor, Tensor], Tensor]
OnFailure = Literal["raise", "warn"]
ON_FAILURE: tuple[str, ...] = ("raise", "warn")

_FTOL = 1e-12
# MINPACK's xtol test: a rejected step shorter than this times ‖ω‖ means ω is fixed to round-off.
_XTOL = 1e-10

# Above this ratio of the largest to the smallest Cholesky pivot squared a system is reported singular.
_MAX_CONDITION = 1e13


class ConstraintSolveError(RuntimeError):
    """A constraint solve was singular or did not converge; the message gives the final residual."""


@dataclass
class SolveInfo:
    """Diagnostics of one batched solve.

    Attributes
    ----------
    iterations : int
        Levenberg–Marquardt iterations run (1 for a linear problem).
    converged : Tensor, bool, shape (B,)
    residual_rms : Tensor, shape (B,)
        Root mean square of the weighted residual rows at the solution.
    grad_ratio : Tensor, shape (B,)
        max_n |∂Φ/∂ω_n| / (‖J_:n‖ ‖r‖) at the solution (0 at an exact stationary point).
    singular : Tensor, bool, shape (B,)
        A linear system was numerically singular.
    """

    iterations: int
    converged: Tensor
    residual_rms: Tensor
    grad_ratio: Tensor
    singular: Tensor

    def describe(self) -> str:
        bad = ~self.converged | self.singular
        return (
            f"{int(bad.sum())} of {bad.numel()} problems failed ({int(self.singular.sum())} singular) after "
            f"{self.iterations} iterations; final residual rms max {float(self.residual_rms.max()):.3e}, "
            f"mean {float(self.residual_rms.mean()):.3e}; "
            f"max gradient test {float(self.grad_ratio.max()):.3e}"
        )


def _pointwise_derivatives(
    g: Pointwise, f: Tensor, inputs: Tensor, create_graph: bool, second: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``g(f)``, ∂g/∂f (B, F, P) and optionally ∂²g/∂f² (B, F, F, P), by autograd (g is pointwise)."""
    # Lightning evaluates under inference mode, where autograd is off even inside enable_grad: leave it
    # and clone the (inference) tensors for this local, pointwise differentiation.
    inference = torch.is_inference_mode_enabled() or f.is_inference()
    with torch.inference_mode(False), torch.enable_grad():
        if inference:
            f, inputs = f.clone(), inputs.clone()
        leaf = f if f.requires_grad else f.detach().requires_grad_(True)
        r = g(leaf, inputs)
        (dg,) = torch.autograd.grad(
            r.sum(), leaf, create_graph=create_graph or second, materialize_grads=True
        )
        d2g = None
        if second:
            rows = []
            for k in range(f.shape[1]):
                (row,) = torch.autograd.grad(
                    dg[:, k].sum(), leaf, retain_graph=True, create_graph=create_graph, materialize_grads=True
                )
                rows.append(row)
            d2g = torch.stack(rows, 1)
    if not (create_graph or second):
        r, dg = r.detach(), dg.detach()
    return r, dg, d2g


def _rows(
    omega: Tensor,
    feats: Tensor,
    inputs: Tensor,
    rows: Tensor,
    target: Tensor,
    g: Pointwise,
    w_int: float,
    w_bnd: float,
    create_graph: bool,
    second: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Weighted residual rows r (B, P + Q), Jacobian J (B, P + Q, N), raw g (B, P) and ∂²g/∂f².

    ``feats`` is laid out (B, F, P, N) and ``rows`` (B, Q, N), so both products are plain GEMMs.
    """
    f = (feats @ omega[:, None, :, None]).squeeze(-1)  # (B, F, P)
    r_int, dg, d2g = _pointwise_derivatives(g, f, inputs, create_graph, second)
    j_int = (dg.unsqueeze(-1) * feats).sum(1) * w_int  # (B, P, N)
    r_bnd = ((rows @ omega.unsqueeze(-1)).squeeze(-1) - target) * w_bnd
    r = torch.cat([r_int * w_int, r_bnd], dim=-1)
    jac = torch.cat([j_int, rows * w_bnd], dim=1)
    return r, jac, r_int, d2g


def _jt(jac: Tensor, r: Tensor) -> Tensor:
    """Jᵀ r for J (B, P, N) and r (B, P) -> (B, N)."""
    return (jac.transpose(1, 2) @ r.unsqueeze(-1)).squeeze(-1)


def _gradient_test(grad: Tensor, jac: Tensor, r: Tensor) -> Tensor:
    """MINPACK's scale-free stationarity measure max_n |∇Φ_n| / (‖J_:n‖ ‖r‖), shape (B,)."""
    with torch.no_grad():
        scale = jac.norm(dim=1) * r.norm(dim=-1, keepdim=True)
        return (grad.abs() / scale.clamp_min(1e-300)).amax(-1)


def _cholesky_solve(mat: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Solve SPD systems (B, N, N) x = rhs (B, N); also return which were numerically singular."""
    chol, info = torch.linalg.cholesky_ex(mat)
    d = torch.diagonal(chol, dim1=-2, dim2=-1).abs()
    ratio = (d.amax(-1) / d.amin(-1).clamp_min(1e-300)) ** 2
    singular = (info > 0) | ~torch.isfinite(ratio) | (ratio > _MAX_CONDITION)
    if bool(singular.any()):
        # Keep the batch going with a regularised copy so the failure can be reported with residuals.
        eye = torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)
        scale = torch.diagonal(mat, dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-300)
        fixed = torch.where(singular[:, None, None], mat + 1e-8 * scale[:, None, None] * eye, mat)
        fixed = torch.nan_to_num(fixed)
        chol, _ = torch.linalg.cholesky_ex(fixed)
    x = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
    return x, singular


def _lm(
    feats: Tensor,
    inputs: Tensor,
    rows: Tensor,
    target: Tensor,
    g: Pointwise,
    *,
    linear: bool,
    w_int: float,
    w_bnd: float,
    ridge: float,
    max_iter: int,
    tol: float,
    track: bool,
) -> tuple[Tensor, Tensor, SolveInfo]:
    """The Levenberg–Marquardt iteration; differentiable (unrolled) when run with grad enabled."""
    b, n = feats.shape[0], feats.shape[-1]
    eye = torch.eye(n, dtype=feats.dtype, device=feats.device)
    omega = feats.new_zeros(b, n)
    r, jac, _, _ = _rows(omega, feats, inputs, rows, target, g, w_int, w_bnd, create_graph=track)
    if not linear and rows.shape[-1] > 0:
        # Start from the weights that fit the initial/boundary rows alone: ω = 0 (u = 0) can sit where the
        # residual is singular (e.g. the sorption isotherm at u = 0).
        a_mat = rows * w_bnd
        lam_b = ridge * torch.diagonal(a_mat.transpose(1, 2) @ a_mat, dim1=-2, dim2=-1).mean(-1)
        lam_b = lam_b.detach().clamp_min(1e-12)
        normal = a_mat.transpose(1, 2) @ a_mat + lam_b[:, None, None] * eye
        omega, _ = _cholesky_solve(normal, _jt(a_mat, target * w_bnd))
        r, jac, _, _ = _rows(omega, feats, inputs, rows, target, g, w_int, w_bnd, create_graph=track)
    jtj = jac.transpose(1, 2) @ jac
    lam = (ridge * torch.diagonal(jtj, dim1=-2, dim2=-1).mean(-1)).detach().clamp_min(1e-300)
    grad = _jt(jac, r)
    singular = torch.zeros(b, dtype=torch.bool, device=feats.device)
    converged = torch.zeros_like(singular)
    if linear:
        omega, singular = _cholesky_solve(jtj + lam[:, None, None] * eye, -grad)
        iterations = 1
        converged = ~singular
    else:
        mu = torch.full((b,), 1e-3, dtype=feats.dtype, device=feats.device)
        lam_all = lam
        # The working set: problems still iterating. Without autograd tracking a converged problem leaves
        # the batch (its weights are final), so one slow problem (a straggler among many experts) does not
        # make every problem of the batch pay for its iterations; with tracking all stay, masked.
        act = torch.arange(b, device=feats.device)
        done_omega, done_conv, done_sing = omega.clone(), converged.clone(), singular.clone()
        f_w, in_w, rows_w, tgt_w = feats, inputs, rows, target
        compacted = False
        iterations = 0
        for iterations in range(1, max_iter + 1):
            cost = 0.5 * (r * r).sum(-1) + 0.5 * lam * (omega * omega).sum(-1)
            grad = _jt(jac, r) + lam[:, None] * omega
            # Once converged (by any test) a problem stays converged and its weights stay fixed.
            converged = converged | (_gradient_test(grad, jac, r) <= tol)
            if bool(converged.all()):
                iterations -= 1
                break
            if not track and bool(converged.any()):
                gone, keep = act[converged], ~converged
                done_omega[gone], done_sing[gone] = omega[converged], singular[converged]
                done_conv[gone] = True
                act, omega, r, jac, jtj = act[keep], omega[keep], r[keep], jac[keep], jtj[keep]
                lam, mu, cost, grad = lam[keep], mu[keep], cost[keep], grad[keep]
                singular, converged = singular[keep], converged[keep]
                f_w, in_w, rows_w, tgt_w = f_w[keep], in_w[keep], rows_w[keep], tgt_w[keep]
                compacted = True
            damp = torch.diag_embed(torch.diagonal(jtj, dim1=-2, dim2=-1)) * mu[:, None, None]
            step, sing = _cholesky_solve(jtj + lam[:, None, None] * eye + damp, -grad)
            singular = singular | sing
            trial = omega + step
            r_t, jac_t, _, _ = _rows(trial, f_w, in_w, rows_w, tgt_w, g, w_int, w_bnd, create_graph=track)
            cost_t = 0.5 * (r_t * r_t).sum(-1) + 0.5 * lam * (trial * trial).sum(-1)
            accept = (cost_t.detach() <= cost.detach()) & torch.isfinite(cost_t.detach()) & ~converged
            # MINPACK's ftol test: an accepted step that lowers the cost by a relative 1e-12 or less means
            # the minimum is reached to round-off (for ill-conditioned problems before the gradient test).
            small = (cost.detach() - cost_t.detach()) <= _FTOL * cost.detach().clamp_min(1e-300)
            converged = converged | (small & accept)
            # Near round-off every step may be rejected while the gradient test stays just above tol;
            # a rejected step that no longer moves ω (relative 1e-10) means no better ω is resolvable.
            tiny = step.detach().norm(dim=-1) <= _XTOL * (omega.detach().norm(dim=-1) + _XTOL)
            converged = converged | (tiny & ~accept & torch.isfinite(cost.detach()))
            a = accept[:, None]
            omega = torch.where(a, trial, omega)
            r = torch.where(a, r_t, r)
            jac = torch.where(a[..., None], jac_t, jac)
            jtj = jac.transpose(1, 2) @ jac
            mu = torch.where(accept, mu / 3, mu * 4).clamp(1e-12, 1e12)
        else:
            grad = _jt(jac, r) + lam[:, None] * omega
            converged = converged | (_gradient_test(grad, jac, r) <= tol)
        if compacted:
            done_omega[act], done_conv[act], done_sing[act] = omega, converged, singular
            omega, converged, singular = done_omega, done_conv, done_sing
        lam = lam_all
    with torch.no_grad():
        od, fd, rd, td = omega.detach(), feats.detach(), rows.detach(), target.detach()
        r_fin, j_fin, _, _ = _rows(od, fd, inputs, rd, td, g, w_int, w_bnd, create_graph=False)
        grad_fin = _jt(j_fin, r_fin) + lam[:, None] * od
        ratio = _gradient_test(grad_fin, j_fin, r_fin)
        rms = r_fin.pow(2).mean(-1).sqrt()
    if linear:
        converged = converged & torch.isfinite(ratio)
    info = SolveInfo(iterations, converged & ~singular, rms, ratio, singular)
    return omega, lam, info


class _ImplicitWeights(torch.autograd.Function):
    """Returns the solved weights; its backward is the implicit-function-theorem gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        omega: Tensor,
        lam: Tensor,
        feats: Tensor,
        rows: Tensor,
        target: Tensor,
        inputs: Tensor,
        g: Pointwise,
        linear: bool,
        w_int: float,
        w_bnd: float,
    ) -> Tensor:
        ctx.save_for_backward(omega, lam, feats, rows, target, inputs)
        ctx.g, ctx.linear, ctx.w_int, ctx.w_bnd = g, linear, w_int, w_bnd
        return omega.clone()

    @staticmethod
    def backward(ctx: Any, grad_omega: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        omega, lam, feats, rows, target, inputs = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with torch.enable_grad():
            f_ = feats.detach().requires_grad_(needs[2])
            a_ = rows.detach().requires_grad_(needs[3])
            h_ = target.detach().requires_grad_(needs[4])
            r, jac, r_int, d2g = _rows(
                omega,
                f_,
                inputs,
                a_,
                h_,
                ctx.g,
                ctx.w_int,
                ctx.w_bnd,
                create_graph=True,
                second=not ctx.linear,
            )
            stationarity = _jt(jac, r) + lam[:, None] * omega
            with torch.no_grad():
                jd = jac.detach()
                eye = torch.eye(omega.shape[-1], dtype=omega.dtype, device=omega.device)
                hess = jd.transpose(1, 2) @ jd + lam[:, None, None] * eye
                if d2g is not None:
                    fd = feats.detach()
                    weight = (ctx.w_int**2) * r_int.detach()
                    # Σ_p weight_p F_p^T (∂²g/∂f²)_p F_p with F_p the (F, N) features at point p.
                    inner = torch.einsum("bklp,blpm->bkpm", d2g.detach(), fd) * weight[:, None, :, None]
                    hess = hess + torch.einsum("bkpn,bkpm->bnm", fd, inner)
                v = torch.linalg.solve(hess, grad_omega.to(hess.dtype))
            leaves = [t for t, need in zip((f_, a_, h_), needs[2:5], strict=True) if need]
            grads = (
                iter(
                    torch.autograd.grad(
                        stationarity, leaves, grad_outputs=-v, allow_unused=True, materialize_grads=True
                    )
                )
                if leaves
                else iter(())
            )
        out = [next(grads) if need else None for need in needs[2:5]]
        return (None, None, *out, None, None, None, None, None)


def solve_weights(
    feats: Tensor,
    inputs: Tensor,
    rows: Tensor,
    target: Tensor,
    g: Pointwise,
    *,
    linear: bool,
    w_int: float = 1.0,
    w_bnd: float = 1.0,
    ridge: float = 1e-6,
    max_iter: int = 50,
    tol: float = 1e-6,
    backward: Literal["implicit", "unroll"] = "implicit",
    on_failure: OnFailure = "raise",
) -> tuple[Tensor, SolveInfo]:
    """Solve the batched constraint problem of the module docstring.

    Parameters
    ----------
    feats : Tensor, shape (B, N, F, P)
        Features of the N basis functions at the P sampled points (float64 recommended).
    inputs : Tensor, shape (B, C_in, P)
        PDE inputs at the points (not differentiated).
    rows : Tensor, shape (B, N, Q)
        Initial/boundary row functionals applied to each basis function.
    target : Tensor, shape (B, Q)
    g : callable
        Pointwise residual ``g(features (B, F, P), inputs (B, C_in, P)) -> (B, P)``.
    linear : bool
        ``g`` is affine: one linear solve.
    w_int, w_bnd : float
        Row weights of the residual and boundary rows.
    ridge : float
        Relative ridge, ≥ 0.
    max_iter : int
        Levenberg–Marquardt iteration cap.
    tol : float
        Converged when max_n |∂Φ/∂ω_n| ≤ tol ‖J_:n‖ ‖r‖ (MINPACK's gtol test).
    backward : {"implicit", "unroll"}
        Gradients by the implicit function theorem, or through the iterations (for checks only).
    on_failure : {"raise", "warn"}
        What a singular or non-converged solve does: raise :class:`ConstraintSolveError` or warn; the
        message gives the final residual either way.

    Returns
    -------
    omega : Tensor, shape (B, N)
    info : SolveInfo
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    if backward not in ("implicit", "unroll"):
        raise ValueError(f"backward must be 'implicit' or 'unroll', got {backward!r}")
    # Internally features are (B, F, P, N) and rows (B, Q, N): contiguous GEMM operands.
    feats = feats.permute(0, 2, 3, 1).contiguous()
    rows = rows.transpose(1, 2).contiguous()
    kwargs = dict(linear=linear, w_int=w_int, w_bnd=w_bnd, ridge=ridge, max_iter=max_iter, tol=tol)
    if backward == "unroll":
        omega, lam, info = _lm(feats, inputs, rows, target, g, **kwargs, track=True)
    else:
        with torch.no_grad():
            omega, lam, info = _lm(
                feats.detach(), inputs, rows.detach(), target.detach(), g, **kwargs, track=False
            )
        if torch.is_grad_enabled() and (feats.requires_grad or rows.requires_grad or target.requires_grad):
            omega = _ImplicitWeights.apply(omega, lam, feats, rows, target, inputs, g, linear, w_int, w_bnd)
    if bool((~info.converged | info.singular).any()):
        msg = "hard-constraint least-squares solve failed: " + info.describe()
        if on_failure == "raise":
            raise ConstraintSolveError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return omega, info


__all__ = ["ON_FAILURE", "ConstraintSolveError", "SolveInfo", "solve_weights"]
