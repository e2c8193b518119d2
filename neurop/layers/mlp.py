"""Activations by name and pointwise (channel-mixing) layers on channels-first tensors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

ActivationName = Literal["gelu", "tanh", "relu", "silu"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "relu": F.relu,
    "silu": F.silu,
}


def activation_names() -> list[str]:
    """Sorted names accepted by :func:`get_activation`."""
    return sorted(_ACTIVATIONS)


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """Return the element-wise activation function called ``name``.

    Parameters
    ----------
    name : {"gelu", "tanh", "relu", "silu"}

    Raises
    ------
    ValueError
        If ``name`` is not one of the known activations (the message lists them).
    """
    try:
        return _ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {activation_names()}, got {name!r}") from None


def _activation_backward_(name: str, grad: Tensor, pre: Tensor, out: Tensor | None = None) -> Tensor:
    """Write ``grad * act'(pre)`` into ``out`` (default: overwrite ``grad``; no new buffer)."""
    aten = torch.ops.aten
    out = grad if out is None else out
    if name == "gelu":
        return aten.gelu_backward.grad_input(grad, pre, approximate="none", grad_input=out)
    if name == "silu":
        return aten.silu_backward.grad_input(grad, pre, grad_input=out)
    if name == "relu":
        return aten.threshold_backward.grad_input(grad, pre, 0, grad_input=out)
    if name == "tanh":
        return aten.tanh_backward.grad_input(grad, torch.tanh(pre), grad_input=out)
    raise ValueError(f"activation must be one of {activation_names()}, got {name!r}")


def _activation_into(name: str, x: Tensor, out: Tensor) -> Tensor:
    """Write ``act(x)`` into ``out`` (no temporary)."""
    if name == "gelu":
        return torch._C._nn.gelu(x, out=out)
    if name == "silu":
        return torch._C._nn.silu(x, out=out)
    if name == "relu":
        return torch.clamp_min(x, 0, out=out)
    if name == "tanh":
        return torch.tanh(x, out=out)
    raise ValueError(f"activation must be one of {activation_names()}, got {name!r}")


# Samples per chunk are chosen so a chunk's activation stays below this many bytes: small enough for
# the C allocator to recycle it from its heap instead of mapping (and page-faulting) fresh memory.
_CHUNK_BYTES = 4 * 2**20


