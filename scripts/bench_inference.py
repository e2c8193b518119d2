"""Inference throughput of the shipped pretrained models and the overhead of ``model.predict``.

For each model and grid, one batch (default 32 samples) is timed four ways, interleaved round by round
(so that load from other processes hits all of them alike), and the table reports the fastest round (``--stat
min``, the least disturbed by other processes on a shared machine, as ``timeit`` advises) or the median:

- ``net``: the bare network on already-normalised inputs, ``model.net(x)`` under ``torch.inference_mode``;
- ``forward``: the raw forward call in physical units, ``model(x)`` (normalise, network, de-normalise), the
  arithmetic any hand-written loop has to do: the reference for the overhead;
- ``predict``: ``model.predict(x)`` on a tensor (checks, layout handling, chunking, dtype/device moves);
- ``predict(np)``: ``model.predict(a)`` on a float64 numpy array of shape (B, *spatial) (conversion included).

The overhead is ``time(predict) / time(forward) − 1`` (target: under 5% for batches of 32). On a shared
machine that ratio is noisy (a few %, see ``normalisers %``: forward over net), so the API's own cost is also
measured without the network: with ``model.net`` swapped for a 1×1 convolution, ``predict`` minus ``forward``
over many rounds gives its absolute cost in µs (``api µs``), shown as a share of the real forward time
(``api %``, ``api(np) %`` for numpy input).

Usage::

    python scripts/bench_inference.py                              # shipped models, CPU, 1 thread
    python scripts/bench_inference.py --models fno-darcy --fine --rounds 40 --threads 2
    python scripts/bench_inference.py --device cuda                # GPU where available
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurop.inference import InferenceModel, load, shipped_models


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(model: InferenceModel, batch: int, grid: list[int], seed: int = 0) -> torch.Tensor:
    """Inputs of the model's kind: Darcy-like two-valued coefficients, smooth random fields otherwise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.in_channels, *grid, generator=g)
    if model.pde == "darcy":
        return torch.where(x > 0, 12.0, 3.0)
    return x


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench(
    model: InferenceModel,
    grid: list[int],
    batch: int,
    rounds: int,
    warmup: int,
    device: torch.device,
    stat: str = "min",
) -> dict[str, Any]:
    """Seconds per batch (min or median over rounds) of each way of calling ``model`` (module docstring)."""
    model.to(device)
    x = _inputs(model, batch, grid).to(device)
    x_np = x.cpu().numpy().astype(np.float64)
    x_np = x_np[:, 0] if model.in_channels == 1 else x_np
    with torch.inference_mode():
        x_norm = model.input_normalizer.encode(x) if model.input_normalizer is not None else x

    def net() -> None:
        with torch.inference_mode():
            model.net(x_norm)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def predict() -> None:
        model.predict(x, batch_size=batch)

    def predict_np() -> None:
        model.predict(x_np, batch_size=batch)

    ways = {"net": net, "forward": forward, "predict": predict, "predict(np)": predict_np}
    for _ in range(warmup):
        for fn in ways.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(rounds):
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for k in order:
            times[k].append(_time(ways[k], device))
    reduce = min if stat == "min" else statistics.median
    med = {k: reduce(v) for k, v in times.items()}
    row: dict[str, Any] = {
        "model": model.name,
        "grid": "x".join(map(str, grid)),
        "batch": batch,
        "device": str(device),
        "params": model.n_params(),
    }
    for k, t in med.items():
        row[f"{k} samples/s"] = batch / t
        row[f"{k} ms"] = 1e3 * t
    api, api_np = _api_cost(model, x, x_np, batch, max(200, rounds), device)
    row["api µs"] = 1e6 * api
    row["api(np) µs"] = 1e6 * api_np
    row["api %"] = 100 * api / med["forward"]
    row["api(np) %"] = 100 * api_np / med["forward"]
    row["overhead predict %"] = 100 * (med["predict"] / med["forward"] - 1)
    row["overhead predict(np) %"] = 100 * (med["predict(np)"] / med["forward"] - 1)
    row["normalisers %"] = 100 * (med["forward"] / med["net"] - 1)
    return row


def _api_cost(
    model: InferenceModel,
    x: torch.Tensor,
    x_np: np.ndarray,
    batch: int,
    rounds: int,
    device: torch.device,
) -> tuple[float, float]:
    """Seconds ``predict`` spends outside the network (tensor and numpy input), fastest rounds."""
    conv = getattr(torch.nn, f"Conv{model.dim}d")(model.in_channels, model.out_channels, 1).to(device)
    net, model.net = model.net, conv
    try:

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        ways = {
            "forward": forward,
            "predict": lambda: model.predict(x, batch_size=batch),
            "predict(np)": lambda: model.predict(x_np, batch_size=batch),
        }
        times: dict[str, list[float]] = {k: [] for k in ways}
        for _ in range(rounds):
            for k, fn in ways.items():
                times[k].append(_time(fn, device))
    finally:
        model.net = net
    best = {k: min(v) for k, v in times.items()}
    return best["predict"] - best["forward"], best["predict(np)"] - best["forward"]


COLUMNS = (
    "model",
    "grid",
    "batch",
    "device",
    "net samples/s",
    "forward samples/s",
    "predict samples/s",
    "predict(np) samples/s",
    "forward ms",
    "overhead predict %",
    "overhead predict(np) %",
    "normalisers %",
    "api µs",
    "api %",
    "api(np) %",
)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the benchmark rows."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=None, help="sources for neurop.load (default: shipped)"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stat", choices=("min", "median"), default="min", help="statistic over rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, or auto (cuda where available)")
    parser.add_argument("--grid", type=int, nargs="+", default=None, help="grid (default: the training one)")
    parser.add_argument("--fine", action="store_true", help="also time the 2x finer grid (zero-shot)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    if args.batch < 1 or args.rounds < 1:
        raise SystemExit(f"--batch and --rounds must be >= 1, got {args.batch} and {args.rounds}")

    torch.set_num_threads(args.threads)
    device_name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    device = torch.device(device_name)
    sources = args.models or shipped_models()
    if not sources:
        raise SystemExit("no models: none shipped in neurop/pretrained and --models not given")
    rows = []
    for src in sources:
        model = load(src)
        grid_label = str(model.info.get("training", {}).get("resolution") or "")
        if args.grid:
            grid = list(args.grid) * (model.dim if len(args.grid) == 1 else 1)
        elif grid_label:
            grid = [int(g) for g in grid_label.split("x")] * (model.dim if "x" not in grid_label else 1)
        else:
            raise SystemExit(f"model {src!r} does not record its training grid; pass --grid")
        if len(grid) != model.dim:
            raise SystemExit(f"--grid must have 1 or {model.dim} entries for {src!r}, got {args.grid}")
        grids = [grid]
        if args.fine:
            grids.append([2 * g - (0 if model.periodic else 1) for g in grid])
        for g in grids:
            row = bench(model, g, args.batch, args.rounds, args.warmup, device, args.stat)
            row["model"] = src
            row["threads"] = args.threads
            rows.append(row)
            print(
                f"{src} {row['grid']} {device}: forward {row['forward samples/s']:.1f} samples/s, "
                f"predict overhead {row['overhead predict %']:+.1f}% "
                f"(numpy {row['overhead predict(np) %']:+.1f}%), API cost {row['api µs']:.0f} µs "
                f"= {row['api %']:.2f}% (numpy {row['api(np) %']:.2f}%)",
                flush=True,
            )
    print()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"{args.stat} of {args.rounds} rounds"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
