"""Benchmark data generation: our solvers against plain baselines, speed, peak memory and accuracy.

For each PDE at the FNO paper's resolutions (Darcy 421², Navier–Stokes 256², Burgers 8192):

* Darcy: ``solver=auto`` (batched FFT-preconditioned CG on this coefficient), ``amg`` (pyamg CG) and the
  baseline ``direct`` (scipy ``spsolve``); accuracy = relative residual ‖f − Au‖/‖f‖ and relative L2
  distance to the direct solution.
* Navier–Stokes: the default adaptive scheme against the paper's ``cn`` (Crank–Nicolson, dt = 1e-4) up
  to a short final time; accuracy = relative L2 of w(T) against a fine reference (the default scheme
  with a fixed step ``--ns-ref-dt``). Times are also extrapolated to the paper's T = 50.
* Burgers: ETDRK4 (CFL step) against explicit RK4 at its diffusion-limited stable step. RK4 runs a fixed
  number of steps (``--rk4-steps``) and its time is extrapolated to T = 1; accuracies are relative L2
  against a fine ETDRK4 reference at the time each method reached.
* ``+store`` rows: the same as "ours" through :func:`neurop.data.generate_dataset` (HDF5 writing
  included), so the driver's overhead is visible.

Every measurement runs in a fresh subprocess (one thread unless ``--threads``), so peak memory (RSS
high-water mark above the pre-solve level; on CUDA ``torch.cuda.max_memory_allocated``) belongs to that
method alone. Run it on a quiet machine: ``python scripts/bench_generate.py`` (full) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- worker (child process)
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement described by ``spec``; return timings, memory and where the result is saved."""
    import numpy as np
    import torch

    from neurop.data.generate import generate_dataset, sample_seed
    from neurop.pdes import PDES

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    seeds = [sample_seed(spec["seed"], "bench", i) for i in range(spec["n_samples"])]
    gen = PDES.get(spec["pde"])(**spec["params"])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mb()
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if spec["kind"] == "store":
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(
                spec["pde"],
                spec["params"],
                spec["n_samples"],
                Path(tmp) / "bench.h5",
                split="bench",
                seed=spec["seed"],
                device=device,
                batch_size=spec["batch_size"],
                progress=False,
            )
            if cuda:
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
    else:
        finals, residuals = [], []
        for start in range(0, len(seeds), spec["batch_size"]):
            batch = seeds[start : start + spec["batch_size"]]
            if spec["pde"] == "darcy":
                # solve() also returns the residual of the float64 solution on the solver grid.
                a = gen.sample_coefficient(batch, device)
                u, res = gen.solve(a, device)
                finals.append(u.to("cpu", torch.float64).numpy())
                residuals.append(res.cpu().numpy())
            else:
                field = next(iter(gen.fields()))
                result = gen.solve_batch(batch, device)[field]
                finals.append(result[:, -1].to("cpu", torch.float64).numpy())
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        np.save(spec["result"], np.concatenate(finals))
        if residuals:
            out["residual"] = float(np.max(np.concatenate(residuals)))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    out.update(
        seconds=elapsed,
        peak_rss_mb=peak_rss,
        rss_increase_mb=max(peak_rss - rss0, 0.0),
        cuda_peak_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        solver=gen.solver_info(),
    )
    if spec["pde"] == "darcy":
        out["resolved_solver"] = gen.resolve_solver(device)
    return out


