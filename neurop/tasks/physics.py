"""Physics-informed solving of one PDE instance (PINN, PIG): a LightningModule that draws its own points.

The loss is ``w_res · mean(residual²) + Σ_c w_c · mean(condition_c²)`` over freshly sampled collocation
points (uniform or Latin hypercube, redrawn every ``resample_every`` steps); optimisation is Adam for
``adam_steps`` steps, then L-BFGS (strong-Wolfe line search) for ``lbfgs_steps``. Time-dependent problems
may use causal weighting (Wang, Sankaran & Perdikaris, 2022): the residual of time slab ``i`` is weighted
by ``exp(−ε Σ_{k<i} L_k)``, so later times are learned only once earlier ones are. Every ``eval_every``
steps (one Lightning "epoch") the prediction is compared with the problem's reference (``val/rel_l2``);
the test step logs ``test/rel_l2`` and saves a figure of solution, reference and error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from neurop.data.collocation import CollocationBatch, CollocationSampler
from neurop.layers.jet import Jet, autograd_jet
from neurop.models import MODELS
from neurop.pdes.physics import PROBLEMS, PhysicsProblem, Reference, build_problem, sample_face

__all__ = ["PhysicsTask", "plot_solution", "relative_l2_error"]

_LBFGS_KEYS = {
    "lr",
    "history_size",
    "max_iter",
    "max_eval",
    "line_search_fn",
    "tolerance_grad",
    "tolerance_change",
}
_CAUSAL_KEYS = {"n_chunks", "epsilon"}


class _Steps(IterableDataset):
    """``n`` dummy items: one Lightning epoch is ``eval_every`` optimisation steps."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


