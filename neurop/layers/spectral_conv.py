"""Fourier-space (spectral) convolution on retained low modes, the core layer of the FNO.

Li et al., "Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor, nn


def check_n_modes(n_modes: Sequence[int]) -> list[int]:
    """Validate ``n_modes`` (1 to 3 positive integers) and return it as a list."""
    if isinstance(n_modes, int) or not isinstance(n_modes, Sequence):
        raise ValueError(f"n_modes must be a list of 1, 2 or 3 positive integers, got {n_modes!r}")
    modes = list(n_modes)
    if not 1 <= len(modes) <= 3:
        raise ValueError(f"n_modes must have 1, 2 or 3 entries (one per spatial axis), got {n_modes!r}")
    for m in modes:
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise ValueError(f"n_modes entries must be positive integers, got {n_modes!r}")
    return modes


def _wavenumbers(m: int, both_signs: bool) -> Tensor:
    k = torch.arange(m, dtype=torch.float64)
    return torch.cat([k, k - m]) if both_signs else k


@lru_cache(maxsize=64)
def dft_matrices(
    n: int, m: int, both_signs: bool, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Truncated forward and inverse DFT matrices of one axis (cached per size, dtype and device).

    Parameters
    ----------
    n : int
        Grid points on the axis.
    m : int
        Retained modes: wavenumbers ``0..m-1``, plus ``-m..-1`` after them when ``both_signs``.
    both_signs : bool
        ``True`` for a complex axis (any axis but the last), ``False`` for the real-FFT (last) axis.
    dtype : torch.dtype
        Real dtype of the data (float32 or float64).

    Returns
    -------
    forward, inverse : Tensor
        ``both_signs``: complex ``(2m, n)`` with entries ``exp(-2πi k j / n) / n`` and complex ``(n, 2m)``
        with ``exp(+2πi k j / n)``. Otherwise real ``(n, 2m)`` mapping a real signal to interleaved
        ``(Re, Im)`` pairs of its coefficients (so :func:`torch.view_as_complex` is free), and real
        ``(2m, n)`` mapping interleaved pairs back to the real signal with the Hermitian weight 2 on
        ``k > 0`` and the imaginary part of ``k = 0`` ignored, as :func:`torch.fft.irfft` does.
    """
    # Built outside inference mode: a cached inference tensor could not be saved for backward later.
    with torch.inference_mode(False):
        return _build_dft_matrices(n, m, both_signs, dtype, device)


