"""Gaussian feature embedding of the Physics-Informed Gaussians (Kang et al., ICLR 2025).

``FE(x) = Σ_i f_i exp(−½ (x − μ_i)ᵀ Σ_i⁻¹ (x − μ_i))`` with trainable means ``μ_i``, covariances
``Σ_i`` (diagonal, or full through a Cholesky factor of the precision) and feature vectors
``f_i ∈ R^k``. Points × Gaussians are evaluated in chunks of points so that memory stays bounded for
many Gaussians; the derivatives needed by physics losses are computed in closed form
(``∇g = −Σ⁻¹(x − μ) g``, ``∂²g/∂x_j² = ((Σ⁻¹(x − μ))_j² − (Σ⁻¹)_jj) g``). With diagonal covariances
(the paper's set-up) they run in a fused kernel with a hand-written backward pass
(:class:`_DiagonalGaussianJet`): 6.3× faster than autograd through the generic expression at the paper's
size (2000 Gaussians × 10k points, one CPU core: 2.69 → 0.43 s per forward and backward,
``scripts/bench_gaussians.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.utils.checkpoint import checkpoint

from neurop.layers.jet import Jet

Covariance = Literal["diagonal", "full"]
COVARIANCES: tuple[str, ...] = ("diagonal", "full")
FeatureLayout = Literal["shared", "per_channel"]
FEATURE_LAYOUTS: tuple[str, ...] = ("shared", "per_channel")


def exp_floor(dtype: torch.dtype) -> float:
    """Lowest exponent passed to ``exp`` for Gaussian values: a few units above underflow.

    Far from its mean a Gaussian underflows (``exp(−100)`` in float32), and the CPU ``exp`` kernel's
    underflow branch is about 10× slower than its normal path; with σ = 0.1 most point-Gaussian pairs
    are that far. Clamping the exponent here changes each such value by less than ``exp(floor)``
    (1.8e−35 in float32, 4e−305 in float64), far below rounding of any sum it enters.
    """
    return math.log(torch.finfo(dtype).tiny) + 7.0


def _diagonal_pair_terms(
    x: Tensor, means: Tensor, inv_var: Tensor
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Per point-Gaussian pair: ``x_j − μ_ij``, ``q_j = (x_j − μ_ij)/σ_ij²`` and ``g``, each (n, N)."""
    diffs, qs = [], []
    expo = None
    for j in range(x.shape[1]):
        diff = x[:, j, None] - means[:, j]
        q = diff * inv_var[:, j]
        diffs.append(diff)
        qs.append(q)
        expo = diff * q if expo is None else expo.addcmul_(diff, q)
    assert expo is not None
    g = expo.mul_(-0.5).clamp_(min=exp_floor(expo.dtype)).exp_()
    return diffs, qs, g


