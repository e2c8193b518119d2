"""Per-channel unit-Gaussian normalisers stored as module buffers, so a checkpoint alone can run inference."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


class ChannelStats:
    """Streaming per-channel mean and standard deviation over batches of fields.

    Uses Chan et al.'s parallel update in float64, so the result does not depend on how the data
    are split into chunks.

    Parameters
    ----------
    channels : int
        Number of channels ``C``.
    """

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.count = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def update(self, x: Tensor) -> None:
        """Add a batch ``x`` of shape (N, C, *spatial)."""
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected shape (N, {self.channels}, ...), got {tuple(x.shape)}")
        flat = x.detach().to(torch.float64).transpose(0, 1).reshape(self.channels, -1)
        n = flat.shape[1]
        if n == 0:
            return
        mean = flat.mean(1)
        m2 = (flat - mean[:, None]).pow(2).sum(1)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.pow(2) * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> Tensor:
        """Population standard deviation per channel, shape (C,)."""
        if self.count == 0:
            raise ValueError("no data seen: call update() with at least one batch first")
        return torch.sqrt(self.m2 / self.count)


class UnitGaussianNormalizer(nn.Module):
    """``encode(x) = (x − μ_c) / (σ_c + eps)`` with one mean and std per channel ``c``.

    Per-channel (not per-grid-point, as in the FNO paper's code) statistics make the normaliser
    independent of the grid, so a model trained at one resolution can be evaluated at another.
    The statistics are buffers: they move with ``.to(device)`` and are saved in ``state_dict``.

    Parameters
    ----------
    channels : int
        Number of channels ``C``.
    eps : float
        Added to the standard deviation to guard constant channels.
    """

    mean: Tensor
    std: Tensor
    fitted: Tensor

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.channels = channels
        self.eps = eps
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        # A buffer (not a Python flag) so that a restored checkpoint also knows it was fitted.
        self.register_buffer("fitted", torch.tensor(False))

    def set_stats(self, mean: Tensor | Iterable[float], std: Tensor | Iterable[float]) -> None:
        """Set the statistics, each of shape (C,)."""
        mean_t = torch.as_tensor(list(mean) if not isinstance(mean, Tensor) else mean, dtype=torch.float64)
        std_t = torch.as_tensor(list(std) if not isinstance(std, Tensor) else std, dtype=torch.float64)
        if mean_t.shape != (self.channels,) or std_t.shape != (self.channels,):
            raise ValueError(
                f"mean and std must have shape ({self.channels},), got {tuple(mean_t.shape)} and "
                f"{tuple(std_t.shape)}"
            )
        if not torch.isfinite(mean_t).all() or not torch.isfinite(std_t).all() or (std_t < 0).any():
            raise ValueError(f"statistics must be finite with std >= 0, got mean={mean_t} std={std_t}")
        self.mean.copy_(mean_t.to(self.mean))
        self.std.copy_(std_t.to(self.std))
        self.fitted.fill_(True)

    def fit(self, x: Tensor) -> UnitGaussianNormalizer:
        """Set the statistics from data ``x`` of shape (N, C, *spatial); returns ``self``."""
        stats = ChannelStats(self.channels)
        stats.update(x)
        self.set_stats(stats.mean, stats.std)
        return self

    def _view(self, t: Tensor, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected shape (B, {self.channels}, ...), got {tuple(x.shape)}")
        return t.view(1, self.channels, *([1] * (x.ndim - 2))).to(x.dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Normalise ``x`` of shape (B, C, *spatial)."""
        return (x - self._view(self.mean, x)) / (self._view(self.std, x) + self.eps)

    def decode(self, x: Tensor) -> Tensor:
        """Invert :meth:`encode` for ``x`` of shape (B, C, *spatial)."""
        return x * (self._view(self.std, x) + self.eps) + self._view(self.mean, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, eps={self.eps}"