def _build_dft_matrices(
    n: int, m: int, both_signs: bool, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    k = _wavenumbers(m, both_signs)
    j = torch.arange(n, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(k, j) / n  # (K, n)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    if both_signs:
        fwd = torch.polar(torch.full_like(angle, 1.0 / n), -angle)
        inv = torch.polar(torch.ones_like(angle), angle).T
        return fwd.to(device, complex_dtype).contiguous(), inv.to(device, complex_dtype).contiguous()
    fwd = torch.stack([torch.cos(angle), -torch.sin(angle)], dim=1).reshape(2 * m, n).T / n
    weight = torch.full((m, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    inv = torch.stack([weight * torch.cos(angle), -weight * torch.sin(angle)], dim=1).reshape(2 * m, n)
    return fwd.to(device, dtype).contiguous(), inv.to(device, dtype).contiguous()


class SpectralConv(nn.Module):
    r"""Spectral convolution :math:`\mathcal{F}^{-1}(R \cdot \mathcal{F}x) + b` on channels-first tensors.

    The Fourier coefficients of the input at the retained modes are mixed per mode by a complex
    ``(in, out)`` matrix and transformed back on the input grid. Along every axis but the last,
    ``n_modes[i]`` non-negative and ``n_modes[i]`` negative wavenumbers are kept (``-m..m-1``); along
    the last axis, as in a real FFT, wavenumbers ``0..m-1``.

    Only the retained coefficients are ever computed: each axis is transformed by a GEMM with a
    truncated DFT matrix (last axis first, so later axes see only the retained columns; the
    complex axes as GEMMs batched per sample and channel, see :func:`to_modes`), and the inverse
    maps the retained coefficients straight back to grid values. For the mode counts FNOs use
    (``m`` up to a few dozen) this is cheaper than full FFTs, which transform every mode, need
    zero-filled spectra and, on CPU, layout copies; the result equals the FFT formulation.

    Coefficients are grid means (``norm="forward"``), so the same weights act on any grid: the layer
    commutes with exact Fourier interpolation of band-limited inputs. A grid with fewer than
    ``2 * n_modes[i]`` points along axis ``i`` cannot hold the retained modes and raises ``ValueError``
    (modes are never silently dropped).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output.
    n_modes : sequence of int
        Retained modes per spatial axis (1 to 3 axes), see above.
    bias : bool
        Add a learnt per-channel constant (folded into the zero-frequency mode).

    Notes
    -----
    Weights are stored as a real tensor of shape ``(*retained, in_channels, out_channels, 2)`` with
    ``retained = (m_d, 2 m_{d-1}, ..., 2 m_1)``, i.e. spatial axes in reverse order (the layout the
    transforms produce), wavenumbers ``0..m-1`` then ``-m..-1`` on the complex axes; real and
    imaginary parts initialised uniformly in ``[0, 1/(in*out))`` as in Li et al. Real storage keeps
    ``module.double()``, optimisers and ``torch.load(weights_only=True)`` free of complex special cases.
    Under autocast the layer runs in float32 and returns the input's dtype.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_modes: Sequence[int],
        bias: bool = True,
    ) -> None:
        super().__init__()
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_modes = check_n_modes(n_modes)
        self.dim = len(self.n_modes)
        # Mode axes in reverse spatial order, matching the layout the transforms produce.
        self.retained = [self.n_modes[-1]] + [2 * m for m in reversed(self.n_modes[:-1])]
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(*self.retained, in_channels, out_channels, 2))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"{self.in_channels}, {self.out_channels}, n_modes={self.n_modes}, bias={bias}"

    def check_grid(self, sizes: Sequence[int]) -> None:
        """Raise ``ValueError`` if a grid of ``sizes`` points per axis cannot hold the retained modes."""
        if len(sizes) != self.dim:
            raise ValueError(f"expected {self.dim} spatial axes, got grid {tuple(sizes)}")
        for i, (n, m) in enumerate(zip(sizes, self.n_modes, strict=True)):
            if n < 2 * m:
                raise ValueError(
                    f"grid size {n} along spatial axis {i} is smaller than 2 * n_modes[{i}] = {2 * m}; "
                    f"use a grid of at least {2 * m} points or fewer modes"
                )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the spectral convolution.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)
            Input on a uniform periodic grid with ``len(n_modes)`` spatial axes.

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
            Contiguous.
        """
        return self._apply_2d(x).view(x.shape[0], self.out_channels, *x.shape[2:])

    def forward_flat(self, x: Tensor) -> Tensor:
        """:meth:`forward` with the spatial axes flattened, as a tensor autograd does not track as a view.

        In-place updates of the result (e.g. adding a skip connection with ``baddbmm_``) therefore cost
        nothing extra in backward, unlike in-place updates of a view.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)

        Returns
        -------
        Tensor, shape (B, out_channels, prod(spatial))
        """
        # The GEMM result behind the 2-D output is referenced nowhere else (autograd does not keep it).
        return torch.ops.aten._unsafe_view(self._apply_2d(x), (x.shape[0], self.out_channels, -1))

    def _apply_2d(self, x: Tensor) -> Tensor:
        """Checked, autocast-safe spectral convolution; output of shape (B * out * prod(S[:-1]), S[-1])."""
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, *spatial[{self.dim}]), got {tuple(x.shape)}"
            )
        sizes = list(x.shape[2:])
        self.check_grid(sizes)
        in_dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            if in_dtype not in (torch.float32, torch.float64):
                x = x.float()
            out = self._spectral(x, sizes)
        return out if out.dtype == in_dtype else out.to(in_dtype)

    def _spectral(self, x: Tensor, sizes: list[int]) -> Tensor:
        dtype, device = x.dtype, x.device
        fwd, fwd_c, inv, inv_c = transform_matrices(sizes, self.n_modes, dtype, device)
        t = to_modes(x, sizes, self.n_modes, fwd, fwd_c)  # (modes, B, in)
        # One complex (in, out) matrix per mode: a batched GEMM over modes.
        y = torch.bmm(t, self.complex_weight(dtype))  # (modes, B, out)
        if self.bias is not None:
            # Coefficients are grid means, so a constant shift lives in the zero mode (row 0) alone.
            y[0] += self.bias.to(dtype)
        return to_grid(y, sizes, self.n_modes, inv_c, inv)

    def complex_weight(self, dtype: torch.dtype) -> Tensor:
        """The mixing matrices as a complex ``(modes, in_channels, out_channels)`` view of :attr:`weight`."""
        n = math.prod(self.retained)
        return torch.view_as_complex(self.weight.to(dtype)).reshape(n, self.in_channels, self.out_channels)


def transform_matrices(
    sizes: Sequence[int], n_modes: Sequence[int], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, list[Tensor], Tensor, list[Tensor]]:
    """Forward and inverse DFT matrices of every axis (cached): ``(fwd_last, [fwd per complex axis], inv_last,
    [inv per complex axis])``, complex axes in spatial order."""
    fwd, inv = dft_matrices(sizes[-1], n_modes[-1], False, dtype, device)
    pairs = [dft_matrices(n, m, True, dtype, device) for n, m in zip(sizes[:-1], n_modes[:-1], strict=True)]
    return fwd, [f for f, _ in pairs], inv, [i for _, i in pairs]


@lru_cache(maxsize=64)
def adjoint_dft_matrices(
    n: int, m: int, both_signs: bool, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Conjugate transposes of :func:`dft_matrices` (contiguous, cached): the backward pass's matrices."""
    with torch.inference_mode(False):
        fwd, inv = dft_matrices(n, m, both_signs, dtype, device)
        return fwd.mH.resolve_conj().contiguous(), inv.mH.resolve_conj().contiguous()


def adjoint_transform_matrices(
    sizes: Sequence[int], n_modes: Sequence[int], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, list[Tensor], Tensor, list[Tensor]]:
    """:func:`transform_matrices` conjugate-transposed: ``(inv_last^H, [inv^H], fwd_last^H, [fwd^H])``.

    ``to_modes`` with the first two is the adjoint of ``to_grid`` with the inverse matrices, and
    ``to_grid`` with the last two the adjoint of ``to_modes`` with the forward matrices.
    """
    fwd, inv = adjoint_dft_matrices(sizes[-1], n_modes[-1], False, dtype, device)
    pairs = [
        adjoint_dft_matrices(n, m, True, dtype, device) for n, m in zip(sizes[:-1], n_modes[:-1], strict=True)
    ]
    return inv, [i for _, i in pairs], fwd, [f for f, _ in pairs]


def to_modes(
    x: Tensor, sizes: Sequence[int], n_modes: Sequence[int], last: Tensor, axes: list[Tensor]
) -> Tensor:
    """Grid values to retained coefficients ``(modes, B, C)``, modes in :class:`SpectralConv` order.

    Parameters
    ----------
    x : Tensor, shape (B, C, *sizes), contiguous, or any tensor with ``B * C * prod(sizes)`` elements in
        that order.
    sizes, n_modes : sequence of int
        Grid points and retained modes per spatial axis.
    last : Tensor, shape (sizes[-1], 2 * n_modes[-1])
        Real matrix of the last axis (its output read as interleaved ``(Re, Im)`` pairs).
    axes : list of Tensor, shapes (2 * n_modes[i], sizes[i])
        Complex matrices of the other axes, in spatial order.

    Returns
    -------
    Tensor, complex, shape (modes, B, C)
    """
    n_last = sizes[-1]
    batch, chans = x.shape[0], x.numel() // (x.shape[0] * math.prod(sizes))
    # Last axis: one real GEMM to interleaved (Re, Im) pairs.
    return pairs_to_modes(x.reshape(-1, n_last) @ last, sizes, n_modes, batch, chans, axes)


def pairs_to_modes(
    pairs: Tensor, sizes: Sequence[int], n_modes: Sequence[int], batch: int, chans: int, axes: list[Tensor]
) -> Tensor:
    """:func:`to_modes` after its last-axis GEMM: ``pairs`` of shape ``(B * C * prod(S[:-1]), 2 * m_d)``
    holds the last axis's coefficients as interleaved ``(Re, Im)`` pairs."""
    d = len(sizes)
    m_last = n_modes[-1]
    lead = batch * chans
    t = torch.view_as_complex(pairs.view(lead, *sizes[:-1], m_last, 2))
    # Complex axes innermost first, each a GEMM batched over everything before it: the operands are
    # contiguous in the layout the last-axis GEMM left, with no gathers.
    for ax in range(d - 2, -1, -1):
        rows = lead * math.prod(sizes[:ax])
        t = torch.matmul(axes[ax], t.reshape(rows, sizes[ax], -1))
    # (B C, 2 m_1, ..., 2 m_{d-1}, m_d) -> (m_d, 2 m_{d-1}, ..., 2 m_1, B C): a copy of the retained
    # coefficients only.
    t = t.reshape(lead, *[axes[ax].shape[0] for ax in range(d - 1)], m_last)
    return t.permute(*range(d, -1, -1)).reshape(-1, batch, chans)


def to_grid(
    y: Tensor,
    sizes: Sequence[int],
    n_modes: Sequence[int],
    axes: list[Tensor],
    last: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """Retained coefficients ``(modes, B, C)`` back to grid values, as a ``(B * C * prod(S[:-1]), S[-1])``
    tensor; with ``out`` (that shape) the result is added to ``out`` in place and ``out`` returned.

    ``axes`` are complex ``(sizes[i], 2 * n_modes[i])`` matrices in spatial order; ``last`` is the real
    ``(2 * n_modes[-1], sizes[-1])`` matrix of the last axis, reading interleaved ``(Re, Im)`` pairs.
    """
    pairs = modes_to_pairs(y, sizes, n_modes, axes)
    if out is None:
        return pairs @ last
    return out.addmm_(pairs, last)


def modes_to_pairs(y: Tensor, sizes: Sequence[int], n_modes: Sequence[int], axes: list[Tensor]) -> Tensor:
    """:func:`to_grid` before its last-axis GEMM: the ``(B * C * prod(S[:-1]), 2 * m_d)`` interleaved
    ``(Re, Im)`` pairs of the last axis's coefficients on the grid of the other axes."""
    d = len(sizes)
    m_last = n_modes[-1]
    _, batch, chans = y.shape
    lead = batch * chans
    # (m_d, 2 m_{d-1}, ..., 2 m_1, B C) -> (B C, 2 m_1, ..., 2 m_{d-1}, m_d): a copy of the retained
    # coefficients only; then each complex axis is a GEMM batched over everything before it, and the
    # result is already laid out (B, C, n_1, ..., n_{d-1}, m_d) for the last axis.
    t = y.reshape(m_last, *[axes[ax].shape[1] for ax in range(d - 2, -1, -1)], lead)
    t = t.permute(*range(d, -1, -1)).contiguous()
    for ax in range(d - 1):
        rows = lead * math.prod(sizes[:ax])
        t = torch.matmul(axes[ax], t.reshape(rows, axes[ax].shape[1], -1))
    return torch.view_as_real(t).reshape(-1, 2 * m_last)
