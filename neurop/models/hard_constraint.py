"""Grid models wrapped by a hard PDE constraint: the backbone outputs basis functions, the layer solves ω.

Registered builders: ``fno_hc`` (FNO backbone, one global constraint), ``fno_hc_moe`` (FNO backbone,
mixture of experts over a fixed partition) and ``hard_constraint`` (any registered backbone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn

from neurop.constraints.layer import ExpertFields, HardConstraint
from neurop.constraints.residuals import build_residual
from neurop.constraints.solve import OnFailure
from neurop.models import MODELS

# The registered names whose models end in a hard constraint (the constrained task checks against them).
HARD_MODELS: tuple[str, ...] = ("fno_hc", "fno_hc_moe", "hard_constraint")


class HardConstrainedModel(nn.Module):
    """A registered grid backbone with N output channels followed by :class:`HardConstraint`.

    Parameters
    ----------
    in_channels : int
        Input channels of the backbone.
    out_channels : int
        Must be 1 (the constraint produces one scalar field).
    backbone : str
        Name in ``MODELS`` of a grid model taking ``in_channels`` and ``out_channels``.
    backbone_kwargs : dict
        Its other keyword arguments.
    n_basis : int
        N, the basis functions (backbone output channels).
    pde : str
        PDE whose grid residual is imposed (``neurop.constraints.GRID_RESIDUALS``).
    pde_params : dict or None
        That PDE's generator parameters.
    experts : list of int or None
        Blocks per grid axis; ``None`` is one global constraint.
    n_points, n_boundary, ridge, boundary_weight, max_iter, tol, on_failure, backward, expert_boundary,
    devices
        See :class:`HardConstraint`.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int = 1,
        backbone: str = "fno",
        backbone_kwargs: Mapping[str, Any] | None = None,
        n_basis: int = 16,
        pde: str = "darcy",
        pde_params: Mapping[str, Any] | None = None,
        experts: Sequence[int] | None = None,
        n_points: int | None = 1000,
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
        if out_channels != 1:
            raise ValueError(f"a hard-constrained model outputs one field, got out_channels={out_channels}")
        if isinstance(n_basis, bool) or int(n_basis) != n_basis or n_basis < 1:
            raise ValueError(f"n_basis must be a positive integer, got {n_basis!r}")
        kwargs = dict(backbone_kwargs or {})
        for key in ("in_channels", "out_channels"):
            if key in kwargs:
                raise ValueError(f"backbone_kwargs must not set {key} (got {kwargs[key]!r}); it is set here")
        self.backbone = MODELS.build(backbone, in_channels=in_channels, out_channels=int(n_basis), **kwargs)
        self.constraint = HardConstraint(
            build_residual(pde, pde_params),
            n_points=n_points,
            experts=experts,
            n_boundary=n_boundary,
            ridge=ridge,
            boundary_weight=boundary_weight,
            max_iter=max_iter,
            tol=tol,
            on_failure=on_failure,
            backward=backward,
            expert_boundary=expert_boundary,
            devices=devices,
        )

    def basis(self, x: Tensor) -> Tensor:
        """Basis functions, shape (B, N, *grid), from inputs (B, in_channels, *grid)."""
        return self.backbone(x)

    def forward(
        self, x: Tensor, inputs: Tensor | None = None, return_experts: bool = False
    ) -> Tensor | tuple[Tensor, ExpertFields]:
        """Constrained prediction.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *grid)
            Backbone input (typically normalised).
        inputs : Tensor, shape (B, C_in, *grid), optional
            The PDE's inputs in physical units (default ``x``).
        return_experts : bool
            Also return the experts' own fields (see :meth:`HardConstraint.forward`).

        Returns
        -------
        Tensor, shape (B, 1, *grid), or that and the :class:`ExpertFields`
        """
        return self.constraint(self.basis(x), x if inputs is None else inputs, return_experts=return_experts)


@MODELS.register("hard_constraint")
def hard_constraint(**kwargs: Any) -> HardConstrainedModel:
    """Any registered grid backbone with a hard constraint (see :class:`HardConstrainedModel`)."""
    return HardConstrainedModel(**kwargs)


@MODELS.register("fno_hc")
def fno_hc(*, experts: Sequence[int] | None = None, **kwargs: Any) -> HardConstrainedModel:
    """FNO basis with one global hard constraint (``experts`` must be None or all ones)."""
    if experts is not None and any(int(k) != 1 for k in experts):
        raise ValueError(f"fno_hc is the global constraint; use fno_hc_moe for experts={list(experts)}")
    return HardConstrainedModel(backbone="fno", experts=None, **kwargs)


@MODELS.register("fno_hc_moe")
def fno_hc_moe(*, experts: Sequence[int], **kwargs: Any) -> HardConstrainedModel:
    """FNO basis with a mixture of hard-constraint experts over ``experts`` blocks per axis."""
    if experts is None:
        raise ValueError("fno_hc_moe needs experts (blocks per grid axis, e.g. [1, 4]), got None")
    return HardConstrainedModel(backbone="fno", experts=experts, **kwargs)


__all__ = ["HARD_MODELS", "HardConstrainedModel", "fno_hc", "fno_hc_moe", "hard_constraint"]