def _chunks(pre: Tensor) -> range:
    per_sample = pre[0].numel() * pre.element_size()
    return range(0, pre.shape[0], max(1, _CHUNK_BYTES // max(per_sample, 1)))


def _fusable(x: Tensor, *weights: Tensor) -> bool:
    """Whether the hand-written memory-lean autograd functions apply: training without autocast, a
    contiguous float32/float64 input and weights of the same dtype."""
    return (
        torch.is_grad_enabled()
        and not torch.is_autocast_enabled(x.device.type)
        and x.dtype in (torch.float32, torch.float64)
        and all(w.dtype == x.dtype for w in weights)
        and x.is_contiguous()
    )


class _ActLinear(torch.autograd.Function):
    """``y = W act(pre) + b`` per point, saving only ``pre`` and recomputing ``act(pre)`` in backward.

    Both passes walk the batch in chunks, so ``act(pre)`` never exists at full size.
    """

    @staticmethod
    def forward(ctx: Any, pre: Tensor, weight: Tensor, bias: Tensor, name: str) -> Tensor:
        act = _ACTIVATIONS[name]
        batch, _, n = pre.shape
        y = pre.new_empty(batch, weight.shape[0], n)
        step = _chunks(pre).step
        for i in range(0, batch, step):
            j = min(i + step, batch)
            w = weight.unsqueeze(0).expand(j - i, -1, -1)
            torch.baddbmm(bias.unsqueeze(-1), w, act(pre[i:j]), out=y[i:j])
        ctx.save_for_backward(pre, weight)
        ctx.name = name
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        pre, weight = ctx.saved_tensors
        act = _ACTIVATIONS[ctx.name]
        batch = pre.shape[0]
        grad = grad.contiguous()
        grad_pre = torch.empty_like(pre)
        grad_weight = weight.new_zeros(weight.shape)
        step = _chunks(pre).step
        for i in range(0, batch, step):
            j = min(i + step, batch)
            a = act(pre[i:j])
            grad_weight += torch.bmm(grad[i:j], a.transpose(1, 2)).sum(0)
            wt = weight.t().unsqueeze(0).expand(j - i, -1, -1)
            torch.bmm(wt, grad[i:j], out=grad_pre[i:j])
            _activation_backward_(ctx.name, grad_pre[i:j], pre[i:j])
        return grad_pre, grad_weight, grad.sum((0, 2)), None


def act_linear(pre: Tensor, weight: Tensor, bias: Tensor, activation: str) -> Tensor:
    """``pointwise_linear(act(pre), weight, bias)`` on ``(B, C_in, N)`` tensors, memory-lean in training.

    With gradients enabled (and no autocast) the activation output is neither stored for backward nor
    ever allocated at full size: both passes work through the batch in chunks of a few MB and the
    backward recomputes the activation. That is one activation-sized tensor less per call in stored
    memory and in fresh allocations (which on CPU cost page faults). Double backward through it is not
    supported.

    Parameters
    ----------
    pre : Tensor, shape (B, C_in, N)
        Pre-activation.
    weight : Tensor, shape (C_out, C_in)
    bias : Tensor, shape (C_out,)
    activation : {"gelu", "tanh", "relu", "silu"}

    Returns
    -------
    Tensor, shape (B, C_out, N)
    """
    act = get_activation(activation)
    if _fusable(pre, weight):
        return _ActLinear.apply(pre, weight, bias, activation)
    return pointwise_linear(act(pre), weight, bias)


class _TwoLayer(torch.autograd.Function):
    """``y = W2 act(W1 x + b1) + b2`` per point, saving ``x`` only; backward recomputes the hidden layer.

    Both passes walk sample by sample through blocks of points whose hidden layer fits in a core's
    cache, so neither the hidden pre-activation nor its gradient ever exists at full size. For a wide
    hidden layer (the FNO projection: 32 → 64 or 128 → 1) that removes the two largest tensors of a
    training step and their trips through main memory, at the price of recomputing the first GEMM.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, name: str) -> Tensor:
        act = _ACTIVATIONS[name]
        batch, _, n = x.shape
        y = x.new_empty(batch, w2.shape[0], n)
        b1c, b2c = b1.unsqueeze(-1), b2.unsqueeze(-1)
        for b, p, q in _point_blocks(x, w1.shape[0]):
            torch.addmm(b2c, w2, act(torch.addmm(b1c, w1, x[b, :, p:q])), out=y[b, :, p:q])
        ctx.save_for_backward(x, w1, b1, w2)
        ctx.name = name
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w1, b1, w2 = ctx.saved_tensors
        act = _ACTIVATIONS[ctx.name]
        grad = grad.contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_w1, grad_b1 = torch.zeros_like(w1), torch.zeros_like(b1)
        grad_w2 = torch.zeros_like(w2)
        b1c, w1t, w2t = b1.unsqueeze(-1), w1.t(), w2.t()
        for b, p, q in _point_blocks(x, w1.shape[0]):
            xc, gc = x[b, :, p:q], grad[b, :, p:q]
            pre = torch.addmm(b1c, w1, xc)
            grad_w2.addmm_(gc, act(pre).t())
            g = _activation_backward_(ctx.name, torch.mm(w2t, gc), pre)
            grad_w1.addmm_(g, xc.t())
            grad_b1 += g.sum(1)
            if grad_x is not None:
                torch.mm(w1t, g, out=grad_x[b, :, p:q])
        return grad_x, grad_w1, grad_b1, grad_w2, grad.sum((0, 2)), None


# Points per block of the fused two-layer MLP are chosen so a block's hidden layer stays below this many
# bytes (a fraction of a core's L2 cache): recomputing it in backward then costs arithmetic, not memory.
_CACHE_BYTES = 2**19


def _point_blocks(x: Tensor, hidden: int) -> list[tuple[int, int, int]]:
    """``(sample, start, stop)`` blocks of points covering ``x`` of shape ``(B, C, N)``."""
    n = x.shape[-1]
    size = max(1, min(_CACHE_BYTES, _CHUNK_BYTES) // max(hidden * x.element_size(), 1))
    return [(b, p, min(p + size, n)) for b in range(x.shape[0]) for p in range(0, n, size)]


def two_layer(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, activation: str) -> Tensor:
    """``pointwise_linear(act(pointwise_linear(x, w1, b1)), w2, b2)`` on ``(B, C_in, N)``, memory-lean.

    With gradients enabled (and no autocast) only ``x`` is stored for backward and the hidden layer is
    computed, in both passes, in blocks of points that fit in a core's cache: the hidden pre-activation and
    its gradient never exist at full size. Double backward through it is not supported.

    Parameters
    ----------
    x : Tensor, shape (B, C_in, N)
    w1 : Tensor, shape (H, C_in)
    b1 : Tensor, shape (H,)
    w2 : Tensor, shape (C_out, H)
    b2 : Tensor, shape (C_out,)
    activation : {"gelu", "tanh", "relu", "silu"}

    Returns
    -------
    Tensor, shape (B, C_out, N)
    """
    act = get_activation(activation)
    if _fusable(x, w1, w2):
        return _TwoLayer.apply(x, w1, b1, w2, b2, activation)
    return pointwise_linear(act(pointwise_linear(x, w1, b1)), w2, b2)


class _GatedAdd(torch.autograd.Function):
    """``q + g * x`` with ``g`` per channel, written into ``q``; the gate gradient is reduced per sample."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, x: Tensor, gate: Tensor) -> Tensor:
        ctx.mark_dirty(q)
        ctx.save_for_backward(x, gate)
        return q.addcmul_(x, gate.unsqueeze(-1))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, gate = ctx.saved_tensors
        grad_gate = None
        if ctx.needs_input_grad[2]:
            # One sample at a time: sum(grad * x) without an activation-sized temporary.
            grad_gate = torch.zeros_like(gate)
            for b in range(x.shape[0]):
                grad_gate += (grad[b] * x[b]).sum(-1)
        grad_x = grad * gate.unsqueeze(-1) if ctx.needs_input_grad[1] else None
        return grad, grad_x, grad_gate


def gated_add_(q: Tensor, x: Tensor, gate: Tensor) -> Tensor:
    """In-place soft-gating skip ``q += gate[:, None] * x`` on ``(B, C, N)`` tensors.

    Parameters
    ----------
    q, x : Tensor, shape (B, C, N)
        ``q`` is overwritten (it must not be needed by autograd elsewhere, e.g. a fresh GEMM output).
    gate : Tensor, shape (C,)

    Returns
    -------
    Tensor
        ``q``.
    """
    if torch.is_autocast_enabled(q.device.type) or q.dtype != gate.dtype:
        return torch.addcmul(q, x, gate.unsqueeze(-1).to(q.dtype))
    if torch.is_grad_enabled():
        return _GatedAdd.apply(q, x, gate)
    return q.addcmul_(x, gate.unsqueeze(-1))


def init_linear_(weight: Tensor, bias: Tensor | None) -> None:
    """Initialise a ``(out, in)`` weight and its bias like :class:`torch.nn.Linear` does."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1.0 / math.sqrt(weight.shape[1]) if weight.shape[1] > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def pointwise_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """A 1x1 convolution of a channels-first tensor as one batched GEMM (no permutes, bias fused).

    Parameters
    ----------
    x : Tensor, shape (B, C_in, *spatial)
    weight : Tensor, shape (C_out, C_in)
    bias : Tensor, shape (C_out,), optional

    Returns
    -------
    Tensor, shape (B, C_out, *spatial)
        Contiguous; for a 3-D ``x`` the GEMM output itself (not a view), so in-place ops on it stay
        cheap under autograd.
    """
    batch, c_in = x.shape[:2]
    x3 = x.reshape(batch, c_in, -1)
    w = weight.unsqueeze(0).expand(batch, -1, -1)
    if bias is None:
        y = torch.bmm(w, x3)
    else:
        y = torch.baddbmm(bias.unsqueeze(-1), w, x3)
    return y if x.ndim == 3 else y.view(batch, weight.shape[0], *x.shape[2:])


class ChannelMLP(nn.Module):
    """Pointwise MLP mixing the channels of a channels-first tensor at every grid point.

    Every layer is one batched GEMM (:func:`pointwise_linear`), cheaper on CPU than ``Conv1d``; a 2-layer
    MLP goes through :func:`two_layer`, which stores only its input for backward.

    Parameters
    ----------
    in_channels, out_channels : int
        Input and output channels.
    hidden_channels : int
        Width of the hidden layers (ignored when ``n_layers == 1``).
    n_layers : int
        Number of linear layers (``>= 1``); the activation sits between them, not after the last.
    activation : {"gelu", "tanh", "relu", "silu"}
        Hidden activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        n_layers: int = 2,
        activation: ActivationName = "gelu",
    ) -> None:
        super().__init__()
        for key, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("hidden_channels", hidden_channels),
            ("n_layers", n_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.act = get_activation(activation)
        self.activation = activation
        widths = [in_channels] + [hidden_channels] * (n_layers - 1) + [out_channels]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            weight = nn.Parameter(torch.empty(w_out, w_in))
            bias = nn.Parameter(torch.empty(w_out))
            init_linear_(weight, bias)
            self.weights.append(weight)
            self.biases.append(bias)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP pointwise.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
        """
        batch, spatial = x.shape[0], x.shape[2:]
        if len(self.weights) == 2:
            x3 = x.reshape(batch, x.shape[1], -1)
            w, b = self.weights, self.biases
            h = two_layer(x3.contiguous(), w[0], b[0], w[1], b[1], self.activation)
            return h.view(batch, h.shape[1], *spatial)
        h = pointwise_linear(x.reshape(batch, x.shape[1], -1), self.weights[0], self.biases[0])
        # Integer indexing, not slicing: a sliced ParameterList re-wraps tensors swapped in by
        # torch.func.functional_call as fresh Parameters, cutting them out of the graph.
        for i in range(1, len(self.weights)):
            h = act_linear(h, self.weights[i], self.biases[i], self.activation)
        return h.view(batch, h.shape[1], *spatial)