def relative_l2_error(pred: Tensor | np.ndarray, ref: Tensor | np.ndarray) -> float:
    """``‖pred − ref‖₂ / ‖ref‖₂`` over all entries."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref sizes differ: {p.shape} vs {r.shape}")
    return float(np.linalg.norm(p - r) / max(np.linalg.norm(r), 1e-300))


def plot_solution(
    ref: Reference, pred: np.ndarray, coord_names: tuple[str, ...], path: str | Path, title: str = ""
) -> Path:
    """Save prediction, reference and absolute error side by side (3-D problems: their last slice).

    Parameters
    ----------
    ref : Reference
    pred : ndarray, shape of ``ref.values``
    coord_names : tuple of str
    path : str or Path
        PNG to write (atomically: a temporary name, then renamed).
    title : str
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth, p = ref.values, np.asarray(pred)
    axes = ref.axes
    suffix = ""
    while truth.ndim > 2:
        suffix = f" at {coord_names[truth.ndim - 1]} = {axes[truth.ndim - 1][-1]:.3g}"
        truth, p = truth[..., -1], p[..., -1]
    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    vmin, vmax = float(truth.min()), float(truth.max())
    panels = [("prediction", p, vmin, vmax, "RdBu_r"), ("reference", truth, vmin, vmax, "RdBu_r"),
              ("|error|", np.abs(p - truth), None, None, "magma")]  # fmt: skip
    for i, (name, field, lo, hi, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        if truth.ndim == 1:
            ax.plot(axes[0], field)
        else:
            extent = (axes[1][0], axes[1][-1], axes[0][0], axes[0][-1])
            im = ax.imshow(field, origin="lower", aspect="auto", extent=extent, vmin=lo, vmax=hi, cmap=cmap)
            fig.colorbar(im, ax=ax)
            ax.set_xlabel(coord_names[1])
            ax.set_ylabel(coord_names[0])
        ax.set_title(name + suffix)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    tmp.replace(path)
    return path


class PhysicsTask(L.LightningModule):
    """Train a pointwise model (``pinn``, ``pig``) on one PDE instance from its residual alone.

    Parameters
    ----------
    model : str
        Name in :data:`neurop.models.MODELS`.
    model_kwargs : dict, optional
        Constructor arguments; ``in_channels``, ``out_channels`` and ``bounds`` default to the problem's.
    physics : dict, optional
        ``{"problem": name, "params": {...}, "loss_weights": {...}}``, the pde config's ``physics:``
        section (its optional ``loss_weights`` are the problem's suggested term weights, overridden key by
        key by the ``loss_weights`` argument); None (a pde with no pointwise residual) raises a
        ``ValueError`` naming the supported problems.
    pde_name : str
        For error messages.
    n_collocation, n_initial, n_boundary : int
        Points per step: interior, per initial condition, per boundary/periodicity condition.
    sampler : {"uniform", "lhs"}
    resample_every : int
        Redraw the points every this many steps (0: never).
    lbfgs_restart_on_resample : bool
        Drop the L-BFGS curvature history whenever the points are redrawn during the L-BFGS phase, so
        curvature pairs never mix two sets of points (the first step on new points is steepest descent
        with a line search). Meant for ``resample_every`` of tens to hundreds of steps; with 1 every
        step would be steepest descent.
    loss_weights : dict of str to float, optional
        ``"residual"`` and condition names (``"ic"``, ``"bc"``, ``"periodic"``, …); missing ones are 1.
    adam_steps, lbfgs_steps : int
        Steps of each phase (an L-BFGS step is one iteration with its line search). The run length is
        rounded up to a multiple of ``eval_every``; the extra steps go to the last phase.
    lr : float
        Adam learning rate.
    lr_decay : float
        Adam's learning rate is multiplied by this every ``lr_decay_every`` steps (1: constant).
    lr_decay_every : int
        Steps between learning-rate decays, >= 1 (1000 by default; 1 decays every step, as the PIG
        authors' Helmholtz script does with ``lr_decay = 0.9995``).
    lbfgs : dict, optional
        ``torch.optim.LBFGS`` settings (``lr``, ``history_size``, ``max_iter`` iterations per step,
        ``line_search_fn``, ``tolerance_grad``, ``tolerance_change``).
    causal : dict, optional
        ``{"n_chunks": M, "epsilon": ε}`` enables causal weighting (time-dependent problems only).
    hard_initial : bool
        Impose the initial condition exactly: the solution is ``u0(x) + (t − t0) · net(x, t)``, so the
        ``"ic"`` term is zero by construction (it is still logged). Needs a problem with a closed-form
        initial condition (:meth:`~neurop.pdes.physics.PhysicsProblem.initial_value`); others raise a
        ``ValueError`` naming those that have one.
    hard_boundary : bool
        Impose ``u = 0`` on the problem's zero-Dirichlet faces exactly (Helmholtz, Darcy, Raissi's Burgers):
        the network is multiplied by ``Π (x_a − lo_a)(hi_a − x_a)`` over those axes, so the ``"bc"`` term is
        zero by construction (still logged). Combines with ``hard_initial`` when ``u0`` vanishes on those
        faces. Problems without such faces raise a ``ValueError`` naming those that have them.
    eval_every : int
        Steps between evaluations against the reference.
    eval_batch : int
        Points per forward pass during evaluation.
    seed : int
        Seed of the collocation sampler.
    plot : bool
        Save the test figure (``<run dir>/figures/physics_solution.png``).
    compile : bool
        ``torch.compile`` the loss (network jet, residual, conditions): about 2× faster steps for small
        networks on a CPU, after a one-off compilation of a minute or so.
    """

    # The CLI skips the data module: collocation points are drawn here.
    needs_datamodule = False

    def __init__(
        self,
        model: str = "pinn",
        model_kwargs: dict[str, Any] | None = None,
        physics: dict[str, Any] | None = None,
        pde_name: str = "?",
        n_collocation: int = 2048,
        n_initial: int = 256,
        n_boundary: int = 256,
        sampler: str = "uniform",
        resample_every: int = 0,
        lbfgs_restart_on_resample: bool = False,
        loss_weights: dict[str, float] | None = None,
        adam_steps: int = 1000,
        lbfgs_steps: int = 0,
        lr: float = 1e-3,
        lr_decay: float = 1.0,
        lr_decay_every: int = 1000,
        lbfgs: dict[str, Any] | None = None,
        causal: dict[str, Any] | None = None,
        hard_initial: bool = False,
        hard_boundary: bool = False,
        eval_every: int = 100,
        eval_batch: int = 65536,
        seed: int = 0,
        plot: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not physics:
            raise ValueError(
                f"pde {pde_name!r} has no pointwise residual (its config has no `physics:` section), so "
                f"physics-informed models cannot solve it; supported problems: {', '.join(PROBLEMS.names())} "
                "(e.g. pde=burgers, pde=helmholtz, pde=allen_cahn)"
            )
        unknown = set(physics) - {"problem", "params", "loss_weights"}
        if unknown or "problem" not in physics:
            raise ValueError(
                f"physics must be {{problem: name, params: {{...}}, loss_weights: {{...}}}}, got keys "
                f"{sorted(physics)}"
            )
        self.problem: PhysicsProblem = build_problem(physics["problem"], **(physics.get("params") or {}))
        p = self.problem
        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("in_channels", p.dim)
        kwargs.setdefault("out_channels", p.out_channels)
        kwargs.setdefault("bounds", [list(b) for b in p.bounds])
        if kwargs["in_channels"] != p.dim or kwargs["out_channels"] != p.out_channels:
            raise ValueError(
                f"problem {p.name!r} has {p.dim} input coordinates and {p.out_channels} outputs, got "
                f"in_channels={kwargs['in_channels']}, out_channels={kwargs['out_channels']}"
            )
        self.net = MODELS.build(model, **kwargs)

        for key, val, low in (("adam_steps", adam_steps, 0), ("lbfgs_steps", lbfgs_steps, 0),
                              ("eval_every", eval_every, 1), ("eval_batch", eval_batch, 1),
                              ("lr_decay_every", lr_decay_every, 1)):  # fmt: skip
            if isinstance(val, bool) or int(val) != val or val < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {val!r}")
        if adam_steps + lbfgs_steps < 1:
            raise ValueError(f"adam_steps + lbfgs_steps must be >= 1, got {adam_steps} + {lbfgs_steps}")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not (0 < lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}")
        self.sampler = CollocationSampler(
            p,
            n_collocation,
            n_initial,
            n_boundary,
            sampler,
            resample_every,
            seed,  # type: ignore[arg-type]
        )
        names = {"residual", *p.conditions(1, 1).keys()}
        self.loss_weights = {k: 1.0 for k in names}
        for key, val in {**(physics.get("loss_weights") or {}), **(loss_weights or {})}.items():
            if key not in names:
                raise ValueError(
                    f"loss_weights key {key!r} is not a term of {p.name!r}; terms: {sorted(names)}"
                )
            if not (math.isfinite(val) and val >= 0):
                raise ValueError(f"loss_weights[{key!r}] must be >= 0, got {val!r}")
            self.loss_weights[key] = float(val)
        self.lbfgs_cfg = {"lr": 1.0, "history_size": 50, "max_iter": 1, "line_search_fn": "strong_wolfe",
                          "tolerance_grad": 1e-12, "tolerance_change": 1e-14}  # fmt: skip
        bad = set(lbfgs or {}) - _LBFGS_KEYS
        if bad:
            raise ValueError(f"unknown lbfgs keys {sorted(bad)}; allowed: {sorted(_LBFGS_KEYS)}")
        self.lbfgs_cfg.update(lbfgs or {})
        # torch's default max_eval (5/4 max_iter) leaves the strong-Wolfe search one evaluation when
        # max_iter = 1, so it accepts blow-ups; give each iteration room for a real line search.
        self.lbfgs_cfg.setdefault("max_eval", 25 * int(self.lbfgs_cfg["max_iter"]))
        self.lbfgs_restarts = 0  # L-BFGS steps that did not move and restarted from steepest descent
        self.causal = None
        if causal:
            bad = set(causal) - _CAUSAL_KEYS
            if bad:
                raise ValueError(f"unknown causal keys {sorted(bad)}; allowed: {sorted(_CAUSAL_KEYS)}")
            if p.time_axis is None:
                raise ValueError(f"causal weighting needs a time-dependent problem; {p.name!r} is steady")
            n_chunks = int(causal.get("n_chunks", 32))
            eps = float(causal.get("epsilon", 1.0))
            if n_chunks < 1 or not eps >= 0:
                raise ValueError(f"causal needs n_chunks >= 1 and epsilon >= 0, got {causal!r}")
            self.causal = (n_chunks, eps)
        self.hard_initial = bool(hard_initial)
        if self.hard_initial and (p.time_axis is None or not p.has_initial_value()):
            have = sorted(n for n in PROBLEMS.names() if PROBLEMS.get(n).has_initial_value())
            raise ValueError(
                f"hard_initial=true needs a time-dependent problem with a closed-form initial condition; "
                f"{p.name!r} has none; problems that have one: {', '.join(have)}"
            )
        self.hard_boundary = bool(hard_boundary)
        if self.hard_boundary and not p.zero_dirichlet_axes:
            have = sorted(n for n in PROBLEMS.names() if PROBLEMS.get(n).zero_dirichlet_axes)
            raise ValueError(
                f"hard_boundary=true needs a problem with u = 0 on both faces of some axis; {p.name!r} has "
                f"none; problems that have them: {', '.join(have)}"
            )
        if self.hard_boundary and self.hard_initial:
            # u = u0 + f·n keeps u = 0 on the faces only if u0 vanishes there.
            gen = torch.Generator().manual_seed(0)
            for a in p.zero_dirichlet_axes:
                for v in p.bounds[a]:
                    edge = p.initial_value(sample_face(p.bounds, a, v, 16, "uniform", gen, torch.float64))
                    if edge is not None and float(edge.abs().max()) > 1e-12:
                        raise ValueError(
                            f"hard_initial and hard_boundary together need u0 = 0 on the Dirichlet faces; "
                            f"{p.name!r} has |u0| up to {float(edge.abs().max()):.3g} on the face "
                            f"{p.coord_names[a]} = {v}"
                        )
        self.automatic_optimization = False
        self.best_rel_l2 = math.inf
        self._compiled_loss: Any = None
        # Seconds spent in training steps (evaluation excluded), logged as val/train_time_s next to
        # val/rel_l2: the clock for comparisons at equal training time. Not restored on resume.
        self.train_time_s = 0.0
        self._step_start: float | None = None

    # -- losses ---------------------------------------------------------------------------------------
    def jet(self, x: Tensor) -> Jet:
        """The solution's values and the derivatives the problem needs at ``x`` (N, d)."""
        axes = self.problem.second_axes
        net = self.net.jet(x, axes) if hasattr(self.net, "jet") else autograd_jet(self.net, x, axes)
        if not (self.hard_initial or self.hard_boundary):
            return net
        # u = g + f·n (g = u0 or 0, f the factor, both free of parameters), by the product rule:
        # u_j = g_j + f_j n + f n_j and u_jj = g_jj + f_jj n + 2 f_j n_j + f n_jj.
        f = autograd_jet(lambda y: self._factor(y, net.u.dtype), x, axes)
        f_u, f_du, f_d2u = f.u.detach()[:, None], f.du.detach(), f.d2u.detach()
        ax = list(axes)
        du = f_du * net.u[:, None] + f_u * net.du
        d2u = f_d2u * net.u[:, None] + 2 * f_du[:, ax] * net.du[:, ax] + f_u * net.d2u
        u = f.u.detach() * net.u
        if self.hard_initial:
            g = autograd_jet(self.problem.initial_value, x, axes)
            u, du, d2u = g.u.detach() + u, g.du.detach() + du, g.d2u.detach() + d2u
        return Jet(u, du, d2u, net.second_axes)

    def _residual_loss(self, x: Tensor, res: Tensor) -> tuple[Tensor, Tensor | None]:
        sq = res.pow(2).mean(dim=1)
        if self.causal is None:
            return sq.mean(), None
        n_chunks, eps = self.causal
        t_axis = self.problem.time_axis
        assert t_axis is not None
        lo, hi = self.problem.bounds[t_axis]
        idx = ((x[:, t_axis] - lo) / (hi - lo) * n_chunks).long().clamp_(0, n_chunks - 1)
        sums = torch.zeros(n_chunks, dtype=sq.dtype, device=sq.device).index_add_(0, idx, sq)
        counts = torch.bincount(idx, minlength=n_chunks).clamp_(min=1).to(sq.dtype)
        chunk_loss = sums / counts
        with torch.no_grad():
            before = torch.cumsum(chunk_loss, 0) - chunk_loss
            weights = torch.exp(-eps * before)
        return (weights * chunk_loss).mean(), weights.min()

    def loss_terms(self, batch: CollocationBatch) -> dict[str, Tensor]:
        """Unweighted mean-square terms: ``"residual"`` and one per condition."""
        jet = self.jet(batch.points)
        n = batch.n_interior
        res = self.problem.residual(batch.interior, jet.rows(0, n))
        terms: dict[str, Tensor] = {}
        terms["residual"], min_w = self._residual_loss(batch.interior, res)
        if min_w is not None:
            terms["causal_min_weight"] = min_w
        for name, cond in batch.conditions.items():
            start, m, partner = batch.rows[name]
            ch = cond.channels
            if cond.kind == "value":
                assert cond.target is not None
                terms[name] = (jet.u[start : start + m, ch] - cond.target).pow(2).mean()
            else:
                u_a, u_b = jet.u[start : start + m, ch], jet.u[partner : partner + m, ch]
                du_a = jet.du[start : start + m, cond.axis, ch]
                du_b = jet.du[partner : partner + m, cond.axis, ch]
                terms[name] = (u_a - u_b).pow(2).mean() + (du_a - du_b).pow(2).mean()
        return terms

    def total_loss(self, terms: dict[str, Tensor]) -> Tensor:
        """``Σ w_k · term_k`` over the weighted terms."""
        return sum(self.loss_weights[k] * v for k, v in terms.items() if k in self.loss_weights)  # type: ignore[return-value]

    def _loss(self, batch: CollocationBatch) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.loss_terms(batch)
        return self.total_loss(terms), terms

    def loss(self, batch: CollocationBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The weighted loss and its unweighted terms (compiled on first use when ``compile=True``)."""
        if not self.hparams.get("compile", False):
            return self._loss(batch)
        if self._compiled_loss is None:
            self._compiled_loss = torch.compile(self._loss)
        return self._compiled_loss(batch)

    def lbfgs_step(self, optimizer: torch.optim.LBFGS, closure: Any) -> Tensor:
        """One L-BFGS step; a step that ends non-finite is undone and the curvature history dropped.

        The strong-Wolfe search can still try a point where the loss overflows (float32, a stiff
        problem); restarting from the last good parameters with a fresh history usually recovers. A step
        that leaves the parameters unchanged also drops the history, so a stalled run restarts from the
        steepest-descent direction instead of repeating a failed one.
        """
        saved = [p.detach().clone() for p in self.net.parameters()]
        loss = optimizer.step(closure)
        if torch.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in self.net.parameters()):
            if all(torch.equal(p, s) for p, s in zip(self.net.parameters(), saved, strict=True)):
                # No move: the stored direction is not a descent direction any more (or its line
                # search found no decrease); without a restart L-BFGS would repeat it every step.
                getattr(optimizer, "optimizer", optimizer).state.clear()
                self.lbfgs_restarts += 1
            return loss
        with torch.no_grad():
            for p, s in zip(self.net.parameters(), saved, strict=True):
                p.copy_(s)
        getattr(optimizer, "optimizer", optimizer).state.clear()  # unwrap Lightning's optimizer proxy
        return closure().detach()

    def batch(self, step: int) -> CollocationBatch:
        """Collocation points for ``step`` on this module's device and dtype."""
        return self.sampler.sample(step, self.device, self.dtype)

    # -- Lightning hooks ----------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        """Optimisation steps of the run (rounded up to a multiple of ``eval_every``)."""
        total = self.hparams.adam_steps + self.hparams.lbfgs_steps
        return math.ceil(total / self.hparams.eval_every) * self.hparams.eval_every

    def trainer_overrides(self) -> dict[str, Any]:
        """Trainer settings implied by the run length (the CLI passes them to the Trainer)."""
        return {"max_epochs": self.total_steps // self.hparams.eval_every, "check_val_every_n_epoch": 1}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(self.hparams.eval_every), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(1), batch_size=None)

    def forward(self, x: Tensor) -> Tensor:
        """``u(x)``: points (N, d) -> (N, out_channels); with hard conditions ``g + f · net`` (``jet``)."""
        out = self.net(x)
        if not (self.hard_initial or self.hard_boundary):
            return out
        out = self._factor(x, out.dtype) * out
        if self.hard_initial:
            out = self.problem.initial_value(x).to(out.dtype) + out
        return out

    def _factor(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The network's factor ``f`` at points ``x`` (N, d), shape (N, 1).

        ``t − t0`` under ``hard_initial``, times ``Π_a (x_a − lo_a)(hi_a − x_a) · 4 / (hi_a − lo_a)²`` over
        the problem's zero-Dirichlet axes under ``hard_boundary`` (1 at the centre, 0 on those faces).
        """
        f = torch.ones(x.shape[0], 1, dtype=dtype, device=x.device)
        if self.hard_initial:
            ta = self.problem.time_axis
            assert ta is not None
            f = f * (x[:, ta : ta + 1] - self.problem.bounds[ta][0]).to(dtype)
        if self.hard_boundary:
            for a in self.problem.zero_dirichlet_axes:
                lo, hi = self.problem.bounds[a]
                xa = x[:, a : a + 1].to(dtype)
                f = f * ((xa - lo) * (hi - xa) * (4.0 / (hi - lo) ** 2))
        return f

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step_start is not None:
            self.train_time_s += time.perf_counter() - self._step_start
            self._step_start = None

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        step = self.global_step
        adam, lbfgs = self.optimizers()  # type: ignore[misc]
        use_adam = step < self.hparams.adam_steps or self.hparams.lbfgs_steps == 0
        points = self.batch(step)
        logged: dict[str, Tensor] = {}
        if use_adam:
            loss, terms = self.loss(points)
            adam.zero_grad()
            self.manual_backward(loss)
            adam.step()
            sched = self.lr_schedulers()
            if sched is not None and (step + 1) % self.hparams.lr_decay_every == 0:
                sched.step()  # type: ignore[union-attr]
            logged = terms
        else:

            def closure() -> Tensor:
                lbfgs.zero_grad()
                value, t = self.loss(points)
                self.manual_backward(value)
                logged.update(t)
                return value

            if self.hparams.get("lbfgs_restart_on_resample") and self.sampler.drawn_at == step:
                if step > self.hparams.adam_steps:  # new points, not the first L-BFGS step
                    getattr(lbfgs, "optimizer", lbfgs).state.clear()
            loss = self.lbfgs_step(lbfgs, closure)
            self.log("train/lbfgs_restarts", float(self.lbfgs_restarts), batch_size=1)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"physics loss became non-finite at step {step}; lower lr or check the problem"
            )
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=1)
        for key, val in logged.items():
            self.log(f"train/{key}", val.detach(), batch_size=1)
        return loss

    @torch.no_grad()
    def predict_reference_grid(self) -> np.ndarray:
        """The prediction on the reference grid (evaluation channel), shaped like ``reference.values``."""
        ref = self.problem.reference
        pts = ref.points(self.dtype).to(self.device)
        out = [
            self(pts[i : i + self.hparams.eval_batch])[:, self.problem.eval_channel]
            for i in range(0, pts.shape[0], self.hparams.eval_batch)
        ]
        return torch.cat(out).double().cpu().numpy().reshape(ref.values.shape)

    def evaluate(self) -> float:
        """Relative L2 error against the reference."""
        return relative_l2_error(self.predict_reference_grid(), self.problem.reference.values)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        err = self.evaluate()
        self.best_rel_l2 = min(self.best_rel_l2, err)
        self.log("val/rel_l2", err, prog_bar=True, batch_size=1)
        self.log("val/train_time_s", self.train_time_s, batch_size=1)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        pred = self.predict_reference_grid()
        ref = self.problem.reference
        err = relative_l2_error(pred, ref.values)
        self.log("test/rel_l2", err, batch_size=1)
        if self.hparams.plot and self.trainer.global_rank == 0:
            path = plot_solution(
                ref, pred, self.problem.coord_names,
                Path(self.trainer.default_root_dir) / "figures" / "physics_solution.png",
                title=f"{self.hparams.model} on {self.problem.name}: rel L2 {err:.2e}",
            )  # fmt: skip
            for logger in self.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key="test/solution", images=[str(path)])

    def configure_optimizers(self) -> Any:
        adam = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr)
        lbfgs = torch.optim.LBFGS(self.net.parameters(), **self.lbfgs_cfg)
        sched = torch.optim.lr_scheduler.ExponentialLR(adam, gamma=self.hparams.lr_decay)
        return [adam, lbfgs], [sched]