# ---------------------------------------------------------------------------- orchestration
def _run(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(spec["threads"])
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['label']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rel_l2(x, ref) -> float:
    import numpy as np

    x, ref = np.asarray(x), np.asarray(ref)
    axes = tuple(range(1, ref.ndim))
    return float(
        np.mean(np.linalg.norm((x - ref).reshape(len(ref), -1), axis=1) / np.linalg.norm(ref, axis=axes))
    )


def _config_params(pde: str) -> dict[str, Any]:
    """The ``generator:`` section of configs/pde/<pde>.yaml: the settings users run by default."""
    import yaml

    return dict(yaml.safe_load((REPO / "configs" / "pde" / f"{pde}.yaml").read_text())["generator"])


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The measurements to run, grouped by PDE; each spec names its role in the comparison."""
    q = args.quick
    specs: list[dict[str, Any]] = []

    def add(pde: str, label: str, role: str, n: int, grid: str, params: dict[str, Any], **extra: Any) -> None:
        specs.append(
            {
                "pde": pde,
                "label": label,
                "role": role,
                "kind": "store" if role == "store" else "solve",
                "n_samples": n,
                "grid": grid,
                "params": params,
                "threads": args.threads,
                "device": args.device,
                "seed": 0,
                "batch_size": args.batch_size,
                **extra,
            }
        )

    if "darcy" in args.pde:
        res = args.darcy_resolution or (65 if q else 421)
        n = args.darcy_samples or (2 if q else 4)
        grid = f"{res}²"
        # stride 1: residuals and differences are taken on the solver grid
        base = {**_config_params("darcy"), "resolution": res, "stride": 1}
        add("darcy", "ours (auto)", "ours", n, grid, {**base, "solver": "auto"})
        add("darcy", "amg", "other", n, grid, {**base, "solver": "amg"})
        add("darcy", "direct (baseline)", "baseline", n, grid, {**base, "solver": "direct"})
        stride = args.darcy_stride or (2 if q else 5)
        add("darcy", "ours +store", "store", n, grid, {**base, "stride": stride, "solver": "auto"})

    if "navier_stokes" in args.pde:
        res = args.ns_resolution or (64 if q else 256)
        n = args.ns_samples or 2
        t = args.ns_t_final or (0.05 if q else 1.0)
        base = {**_config_params("navier_stokes"), "resolution": res, "stride": 1}
        base.update(t_final=t, snapshot_interval=t)
        ours = base["scheme"]
        grid = f"{res}², T={t:g}"
        times = {"t_final": t, "t_paper": 50.0}
        add("navier_stokes", f"ours ({ours})", "ours", n, grid, {**base, "scheme": ours}, **times)
        cn = {**base, "scheme": "cn", "dt": None}
        add("navier_stokes", "cn dt=1e-4 (baseline)", "baseline", n, grid, cn, **times)
        ref = {**base, "scheme": ours, "dt": args.ns_ref_dt}
        add("navier_stokes", f"reference ({ours}, dt={args.ns_ref_dt:g})", "reference", n, grid, ref, **times)
        store = {**base, "stride": args.ns_stride or (1 if q else 4), "scheme": ours}
        add("navier_stokes", "ours +store", "store", n, grid, store, **times)

    if "burgers" in args.pde:
        res = args.burgers_resolution or (1024 if q else 8192)
        n = args.burgers_samples or (2 if q else 8)
        t = args.burgers_t_final or (0.1 if q else 1.0)
        base = {**_config_params("burgers"), "resolution": res, "stride": 1, "n_snapshots": 1}
        visc = base["viscosity"]
        h_rk4 = 2.78 / (visc * (2 * math.pi * ((res - 1) // 3)) ** 2)  # the solver's RK4 diffusion limit
        steps = args.rk4_steps or (200 if q else 2000)
        t_rk4 = min(t, steps * h_rk4)
        grid, grid_rk4 = f"{res}, T={t:g}", f"{res}, T={t_rk4:.3g}"
        ref_dt = args.burgers_ref_dt
        ours = {**base, "t_final": t}
        add("burgers", f"ours ({ours['scheme']})", "ours", n, grid, ours, t_final=t)
        rk4 = {**base, "t_final": t_rk4, "scheme": "rk4", "dt": None}
        label = f"rk4, {steps} steps (baseline)"
        add("burgers", label, "baseline", n, grid_rk4, rk4, t_final=t_rk4, t_paper=t)
        ref = {**base, "t_final": t, "scheme": "etdrk4", "dt": ref_dt}
        add("burgers", f"reference (etdrk4 dt={ref_dt:g})", "reference", n, grid, ref, t_final=t)
        ref_short = {**base, "t_final": t_rk4, "scheme": "etdrk4", "dt": min(ref_dt, t_rk4 / 4)}
        add(
            "burgers", "reference at T_rk4 (etdrk4)", "reference_short", n, grid_rk4, ref_short, t_final=t_rk4
        )
        store = {**ours, "stride": args.burgers_stride or (1 if q else 8)}
        add("burgers", "ours +store", "store", n, grid, store, t_final=t)
    return specs


def report(specs: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """Markdown table with speed-ups relative to each PDE's baseline and accuracy columns."""
    import numpy as np

    by = {}
    for s, r in zip(specs, results, strict=True):
        by.setdefault(s["pde"], []).append((s, r))
    header = ["PDE", "method", "grid", "samples", "s/sample", "samples/s", "speed-up", "peak RSS +MB"]
    header += ["CUDA peak MB", "accuracy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pde, rows in by.items():
        arrays = {s["role"]: np.load(s["result"]) for s, _ in rows if s["kind"] == "solve"}
        base = next(r for s, r in rows if s["role"] == "baseline")
        base_spec = next(s for s, _ in rows if s["role"] == "baseline")

        def s_per_sample(s: dict[str, Any], r: dict[str, Any]) -> float:
            # Short runs are extrapolated linearly to the paper's final time.
            scale = s.get("t_paper", s.get("t_final", 1.0)) / s.get("t_final", 1.0)
            return r["seconds"] / s["n_samples"] * scale

        t_base = s_per_sample(base_spec, base)
        ours_spec, ours = next((s, r) for s, r in rows if s["role"] == "ours")
        for s, r in rows:
            sps = s_per_sample(s, r)
            acc = ""
            if s["role"] == "store":
                # The writing overhead does not grow with the simulated time: add it unscaled.
                overhead = (r["seconds"] - ours["seconds"]) / s["n_samples"]
                sps = s_per_sample(ours_spec, ours) + overhead
                acc = f"driver + HDF5 overhead {1e3 * overhead:+.0f} ms/sample vs ours"
            if pde == "darcy" and s["kind"] == "solve":
                rel = _rel_l2(arrays[s["role"]], arrays["baseline"])
                acc = f"residual {r['residual']:.1e}; rel L2 vs direct {rel:.1e}"
                if s["role"] == "ours":
                    acc += f" [auto -> {r['resolved_solver']}]"
            elif pde in ("navier_stokes", "burgers") and s["role"] in ("ours", "baseline"):
                ref_key = "reference_short" if (pde == "burgers" and s["role"] == "baseline") else "reference"
                rel = _rel_l2(arrays[s["role"]], arrays[ref_key])
                acc = f"rel L2 vs reference at T={s['t_final']:.3g}: {rel:.1e}"
            if pde == "navier_stokes" and s["role"] == "reference":
                acc = f"ours vs cn: {_rel_l2(arrays['ours'], arrays['baseline']):.1e}"
            extrap = " (extrap.)" if s.get("t_paper", s.get("t_final")) != s.get("t_final") else ""
            cuda = f"{r['cuda_peak_mb']:.0f}" if r.get("cuda_peak_mb") is not None else "-"
            speedup = "-" if s["role"].startswith("reference") else f"{t_base / sps:.2f}x"
            cells = [
                pde,
                s["label"],
                s["grid"],
                s["n_samples"],
                f"{sps:.3g}{extrap}",
                f"{1 / sps:.3g}",
                speedup,
            ]
            cells += [f"{r['rss_increase_mb']:.0f}", cuda, acc]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small grids, few samples (a smoke test, ~1 min)")
    pdes = ["darcy", "navier_stokes", "burgers"]
    p.add_argument("--pde", nargs="+", default=pdes, choices=pdes)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per worker (default 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--darcy-resolution", type=int)
    p.add_argument("--darcy-samples", type=int)
    p.add_argument("--darcy-stride", type=int, help="stored stride of the +store row (paper: 5)")
    p.add_argument("--ns-resolution", type=int)
    p.add_argument("--ns-samples", type=int)
    p.add_argument("--ns-t-final", type=float, help="short final time so that cn finishes (default 1)")
    p.add_argument("--ns-ref-dt", type=float, default=2.5e-4, help="fixed step of the NS reference run")
    p.add_argument("--ns-stride", type=int)
    p.add_argument("--burgers-resolution", type=int)
    p.add_argument("--burgers-samples", type=int)
    p.add_argument("--burgers-t-final", type=float)
    p.add_argument("--burgers-ref-dt", type=float, default=1e-5, help="fixed step of the Burgers reference")
    p.add_argument("--burgers-stride", type=int)
    p.add_argument("--rk4-steps", type=int, help="RK4 steps timed, then extrapolated to the final time")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    specs = plan(args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, spec in enumerate(specs):
            spec["result"] = str(Path(tmp) / f"{k}.npy")
            t0 = time.perf_counter()
            results.append(_run(spec, args.timeout))
            took = time.perf_counter() - t0
            print(
                f"[{k + 1}/{len(specs)}] {spec['pde']} {spec['label']}: {took:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        table = report(specs, results)
    mode = " (quick)" if args.quick else ""
    print(f"\nthreads={args.threads} device={args.device}{mode}; s/sample of short runs is extrapolated")
    print("linearly to the paper's final time; speed-up = baseline s/sample / s/sample\n")
    print(table)
    if args.json:
        args.json.write_text(json.dumps([{**s, **r} for s, r in zip(specs, results, strict=True)], indent=1))


if __name__ == "__main__":
    main()
