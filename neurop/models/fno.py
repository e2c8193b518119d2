"""Fourier Neural Operator (FNO) for 1-D, 2-D and 3-D grids.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021; the block
layout (linear skip, channel MLP with a soft-gating skip) follows the neuraloperator library.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from neurop.layers.embedding import crop, grid_coords, pad_right, padding_sizes
from neurop.layers.mlp import (
    ActivationName,
    ChannelMLP,
    _activation_backward_,
    _activation_into,
    _fusable,
    act_linear,
    gated_add_,
    get_activation,
    init_linear_,
    pointwise_linear,
)
from neurop.layers.spectral_conv import (
    SpectralConv,
    adjoint_transform_matrices,
    check_n_modes,
    modes_to_pairs,
    pairs_to_modes,
    to_grid,
    to_modes,
    transform_matrices,
)
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
        return _few_channel_affine(shift, weight, x, x.new_empty(x.shape[0], weight.shape[0], x.shape[-1]))

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


class _LiftFunction(torch.autograd.Function):
    """The two-layer lifting of inputs with very few channels in training: ``W2 act(shift + W1 x) + b2``.

    ``shift`` (``(H, points)`` or ``(H, 1)``) holds the first layer's bias and the (linear) contribution of
    the coordinate channels. The first layer is a few fused multiply-adds per point, so instead of storing
    its output (the widest tensor of the network: ``H = 2 * width`` channels) both passes recompute it
    batch slice by batch slice in cache, like :class:`_FNOBlockFunction`; only ``x`` is stored. The input
    ``x`` gets no gradient (the data, see :meth:`FNO._lift`).
    """

    @staticmethod
    def forward(ctx: Any, shift: Tensor, w1: Tensor, x: Tensor, w2: Tensor, b2: Tensor, name: str) -> Tensor:
        h = x.new_empty(x.shape[0], w2.shape[0], x.shape[-1])
        for sl, _pre, a in _lift_hidden(shift, w1, x, name, _FORWARD_CHUNK_BYTES):
            n = sl.stop - sl.start
            torch.baddbmm(b2.unsqueeze(-1), w2.unsqueeze(0).expand(n, -1, -1), a, out=h[sl])
        ctx.save_for_backward(shift, w1, x, w2)
        ctx.name = name
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        shift, w1, x, w2 = ctx.saved_tensors
        name = ctx.name
        grad = grad.contiguous()
        grad_shift = x.new_zeros(w1.shape[0], x.shape[-1])
        grad_w1, grad_w2 = torch.zeros_like(w1), torch.zeros_like(w2)
        w2_t = w2.t()
        for sl, pre, a in _lift_hidden(shift, w1, x, name, _BACKWARD_CHUNK_BYTES):
            n = sl.stop - sl.start
            grad_w2 += torch.bmm(grad[sl], a.transpose(1, 2)).sum(0)
            g = torch.bmm(w2_t.unsqueeze(0).expand(n, -1, -1), grad[sl], out=a)
            _activation_backward_(name, g, pre)
            grad_shift += g.sum(0) if n > 1 else g[0]
            grad_w1 += torch.bmm(g, x[sl].transpose(1, 2)).sum(0)
        if shift.shape[-1] == 1:
            grad_shift = grad_shift.sum(-1, keepdim=True)
        return grad_shift, grad_w1, None, grad_w2, grad.sum((0, 2)), None


def _lift_hidden(
    shift: Tensor, w1: Tensor, x: Tensor, name: str, chunk_bytes: int
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """``(slice, pre, act(pre))`` of the lifting's first layer, batch slice by batch slice, in two buffers
    reused from slice to slice (each pair is valid until the next is produced)."""
    hidden = w1.shape[0]
    slices = _batch_slices(x, chunk_bytes, channels=hidden)
    buf_pre, buf_act = _buffers(x, *[(slices[0].stop, hidden, x.shape[-1])] * 2)
    assert buf_pre is not None and buf_act is not None
    for sl in slices:
        n = sl.stop - sl.start
        pre = _few_channel_affine(shift, w1, x[sl], buf_pre[:n])
        yield sl, pre, _activation_into(name, pre, buf_act[:n])


def _few_channel_affine(shift: Tensor, weight: Tensor, x: Tensor, out: Tensor) -> Tensor:
    """``shift + weight @ x`` per point into ``out`` by fused multiply-adds (one per input channel)."""
    torch.addcmul(shift, weight[:, 0:1], x[:, 0:1], out=out)
    for c in range(1, x.shape[1]):
        out.addcmul_(weight[:, c : c + 1], x[:, c : c + 1])
    return out


# Bytes of one channels-wide slice of the batch that the training pass of a Fourier layer works on at a
# time: the handful of slices live at once (stored tensors, activations, gradients) then stay in cache.
_FORWARD_CHUNK_BYTES = 2**20
_BACKWARD_CHUNK_BYTES = 2**20
# Switch for the fused training lifting (``_LiftFunction``); tests compare it with the module path.
_FUSED_LIFT = True


def _buffers(like: Tensor, *shapes: tuple[int, ...] | None) -> list[Tensor | None]:
    """Uninitialised contiguous tensors of ``shapes`` (``None`` for ``None``) carved from one allocation."""
    sizes = [0 if s is None else math.prod(s) for s in shapes]
    flat = like.new_empty(sum(sizes))
    out: list[Tensor | None] = []
    start = 0
    for shape, n in zip(shapes, sizes, strict=True):
        out.append(None if shape is None else flat[start : start + n].view(shape))
        start += n
    return out


def _batch_slices(t: Tensor, chunk_bytes: int, channels: int | None = None) -> list[slice]:
    """Slices of the batch axis of ``t`` of about ``chunk_bytes`` per intra-op thread each (at least one
    sample), counting ``channels`` channels per sample if given (else ``t``'s own); on accelerators one
    slice (the whole batch), since there many small kernels cost more than cache misses."""
    if t.device.type != "cpu":
        return [slice(0, t.shape[0])]
    chunk_bytes *= max(1, torch.get_num_threads())
    per_sample = t[0].numel() if channels is None else channels * t[0, 0].numel()
    step = max(1, chunk_bytes // max(per_sample * t.element_size(), 1))
    return [slice(i, min(i + step, t.shape[0])) for i in range(0, t.shape[0], step)]


def _mlp_slice(
    name: str,
    last: bool,
    z: Tensor,
    x: Tensor,
    params: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    buffers: tuple[Tensor | None, Tensor, Tensor],
    u: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Channel MLP and gate of one batch slice: ``u = W2 act(p) + b2 + gate * x``, ``p = W1 a(z) + b1``.

    ``a`` is the activation (identity in the last layer). Writes ``a(z)``, ``p`` and ``act(p)`` into
    ``buffers`` and ``u`` into ``u``; returns the four.
    """
    w1, b1, w2, b2, gate = params
    buf_az, buf_p, buf_ap = buffers
    n = z.shape[0]
    a_z = z if buf_az is None or last else _activation_into(name, z, buf_az)
    p = torch.baddbmm(b1.unsqueeze(-1), w1.unsqueeze(0).expand(n, -1, -1), a_z, out=buf_p)
    a_p = _activation_into(name, p, buf_ap)
    torch.baddbmm(b2.unsqueeze(-1), w2.unsqueeze(0).expand(n, -1, -1), a_p, out=u)
    u.addcmul_(x, gate.unsqueeze(-1))
    return a_z, p, a_p, u


class _FNOBlockFunction(torch.autograd.Function):
    """One Fourier layer (:class:`FNOBlock`) in training: a single autograd node, hand-written backward.

    The same arithmetic as the module path, arranged for memory traffic. Both passes walk the batch in
    slices of about a MB per channels-wide tensor and take every slice through the whole pointwise part
    of the layer while it is in cache: forward, skip GEMM, the inverse transform's last-axis GEMM
    (added onto it), channel MLP, gate and activation; backward, the same in reverse, ending with the
    first GEMM of the spectral adjoint, so the gradient of the spectral output never exists at full
    size. The gradient of the layer input collects the skip, gate and spectral contributions in one
    buffer (the last added by the adjoint transform's final GEMM) instead of three tensors summed by
    autograd. Stored for backward: the input, its retained Fourier coefficients and the pre-activation
    ``z`` of the MLP (``K(x) + W x``); the MLP's hidden layer and output are recomputed slice by slice
    in backward (two small GEMMs on data in cache) instead of written to and read back from memory.
    Slice-sized buffers are reused from slice to slice.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        spec_weight: Tensor,
        spec_bias: Tensor | None,
        skip: Tensor,
        w1: Tensor | None,
        b1: Tensor | None,
        w2: Tensor | None,
        b2: Tensor | None,
        gate: Tensor | None,
        meta: tuple[list[int], list[int], int, str, bool],
    ) -> Tensor:
        sizes, n_modes, n_coeffs, name, last = meta
        batch, c = x.shape[:2]
        dtype, device = x.dtype, x.device
        x3 = x.view(batch, c, -1)
        n_points = x3.shape[-1]
        fwd, fwd_c, inv, inv_c = transform_matrices(sizes, n_modes, dtype, device)
        t = to_modes(x, sizes, n_modes, fwd, fwd_c)
        weight_c = torch.view_as_complex(spec_weight).reshape(n_coeffs, c, c)
        y = torch.bmm(t, weight_c)
        if spec_bias is not None:
            y[0] += spec_bias
        # The inverse transform stops before its last-axis GEMM, which runs slice by slice below, adding
        # onto the skip GEMM's output while that is in cache.
        pairs = modes_to_pairs(y, sizes, n_modes, inv_c)
        rows_per_sample = pairs.shape[0] // batch
        z = torch.empty_like(x3)
        z_rows = z.view(-1, sizes[-1])
        mlp = None
        if w1 is not None:
            assert b1 is not None and w2 is not None and b2 is not None and gate is not None
            mlp = (w1, b1, w2, b2, gate)
        out = z if mlp is None and last else torch.empty_like(z)
        slices = _batch_slices(x3, _FORWARD_CHUNK_BYTES)
        rows = slices[0].stop
        wide, narrow = (rows, c, n_points), (rows, w1.shape[0] if w1 is not None else 0, n_points)
        buf_az, buf_p, buf_ap, buf_u = _buffers(
            x,
            wide if mlp and not last else None,
            narrow if mlp else None,
            narrow if mlp else None,
            wide if mlp and not last else None,
        )
        for sl in slices:
            n = sl.stop - sl.start
            zc = torch.bmm(skip.unsqueeze(0).expand(n, -1, -1), x3[sl], out=z[sl])
            r = slice(sl.start * rows_per_sample, sl.stop * rows_per_sample)
            z_rows[r].addmm_(pairs[r], inv)
            if mlp is not None:
                assert buf_p is not None and buf_ap is not None
                u = out[sl] if buf_u is None else buf_u[:n]
                buffers = (None if buf_az is None else buf_az[:n], buf_p[:n], buf_ap[:n])
                _mlp_slice(name, last, zc, x3[sl], mlp, buffers, u)
            else:
                u = zc
            if not last:
                _activation_into(name, u, out[sl])
        ctx.save_for_backward(x, t, z, spec_weight, skip, w1, b1, w2, b2, gate)
        ctx.meta = meta
        ctx.has_bias = spec_bias is not None
        return out.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, t, z, spec_weight, skip, w1, b1, w2, b2, gate = ctx.saved_tensors
        sizes, n_modes, n_coeffs, name, last = ctx.meta
        batch, c = x.shape[:2]
        x3 = x.view(batch, c, -1)
        n_points = x3.shape[-1]
        grad = grad.reshape(batch, c, -1)
        mlp = None
        if w1 is not None:
            assert b1 is not None and w2 is not None and b2 is not None and gate is not None
            mlp = (w1, b1, w2, b2, gate)
        zeros = torch.zeros_like
        g_skip = zeros(skip)
        g_mlp = [zeros(w) for w in mlp] if mlp is not None else [None] * 5
        dx = torch.empty_like(x3)
        skip_t = skip.t().contiguous()
        dtype, device = x.dtype, x.device
        inv_h, inv_c_h, fwd_h, fwd_c_h = adjoint_transform_matrices(sizes, n_modes, dtype, device)
        # The spectral adjoint's first (last-axis) GEMM runs slice by slice on the spectral output's
        # gradient ``dz`` while it is in cache, so ``dz`` never exists at full size.
        dz_pairs = x.new_empty(x3.numel() // sizes[-1], 2 * n_modes[-1])
        rows_per_sample = dz_pairs.shape[0] // batch
        # One pass over slices of the batch: each stored tensor is read once, every intermediate gradient
        # is consumed while it is still in cache, and slice-sized buffers are reused from slice to slice.
        slices = _batch_slices(x3, _BACKWARD_CHUNK_BYTES)
        rows = slices[0].stop
        wide, narrow = (rows, c, n_points), (rows, w1.shape[0] if w1 is not None else 0, n_points)
        buf_az, buf_p, buf_ap, buf_u, buf_dp, buf_dz = _buffers(
            x,
            wide if mlp and not last else None,
            narrow if mlp else None,
            narrow if mlp else None,
            wide if mlp or not last else None,
            narrow if mlp else None,
            wide if mlp else None,
        )
        for sl in slices:
            n = sl.stop - sl.start
            xc = x3[sl]
            if mlp is not None:
                assert buf_p is not None and buf_ap is not None and buf_u is not None
                assert buf_dp is not None and buf_dz is not None
                w1_, _, w2_, _, gate_ = mlp
                g_w1, g_b1, g_w2, g_b2, g_gate = g_mlp
                assert g_w1 is not None and g_b1 is not None and g_w2 is not None
                assert g_b2 is not None and g_gate is not None
                # Recompute the MLP of this slice from the stored pre-activation.
                buffers = (None if buf_az is None else buf_az[:n], buf_p[:n], buf_ap[:n])
                a_z, p, a_p, u = _mlp_slice(name, last, z[sl], xc, mlp, buffers, buf_u[:n])
                du = grad[sl] if last else _activation_backward_(name, grad[sl], u, out=u)
                # Gate: u = ... + gate * x (buf_dz is free until dz is computed).
                g_gate += torch.mul(du, xc, out=buf_dz[:n]).sum((0, 2))
                # Second MLP layer: u = W2 act(p) + b2 + ...
                g_w2 += torch.bmm(du, a_p.transpose(1, 2)).sum(0)
                g_b2 += du.sum((0, 2))
                dp = torch.bmm(w2_.t().unsqueeze(0).expand(n, -1, -1), du, out=buf_dp[:n])
                _activation_backward_(name, dp, p)
                # First MLP layer: p = W1 a(z) + b1.
                g_w1 += torch.bmm(dp, a_z.transpose(1, 2)).sum(0)
                g_b1 += dp.sum((0, 2))
                dz = torch.bmm(w1_.t().unsqueeze(0).expand(n, -1, -1), dp, out=buf_dz[:n])
                if not last:
                    _activation_backward_(name, dz, z[sl])
            else:
                gate_ = None
                du = grad[sl]
                if not last:
                    assert buf_u is not None
                    du = _activation_backward_(name, grad[sl], z[sl], out=buf_u[:n])
                dz = du
            # Skip: z = s + W x.
            g_skip += torch.bmm(dz, xc.transpose(1, 2)).sum(0)
            torch.bmm(skip_t.unsqueeze(0).expand(n, -1, -1), dz, out=dx[sl])
            if gate_ is not None:
                dx[sl].addcmul_(du, gate_.unsqueeze(-1))
            r = slice(sl.start * rows_per_sample, sl.stop * rows_per_sample)
            torch.mm(dz.reshape(-1, sizes[-1]), inv_h, out=dz_pairs[r])
        # Spectral: s = to_grid(modes(x) @ W + bias); adjoint transforms on the retained modes only.
        dy = pairs_to_modes(dz_pairs, sizes, n_modes, batch, c, inv_c_h)  # (modes, B, out)
        weight_c = torch.view_as_complex(spec_weight).reshape(n_coeffs, c, c)
        g_weight = torch.bmm(t.mH, dy)
        dt = torch.bmm(dy, weight_c.mH)
        to_grid(dt, sizes, n_modes, fwd_c_h, fwd_h, out=dx.view(-1, sizes[-1]))
        g_spec = torch.view_as_real(g_weight.resolve_conj()).reshape(spec_weight.shape)
        g_bias = dy[0].real.sum(0) if ctx.has_bias else None
        return (dx.view(x.shape), g_spec, g_bias, g_skip, *g_mlp, None)


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

    Notes
    -----
    With gradients enabled (no autocast, float32/float64, contiguous input) the layer runs as
    ``_FNOBlockFunction``: the same arithmetic with a hand-written, cache-blocked backward (see there),
    tested against this module's autograd path and finite differences.
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

    def _fused(self, x: Tensor) -> bool:
        """Whether training goes through :class:`_FNOBlockFunction` (:func:`~neurop.layers.mlp._fusable`)."""
        if not (x.ndim == self.spectral.dim + 2 and x.shape[1] == self.channels):
            return False
        return _fusable(x, *(p for p in self.parameters()))

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
        if self._fused(x):
            sizes = list(x.shape[2:])
            spec = self.spectral
            spec.check_grid(sizes)
            mlp = self.channel_mlp
            w1, w2 = (None, None) if mlp is None else (mlp.weights[0], mlp.weights[1])
            b1, b2 = (None, None) if mlp is None else (mlp.biases[0], mlp.biases[1])
            meta = (sizes, spec.n_modes, math.prod(spec.retained), self.activation, last)
            args = (spec.weight, spec.bias, self.skip_weight, w1, b1, w2, b2, self.gate, meta)
            return _FNOBlockFunction.apply(x, *args)
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
    (:class:`~neurop.layers.SpectralConv`), and hand-written backward passes that store pre-activations
    only and recompute activations in backward. In training each Fourier layer is one autograd node
    (``_FNOBlockFunction``) that walks the batch in cache-sized slices through all its pointwise work in
    both passes and recomputes its channel MLP in backward; a two-layer lifting of one or two data channels
    is one such node too (``_LiftFunction``, its wide first layer recomputed slice by slice, never stored),
    other liftings and the projection use :func:`~neurop.layers.act_linear` and
    :func:`~neurop.layers.two_layer`. Those backward passes are once-differentiable: first
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
        """The lifting MLP, with the coordinate channels folded into a per-point bias of its first layer.

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
        few = c_in <= 2 and not x3.requires_grad
        lifting = self.lifting
        if few and lifting.n_layers == 2 and _fusable(x3, weight, lifting.weights[1]) and _FUSED_LIFT:
            w2, b2 = lifting.weights[1], lifting.biases[1]
            return _LiftFunction.apply(shift, w_data, x3, w2, b2, lifting.activation)
        if few and not torch.is_autocast_enabled(x.device.type):
            h = _AffineFewChannels.apply(shift, w_data, x3)
        else:
            h = torch.baddbmm(shift, w_data.unsqueeze(0).expand(batch, -1, -1), x3)
        for i in range(1, lifting.n_layers):
            h = act_linear(h, lifting.weights[i], lifting.biases[i], lifting.activation)
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
        h = pad_right(h.view(*h.shape[:2], *sizes), padding_sizes(sizes, self.domain_padding))
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            h = block(h, last=i == n - 1)
        return self.projection(crop(h, sizes))
