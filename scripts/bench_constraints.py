"""Benchmark the hard-constraint layer: step time and peak memory against sampled points (global vs experts),
and the relative L2 error of soft, global hard and expert hard constraints on CPU-sized paper tasks.

Usage::

    python scripts/bench_constraints.py --quick              # about 2 minutes on 1 CPU thread
    python scripts/bench_constraints.py --out docs/results_constraints.md

Every timing configuration runs in its own subprocess, so the peak resident memory it reports (growth of the
process's peak RSS over the timed steps, or CUDA's peak allocation on a GPU) belongs to that configuration
alone. The accuracy part trains each model for the same wall-clock budget with the residual-only loss of
Chalapathi et al. (ICLR 2024) and tests against the generator's solutions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from neurop.runtime import CPU_ALLOCATORS, configure_cpu_allocator

# experts: every expert has all initial/boundary rows (the method as described) and trains on the residual
# of its own field on its block; experts_grid: trained on the residual of the assembled field instead (which
# also penalises the jumps between blocks; the same thing for a non-local residual such as Navier–Stokes);
# experts_local: only the rows inside its block.
METHODS = ("soft", "global", "experts", "experts_grid", "experts_local")
PUBLISHED = {  # Chalapathi, Du & Krishnapriyan, ICLR 2024 (relative L2): soft, global hard, MoE hard
    "diffusion_sorption": (0.859, 0.0755, 0.0360),
    "navier_stokes": (0.181, 0.118, 0.0830),
}


# ---------------------------------------------------------------------------------------------- set-ups
def task_setup(pde: str, quick: bool) -> dict[str, Any]:
    """Generator parameters, experts and backbone size of the CPU-sized version of a paper task."""
    if pde == "diffusion_sorption":
        params = dict(resolution=33 if quick else 65, n_t=21 if quick else 41)
        return dict(params=params, experts=[1, 4], n_modes=[6, 8], n_basis=16)
    params = dict(
        resolution=16,
        stride=1,
        viscosity=1e-4,
        t_final=5.0,
        snapshot_interval=0.25,
        forcing="none",
        alpha=2.5,
        tau=7.0,
    )
    return dict(params=params, experts=[1, 2, 2], n_modes=[4, 4, 4], n_basis=32 if quick else 64)


def build_task(
    pde: str, method: str, setup: dict[str, Any], n_points: int | None, hidden: int, layers: int
) -> Any:
    """A ConstrainedTask: method 'soft' (fno_pi), 'global' (fno_hc) or 'experts' (fno_hc_moe)."""
    from neurop.tasks.constrained import ConstrainedTask

    fno = dict(
        n_modes=setup["n_modes"], hidden_channels=hidden, n_layers=layers, projection_channels=2 * hidden
    )
    if method == "soft":
        model, kwargs, constraint = "fno", fno, "soft"
    else:
        model = "fno_hc" if method == "global" else "fno_hc_moe"
        kwargs = dict(
            backbone_kwargs=fno,
            n_basis=setup["n_basis"],
            n_points=n_points,
            on_failure="warn",
            tol=1e-4,
            max_iter=50,
        )
        if method.startswith("experts"):
            kwargs["experts"] = setup["experts"]
            kwargs["expert_boundary"] = "local" if method == "experts_local" else "global"
        constraint = "hard"
    expert_residual = "grid" if method == "experts_grid" else "blocks"
    return ConstrainedTask(
        model=model,
        model_kwargs=kwargs,
        in_channels=1,
        out_channels=1,
        pde=pde,
        pde_params=setup["params"],
        constraint=constraint,
        loss="residual",
        space_time=True,
        expert_residual=expert_residual,
    )


def generate(pde: str, params: dict[str, Any], seeds: list[int]) -> torch.Tensor:
    """Trajectories (B, 1, *grid) in float32 from the registered generator."""
    from neurop.pdes import PDES

    out = PDES.get(pde)(**params).solve_batch(seeds)
    field = out["u"] if "u" in out else out["w"]
    return field.float().unsqueeze(1).cpu()


# ---------------------------------------------------------------------------------------------- timing
def time_child(
    method: str, n_points: int, n_x: int, steps: int, quick: bool, allocator: str = "retain"
) -> dict[str, Any]:
    """Train steps of one configuration; run in a subprocess so its peak memory is its own."""
    torch.set_num_threads(1)
    configure_cpu_allocator(allocator)
    setup = task_setup("diffusion_sorption", quick)
    setup["params"] = dict(resolution=n_x, n_t=101)
    # "backbone": the global model's FNO alone (its N basis outputs, a stand-in loss, backward, Adam) --
    # the part of a step that neither constraint avoids, so t_global / t_backbone bounds any speed-up
    # the experts can give over the global solve.
    task = build_task(
        "diffusion_sorption",
        "global" if method == "backbone" else method,
        setup,
        n_points,
        hidden=16 if quick else 32,
        layers=2 if quick else 4,
    )
    torch.manual_seed(0)
    y = generate("diffusion_sorption", setup["params"], [0, 1])
    x = task.model_input(y)
    task.input_normalizer.set_stats(x.mean().reshape(1), x.std().reshape(1))
    opt = torch.optim.Adam(task.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        if method == "backbone":
            basis = task.net.basis(task.input_normalizer.encode(x))
            basis.square().mean().backward()
        else:
            _, res, bnd = task.physics_loss(y)
            (res + bnd).backward()
        opt.step()

    cuda = torch.cuda.is_available()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        step()  # warm-up
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "backbone":
        return dict(method=method, n_points=n_points, time_s=min(times), peak_mb=(peak - base) / 1024)
    info = task.net.constraint.last_info
    return dict(
        method=method,
        n_points=n_points,
        time_s=min(times),
        peak_mb=(peak - base) / 1024,
        rss_mb=peak / 1024,
        iterations=info.iterations,
        converged=float(info.converged.double().mean()),
    )


def run_timing(points: list[int], steps: int, quick: bool, allocator: str = "retain") -> list[dict[str, Any]]:
    rows = []
    for m in points:
        n_x = 128 if m <= 10_000 else 1024  # 100 x 126 interior points hold 10^4; 10^5 needs 1024 nodes
        for method in ("global", "experts", "backbone"):
            cmd = [
                sys.executable,
                __file__,
                "--_child",
                json.dumps([method, m, n_x, steps, quick, allocator]),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                raise RuntimeError(f"timing child {method} m={m} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  {method:8s} m={m:>6d}  {row['time_s']:.3f} s/step  peak +{row['peak_mb']:.0f} MB  "
                f"LM iterations {row.get('iterations', '-')}",
                flush=True,
            )
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- accuracy
def run_accuracy(
    pde: str,
    budget_s: float,
    quick: bool,
    max_steps: int | None = None,
    methods: tuple[str, ...] = METHODS,
    seed: int = 0,
) -> dict[str, float]:
    """Relative L2 error per method after ``budget_s`` seconds of training, or ``max_steps`` steps when given
    (the paper's protocol: the same iterations for every method); steps and seconds under ``<method>_steps``
    and ``<method>_s``."""
    torch.set_num_threads(1)
    setup = task_setup(pde, quick)
    n_train, n_test = (4, 2) if quick else (8, 4)
    t0 = time.perf_counter()
    data = generate(pde, setup["params"], list(range(n_train + n_test)))
    print(f"  {pde}: data {tuple(data.shape)} in {time.perf_counter() - t0:.1f} s", flush=True)
    train, test = data[:n_train], data[n_train:]
    n_interior = int(data[0, 0].numel())
    n_points = min(2000, n_interior // 2)
    from neurop.losses import relative_l2

    # Persistence (u(t) = u(0)) shows how much of the error any learned dynamics must remove.
    errors = {"persistence": float(relative_l2(test[:, :, :1].expand_as(test), test))}

    for method in methods:
        torch.manual_seed(seed)  # the models' initial weights and sampled points; the data stay fixed
        task = build_task(pde, method, setup, n_points, hidden=16 if quick else 32, layers=2 if quick else 4)
        if method == "experts_grid" and not task.residual.local:
            continue  # a non-local residual has no per-block residual: the experts already train on the grid
        x = task.model_input(train)
        task.input_normalizer.set_stats(x.mean().reshape(1), x.std().reshape(1))
        opt = torch.optim.Adam(task.parameters(), lr=1e-3)
        steps, start = 0, time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            while steps < max_steps if max_steps is not None else time.perf_counter() - start < budget_s:
                for i in range(0, n_train, 2):
                    if max_steps is not None and steps >= max_steps:
                        break
                    y = train[i : i + 2]
                    opt.zero_grad()
                    _, res, bnd = task.physics_loss(y)
                    loss = res + bnd
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
                    opt.step()
                    steps += 1
            seconds = time.perf_counter() - start
            task.eval()
            with torch.no_grad():
                err = float(relative_l2(task(test), test))
        errors[method] = err
        errors[f"{method}_steps"], errors[f"{method}_s"] = steps, seconds
        print(f"  {pde:18s} {method:8s} rel L2 {err:.4f} after {steps} steps ({seconds:.0f} s)", flush=True)
    return errors


# ---------------------------------------------------------------------------------------------- report
def _fmt(err: float | None) -> str:
    return "–" if err is None else f"{err:.3f}"


def markdown(timing: list[dict[str, Any]], acc: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [
        "# Hard constraints with mixture-of-experts: measured figures",
        "",
        f"Command: `python scripts/bench_constraints.py {' '.join(sys.argv[1:])}` "
        f"(torch {torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU, 1 thread'}).",
        "",
        "## Step time and peak memory against sampled points (diffusion–sorption, 101 times, batch 2)",
        "",
        "One training step: FNO basis (N = 16), constraint solve (global: one problem per sample; "
        "experts: [1, 4] blocks, the points shared among them), residual loss, implicit backward, Adam. "
        "Peak memory is the growth of the process's peak RSS over the timed steps. "
        f"C allocator: `{args.allocator}` (`neurop.runtime`; `python train.py` uses `retain`).",
        "",
        "backbone: the same step with the FNO alone (N basis outputs, no solve), which both constraints "
        "pay; global / backbone is the most any constraint could gain over the global solve.",
        "",
        "| points | global s/step | experts s/step | speed-up | backbone s/step "
        "| ceiling (global / backbone) | global peak MB | experts peak MB | LM its g/e |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["method"], r["n_points"]): r for r in timing}
    for m in sorted({r["n_points"] for r in timing}):
        g, e, b = by[("global", m)], by[("experts", m)], by[("backbone", m)]
        lines.append(
            f"| {m} | {g['time_s']:.3f} | {e['time_s']:.3f} | {g['time_s'] / e['time_s']:.2f}x | "
            f"{b['time_s']:.3f} | {g['time_s'] / b['time_s']:.2f}x | "
            f"{g['peak_mb']:.0f} | {e['peak_mb']:.0f} | {g['iterations']}/{e['iterations']} |"
        )
    lines += [
        "",
        "Published (GPU, JAX): MoE over global speed-up 1.6x → 3.2x from 10² to 10⁵ points on "
        "diffusion–sorption.",
        "",
        "## Relative L2 error (residual-only training, "
        + (f"{args.steps} steps per model)" if args.steps else "equal wall-clock budget per model)"),
        "",
        "experts: every expert has all initial/boundary rows (as the method is described) and trains on the "
        "residual of its own field on its block (`expert_residual: blocks`); experts, grid residual: trained "
        "on the residual of the assembled field (`expert_residual: grid`; the same for the non-local "
        "Navier–Stokes residual, so not run there); experts, local rows: each expert only the rows inside "
        "its block (`expert_boundary: local`).",
        "",
        "| task | persistence | soft (fno_pi) | global hard (fno_hc) | experts (fno_hc_moe) | "
        "experts, grid residual | experts, local rows | published soft / global / MoE "
        "| steps (s) per model |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for pde, errs in acc.items():
        pub = PUBLISHED[pde]
        lines.append(
            f"| {pde} | {errs['persistence']:.3f} | {_fmt(errs.get('soft'))} | {_fmt(errs.get('global'))} | "
            f"{_fmt(errs.get('experts'))} | {_fmt(errs.get('experts_grid'))} | "
            f"{_fmt(errs.get('experts_local'))} | {pub[0]:.3f} / {pub[1]:.4f} / {pub[2]:.4f} | "
            + " / ".join(f"{errs[m + '_steps']:.0f} ({errs[m + '_s']:.0f})" for m in METHODS if m in errs)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets (about 2 minutes)")
    parser.add_argument("--points", type=int, nargs="+", default=None, help="sampled points to time")
    parser.add_argument("--budget", type=float, default=None, help="training seconds per model and task")
    parser.add_argument(
        "--steps", type=int, default=None, help="train every model for this many steps instead of --budget"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the models' initialisation and points")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--allocator", default="retain", choices=list(CPU_ALLOCATORS), help="C allocator of the timed runs"
    )
    parser.add_argument(
        "--pdes", nargs="+", default=["diffusion_sorption", "navier_stokes"], choices=list(PUBLISHED)
    )
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child is not None:
        method, m, n_x, steps, quick, allocator = json.loads(args._child)
        print(json.dumps(time_child(method, m, n_x, steps, quick, allocator)))
        return
    points = args.points or ([100, 1000, 10_000] if args.quick else [100, 1000, 10_000, 100_000])
    budget = args.budget if args.budget is not None else (10.0 if args.quick else 60.0)
    t0 = time.perf_counter()
    timing = []
    if not args.skip_timing:
        print("step time against sampled points:", flush=True)
        timing = run_timing(points, steps=2 if args.quick else 3, quick=args.quick, allocator=args.allocator)
    acc: dict[str, dict[str, float]] = {}
    if not args.skip_accuracy:
        print("accuracy:", flush=True)
        for pde in args.pdes:
            acc[pde] = run_accuracy(pde, budget, args.quick, args.steps, tuple(args.methods), args.seed)
    report = markdown(timing, acc, args)
    print(report)
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
