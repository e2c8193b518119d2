"""PINN vs PIG on each physics-informed problem at equal wall time, and PINN iterations/s vs DeepXDE.

For every problem (``configs/pde/<name>.yaml`` with a ``physics:`` section) and both models, a
:class:`neurop.tasks.physics.PhysicsTask` is built from ``configs/model/<model>.yaml`` plus the recipe
below, then trained for the same wall-clock budget: Adam for ``--adam-fraction`` of it, L-BFGS (strong
Wolfe) for the rest. The final iterate's relative L2 error against the problem's reference is reported
(the best error seen at the evaluation points every tenth of the budget, whose cost is excluded from
the wall time, is shown too), side by side with the published numbers of ../shared/REFERENCE.md.

The speed comparison trains DeepXDE's Burgers example set-up (3 × 20 tanh, 2540 interior + 80 boundary
+ 160 initial points, Adam, lr 1e−3) with DeepXDE (PyTorch backend, if ``import deepxde`` works) and with
neurop's PINN on the same points, and reports iterations per second after a warm-up.

Usage::

    python scripts/bench_physics.py --quick                  # seconds per run: a smoke test
    python scripts/bench_physics.py --seconds 40 --out docs/results_physics.md
    python scripts/bench_physics.py --problems helmholtz --models pig --seconds 120 --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from neurop.cli import CONFIG_DIR
from neurop.runtime import CPU_ALLOCATORS, configure_cpu_allocator
from neurop.tasks.physics import PhysicsTask

# Published numbers (../shared/REFERENCE.md): (PINN, PIG) relative L2, "–" where not reported.
PUBLISHED: dict[str, tuple[str, str]] = {
    "burgers": ("6.7e−4 (Raissi, L-BFGS, 9×20, 10k pts)", "–"),
    "helmholtz": ("4.02e−1 (as reported in PIG)", "4.13e−5 (best seen, mean over seeds)"),
    "allen_cahn": ("–", "1.04e−4"),
    "darcy": ("–", "–"),
    "navier_stokes": ("–", "–"),
    "burgers_periodic": ("–", "–"),
}

# Per-(problem, model) task settings on top of the model configs (CPU-budget recipes).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "burgers": {
        "pinn": {
            "model_kwargs": {"hidden_channels": 32, "n_layers": 4},
            "n_collocation": 2048,
            "lr": 2e-3,
            "resample_every": 0,
        },
        "pig": {"model_kwargs": {"n_gaussians": 200, "sigma0": 0.1}, "n_collocation": 1024, "lr": 1e-2},
    },
    "helmholtz": {
        "pinn": {
            "model_kwargs": {"hidden_channels": 32, "n_layers": 4},
            "n_collocation": 2048,
            "lr": 2e-3,
            "loss_weights": {"residual": 1e-4, "bc": 1.0},
        },
        "pig": {
            "model_kwargs": {"n_gaussians": 300, "sigma0": 0.1},
            "n_collocation": 1024,
            "lr": 1e-2,
            "loss_weights": {"residual": 1e-4, "bc": 1.0},
        },
    },
    "allen_cahn": {
        "pinn": {
            "model_kwargs": {
                "hidden_channels": 32,
                "n_layers": 4,
                "fourier_features": 16,
                "fourier_scale": 1.0,
            },
            "n_collocation": 2048,
            "lr": 2e-3,
            "loss_weights": {"ic": 100.0},
        },
        "pig": {
            "model_kwargs": {"n_gaussians": 300, "sigma0": 0.05},
            "n_collocation": 1024,
            "lr": 1e-2,
            "loss_weights": {"ic": 100.0},
        },
    },
    "darcy": {
        "pinn": {"model_kwargs": {"hidden_channels": 32, "n_layers": 4}, "n_collocation": 2048, "lr": 2e-3},
        "pig": {"model_kwargs": {"n_gaussians": 200, "sigma0": 0.15}, "n_collocation": 1024, "lr": 1e-2},
    },
    "navier_stokes": {
        "pinn": {"model_kwargs": {"hidden_channels": 32, "n_layers": 4}, "n_collocation": 2048, "lr": 2e-3},
        "pig": {"model_kwargs": {"n_gaussians": 300, "sigma0": 0.2}, "n_collocation": 1024, "lr": 1e-2},
    },
    "burgers_periodic": {
        "pinn": {"model_kwargs": {"hidden_channels": 32, "n_layers": 4}, "n_collocation": 2048, "lr": 2e-3},
        "pig": {"model_kwargs": {"n_gaussians": 200, "sigma0": 0.1}, "n_collocation": 1024, "lr": 1e-2},
    },
}
# Smaller evaluation grids where the default reference is costly (the error is a grid average anyway).
QUICK_PARAMS = {"darcy": {"resolution": 129, "stride": 2}}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_task(
    model: str, pde: str, overrides: dict[str, Any] | None = None, quick: bool = False
) -> PhysicsTask:
    """The task of ``configs/model/<model>.yaml`` on ``configs/pde/<pde>.yaml`` with the recipe applied."""
    pde_cfg = OmegaConf.load(CONFIG_DIR / "pde" / f"{pde}.yaml")
    if "physics" not in pde_cfg:
        raise ValueError(f"pde {pde!r} has no physics section")
    physics = OmegaConf.to_container(OmegaConf.merge({"pde": pde_cfg}, {})["pde"]["physics"], resolve=False)
    params = physics.get("params") or {}
    for k, v in list(params.items()):
        if isinstance(v, str) and v.startswith("${"):
            params.pop(k)  # interpolations into the generator: keep the problem's own defaults
    if quick:
        params.update(QUICK_PARAMS.get(pde, {}))
    physics["params"] = params
    kw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{model}.yaml"), resolve=False)
    for key in ("_target_", "_convert_", "pde_name", "physics"):
        kw.pop(key, None)
    kw = _merge(kw, RECIPES.get(pde, {}).get(model, {}))
    kw = _merge(kw, overrides or {})
    kw.update(plot=False, pde_name=pde, physics=physics)
    return PhysicsTask(**kw)


def fit(task: PhysicsTask, seconds: float, adam_fraction: float, n_evals: int = 10) -> dict[str, Any]:
    """Train for ``seconds`` of wall time; evaluation time is excluded. Returns errors, steps, times."""
    params = list(task.net.parameters())
    adam = torch.optim.Adam(params, lr=task.hparams.lr)
    lbfgs = torch.optim.LBFGS(params, **task.lbfgs_cfg)
    elapsed, step, n_adam, best, history = 0.0, 0, 0, math.inf, []
    next_eval = seconds / n_evals
    status = "ok"
    while elapsed < seconds:
        t0 = time.perf_counter()
        batch = task.batch(step)
        if elapsed < adam_fraction * seconds:
            loss, _ = task.loss(batch)
            adam.zero_grad()
            loss.backward()
            adam.step()
            n_adam += 1
        else:

            def closure(batch: Any = batch) -> torch.Tensor:
                lbfgs.zero_grad()
                value, _ = task.loss(batch)
                value.backward()
                return value

            loss = task.lbfgs_step(lbfgs, closure)
        if task.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - t0
        step += 1
        if not torch.isfinite(loss):
            status = f"non-finite loss at step {step}"
            break
        if elapsed >= next_eval:
            err = task.evaluate()
            best = min(best, err)
            history.append((round(elapsed, 1), err))
            next_eval += seconds / n_evals
    final = task.evaluate()
    best = min(best, final)
    return {"final": final, "best": best, "steps": step, "adam_steps": n_adam, "seconds": elapsed,
            "loss": float(loss), "status": status, "history": history}  # fmt: skip


# ------------------------------------------------------------------------------------------------ DeepXDE


class _Clock:
    """Wall and process CPU time of a timed section (CPU time is robust to other processes' load)."""

    def start(self, device: str = "cpu") -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def rates(self, iters: int, device: str = "cpu") -> tuple[float, float]:
        if device == "cuda":
            torch.cuda.synchronize()
        return iters / (time.perf_counter() - self.wall), iters / (time.process_time() - self.cpu)


def _pinn_burgers_speed(iters: int, warmup: int, device: str, compile: bool = False) -> tuple[float, float]:
    """neurop PINN (wall, CPU) iterations/s on DeepXDE's Burgers set-up (fixed points, Adam lr 1e−3)."""
    task = build_task("pinn", "burgers", {
        "model_kwargs": {"hidden_channels": 20, "n_layers": 3}, "n_collocation": 2540, "n_initial": 160,
        "n_boundary": 80, "resample_every": 0, "lr": 1e-3, "compile": compile,
    })  # fmt: skip
    task = task.to(device)
    opt = torch.optim.Adam(task.net.parameters(), lr=1e-3)
    batch = task.batch(0)
    clock = _Clock()
    for i in range(warmup + iters):
        if i == warmup:
            clock.start(device)
        loss, _ = task.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clock.rates(iters, device)


def _deepxde_burgers_speed(iters: int, warmup: int) -> tuple[float, float]:
    """DeepXDE 1.x Burgers example (examples/pinn_forward/Burgers.py) (wall, CPU) iterations/s, PyTorch."""
    os.environ.setdefault("DDE_BACKEND", "pytorch")
    import deepxde as dde
    import numpy as np

    geom = dde.geometry.Interval(-1, 1)
    timedomain = dde.geometry.TimeDomain(0, 0.99)
    geomtime = dde.geometry.GeometryXTime(geom, timedomain)

    def pde(x: Any, y: Any) -> Any:
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - 0.01 / np.pi * dy_xx

    bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
    data = dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=2540, num_boundary=80, num_initial=160)
    net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    model.train(iterations=warmup, display_every=10**9, verbose=0)
    clock = _Clock()
    clock.start()
    model.train(iterations=iters, display_every=10**9, verbose=0)
    return clock.rates(iters)