def _jet_block(
    x: Tensor, means: Tensor, inv_var: Tensor, features: Tensor, second_axes: tuple[int, ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """``FE``, ``∂FE/∂x_j`` (all j) and ``∂²FE/∂x_j²`` (j in second_axes) at one block of points."""
    diffs, qs, g = _diagonal_pair_terms(x, means, inv_var)
    # Products are written (k, N) @ (N, n): with k small this is 2-3x faster on a CPU than (n, N) @ (N, k).
    n, k = x.shape[0], features.shape[1]
    ft = features.t()
    u = (ft @ g.t()).t()
    du = x.new_empty(n, len(qs), k)
    for j, q in enumerate(qs):
        du[:, j] = (ft @ (g * q).t()).t()
    du.neg_()
    d2u = x.new_empty(n, len(second_axes), k)
    for a, j in enumerate(second_axes):
        h = qs[j].square().sub_(inv_var[:, j]).mul_(g)
        d2u[:, a] = (ft @ h.t()).t()
    return u, du, d2u


def _jet_block_grad(
    x: Tensor, means: Tensor, inv_var: Tensor, features: Tensor, second_axes: tuple[int, ...],
    grad_u: Tensor, grad_du: Tensor, grad_d2u: Tensor, need_x: bool,
) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:  # fmt: skip
    """Gradients of ``<grad_u, u> + <grad_du, du> + <grad_d2u, d2u>`` w.r.t. x (if ``need_x``), μ,
    s = 1/σ² and the features (transposed, (k, N)) at one block of points (:class:`_DiagonalGaussianJet`)."""
    diffs, qs, g = _diagonal_pair_terms(x, means, inv_var)
    ft = features.t()
    d = x.shape[1]
    grad_ft = grad_u.t() @ g  # (k, N): transposed products, as in forward
    p = grad_u @ ft  # P, (n, N)
    ts: list[Tensor] = []  # t_j = −c1_j + 2 c2_j q_j  (∂P/∂q_j)
    c2: dict[int, Tensor] = {}
    for j in range(d):
        grad_ft.sub_(grad_du[:, j].t() @ (g * qs[j]))
        t = grad_du[:, j] @ ft  # c1_j
        p.addcmul_(t, qs[j], value=-1.0)
        t.neg_()
        if j in second_axes:
            a = second_axes.index(j)
            hq = qs[j].square().sub_(inv_var[:, j])  # q_j² − s_j
            c2[j] = grad_d2u[:, a] @ ft
            p.addcmul_(c2[j], hq)
            grad_ft.add_(grad_d2u[:, a].t() @ hq.mul_(g))
            t.addcmul_(c2[j], qs[j], value=2.0)
        ts.append(t)
    grad_x = torch.empty_like(x) if need_x else None
    grad_means = torch.empty_like(means)
    grad_inv_var = torch.empty_like(inv_var)
    for j in range(d):
        # With B_j = t_j − ½ δ_j P (δ = x − μ):
        # ∂L/∂δ_j = s_j g (B_j − ½ δ_j P),  ∂L/∂s_j = g (δ_j B_j − c2_j).
        m = diffs[j] * p
        b = ts[j].add_(m, alpha=-0.5)
        gd = m.mul_(-0.5).add_(b).mul_(g)
        grad_means[:, j] = gd.sum(0).mul_(inv_var[:, j]).neg_()
        if grad_x is not None:
            grad_x[:, j] = gd @ inv_var[:, j]
        gs = diffs[j].mul_(b)
        if j in c2:
            gs.sub_(c2[j])
        grad_inv_var[:, j] = gs.mul_(g).sum(0)
    return grad_x, grad_means, grad_inv_var, grad_ft


class _DiagonalGaussianJet(torch.autograd.Function):
    """``FE``, ``∂FE/∂x_j`` and ``∂²FE/∂x_j²`` of diagonal Gaussians, fused and differentiated by hand.

    The generic path builds (n, N, d) tensors with the short axis innermost and lets autograd store them;
    here every quantity is an (n, N) matrix per axis, computed block by block of points small enough to
    stay in cache, nothing is stored (the backward pass recomputes ``g`` and ``q`` from the inputs), and
    the gradients are written out by hand:
    with the loss ``L = Σ_p Σ_i g_pi P_pi`` where ``P = c0 − Σ_j c1_j q_j + Σ_{j∈S} c2_j (q_j² − s_j)``
    (``c·`` the upstream gradients contracted with the features, ``s_j = 1/σ_j²``, ``δ = x − μ``),
    ``∂L/∂δ_j = g [−q_j P + s_j (−c1_j + 2 c2_j q_j)]`` and
    ``∂L/∂s_j = g [−½ δ_j² P + δ_j (−c1_j + 2 c2_j q_j) − c2_j]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, x: Tensor, means: Tensor, inv_var: Tensor, features: Tensor,
        second_axes: tuple[int, ...], block: int,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        n, d, k = x.shape[0], x.shape[1], features.shape[1]
        u = x.new_empty(n, k)
        du = x.new_empty(n, d, k)
        d2u = x.new_empty(n, len(second_axes), k)
        for s in range(0, n, block):
            u[s : s + block], du[s : s + block], d2u[s : s + block] = _jet_block(
                x[s : s + block], means, inv_var, features, second_axes
            )
        ctx.save_for_backward(x, means, inv_var, features)
        ctx.second_axes, ctx.block = second_axes, block  # type: ignore[attr-defined]
        return u, du, d2u

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, grad_u: Tensor, grad_du: Tensor, grad_d2u: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, means, inv_var, features = ctx.saved_tensors  # type: ignore[attr-defined]
        second_axes, block = ctx.second_axes, ctx.block  # type: ignore[attr-defined]
        need_x = bool(ctx.needs_input_grad[0])  # type: ignore[attr-defined]
        grad_x = torch.empty_like(x) if need_x else None
        grad_means = torch.zeros_like(means)
        grad_inv_var = torch.zeros_like(inv_var)
        grad_ft = features.new_zeros(features.shape[1], features.shape[0])
        for s in range(0, x.shape[0], block):
            sl = slice(s, s + block)
            gx, gm, gs, gf = _jet_block_grad(
                x[sl], means, inv_var, features, second_axes, grad_u[sl], grad_du[sl], grad_d2u[sl], need_x
            )
            if grad_x is not None:
                grad_x[sl] = gx
            grad_means += gm
            grad_inv_var += gs
            grad_ft += gf
        return grad_x, grad_means, grad_inv_var, grad_ft.t(), None, None


class GaussianEmbedding(nn.Module):
    """``N`` trainable Gaussians with ``k``-channel features (or ``N`` Gaussians per channel).

    Parameters
    ----------
    in_channels : int
        Dimension d of the points.
    n_gaussians : int
        N > 0: Gaussians in all (``layout="shared"``) or per feature channel (``"per_channel"``).
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
        Points per chunk, > 0; each chunk holds ``chunk_size × n_total × d`` values (``n_total``: N, or k·N
        with ``layout="per_channel"``).
    feature_std : float
        Standard deviation of the initial features.
    layout : {"shared", "per_channel"}
        ``"shared"``: every Gaussian carries a k-vector of features (``N`` Gaussians in all).
        ``"per_channel"``: each of the k channels has its own ``N`` Gaussians with scalar weights,
        ``FE_c(x) = Σ_i w_ci g_ci(x)`` (``k·N`` Gaussians in all), the layout of the PIG authors'
        code; evaluated as a shared layout of ``k·N`` Gaussians whose feature matrix is block one-hot.
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
        layout: FeatureLayout = "shared",
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
        if layout not in FEATURE_LAYOUTS:
            raise ValueError(f"layout must be one of {FEATURE_LAYOUTS}, got {layout!r}")
        d = in_channels
        box = [(-1.0, 1.0)] * d if bounds is None else [(float(b[0]), float(b[1])) for b in bounds]
        if len(box) != d or any(not lo < hi for lo, hi in box):
            raise ValueError(f"bounds must be {d} pairs [lo, hi] with lo < hi, got {bounds!r}")
        lo = torch.tensor([b[0] for b in box])
        hi = torch.tensor([b[1] for b in box])
        self.in_channels, self.n_gaussians, self.feature_channels = d, n_gaussians, feature_channels
        self.covariance: Covariance = covariance
        self.layout: FeatureLayout = layout
        self.chunk_size = chunk_size
        total = n_gaussians * feature_channels if layout == "per_channel" else n_gaussians
        self.n_total = total
        self.means = nn.Parameter(lo + (hi - lo) * torch.rand(total, d))
        if covariance == "diagonal":
            self.log_scales = nn.Parameter(torch.full((total, d), math.log(sigma0)))
        else:
            self.log_diag = nn.Parameter(torch.full((total, d), -math.log(sigma0)))
            self.lower = nn.Parameter(torch.zeros(total, d, d))
        if layout == "per_channel":
            # Gaussian c·N + i feeds channel c only: features = weights[:, None] * one_hot.
            self.features = nn.Parameter(feature_std * torch.randn(total))
            one_hot = torch.zeros(total, feature_channels)
            one_hot[torch.arange(total), torch.arange(total) // n_gaussians] = 1.0
            self.register_buffer("_one_hot", one_hot, persistent=False)
        else:
            self.features = nn.Parameter(feature_std * torch.randn(n_gaussians, feature_channels))
        # Diagonal covariance: the jet uses the fused, hand-differentiated kernel (_DiagonalGaussianJet);
        # False selects the generic autograd path (the reference it is tested against).
        self.fused_jet = True

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, n_gaussians={self.n_gaussians}, "
            f"feature_channels={self.feature_channels}, covariance={self.covariance!r}, "
            f"layout={self.layout!r}, chunk_size={self.chunk_size}"
        )

    def feature_matrix(self) -> Tensor:
        """Features of every Gaussian as an ``(n_total, k)`` matrix (block one-hot for ``per_channel``)."""
        if self.layout == "per_channel":
            return self.features[:, None] * self._one_hot.to(self.features.dtype)
        return self.features

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
            g = torch.exp((-0.5 * (diff * q).sum(-1)).clamp(min=exp_floor(x.dtype)))  # (n, N)
            diag_prec = inv_var
        else:
            p = self.precision_factor()
            r = torch.einsum("ngi,gij->ngj", diff, p)  # Pᵀ(x − μ)
            q = torch.einsum("ngj,gij->ngi", r, p)
            g = torch.exp((-0.5 * (r * r).sum(-1)).clamp(min=exp_floor(x.dtype)))
            diag_prec = (p * p).sum(-1)
        features = self.feature_matrix()
        u = g @ features
        if not with_derivatives:
            return (u,)
        gq = (g[:, :, None] * q).transpose(1, 2)  # (n, d, N)
        du = -(gq @ features)
        if second_axes:
            ax = list(second_axes)
            qa = q[:, :, ax]
            h = g[:, :, None] * (qa * qa - diag_prec[None, :, ax])
            d2u = h.transpose(1, 2) @ features
        else:
            d2u = u.new_zeros(u.shape[0], 0, u.shape[1])
        return u, du, d2u

    def fused_block(self, device: torch.device | None = None) -> int:
        """Points per block of the fused jet. On a CPU about 2¹⁸ point-Gaussian pairs (1 MB in float32),
        which stays in the L2 cache (measured on 2000 Gaussians × 10k points: 128 points per block is 1.6×
        faster than 4096), and never more than ``chunk_size``; on other devices ``chunk_size`` itself, as
        there small blocks only multiply kernel launches."""
        if device is not None and device.type != "cpu":
            return self.chunk_size
        return min(self.chunk_size, max(16, (1 << 18) // self.n_total // 16 * 16))

    def _chunked(self, x: Tensor, second_axes: tuple[int, ...], with_derivatives: bool) -> list[Tensor]:
        n = x.shape[0]
        if with_derivatives and self.covariance == "diagonal" and self.fused_jet:
            inv_var = torch.exp(-2 * self.log_scales)
            block = self.fused_block(x.device)
            features = self.feature_matrix()
            return list(_DiagonalGaussianJet.apply(x, self.means, inv_var, features, second_axes, block))
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


__all__ = ["COVARIANCES", "FEATURE_LAYOUTS", "Covariance", "FeatureLayout", "GaussianEmbedding"]
