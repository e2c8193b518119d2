"""2-D Helmholtz equation Δu + k²u = q on [−1, 1]² with a manufactured exact solution (a PINN/PIG benchmark).

``u = sin(a₁πx) sin(a₂πy)`` and ``q = (k² − (a₁π)² − (a₂π)²) u``, ``u = 0`` on the boundary. The (1, 4) case
is the PIG paper's Helmholtz benchmark (Kang et al., ICLR 2025), (10, 10) its hard one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neurop.layers.jet import Jet
from neurop.pdes.physics import PROBLEMS, Condition, PhysicsProblem, Reference, Sampler

__all__ = ["Helmholtz", "helmholtz_exact", "helmholtz_pointwise_residual", "helmholtz_source"]


def helmholtz_exact(x: Tensor, a1: float, a2: float) -> Tensor:
    """``sin(a₁πx) sin(a₂πy)`` at points of shape (N, 2); returns shape (N,)."""
    return torch.sin(a1 * math.pi * x[:, 0]) * torch.sin(a2 * math.pi * x[:, 1])


def helmholtz_source(x: Tensor, a1: float, a2: float, k: float) -> Tensor:
    """The source ``q`` that makes :func:`helmholtz_exact` a solution, shape (N,)."""
    return (k**2 - (a1 * math.pi) ** 2 - (a2 * math.pi) ** 2) * helmholtz_exact(x, a1, a2)


def helmholtz_pointwise_residual(u: Tensor, u_xx: Tensor, u_yy: Tensor, q: Tensor, k: float) -> Tensor:
    """``u_xx + u_yy + k²u − q``, all of shape (N,)."""
    return u_xx + u_yy + k**2 * u - q


@PROBLEMS.register("helmholtz")
class Helmholtz(PhysicsProblem):
    """Helmholtz ``Δu + k²u = q`` on [−1, 1]², ``u = 0`` on the boundary, exact ``sin(a₁πx) sin(a₂πy)``.

    Parameters
    ----------
    a1, a2 : int
        Wave numbers of the exact solution, >= 1 (integers keep ``u = 0`` on the boundary).
    k : float
        Helmholtz wave number, > 0.
    n_eval : int
        Evaluation grid ``n_eval²`` (the PIG paper tests on 250²).
    """

    name = "helmholtz"
    coord_names = ("x", "y")
    second_axes = (0, 1)
    zero_dirichlet_axes = (0, 1)

    def __init__(self, a1: int = 1, a2: int = 4, k: float = 1.0, n_eval: int = 250) -> None:
        for key, val in (("a1", a1), ("a2", a2)):
            if isinstance(val, bool) or int(val) != val or val < 1:
                raise ValueError(f"{key} must be an integer >= 1 (u = 0 on the boundary), got {val!r}")
        if not (math.isfinite(k) and k > 0):
            raise ValueError(f"k must be > 0, got {k!r}")
        if isinstance(n_eval, bool) or int(n_eval) != n_eval or n_eval < 2:
            raise ValueError(f"n_eval must be an integer >= 2, got {n_eval!r}")
        self.a1, self.a2, self.k, self.n_eval = int(a1), int(a2), float(k), int(n_eval)
        self.bounds = ((-1.0, 1.0), (-1.0, 1.0))

    def params(self) -> dict[str, Any]:
        return {"a1": self.a1, "a2": self.a2, "k": self.k, "n_eval": self.n_eval}

    def exact(self, x: Tensor) -> Tensor:
        return helmholtz_exact(x, self.a1, self.a2)[:, None]

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        q = helmholtz_source(x, self.a1, self.a2, self.k)
        return helmholtz_pointwise_residual(jet.value(), jet.dd(0), jet.dd(1), q, self.k)[:, None]

    def conditions(
        self,
        n_initial: int,
        n_boundary: int,
        method: Sampler = "uniform",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Condition]:
        bc = self._dirichlet_faces([0, 1], n_boundary, method, generator, dtype)
        return {"bc": Condition("value", bc, target=torch.zeros(bc.shape[0], 1, dtype=dtype))}

    def compute_reference(self) -> Reference:
        g = np.linspace(-1.0, 1.0, self.n_eval)
        ref = Reference((g, g), np.zeros((self.n_eval, self.n_eval)))
        values = helmholtz_exact(ref.points(torch.float64), self.a1, self.a2)
        return Reference((g, g), values.reshape(self.n_eval, self.n_eval).numpy())
