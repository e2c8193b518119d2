"""Physics-constrained operator learning: hard-constrained models and the soft-constraint baseline.

One LightningModule trains either a hard-constrained model (``fno_hc``, ``fno_hc_moe``: the output solves
the PDE at sampled points by construction) or a plain backbone with the PDE residual as a soft penalty
(``fno_pi``). The training loss is the PDE residual of the prediction on the whole grid plus its
initial/boundary mismatch (``loss: residual``, as in Chalapathi et al., ICLR 2024), optionally plus the
relative L2 error against the data (``loss: data+residual``). Validation and test report the relative L2
error against the solver's reference, as for :class:`~neurop.tasks.operator.OperatorTask`.

Space-time problems (``space_time: true``: diffusion–sorption on (t, x), Navier–Stokes on (t, x, y)) load the
whole trajectory as both input and target; the model only sees its t = 0 slice, repeated over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from neurop.constraints.residuals import build_residual
from neurop.data.normalize import UnitGaussianNormalizer
from neurop.losses import relative_l2
from neurop.models import MODELS
from neurop.models.hard_constraint import HARD_MODELS
from neurop.tasks.operator import OperatorTask

Constraint = Literal["hard", "soft"]
LossMode = Literal["residual", "data+residual", "data"]
LOSS_MODES: tuple[str, ...] = ("residual", "data+residual", "data")
ExpertResidual = Literal["blocks", "grid"]
EXPERT_RESIDUALS: tuple[str, ...] = ("blocks", "grid")
_HARD_KEYS = ("pde", "pde_params")


class ConstrainedTask(OperatorTask):
    """Train a model under the PDE's grid residual, as a hard constraint or as a soft penalty.

    Parameters
    ----------
    model : str
        Name in ``MODELS``: a hard-constrained model (``fno_hc``, ``fno_hc_moe``, ``hard_constraint``)
        for ``constraint="hard"``, any grid model (``fno``) for ``"soft"``.
    model_kwargs : dict
        Its keyword arguments other than channels (and, for hard models, other than ``pde``/``pde_params``,
        which come from this task).
    in_channels, out_channels : int
        Data channels (out_channels must be 1).
    pde : str
        The PDE whose grid residual is used.
    pde_params : dict or None
        Its generator parameters (the pde config's ``generator:``).
    pde_overrides : dict or None
        The data's ``generator_overrides`` (applied on top of ``pde_params``).
    constraint : {"hard", "soft"}
    loss : {"residual", "data+residual", "data"}
        Training loss (see the module docstring).
    residual_weight : float
        Weight of the residual term in ``data+residual``.
    boundary_weight : float
        Weight of the mean squared initial/boundary mismatch relative to the mean squared residual.
    space_time : bool
        The model input is the t = 0 slice of the input, repeated over the first grid axis.
    expert_residual : {"blocks", "grid"}
        Training residual of a mixture of experts whose PDE residual is local (diffusion–sorption,
        Darcy): every expert's field on its own block with the block's stencils (``"blocks"``, the
        residual the experts impose), or the assembled field on the whole grid (``"grid"``, which also
        penalises the jumps between blocks). Global constraints, soft constraints and non-local
        residuals (Navier–Stokes) always use the whole grid. Validation reports the whole-grid residual.
    interface_weight : float
        With ``expert_residual="blocks"``: weight of the mean squared disagreement of neighbouring experts
        on the nodes where their blocks meet, added to the residual term (the experts' problems are
        independent, so only the training loss ties neighbours together).
    optimizer, scheduler, normalize_input, n_plot
        As in :class:`OperatorTask`.
    """

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any],
        in_channels: int,
        out_channels: int,
        pde: str,
        pde_params: Mapping[str, Any] | None = None,
        pde_overrides: Mapping[str, Any] | None = None,
        constraint: Constraint = "hard",
        loss: LossMode = "residual",
        residual_weight: float = 1.0,
        boundary_weight: float = 1.0,
        space_time: bool = False,
        expert_residual: ExpertResidual = "blocks",
        interface_weight: float = 1.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        normalize_input: bool = True,
        n_plot: int = 4,
    ) -> None:
        # Skip OperatorTask.__init__ (it builds an unconstrained network); its methods are reused.
        super(OperatorTask, self).__init__()
        self.save_hyperparameters()
        if out_channels != 1:
            raise ValueError(f"constrained tasks predict one field, got out_channels={out_channels}")
        if constraint not in ("hard", "soft"):
            raise ValueError(f"constraint must be 'hard' or 'soft', got {constraint!r}")
        if loss not in LOSS_MODES:
            raise ValueError(f"loss must be one of {LOSS_MODES}, got {loss!r}")
        if expert_residual not in EXPERT_RESIDUALS:
            raise ValueError(f"expert_residual must be one of {EXPERT_RESIDUALS}, got {expert_residual!r}")
        if residual_weight < 0 or boundary_weight < 0:
            raise ValueError(
                f"residual_weight and boundary_weight must be >= 0, got {residual_weight}, {boundary_weight}"
            )
        if not interface_weight >= 0:
            raise ValueError(f"interface_weight must be >= 0, got {interface_weight!r}")
        for key in ("in_channels", "out_channels", *_HARD_KEYS):
            if key in model_kwargs:
                raise ValueError(
                    f"give {key} to ConstrainedTask, not in model_kwargs (got model_kwargs.{key})"
                )
        self.optimizer_cfg = self._check_optimizer(optimizer or {"name": "adam", "lr": 1e-3})
        self.scheduler_cfg = self._check_scheduler(scheduler)
        self.loss_name = "rel_l2"  # what OperatorTask's validation and test steps report
        self.loss_kwargs: dict[str, Any] = {}
        self.loss_mode: LossMode = loss
        self.residual_weight = float(residual_weight)
        self.boundary_weight = float(boundary_weight)
        self.space_time = bool(space_time)
        self.expert_residual: ExpertResidual = expert_residual
        self.interface_weight = float(interface_weight)
        self.last_interface: Tensor | None = None
        self.constraint = constraint
        params = {**dict(pde_params or {}), **dict(pde_overrides or {})}
        self.residual = build_residual(pde, params)
        kwargs = dict(model_kwargs)
        if constraint == "hard":
            if model not in HARD_MODELS:
                raise ValueError(
                    f"constraint='hard' needs a hard-constrained model {HARD_MODELS}, got model={model!r}"
                )
            kwargs.update(pde=pde, pde_params=params)
        elif model in HARD_MODELS:
            raise ValueError(
                f"constraint='soft' needs a plain grid model, got the hard-constrained model={model!r}"
            )
        self.net = MODELS.build(model, in_channels=in_channels, out_channels=out_channels, **kwargs)
        self.input_normalizer = UnitGaussianNormalizer(in_channels) if normalize_input else None
        # Constrained outputs are in physical units: the PDE fixes their scale.
        self.output_normalizer = None
        self.n_plot = n_plot
        self._plot_buffer: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    # -- model --------------------------------------------------------------------------------------
    def model_input(self, x: Tensor) -> Tensor:
        """The physical model input: ``x`` or, for space-time problems, its t = 0 slice repeated."""
        if not self.space_time:
            return x
        return x[:, :, :1].expand_as(x).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        """Predict the field in physical units from physical inputs (B, C_in, *grid) -> (B, 1, *grid)."""
        x_in = self.model_input(x)
        z = self.input_normalizer.encode(x_in) if self.input_normalizer is not None else x_in
        if self.constraint == "hard":
            return self.net(z, x_in)
        return self.net(z)

    def residual_loss(self, u: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean squared PDE residual on the grid and mean squared initial/boundary mismatch."""
        r, b = self.residual.field_residual(u.to(torch.float64), inputs.to(torch.float64))
        return r.pow(2).mean().to(u.dtype), b.pow(2).mean().to(u.dtype)

    def _expert_parts(self) -> list[int] | None:
        """The partition whose experts train on their own blocks, or None (whole-grid residual)."""
        if self.constraint != "hard" or self.expert_residual != "blocks" or not self.residual.local:
            return None
        experts = getattr(getattr(self.net, "constraint", None), "experts", None)
        if experts is None or all(k == 1 for k in experts):
            return None
        return list(experts)

    def physics_loss(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Prediction and training residual terms for physical inputs ``x``.

        Returns
        -------
        u : Tensor, shape (B, 1, *grid)
        residual : Tensor
            Mean squared PDE residual: of the assembled field on the grid, or of every expert on its block
            plus ``interface_weight`` times the experts' mean squared interface disagreement (kept,
            unweighted, in ``last_interface``; see ``expert_residual``).
        boundary : Tensor
            Mean squared initial/boundary mismatch of the assembled field.
        """
        x_in = self.model_input(x)
        parts = self._expert_parts()
        if parts is None:
            u = self(x)
            res, bnd = self.residual_loss(u, x_in)
            self.last_interface = None
            return u, res, bnd
        z = self.input_normalizer.encode(x_in) if self.input_normalizer is not None else x_in
        u, experts = self.net(z, x_in, return_experts=True)
        in64 = x_in.to(torch.float64)
        grid = tuple(u.shape[2:])
        r = self.residual.block_residual(experts.blocks.to(torch.float64), in64, parts, grid)
        rows, target = self.residual.boundary(u.to(torch.float64), in64, self.residual.spacing(grid))
        b = rows[:, 0] - target
        jump = experts.jumps.to(torch.float64).pow(2).mean()
        self.last_interface = jump.detach()
        res = r.pow(2).mean() + self.interface_weight * jump
        return u, res.to(u.dtype), b.pow(2).mean().to(u.dtype)

    # -- steps --------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        u, res, bnd = self.physics_loss(x)
        physics = res + self.boundary_weight * bnd
        data = relative_l2(u, y)
        if self.loss_mode == "residual":
            loss = physics
        elif self.loss_mode == "data":
            loss = data
        else:
            loss = data + self.residual_weight * physics
        if not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, batch "
                f"{batch_idx} (residual {res.item()}, boundary {bnd.item()}); lower optimizer.lr or raise "
                "model.model_kwargs.ridge"
            )
        n = x.shape[0]
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/residual", res, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/boundary", bnd, on_step=False, on_epoch=True, batch_size=n)
        if self.last_interface is not None:
            self.log("train/interface", self.last_interface, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/rel_l2", data, on_step=False, on_epoch=True, batch_size=n)
        info = getattr(getattr(self.net, "constraint", None), "last_info", None)
        if info is not None:
            self.log(
                "train/lm_iterations", float(info.iterations), on_step=True, on_epoch=False, batch_size=n
            )
            self.log(
                "train/lm_converged",
                info.converged.double().mean().float(),
                on_step=True,
                on_epoch=False,
                batch_size=n,
            )
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        u = self(x)
        n = x.shape[0]
        self.log("val/rel_l2", relative_l2(u, y), prog_bar=True, sync_dist=True, batch_size=n)
        res, bnd = self.residual_loss(u, self.model_input(x))
        self.log("val/residual", res, sync_dist=True, batch_size=n)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        # The figures show the model's input (the initial condition), not the stored trajectory.
        super().test_step((self.model_input(x), y), batch_idx, dataloader_idx)


__all__ = ["ConstrainedTask"]
