"""Fourier Neural Operator (FNO) for 1-D, 2-D and 3-D grids.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021; the block
layout (linear skip, channel MLP with a soft-gating skip) follows the neuraloperator library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from neurop.layers.embedding import crop, grid_coords, pad_right, padding_sizes
from neurop.layers.mlp import (
    ActivationName,
    ChannelMLP,
    act_linear,
    gated_add_,
    get_activation,
    init_linear_,
    pointwise_linear,
)
from neurop.layers.spectral_conv import SpectralConv, check_n_modes
from neurop.models import MODELS


class _AffineFewChannels(torch.autograd.Function):
    """``shift + W x`` per point for inputs with very few channels (lifting of 1 or 2 data channels).

    Fused multiply-adds beat a GEMM with an inner dimension of 1 or 2, and the weight gradient is a
    batched GEMM instead of autograd's activation-sized ``grad * x`` temporary.
    """

    @staticmethod
    def forward(ctx: Any, shift: Tensor, weight: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        ctx.shift_points = shift.shape[-1]
        h = torch.addcmul(shift, weight[:, 0:1], x[:, 0:1])
        for c in range(1, x.shape[1]):
            h.addcmul_(weight[:, c : c + 1], x[:, c : c + 1])
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        grad_shift = None
        if ctx.needs_input_grad[0]:
            grad_shift = grad.sum(0)
            if ctx.shift_points == 1:
                grad_shift = grad_shift.sum(-1, keepdim=True)
        grad_weight = torch.bmm(grad, x.transpose(1, 2)).sum(0) if ctx.needs_input_grad[1] else None
        # Only used for inputs that do not require grad (see FNO._lift).
        return grad_shift, grad_weight, None


def _check_positive_int(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


class FNOBlock(nn.Module):
    """One Fourier layer on channels-first tensors.

    ``z = K(x) + W x`` (spectral convolution plus a linear skip), then optionally
    ``u = MLP(act(z)) + g * x`` (a pointwise channel MLP with a per-channel soft-gating skip), then the
    activation unless this is the last layer.

    Parameters
    ----------
    channels : int
        Width of the layer.
    n_modes : sequence of int
        Retained Fourier modes per axis (see :class:`~neurop.layers.SpectralConv`).
    activation : {"gelu", "tanh", "relu", "silu"}
    channel_mlp : bool
        Use the channel MLP (hidden width ``channels // 2``) and its soft-gating skip.
    """

    def __init__(
        self,
        channels: int,
        n_modes: Sequence[int],
        activation: ActivationName = "gelu",
        channel_mlp: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.act = get_activation(activation)
        self.activation = activation
        self.spectral = SpectralConv(channels, channels, n_modes)
        self.skip_weight = nn.Parameter(torch.empty(channels, channels))
        init_linear_(self.skip_weight, None)
        self.channel_mlp: ChannelMLP | None = None
        self.gate: nn.Parameter | None = None
        if channel_mlp:
            self.channel_mlp = ChannelMLP(channels, channels, max(1, channels // 2), 2, activation)
            self.gate = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor, last: bool = False) -> Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : Tensor, shape (B, channels, *spatial)
        last : bool
            Skip the closing activation (the last Fourier layer feeds the projection linearly).

        Returns
        -------
        Tensor, shape (B, channels, *spatial)
        """
        batch, c = x.shape[:2]
        x3 = x.reshape(batch, c, -1)
        # The skip GEMM accumulates onto the spectral output in place (one pass, no new buffer);
        # in-place ops bypass autocast, so under autocast the out-of-place form is used.
        skip = self.skip_weight.unsqueeze(0).expand(batch, -1, -1)
        s = self.spectral.forward_flat(x)
        if torch.is_autocast_enabled(x.device.type) or s.dtype != skip.dtype:
            z = torch.baddbmm(s, skip, x3)
        else:
            z = s.baddbmm_(skip, x3)
        if self.channel_mlp is not None:
            mlp = self.channel_mlp
            if last:
                p = pointwise_linear(z, mlp.weights[0], mlp.biases[0])
            else:
                p = act_linear(z, mlp.weights[0], mlp.biases[0], self.activation)
            z = gated_add_(act_linear(p, mlp.weights[1], mlp.biases[1], self.activation), x3, self.gate)
        out = z if last else self.act(z)
        return out.view(x.shape)


@MODELS.register("fno")
class FNO(nn.Module):
    """Fourier Neural Operator mapping ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)``.

    Lifting (pointwise, optionally a 2-layer MLP) → ``n_layers`` Fourier layers (:class:`FNOBlock`) →
    2-layer pointwise projection. Dimensionality follows ``len(n_modes)`` (1, 2 or 3). Every pointwise
    mixing is one batched GEMM on the channels-first layout (no permutes).

    Parameters
    ----------
    in_channels : int
        Data channels of the input (grid coordinates are *not* counted).
    out_channels : int
        Output channels.
    n_modes : sequence of int
        Retained Fourier modes per spatial axis: ``m`` non-negative and ``m`` negative wavenumbers on
        each axis but the last, ``m`` non-negative ones on the last (real FFT) axis. Every spatial axis
        of the (padded) grid must have at least ``2 * m`` points, otherwise ``forward`` raises
        ``ValueError``; finer grids work with the same weights (zero-shot super-resolution).
    hidden_channels : int
        Width of the Fourier layers.
    n_layers : int
        Number of Fourier layers.
    lifting_channels : int or None
        Hidden width of a 2-layer lifting MLP; ``None`` lifts with one linear layer.
    projection_channels : int
        Hidden width of the 2-layer projection MLP.
    positional_embedding : bool
        Append grid coordinates ``j / n`` in ``[0, 1)`` per axis as extra input channels. They are not
        concatenated: their (linear) contribution is added to the lifting bias as a precomputed
        ``(width, *spatial)`` term, which is the same function with less memory traffic.
    domain_padding : float
        Zero-pad each spatial axis on the right by this fraction of its size after lifting and crop
        before projection, for non-periodic problems (e.g. Darcy). ``0`` disables it.
    activation : {"gelu", "tanh", "relu", "silu"}
        Activation used everywhere.
    channel_mlp : bool
        Add a pointwise channel MLP with a soft-gating skip in every Fourier layer (neuraloperator's
        default layout); ``False`` gives the original FNO layer ``act(K(x) + W x)``.

    Notes
    -----
    Training is tuned for memory traffic (see ``scripts/bench_train.py``): channels-first layout with
    every pointwise mixing a batched GEMM, truncated DFTs as GEMMs on the retained modes only
    (:class:`~neurop.layers.SpectralConv`), and hand-written backward passes
    (:func:`~neurop.layers.act_linear`, :func:`~neurop.layers.gated_add_`) that store pre-activations
    only and recompute activations in backward. Those backward passes are once-differentiable: first
    derivatives with respect to parameters and inputs work, second derivatives (double backward) through
    a model with gradients enabled do not. Under autocast the plain autograd path is used and the
    spectral convolution runs in float32.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_modes: Sequence[int],
        hidden_channels: int = 32,
        n_layers: int = 4,
        lifting_channels: int | None = None,
        projection_channels: int = 128,
        positional_embedding: bool = True,
        domain_padding: float = 0.0,
        activation: ActivationName = "gelu",
        channel_mlp: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("hidden_channels", hidden_channels)
        _check_positive_int("n_layers", n_layers)
        _check_positive_int("projection_channels", projection_channels)
        if lifting_channels is not None:
            _check_positive_int("lifting_channels", lifting_channels)
        if isinstance(domain_padding, bool) or not isinstance(domain_padding, (int, float)):
            raise ValueError(f"domain_padding must be a float >= 0, got {domain_padding!r}")
        if not domain_padding >= 0:
            raise ValueError(f"domain_padding must be a float >= 0, got {domain_padding!r}")
        self.n_modes = check_n_modes(n_modes)
        get_activation(activation)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dim = len(self.n_modes)
        self.positional_embedding = bool(positional_embedding)
        self.domain_padding = float(domain_padding)
        self.act = get_activation(activation)

        lift_in = in_channels + (self.dim if self.positional_embedding else 0)
        if lifting_channels is None:
            self.lifting = ChannelMLP(lift_in, hidden_channels, hidden_channels, 1, activation)
        else:
            self.lifting = ChannelMLP(lift_in, hidden_channels, lifting_channels, 2, activation)
        self.blocks = nn.ModuleList(
            FNOBlock(hidden_channels, self.n_modes, activation, channel_mlp) for _ in range(n_layers)
        )
        self.projection = ChannelMLP(hidden_channels, out_channels, projection_channels, 2, activation)

    def _lift(self, x: Tensor) -> Tensor:
        """First lifting layer, with the coordinate channels folded into a per-point bias.

        Returns
        -------
        Tensor, shape (B, width, prod(spatial))
        """
        batch, c_in = x.shape[:2]
        sizes = list(x.shape[2:])
        weight, bias = self.lifting.weights[0], self.lifting.biases[0]
        width = weight.shape[0]
        shift = bias.view(width, *([1] * self.dim))
        if self.positional_embedding:
            # sum_i W[:, c_in + i] * coord_i(x): a (width, *spatial) term instead of d input channels.
            for i, coord in enumerate(grid_coords(sizes, x.device, weight.dtype)):
                shape = [1] * self.dim
                shape[i] = sizes[i]
                shift = shift + weight[:, c_in + i].view(width, *([1] * self.dim)) * coord.view(shape)
        shift = shift.reshape(width, -1) if self.positional_embedding else shift.view(width, 1)
        x3 = x.reshape(batch, c_in, -1).to(weight.dtype)
        w_data = weight[:, :c_in]
        if c_in <= 2 and not x3.requires_grad and not torch.is_autocast_enabled(x.device.type):
            h = _AffineFewChannels.apply(shift, w_data, x3)
        else:
            h = torch.baddbmm(shift, w_data.unsqueeze(0).expand(batch, -1, -1), x3)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the operator.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)
            Input functions sampled on a uniform grid with ``len(n_modes)`` spatial axes.

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"FNO expects input of shape (B, {self.in_channels}, *spatial[{self.dim}]), "
                f"got {tuple(x.shape)}"
            )
        sizes = list(x.shape[2:])
        h = self._lift(x)
        for i in range(1, self.lifting.n_layers):
            h = act_linear(h, self.lifting.weights[i], self.lifting.biases[i], self.lifting.activation)
        h = pad_right(h.view(*h.shape[:2], *sizes), padding_sizes(sizes, self.domain_padding))
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            h = block(h, last=i == n - 1)
        return self.projection(crop(h, sizes))
