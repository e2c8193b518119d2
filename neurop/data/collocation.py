"""Collocation points for physics-informed training: interior and condition points, redrawn every k steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from neurop.pdes.physics import Condition, PhysicsProblem, Sampler, check_sampler, sample_box

__all__ = ["CollocationBatch", "CollocationSampler"]


@dataclass
class CollocationBatch:
    """All points of one training step, concatenated so the network is evaluated once.

    Attributes
    ----------
    points : Tensor, shape (M, d)
        Interior points first, then each condition's points (and partners, for periodic conditions).
    n_interior : int
        The first ``n_interior`` rows are the residual's collocation points.
    conditions : dict of str to Condition
        Each condition's points, targets and partners.
    rows : dict of str to (int, int, int)
        For each condition, ``(start, n, partner_start)``: its rows in ``points`` (``partner_start`` is
        -1 for value conditions).
    """

    points: Tensor
    n_interior: int
    conditions: dict[str, Condition]
    rows: dict[str, tuple[int, int, int]]

    @property
    def interior(self) -> Tensor:
        """The collocation points, shape (n_interior, d)."""
        return self.points[: self.n_interior]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> CollocationBatch:
        conds = {
            k: Condition(
                c.kind,
                c.points.to(device, dtype),
                None if c.target is None else c.target.to(device, dtype),
                None if c.partner is None else c.partner.to(device, dtype),
                c.axis,
                c.channels,
            )
            for k, c in self.conditions.items()
        }
        return CollocationBatch(self.points.to(device, dtype), self.n_interior, conds, self.rows)


class CollocationSampler:
    """Draws interior and condition points of a problem, keeping them for ``resample_every`` steps.

    Parameters
    ----------
    problem : PhysicsProblem
    n_collocation : int
        Interior points, > 0.
    n_initial, n_boundary : int
        Points per initial / boundary (or periodicity) condition, >= 0.
    method : {"uniform", "lhs"}
        Uniform draws or Latin hypercube.
    resample_every : int
        Redraw every this many steps; 0 keeps the first draw for the whole run.
    seed : int
        Seed of the sampler's own generator (runs are reproducible and independent of the model's RNG).
    """

    def __init__(
        self,
        problem: PhysicsProblem,
        n_collocation: int,
        n_initial: int = 0,
        n_boundary: int = 0,
        method: Sampler = "uniform",
        resample_every: int = 0,
        seed: int = 0,
    ) -> None:
        checks = (("n_collocation", n_collocation, 1), ("n_initial", n_initial, 0),
                  ("n_boundary", n_boundary, 0), ("resample_every", resample_every, 0))  # fmt: skip
        for key, val, low in checks:
            if isinstance(val, bool) or int(val) != val or val < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {val!r}")
        check_sampler(method)
        self.problem = problem
        self.n_collocation, self.n_initial, self.n_boundary = (
            int(n_collocation),
            int(n_initial),
            int(n_boundary),
        )
        self.method: Sampler = method
        self.resample_every = int(resample_every)
        self.generator = torch.Generator().manual_seed(int(seed))
        self._batch: CollocationBatch | None = None
        self._drawn_at = -1

    @property
    def drawn_at(self) -> int:
        """The step at which the current points were drawn (-1 before the first draw)."""
        return self._drawn_at

    def draw(self, dtype: torch.dtype = torch.float32) -> CollocationBatch:
        """A fresh set of points (on CPU)."""
        p = self.problem
        interior = sample_box(p.bounds, self.n_collocation, self.method, self.generator, dtype)
        conds = p.conditions(self.n_initial, self.n_boundary, self.method, self.generator, dtype)
        parts, rows, start = [interior], {}, interior.shape[0]
        for name, c in conds.items():
            n = c.points.shape[0]
            parts.append(c.points)
            partner = -1
            if c.partner is not None:
                parts.append(c.partner)
                partner = start + n
            rows[name] = (start, n, partner)
            start += n if c.partner is None else 2 * n
        return CollocationBatch(torch.cat(parts), interior.shape[0], conds, rows)

    def sample(
        self, step: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> CollocationBatch:
        """The points for training step ``step`` (redrawn when due), on ``device``."""
        due = self._batch is None or (
            self.resample_every > 0 and step // self.resample_every != self._drawn_at // self.resample_every
        )
        if due or self._batch.points.dtype != dtype or self._batch.points.device != torch.device(device):
            if due:
                self._batch = self.draw(dtype).to(device, dtype)
                self._drawn_at = step
            else:
                self._batch = self._batch.to(device, dtype)
        return self._batch
