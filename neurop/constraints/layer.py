"""The hard-constraint layer: basis functions in, a field that solves the PDE at sampled points out.

Chalapathi, Du & Krishnapriyan, "Scaling physics-informed hard constraints with mixture-of-experts",
ICLR 2024. A backbone gives N basis functions b_n on the grid; the layer returns u = Σ_n ω_n b_n with ω
solving the PDE residual, the initial/boundary rows and a small ridge in the least-squares sense at m
sampled points (:mod:`neurop.constraints.solve`). With ``experts = [K_1, ..., K_d]`` the grid is cut into
K = Π K_a equal blocks; expert k solves its own ω_k from the points of its block plus the global
initial/boundary rows, and u = Σ_n ω_{k,n} b_n on block k. All experts of all samples are one batched
solve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from neurop.constraints.partition import (
    block_mask,
    check_partition,
    from_blocks,
    interface_jumps,
    n_blocks,
    to_blocks,
)
from neurop.constraints.residual import GridResidual
from neurop.constraints.solve import ON_FAILURE, OnFailure, SolveInfo, solve_weights

EXPERT_BOUNDARY: tuple[str, ...] = ("global", "local")
_INFO_TENSORS = ("converged", "residual_rms", "grad_ratio", "singular")


class ExpertFields(NamedTuple):
    """What the experts produced, beyond the assembled field (for training losses).

    Attributes
    ----------
    blocks : Tensor, shape (B * K, 1, *block)
        Expert k's field on its own block k at index ``b * K + k`` (blocks that share an interface node
        each keep their own value there; the assembled field takes the later block's).
    jumps : Tensor, shape (B, J)
        Neighbouring experts' disagreement on the nodes where their blocks meet
        (:func:`~neurop.constraints.partition.interface_jumps`); J = 0 for one block.
    """

    blocks: Tensor
    jumps: Tensor


class HardConstraint(nn.Module):
    """Impose a grid residual exactly (in the least-squares sense) on a combination of basis functions.

    Parameters
    ----------
    residual : GridResidual
        The PDE's grid residual (see :func:`neurop.constraints.residuals.build_residual`).
    n_points : int or None
        Sampled residual points in total, shared equally by the experts (``n_points // K`` each);
        ``None`` uses every interior point (as many per expert as the expert with fewest has).
        Redrawn at every training forward; a fixed draw (seed 0) in evaluation mode.
    experts : sequence of int or None
        Blocks per grid axis, e.g. ``[2, 2, 1]``; ``None`` is one global constraint.
    n_boundary : int or None
        Initial/boundary rows used (a random subset when fewer than available); ``None``: all.
    ridge : float
        Relative ridge of the least-squares problem.
    boundary_weight : float
        Weight of the mean boundary row relative to the mean residual row.
    max_iter, tol : int, float
        Levenberg–Marquardt cap and relative gradient tolerance.
    on_failure : {"raise", "warn"}
        Reaction to a singular or non-converged solve (the message has the final residual).
    backward : {"implicit", "unroll"}
        Implicit-function-theorem gradients (the method) or unrolled iterations (for checks).
    expert_boundary : {"global", "local"}
        Initial/boundary rows of every expert: all of them (``"global"``, as in the method's description)
        or only those located in the expert's block (``"local"``; needs
        :meth:`~neurop.constraints.residual.GridResidual.boundary_index`).
    devices : sequence of str or None
        Spread the batched problems (samples × experts) over these devices, e.g. ``["cuda:0", "cuda:1"]``,
        one contiguous chunk each; ``None`` solves on the basis' device.
    """

    def __init__(
        self,
        residual: GridResidual,
        n_points: int | None = 1000,
        experts: Sequence[int] | None = None,
        n_boundary: int | None = None,
        ridge: float = 1e-6,
        boundary_weight: float = 1.0,
        max_iter: int = 50,
        tol: float = 1e-6,
        on_failure: OnFailure = "raise",
        backward: Literal["implicit", "unroll"] = "implicit",
        expert_boundary: Literal["global", "local"] = "global",
        devices: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(residual, GridResidual):
            raise TypeError(f"residual must be a GridResidual, got {type(residual).__name__}")
        if n_points is not None and (isinstance(n_points, bool) or int(n_points) != n_points or n_points < 1):
            raise ValueError(f"n_points must be a positive integer or None, got {n_points!r}")
        if n_boundary is not None and (int(n_boundary) != n_boundary or n_boundary < 0):
            raise ValueError(f"n_boundary must be an integer >= 0 or None, got {n_boundary!r}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        if boundary_weight <= 0:
            raise ValueError(f"boundary_weight must be > 0, got {boundary_weight!r}")
        if int(max_iter) != max_iter or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol!r}")
        if expert_boundary not in EXPERT_BOUNDARY:
            raise ValueError(f"expert_boundary must be one of {EXPERT_BOUNDARY}, got {expert_boundary!r}")
        if on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
        if experts is not None and len(experts) != residual.dim:
            raise ValueError(
                f"experts must give one block count per grid axis of pde {residual.name!r} "
                f"({residual.dim} axes), got {list(experts)}"
            )
        self.residual = residual
        self.n_points = None if n_points is None else int(n_points)
        self.experts = None if experts is None else [int(k) for k in experts]
        self.n_boundary = None if n_boundary is None else int(n_boundary)
        self.ridge = float(ridge)
        self.boundary_weight = float(boundary_weight)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.on_failure: OnFailure = on_failure
        self.backward_mode = backward
        self.expert_boundary = expert_boundary
        if devices is not None:
            if isinstance(devices, str) or not all(isinstance(d, str) for d in devices) or not devices:
                raise ValueError(f"devices must be a non-empty list of device names or None, got {devices!r}")
            for d in devices:
                try:
                    torch.device(d)
                except RuntimeError as err:
                    raise ValueError(f"devices has an invalid device name {d!r}: {err}") from None
        self.devices = None if devices is None else [str(d) for d in devices]
        self.last_info: SolveInfo | None = None

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.training:
            return None
        g = torch.Generator(device="cpu")
        g.manual_seed(0)
        return g

    def _sample(self, masks: Tensor, m: int | None) -> Tensor:
        """Indices (K, m) of sampled valid points per block from masks (K, S)."""
        counts = masks.sum(-1)
        fewest = int(counts.min())
        if fewest == 0:
            raise ValueError(
                f"an expert block has no interior point of pde {self.residual.name!r}; use fewer experts"
            )
        m = fewest if m is None else min(m, fewest)
        gen = self._generator(masks.device)
        weights = masks.to(torch.float64).cpu()
        idx = torch.multinomial(weights, m, replacement=False, generator=gen)
        return idx.to(masks.device)

    def forward(
        self, basis: Tensor, inputs: Tensor, return_experts: bool = False
    ) -> Tensor | tuple[Tensor, ExpertFields]:
        """Combine the basis functions with weights that satisfy the PDE.

        Parameters
        ----------
        basis : Tensor, shape (B, N, *grid)
        inputs : Tensor, shape (B, C_in, *grid)
            PDE inputs in physical units on the same grid (e.g. the Darcy coefficient, the initial
            condition repeated over time).
        return_experts : bool
            Also return the experts' own fields and their disagreement at the block interfaces.

        Returns
        -------
        u : Tensor, shape (B, 1, *grid)
            ``u = Σ_n ω_n b_n`` per sample (per expert block).
        experts : ExpertFields
            Only with ``return_experts``.
        """
        res = self.residual
        if basis.ndim != 2 + res.dim:
            raise ValueError(
                f"basis must have shape (B, N, *grid) with {res.dim} grid axes for pde {res.name!r}, "
                f"got {tuple(basis.shape)}"
            )
        if inputs.shape[0] != basis.shape[0] or tuple(inputs.shape[2:]) != tuple(basis.shape[2:]):
            raise ValueError(
                f"inputs {tuple(inputs.shape)} must match the basis {tuple(basis.shape)} in batch and grid"
            )
        b, n = basis.shape[:2]
        grid = tuple(basis.shape[2:])
        parts = check_partition(grid, self.experts)
        k = n_blocks(parts)
        h = res.spacing(grid)
        dtype = torch.float64
        basis64, inputs64 = basis.to(dtype), inputs.to(dtype)
        interior = res.interior(grid, basis.device)
        if res.local:
            # Each expert sees only its block: axes cut into blocks are not periodic there.
            periodic = [p and kk == 1 for p, kk in zip(res.periodic, parts, strict=True)]
            feats, valid = res.features(to_blocks(basis64, parts), to_blocks(inputs64, parts), h, periodic)
            masks = block_mask(interior, parts) & valid
        else:
            feats, valid = res.features(basis64, inputs64, h, res.periodic)
            f_dim = feats.shape[2]
            feats = to_blocks(feats.reshape(b, n * f_dim, *grid), parts).reshape(b * k, n, f_dim, -1)
            masks = block_mask(interior & valid, parts)
        masks = masks.reshape(k, -1)
        m_req = None if self.n_points is None else max(1, self.n_points // k)
        idx = self._sample(masks, m_req)  # (K, m)
        m = idx.shape[1]
        f_dim = feats.shape[2]
        feats = feats.reshape(b * k, n, f_dim, -1)
        gather = idx.repeat(b, 1)  # (B*K, m): block b*K + k uses the points of expert k
        feats_p = torch.gather(feats, 3, gather[:, None, None, :].expand(-1, n, f_dim, -1))
        blocks_in = to_blocks(inputs64, parts).reshape(b * k, inputs.shape[1], -1)
        inputs_p = torch.gather(blocks_in, 2, gather[:, None, :].expand(-1, inputs.shape[1], -1))

        rows, target = res.boundary(basis64, inputs64, h)  # (B, N, Q), (B, Q)
        q_all = rows.shape[-1]
        where = res.boundary_index(grid, basis.device) if self.expert_boundary == "local" and k > 1 else None
        if self.expert_boundary == "local" and k > 1 and where is None:
            raise ValueError(
                f"expert_boundary='local' needs the locations of the boundary rows, which the grid residual "
                f"of pde {res.name!r} does not give; use expert_boundary='global'"
            )
        if self.n_boundary is not None and self.n_boundary < q_all:
            sel = torch.randperm(q_all, generator=self._generator(basis.device))[: self.n_boundary]
            sel = sel.to(basis.device)
            rows, target = rows[..., sel], target[..., sel]
            where = None if where is None else where[sel]
        q = q_min = rows.shape[-1]
        rows = rows.repeat_interleave(k, dim=0)
        target = target.repeat_interleave(k, dim=0)
        if where is not None:
            # Expert k keeps the rows located in its block (zero rows add nothing); each expert's rows are
            # rescaled so that they weigh as much in its problem as all rows do in the global one.
            cells = torch.arange(math.prod(grid), device=basis.device, dtype=torch.float64).reshape(
                1, 1, *grid
            )
            members = to_blocks(cells, parts).reshape(k, -1).long()  # (K, block points)
            in_block = torch.zeros(k, math.prod(grid), dtype=torch.bool, device=basis.device)
            in_block.scatter_(1, members, True)
            inside = in_block[:, where]  # (K, Q)
            counts = inside.sum(-1)
            scale = inside * (q / counts.clamp_min(1)).sqrt()[:, None]
            scale = scale.to(rows.dtype).repeat(b, 1)  # (B*K, Q)
            rows, target = rows * scale[:, None, :], target * scale
            q_min = int(counts.min())
        if m + q_min < n:
            raise ValueError(
                f"more basis functions (N={n}) than least-squares rows per expert ({m} sampled points + "
                f"{q_min} boundary rows = {m + q_min}); raise n_points or n_boundary, or use fewer experts "
                "or basis functions"
            )
        solve_kw = dict(
            linear=res.linear,
            w_int=m**-0.5,
            w_bnd=self.boundary_weight * max(q, 1) ** -0.5,
            ridge=self.ridge,
            max_iter=self.max_iter,
            tol=self.tol,
            backward=self.backward_mode,
            on_failure=self.on_failure,
        )
        if not self.devices or len(self.devices) == 1 and torch.device(self.devices[0]) == basis.device:
            omega, info = solve_weights(feats_p, inputs_p, rows, target, res.pointwise, **solve_kw)
        else:
            # The B*K independent problems split into one contiguous chunk per device, solved there;
            # autograd carries the implicit gradients back across the copies.
            parts_out, infos = [], []
            for dev, sel in zip(
                self.devices, torch.arange(b * k).tensor_split(len(self.devices)), strict=True
            ):
                if sel.numel() == 0:
                    continue
                lo, hi = int(sel[0]), int(sel[-1]) + 1
                chunk = [t[lo:hi].to(dev) for t in (feats_p, inputs_p, rows, target)]
                om, inf = solve_weights(*chunk, res.pointwise, **solve_kw)
                parts_out.append(om.to(basis.device))
                infos.append(inf)
            omega = torch.cat(parts_out)
            info = SolveInfo(
                max(i.iterations for i in infos),
                *(torch.cat([getattr(i, f).to(basis.device) for i in infos]) for f in _INFO_TENSORS),
            )
        self.last_info = info
        self.last_omega = omega.detach().reshape(b, k, n)
        u_blocks = torch.einsum("bn,bn...->b...", omega.to(basis.dtype), to_blocks(basis, parts)).unsqueeze(1)
        u = from_blocks(u_blocks, parts, grid)
        if not return_experts:
            return u
        jumps = interface_jumps(basis, omega.to(basis.dtype).reshape(b, k, n), parts)
        return u, ExpertFields(u_blocks, jumps)

    def extra_repr(self) -> str:
        return (
            f"pde={self.residual.name!r}, n_points={self.n_points}, experts={self.experts}, "
            f"n_boundary={self.n_boundary}, ridge={self.ridge}, boundary_weight={self.boundary_weight}, "
            f"expert_boundary={self.expert_boundary!r}"
        )


__all__ = ["ExpertFields", "HardConstraint"]
