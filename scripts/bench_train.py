"""Training-throughput and peak-memory benchmark of neurop's FNO against the neuraloperator 2.0 FNO.

Each configuration is one forward + backward + Adam step on random data (MSE loss). Every run is a
fresh subprocess (so allocator state and peak memory of one model never leak into the other); the two
models alternate back to back for ``--rounds`` rounds (A B, B A, ...) so that load from other processes
hits both sides alike, and the table reports medians over rounds of the median step time, with ratios, and
the median of the per-round ratios (each from two back-to-back runs, so slow drifts of a shared machine
cancel).
Peak memory on CPU is the peak resident set size (``resource.getrusage``; torch's CPU allocations are
invisible to tracemalloc), in total and as the increment over the RSS reached after building model and
data; on CUDA ``torch.cuda.max_memory_allocated``.

The baseline is ``neuralop.models.FNO`` (``pip install neuraloperator==2.0.0 --no-deps`` plus tensorly,
tensorly-torch, opt-einsum, zencfg, configmypy, ruamel.yaml). It is configured to the same network:
width, depth, lifting/projection widths (2 × width), channel MLP with soft-gating skip, linear FNO skip,
grid embedding, and the same retained modes (neuraloperator counts the total number of modes per axis
before halving the last one, so neurop's ``m`` per axis is its ``(2m, ..., 2m, 2m - 2)``).

Both models run under each C allocator setting of ``--allocators`` (``neurop.runtime``): ``default`` (glibc
as it is: large blocks are mapped afresh, and faulted in page by page, every step) and ``retain`` (released
memory stays in the heap; ``python train.py`` sets it). Rows compare the two under the same setting, and an
``as shipped`` row compares neurop under ``retain`` with neuraloperator under ``default``; page faults per
step are printed alongside.

Usage::

    python scripts/bench_train.py                      # all configurations, 1 thread
    python scripts/bench_train.py --configs fno2d-64-m12 --steps 6 --rounds 3 --threads 2
    python scripts/bench_train.py --device cuda --amp --compile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neurop.runtime import CPU_ALLOCATORS, configure_cpu_allocator

CONFIGS: dict[str, dict[str, Any]] = {
    "fno2d-64-m12": dict(grid=[64, 64], modes=12, width=32, layers=4, batch=20),
    "fno2d-64-m16": dict(grid=[64, 64], modes=16, width=32, layers=4, batch=20),
    "fno2d-128-m12": dict(grid=[128, 128], modes=12, width=32, layers=4, batch=20),
    "fno2d-128-m16": dict(grid=[128, 128], modes=16, width=32, layers=4, batch=20),
    "fno1d-1024-m16": dict(grid=[1024], modes=16, width=64, layers=4, batch=20),
}
IMPLS = ("neurop", "neuralop")


@dataclass
class Setup:
    model: nn.Module
    opt: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None


def build_model(impl: str, cfg: dict[str, Any]) -> nn.Module:
    """The benchmark network of one implementation for configuration ``cfg``."""
    d, m, width = len(cfg["grid"]), cfg["modes"], cfg["width"]
    if impl == "neurop":
        from neurop.models import MODELS

        return MODELS.build(
            "fno",
            in_channels=1,
            out_channels=1,
            n_modes=[m] * d,
            hidden_channels=width,
            n_layers=cfg["layers"],
            lifting_channels=2 * width,
            projection_channels=2 * width,
            positional_embedding=True,
            channel_mlp=True,
        )
    if impl == "neuralop":
        from neuralop.models import FNO as NOFNO  # benchmark-only dependency

        return NOFNO(
            n_modes=tuple([2 * m] * (d - 1) + [2 * m - 2]),
            in_channels=1,
            out_channels=1,
            hidden_channels=width,
            n_layers=cfg["layers"],
            lifting_channel_ratio=2,
            projection_channel_ratio=2,
        )
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def make_setup(impl: str, cfg: dict[str, Any], args: argparse.Namespace, seed: int = 0) -> Setup:
    torch.manual_seed(seed)
    device = torch.device(args.device)
    model = build_model(impl, cfg).to(device)
    if args.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(cfg["batch"], 1, *cfg["grid"], device=device)
    y = torch.randn(cfg["batch"], 1, *cfg["grid"], device=device)
    amp_dtype = None
    scaler = None
    if args.amp:
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        if amp_dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
    return Setup(model, opt, x, y, scaler, amp_dtype)


def train_step(s: Setup) -> None:
    s.opt.zero_grad(set_to_none=True)
    with torch.autocast(s.x.device.type, dtype=s.amp_dtype or torch.float32, enabled=s.amp_dtype is not None):
        loss = torch.nn.functional.mse_loss(s.model(s.x).float(), s.y)
    if s.scaler is not None:
        s.scaler.scale(loss).backward()
        s.scaler.step(s.opt)
        s.scaler.update()
    else:
        loss.backward()
        s.opt.step()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def n_params(model: nn.Module) -> int:
    # Complex parameters count as two reals, like neurop's (..., 2) storage.
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(cfg_name: str, impl: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` training steps of one model in this (fresh) process and record its peak memory.

    Returns the median and minimum seconds per step, the parameter count, and the peak memory in MB:
    on CPU the peak RSS and its increment over the RSS reached after building model and data; on CUDA
    ``torch.cuda.max_memory_allocated`` and its increment over the allocation before the first step.
    """
    configure_cpu_allocator(args.allocators[0])
    cfg = CONFIGS[cfg_name]
    s = make_setup(impl, cfg, args)
    cuda = args.device.startswith("cuda")
    _sync(args.device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    for _ in range(args.warmup):
        train_step(s)
    _sync(args.device)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(args.steps):
        t0 = time.perf_counter()
        train_step(s)
        _sync(args.device)
        times.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb()
    return dict(
        median_s=statistics.median(times),
        min_s=min(times),
        params=n_params(s.model),
        peak_mb=peak,
        base_mb=base,
        increment_mb=peak - base,
        faults_per_step=faults,
    )


def run_worker(args: argparse.Namespace, cfg_name: str, impl: str, allocator: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--configs",
        cfg_name,
        "--impls",
        impl,
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device,
        "--allocators",
        allocator,
    ]
    if args.amp:
        cmd.append("--amp")
    if args.compile:
        cmd.append("--compile")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def baseline_available() -> str | None:
    """None if neuraloperator imports, else the reason it does not."""
    try:
        import neuralop  # noqa: F401
    except Exception as err:  # any import-time failure means no baseline
        return f"{type(err).__name__}: {err}"
    return None


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _paired_ratios(base: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[float]:
    """Per-round speed-ups: the baseline's median step time over ours in the same round. The two runs of
    a round are back to back, so slow drifts of the machine cancel in each ratio."""
    return [
        b["median_s"] / o["median_s"]
        for b, o in zip(base, ours, strict=False)
        if "error" not in b and "error" not in o
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared box)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating fresh-process runs per model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument(
        "--allocators",
        nargs="+",
        default=["default", "retain"],
        choices=list(CPU_ALLOCATORS),
        help="C allocator settings to run both models under (neurop.runtime; train.py uses retain)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker:
        print(json.dumps(worker(args.configs[0], args.impls[0], args)))
        return

    impls = list(args.impls)
    if "neuralop" in impls and (reason := baseline_available()) is not None:
        print(f"neuraloperator baseline unavailable ({reason}); timing neurop only\n")
        impls.remove("neuralop")
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, {args.rounds} rounds of "
        f"{args.warmup} warm-up + {args.steps} timed steps per model, each run in a fresh process, models "
        f"alternating (A B, B A, ...); amp {args.amp}, compile {args.compile}\n"
    )
    variants = [(impl, alloc) for alloc in args.allocators for impl in impls]
    rows = []
    for cfg_name in args.configs:
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for impl, alloc in variants if r % 2 == 0 else variants[::-1]:
                res = run_worker(args, cfg_name, impl, alloc)
                runs[(impl, alloc)].append(res)
                print(f"{cfg_name} round {r} {impl} allocator={alloc}: {json.dumps(res)}", file=sys.stderr)
        rows.append((cfg_name, runs))

    print(
        "Allocator: `default` leaves glibc as it is (large blocks mapped and faulted in afresh every step); "
        "`retain` keeps released memory in the heap (`neurop.runtime`, what `python train.py` sets). "
        "Rows compare both models under the same setting; `as shipped` compares neurop under `retain` with "
        "neuraloperator under `default`. `speed-up` is the ratio of the medians over rounds; `speed-up per "
        "round` the median (and range) of the ratios within each round, whose two runs are back to back.\n"
    )
    header = (
        "| config | allocator | params | neurop samples/s | neuralop samples/s | speed-up | "
        "speed-up per round | neurop peak MB (+train) | neuralop peak MB (+train) | memory ratio (+train) | "
        "page faults/step |"
    )
    print(header)
    print("|---" * 11 + "|")
    pairs = [(a, a) for a in args.allocators]
    if {"default", "retain"} <= set(args.allocators):
        pairs.append(("retain", "default"))
    for cfg_name, runs in rows:
        batch = CONFIGS[cfg_name]["batch"]
        stats: dict[tuple[str, str], dict[str, Any]] = {}
        for key, results in runs.items():
            ok = [r for r in results if "error" not in r]
            if not ok:
                stats[key] = {"error": results[0].get("error", "failed") if results else "not run"}
                continue
            stats[key] = dict(
                sps=batch / _median([r["median_s"] for r in ok]),
                params=ok[0]["params"],
                peak=_median([r["peak_mb"] for r in ok]),
                inc=_median([r["increment_mb"] for r in ok]),
                faults=_median([r["faults_per_step"] for r in ok]),
            )

        def cell(st: dict[str, Any], key: str) -> str:
            if "error" in st:
                return f"error: {st['error']}"
            return "n/a" if key not in st else f"{st[key]:.1f}"

        def mem(st: dict[str, Any]) -> str:
            return "n/a" if "peak" not in st else f"{st['peak']:.0f} (+{st['inc']:.0f})"

        for ours_alloc, base_alloc in pairs:
            ours = stats.get(("neurop", ours_alloc), {})
            base = stats.get(("neuralop", base_alloc), {})
            both = "sps" in ours and "sps" in base
            speed = ours["sps"] / base["sps"] if both else None
            ratio = ours["peak"] / base["peak"] if both else None
            inc_ratio = ours["inc"] / base["inc"] if both else None
            label = ours_alloc if ours_alloc == base_alloc else f"as shipped ({ours_alloc} / {base_alloc})"
            paired = _paired_ratios(
                runs.get(("neuralop", base_alloc), []), runs.get(("neurop", ours_alloc), [])
            )
            per_round = (
                f"{statistics.median(paired):.2f}× ({min(paired):.2f}–{max(paired):.2f})" if paired else "n/a"
            )
            params = "/".join(str(st["params"]) for st in (ours, base) if "params" in st)
            faults = " / ".join(f"{st['faults']:.0f}" for st in (ours, base) if "faults" in st)
            print(
                f"| {cfg_name} | {label} | {params} | {cell(ours, 'sps')} | {cell(base, 'sps')} | "
                f"{_fmt(speed, '.2f')}× | {per_round} | {mem(ours)} | {mem(base)} | "
                f"{_fmt(ratio, '.2f')} ({_fmt(inc_ratio, '.2f')}) | {faults} |"
            )


if __name__ == "__main__":
    main()
