"""Gaussian embedding of PIG: the fused diagonal kernel against autograd through the generic expression.

Times one forward and backward pass of ``GaussianEmbedding.jet`` (values, first derivatives along every
axis, second derivatives along the chosen axes; a loss over all of them, then ``backward``) for the
fused, hand-differentiated kernel (``fused_jet = True``, the default for diagonal covariances) and the
generic autograd path (``fused_jet = False``: (n, N, d) tensors, checkpointed chunks), side by side in
one process on the same points and parameters. Also checks that both give the same values and
gradients. Prints a Markdown table with seconds per pass (median of ``--repeats``) and the ratio.

Usage::

    python scripts/bench_gaussians.py                      # the paper's sizes, ~1 min on one core
    python scripts/bench_gaussians.py --sizes 2000x10000 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from neurop.layers.gaussian import GaussianEmbedding
from neurop.runtime import CPU_ALLOCATORS, configure_cpu_allocator

# (Gaussians, points, second-derivative axes): quick defaults, Helmholtz 2-D (paper), Allen–Cahn (x, t).
CASES = {
    "300x1024": (300, 1024, (0, 1)),
    "2000x10000": (2000, 10000, (0, 1)),
    "4000x9000": (4000, 9000, (0,)),
}


def _pass(emb: GaussianEmbedding, x: torch.Tensor, axes: tuple[int, ...]) -> list[torch.Tensor]:
    emb.zero_grad(set_to_none=True)
    jet = emb.jet(x, axes)
    loss = jet.u.square().mean() + jet.du.square().mean() + jet.d2u.square().mean()
    loss.backward()
    return [jet.u.detach(), jet.du.detach(), jet.d2u.detach()] + [p.grad for p in emb.parameters()]


def _time(emb: GaussianEmbedding, x: torch.Tensor, axes: tuple[int, ...], repeats: int) -> float:
    _pass(emb, x, axes)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _pass(emb, x, axes)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--sizes", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--allocator", choices=CPU_ALLOCATORS, default="retain",
                        help="C allocator (neurop.runtime; train.py uses retain)")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    configure_cpu_allocator(args.allocator)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, device {device}, "
          f"{args.threads} thread(s), allocator {args.allocator}, float32\n")  # fmt: skip
    print("| Gaussians × points | 2nd-derivative axes | fused s/pass | generic s/pass | speed-up | "
          "max rel. difference |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|")
    for name in args.sizes:
        n_gauss, n_points, axes = CASES[name]
        torch.manual_seed(0)
        fused = GaussianEmbedding(2, n_gauss, 4, sigma0=0.1).to(device)
        generic = GaussianEmbedding(2, n_gauss, 4, sigma0=0.1).to(device)
        generic.load_state_dict(fused.state_dict())
        generic.fused_jet = False
        x = torch.rand(n_points, 2, device=device) * 2 - 1
        diff = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
            for a, b in zip(_pass(fused, x, axes), _pass(generic, x, axes), strict=True)
        )
        t_fused = _time(fused, x, axes, args.repeats)
        t_generic = _time(generic, x, axes, args.repeats)
        print(f"| {n_gauss} × {n_points} | {axes} | {t_fused:.3f} | {t_generic:.3f} | "
              f"**{t_generic / t_fused:.1f}×** | {diff:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