def speed_rows(iters: int, device: str, rounds: int = 2) -> list[str]:
    """Markdown rows of the iterations/s comparison: medians over alternating rounds."""
    warmup = max(10, iters // 10)
    runs: dict[str, list[tuple[float, float]]] = {"eager": [], "compiled": [], "deepxde": []}
    error = ""
    for _ in range(rounds):
        runs["eager"].append(_pinn_burgers_speed(iters, warmup, device))
        runs["compiled"].append(_pinn_burgers_speed(iters, warmup, device, compile=True))
        if not error:
            try:
                runs["deepxde"].append(_deepxde_burgers_speed(iters, warmup))
            except Exception as exc:  # noqa: BLE001 (reported in the table, not fatal)
                error = f"{type(exc).__name__}: {str(exc)[:80]}"

    def med(name: str, k: int) -> float:
        return statistics.median(r[k] for r in runs[name])

    rows = []
    for name, label in (("eager", "neurop PINN"), ("compiled", "neurop PINN, compile=true")):
        ratio = "–"
        if runs["deepxde"]:
            ratio = f"{med(name, 0) / med('deepxde', 0):.2f}× / {med(name, 1) / med('deepxde', 1):.2f}×"
        rows.append(f"| {label} ({device}) | {med(name, 0):.1f} | {med(name, 1):.1f} | {ratio} |")
    if runs["deepxde"]:
        version = sys.modules["deepxde"].__version__
        rows.append(
            f"| DeepXDE {version} (pytorch, cpu) | {med('deepxde', 0):.1f} | {med('deepxde', 1):.1f} | 1 |"
        )
    else:
        rows.append(f"| DeepXDE (pytorch) | not run: {error} | – | – |")
    return rows


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    all_problems = list(RECIPES)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", nargs="+", default=all_problems, choices=all_problems)
    ap.add_argument("--models", nargs="+", default=["pinn", "pig"], choices=["pinn", "pig"])
    ap.add_argument("--seconds", type=float, default=40.0, help="wall-time budget per (problem, model)")
    ap.add_argument("--adam-fraction", type=float, default=0.6, help="share of the budget spent in Adam")
    ap.add_argument(
        "--quick", action="store_true", help="3 s per run, smaller references, 100 speed iterations"
    )
    ap.add_argument("--speed-iters", type=int, default=500, help="iterations timed in the DeepXDE comparison")
    ap.add_argument("--no-speed", action="store_true", help="skip the DeepXDE comparison")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--allocator",
        default="retain",
        choices=list(CPU_ALLOCATORS),
        help="C allocator for every run in this process (neurop.runtime; train.py uses retain)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true", help="torch.compile the losses (compilation not timed)")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = ap.parse_args(argv)
    if not 0 <= args.adam_fraction <= 1:
        ap.error(f"--adam-fraction must be in [0, 1], got {args.adam_fraction}")
    torch.set_num_threads(args.threads)
    configure_cpu_allocator(args.allocator)
    seconds = 3.0 if args.quick else args.seconds
    speed_iters = 100 if args.quick else args.speed_iters

    lines = [
        f"Wall-time budget per run: {seconds:g} s ({args.adam_fraction:.0%} Adam, then L-BFGS); device "
        f"{args.device}, {args.threads} thread(s); {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}. Final-iterate relative L2 error vs the reference (best of 10 evaluations in "
        "brackets).",
        "",
        "| problem | PINN rel L2 | PIG rel L2 | PINN steps | PIG steps | PINN published | PIG published |",
        "|---|---|---|---|---|---|---|",
    ]
    for pde in args.problems:
        res: dict[str, dict[str, Any]] = {}
        for model in args.models:
            torch.manual_seed(args.seed)
            task = build_task(model, pde, {"seed": args.seed, "compile": args.compile}, quick=args.quick)
            task = task.to(args.device)
            _ = task.problem.reference  # computed before the clock starts
            if args.compile:
                task.loss(task.batch(0))[0].backward()  # compile before the clock starts
                task.net.zero_grad()
            r = fit(task, seconds, args.adam_fraction)
            res[model] = r
            print(f"{pde:17s} {model:4s} final {r['final']:.3e} best {r['best']:.3e} steps {r['steps']} "
                  f"(adam {r['adam_steps']}) {r['seconds']:.1f}s loss {r['loss']:.3e} {r['status']}",
                  flush=True)  # fmt: skip

        def cell(m: str, key: str, res: dict[str, dict[str, Any]] = res) -> str:
            if m not in res:
                return "–"
            r = res[m]
            if key == "err":
                txt = f"{r['final']:.2e} ({r['best']:.2e})"
                return txt if r["status"] == "ok" else f"{txt} {r['status']}"
            return f"{r['steps']} ({r['adam_steps']} Adam)"

        pub = PUBLISHED.get(pde, ("–", "–"))
        lines.append(f"| {pde} | {cell('pinn', 'err')} | {cell('pig', 'err')} | {cell('pinn', 'steps')} | "
                     f"{cell('pig', 'steps')} | {pub[0]} | {pub[1]} |")  # fmt: skip
    if not args.no_speed:
        lines += [
            "",
            "PINN training speed, DeepXDE's Burgers set-up (3×20 tanh, 2540 + 80 + 160 points, Adam), "
            f"{speed_iters} timed iterations, {args.threads} thread(s), medians of 2 alternating rounds:",
            "",
            "| implementation | iterations/s (wall) | iterations/s (CPU time) | vs DeepXDE (wall / CPU) |",
            "|---|---|---|---|",
        ]
        lines += speed_rows(speed_iters, args.device)
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
