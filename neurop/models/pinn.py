"""Physics-informed neural network: a pointwise MLP u(x) (Raissi, Perdikaris & Karniadakis, JCP 2019).

The network maps coordinates ``x ∈ R^d`` (space, then time) to ``u ∈ R^C``. Inputs are rescaled from the
problem's box to [−1, 1]; optional random Fourier features ``[cos 2πBx, sin 2πBx]`` (Tancik et al. 2020)
help with high frequencies. :meth:`PINN.jet` returns the values with first and pure second derivatives
by forward (Taylor-mode) propagation, which the physics task uses instead of nested autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neurop.layers.jet import (
    JET_ACTIVATIONS,
    Jet,
    JetActivation,
    input_jet,
    jet_activation,
    jet_fourier,
    jet_input_linear,
    jet_linear,
)
from neurop.models import MODELS

_PLAIN = {"tanh": torch.tanh, "sin": torch.sin, "gelu": torch.nn.functional.gelu}


def _check_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def check_bounds(bounds: Sequence[Sequence[float]] | None, dim: int) -> list[tuple[float, float]]:
    """``bounds`` as ``dim`` pairs ``lo < hi`` (default ``[−1, 1]`` per axis), or ``ValueError``."""
    if bounds is None:
        return [(-1.0, 1.0)] * dim
    pairs = [tuple(float(v) for v in b) for b in bounds]
    if len(pairs) != dim or any(len(p) != 2 or not p[0] < p[1] for p in pairs):
        raise ValueError(f"bounds must be {dim} pairs [lo, hi] with lo < hi, got {bounds!r}")
    return [(p[0], p[1]) for p in pairs]


@MODELS.register("pinn")
class PINN(nn.Module):
    """Fully connected network for physics-informed solving.

    Parameters
    ----------
    in_channels : int
        Input coordinates d (e.g. 2 for (x, t)).
    out_channels : int
        Output fields C.
    hidden_channels : int
        Width of each hidden layer.
    n_layers : int
        Number of hidden layers (Raissi's Burgers net: 8 hidden layers of 20; DeepXDE's example: 3).
    activation : {"tanh", "sin", "gelu"}
    fourier_features : int
        ``m`` random Fourier frequencies (``2m`` features); 0 disables them.
    fourier_scale : float
        Standard deviation of the frequencies ``B ~ N(0, scale²)`` (in units of the rescaled input).
    bounds : list of [lo, hi], optional
        The domain box, used to rescale inputs to [−1, 1]; default ``[−1, 1]`` per axis.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        hidden_channels: int = 20,
        n_layers: int = 3,
        activation: JetActivation = "tanh",
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        bounds: list[list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        _check_int("hidden_channels", hidden_channels, 1)
        _check_int("n_layers", n_layers, 1)
        _check_int("fourier_features", fourier_features, 0)
        if activation not in JET_ACTIVATIONS:
            raise ValueError(f"activation must be one of {JET_ACTIVATIONS}, got {activation!r}")
        if not fourier_scale > 0:
            raise ValueError(f"fourier_scale must be > 0, got {fourier_scale!r}")
        self.activation = activation
        box = check_bounds(bounds, in_channels)
        lo = torch.tensor([b[0] for b in box])
        hi = torch.tensor([b[1] for b in box])
        self.register_buffer("lo", lo)
        self.register_buffer("scale", 2.0 / (hi - lo))
        if fourier_features:
            self.register_buffer("frequencies", fourier_scale * torch.randn(fourier_features, in_channels))
        else:
            self.frequencies = None
        widths = [2 * fourier_features or in_channels] + [hidden_channels] * n_layers + [out_channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _rescale(self, x: Tensor) -> Tensor:
        return (x - self.lo) * self.scale - 1.0

    def forward(self, x: Tensor) -> Tensor:
        """``u(x)``.

        Parameters
        ----------
        x : Tensor, shape (N, in_channels)

        Returns
        -------
        Tensor, shape (N, out_channels)
        """
        h = self._rescale(x)
        if self.frequencies is not None:
            z = 2 * torch.pi * h @ self.frequencies.t()
            h = torch.cat([torch.cos(z), torch.sin(z)], dim=-1)
        act = _PLAIN[self.activation]
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.layers[-1](h)

    def jet(self, x: Tensor, second_axes: Sequence[int] = ()) -> Jet:
        """Values with first derivatives along every axis and second ones along ``second_axes``.

        Parameters
        ----------
        x : Tensor, shape (N, in_channels)
        second_axes : sequence of int

        Returns
        -------
        Jet
            ``u`` (N, C), ``du`` (N, d, C), ``d2u`` (N, len(second_axes), C).
        """
        if self.frequencies is not None:
            j = jet_fourier(input_jet(self._rescale(x), second_axes, self.scale), self.frequencies)
            first = jet_linear(j, self.layers[0].weight, self.layers[0].bias)
        else:
            first = jet_input_linear(self._rescale(x), self.scale, self.layers[0].weight, self.layers[0].bias,
                                     second_axes)  # fmt: skip
        j = jet_activation(first, self.activation)
        for layer in self.layers[1:-1]:
            j = jet_activation(jet_linear(j, layer.weight, layer.bias), self.activation)
        last = self.layers[-1]
        return jet_linear(j, last.weight, last.bias)
