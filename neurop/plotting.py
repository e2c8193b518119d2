"""Figures of test samples (input, truth, prediction, error) saved as PNG and handed to image loggers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor


def _as_numpy(t: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().float().cpu().numpy()
    return np.asarray(t, dtype=np.float32)


def _slice_2d(field: np.ndarray) -> np.ndarray:
    """A 2-D view of one channel: the field itself, or the middle slice of a 3-D field."""
    while field.ndim > 2:
        field = field[..., field.shape[-1] // 2]
    return field


def plot_samples(
    inputs: Tensor | np.ndarray,
    targets: Tensor | np.ndarray,
    preds: Tensor | np.ndarray,
    path: str | Path,
    title: str | None = None,
    max_samples: int = 4,
) -> Path:
    """Save one row per sample: input, truth, prediction and error.

    1-D fields are drawn as lines (truth and prediction on one axis), 2-D fields as images with a
    shared colour scale for truth and prediction; 3-D fields show their middle slice along the last
    axis. Only the last input channel (the latest time for multi-step inputs) and the first output
    channel are drawn.

    Parameters
    ----------
    inputs : Tensor, shape (N, C_in, *spatial)
    targets, preds : Tensor, shape (N, C_out, *spatial)
    path : str or Path
        PNG file to write; parent directories are created.
    title : str, optional
        Figure title.
    max_samples : int
        At most this many rows.

    Returns
    -------
    Path
        The written file.
    """
    x, y, p = _as_numpy(inputs), _as_numpy(targets), _as_numpy(preds)
    if y.shape != p.shape:
        raise ValueError(f"targets and preds shapes differ: {y.shape} vs {p.shape}")
    if x.shape[0] != y.shape[0] or x.ndim != y.ndim or x.ndim < 3:
        raise ValueError(f"expected (N, C, *spatial) arrays with equal N, got {x.shape} and {y.shape}")
    n = min(max_samples, y.shape[0])
    if n < 1:
        raise ValueError(f"max_samples must be >= 1 and there must be samples, got {max_samples}, {y.shape}")
    dim = y.ndim - 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if dim == 1:
        fig = Figure(figsize=(10, 2.2 * n), layout="constrained")
        axes = fig.subplots(n, 3, squeeze=False)
        for i in range(n):
            grid = np.linspace(0.0, 1.0, y.shape[-1], endpoint=False)
            grid_in = np.linspace(0.0, 1.0, x.shape[-1], endpoint=False)
            axes[i, 0].plot(grid_in, x[i, -1], color="k")
            axes[i, 1].plot(grid, y[i, 0], label="truth", color="k")
            axes[i, 1].plot(grid, p[i, 0], label="prediction", color="C1", linestyle="--")
            axes[i, 2].plot(grid, p[i, 0] - y[i, 0], color="C3")
            if i == 0:
                axes[i, 0].set_title("input")
                axes[i, 1].set_title("truth vs prediction")
                axes[i, 1].legend(loc="best", fontsize="small")
                axes[i, 2].set_title("error")
    else:
        fig = Figure(figsize=(13, 3.0 * n), layout="constrained")
        axes = fig.subplots(n, 4, squeeze=False)
        for i in range(n):
            xi, yi, pi = _slice_2d(x[i, -1]), _slice_2d(y[i, 0]), _slice_2d(p[i, 0])
            lo, hi = float(min(yi.min(), pi.min())), float(max(yi.max(), pi.max()))
            panels = [
                ("input", xi, {"cmap": "viridis"}),
                ("truth", yi, {"cmap": "viridis", "vmin": lo, "vmax": hi}),
                ("prediction", pi, {"cmap": "viridis", "vmin": lo, "vmax": hi}),
                ("|error|", np.abs(pi - yi), {"cmap": "magma"}),
            ]
            for j, (name, img, kw) in enumerate(panels):
                ax = axes[i, j]
                # Arrays are indexed (x, y): transpose so x runs horizontally, origin at the bottom.
                im = ax.imshow(img.T, origin="lower", extent=(0, 1, 0, 1), **kw)
                fig.colorbar(im, ax=ax, shrink=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(name)
    if title:
        fig.suptitle(title)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=80)
    return path
