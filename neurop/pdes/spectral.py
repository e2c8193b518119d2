"""Shared Fourier pseudo-spectral numerics: periodic wavenumbers, 2/3-rule dealiasing and ETDRK4 stepping.

Conventions: a periodic grid of ``n`` points on ``[0, length)`` with ``x_j = j·length/n``; transforms are
``torch.fft`` with the default (unnormalised forward) scaling, so ``∂_x`` is multiplication by ``i k`` with
the angular wavenumbers returned by :func:`wavenumbers`. With ``real=True`` everything refers to the
half spectrum of ``torch.fft.rfft`` along the last axis.

The exponential time differencing scheme of fourth order (ETDRK4) of Cox & Matthews (J. Comput. Phys.
176, 2002) integrates ``u_t = L u + N(u)`` with a diagonal linear part ``L`` treated exactly; its
coefficients are evaluated by the contour-integral method of Kassam & Trefethen (SIAM J. Sci. Comput. 26,
2005), which avoids the cancellation of the closed-form φ-functions when ``|h L|`` is small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "ETDRK4Coefficients",
    "dealias_mask",
    "etdrk4_coefficients",
    "etdrk4_step",
    "wavenumbers",
]


def _check_size(name: str, n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {n!r}")
    return int(n)


def wavenumbers(
    n: int,
    length: float = 1.0,
    real: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Angular wavenumbers ``k = 2π m / length`` of a periodic grid of ``n`` points.

    Parameters
    ----------
    n : int
        Grid points, >= 2.
    length : float
        Period of the domain, > 0.
    real : bool
        Half spectrum of ``rfft`` (``m = 0, …, n//2``) instead of the full ``fft`` ordering
        (``m = 0, 1, …, −1``).

    Returns
    -------
    Tensor, shape (n,) or (n // 2 + 1,)
    """
    n = _check_size("n", n)
    if not (math.isfinite(length) and length > 0):
        raise ValueError(f"length must be > 0, got {length!r}")
    freq = torch.fft.rfftfreq if real else torch.fft.fftfreq
    m = freq(n, d=1.0 / n, dtype=dtype, device=device)
    return (2.0 * math.pi / length) * m


def dealias_mask(
    shape: int | Sequence[int],
    real: bool = True,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Boolean mask of the modes kept by Orszag's 2/3 rule.

    A mode with integer index ``m`` along an axis of ``n`` points is kept iff ``3|m| < n``. A product
    of two fields whose kept modes satisfy ``|m| < n/3`` then aliases only onto discarded modes, so the
    kept part of a quadratic term is exact. In several dimensions the mask is the tensor product
    (square truncation).

    Parameters
    ----------
    shape : int or sequence of int
        Grid points per axis, e.g. ``8192`` or ``(256, 256)``.
    real : bool
        The last axis is the half spectrum of ``rfftn`` (length ``n // 2 + 1``).

    Returns
    -------
    Tensor of bool, shape of the spectrum, e.g. (n // 2 + 1,) or (n, n // 2 + 1)
    """
    sizes = [shape] if isinstance(shape, int) else list(shape)
    if not sizes:
        raise ValueError(f"shape must name at least one axis, got {shape!r}")
    sizes = [_check_size("shape", s) for s in sizes]
    mask: torch.Tensor | None = None
    for axis, n in enumerate(sizes):
        last = axis == len(sizes) - 1
        freq = torch.fft.rfftfreq if real and last else torch.fft.fftfreq
        m = freq(n, d=1.0 / n, dtype=torch.float64, device=device)
        keep = 3 * m.abs().round().long() < n
        mask = keep if mask is None else mask[..., None] & keep
    assert mask is not None
    return mask


@dataclass(frozen=True)
class ETDRK4Coefficients:
    """Precomputed ETDRK4 coefficients for one step size ``h`` (Kassam & Trefethen's notation).

    Every tensor has the shape of the diagonal linear operator (broadcastable against the spectral
    state); it is float64 for a real operator and complex128 otherwise.

    Attributes
    ----------
    E, E2 : Tensor
        ``exp(hL)`` and ``exp(hL/2)``.
    Q : Tensor
        ``h φ₁(hL/2)/2 = (exp(hL/2) − 1)/L``, weight of the nonlinear term in the half steps.
    f1, f2, f3 : Tensor
        Final-stage weights (``h/6`` each in the limit ``hL → 0``, where ETDRK4 becomes RK4).
    h : float
        Step size (``nan`` when the coefficients hold one step size per entry).
    """

    E: torch.Tensor
    E2: torch.Tensor
    Q: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    f3: torch.Tensor
    h: float


def etdrk4_coefficients(
    lin: torch.Tensor,
    h: float | torch.Tensor,
    n_contour: int = 32,
    radius: float = 1.0,
) -> ETDRK4Coefficients:
    """ETDRK4 coefficients for the diagonal linear operator ``lin`` and step ``h``.

    Each φ-type function is averaged over ``n_contour`` points of a circle of ``radius`` centred at
    ``z = hL`` in the complex plane (Cauchy's integral formula evaluated with the trapezoidal rule). The
    functions are entire, so the average converges geometrically and never divides by a small ``z``:
    the result is accurate to round-off both for ``|hL| ≪ 1`` and for ``hL → −∞``. Computed in
    complex128 regardless of the input precision.

    Parameters
    ----------
    lin : Tensor, shape (...)
        Eigenvalues of the linear operator (e.g. ``−ν k²``), real or complex.
    h : float or Tensor
        Step size > 0; a tensor broadcastable against ``lin`` gives one step per entry (e.g. shape
        ``(B, 1)`` for one step size per sample).
    n_contour : int
        Quadrature points on the circle, >= 8.
    radius : float
        Circle radius, > 0; ``1`` is Kassam & Trefethen's choice.

    Returns
    -------
    ETDRK4Coefficients
    """
    if isinstance(n_contour, bool) or int(n_contour) != n_contour or n_contour < 8:
        raise ValueError(f"n_contour must be an integer >= 8, got {n_contour!r}")
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be > 0, got {radius!r}")
    h_t = torch.as_tensor(h, dtype=torch.float64, device=lin.device)
    if not bool(torch.all(torch.isfinite(h_t) & (h_t > 0))):
        raise ValueError(f"h must be > 0 and finite, got {h!r}")
    is_real = not lin.is_complex()
    z = (h_t * lin.to(torch.complex128 if lin.is_complex() else torch.float64)).to(torch.complex128)
    # Points of the full circle (not Kassam & Trefethen's upper half) so complex operators work too.
    j = torch.arange(n_contour, dtype=torch.float64, device=lin.device)
    roots = radius * torch.exp(2j * math.pi * (j + 0.5) / n_contour)
    zc = z[..., None] + roots
    ez = torch.exp(zc)
    ez2 = torch.exp(zc / 2)
    zc3 = zc**3

    def avg(values: torch.Tensor) -> torch.Tensor:
        mean = values.mean(dim=-1)
        return mean.real if is_real else mean

    Q = h_t * avg((ez2 - 1) / zc)
    f1 = h_t * avg((-4 - zc + ez * (4 - 3 * zc + zc**2)) / zc3)
    f2 = h_t * avg((2 + zc + ez * (zc - 2)) / zc3)
    f3 = h_t * avg((-4 - 3 * zc - zc**2 + ez * (4 - zc)) / zc3)
    E, E2 = torch.exp(z), torch.exp(z / 2)
    if is_real:
        E, E2 = E.real, E2.real
    h_out = float(h_t) if h_t.numel() == 1 else float("nan")
    return ETDRK4Coefficients(E=E, E2=E2, Q=Q, f1=f1, f2=f2, f3=f3, h=h_out)


def etdrk4_step(
    u_hat: torch.Tensor,
    nonlinear: Callable[[torch.Tensor], torch.Tensor],
    coeffs: ETDRK4Coefficients,
) -> torch.Tensor:
    """One ETDRK4 step of ``u_t = L u + N(u)`` in spectral space (Cox & Matthews, 2002).

    Parameters
    ----------
    u_hat : Tensor, shape (B, *modes), complex
        Spectral state; the coefficients broadcast against it.
    nonlinear : callable
        ``N(u_hat) -> Tensor`` of the shape of ``u_hat`` (the spectral nonlinear term, dealiased as
        the caller wishes).
    coeffs : ETDRK4Coefficients
        From :func:`etdrk4_coefficients` for the same ``L`` and step.

    Returns
    -------
    Tensor, shape of ``u_hat``
        The state one step later.
    """
    E, E2, Q = coeffs.E, coeffs.E2, coeffs.Q
    Nu = nonlinear(u_hat)
    E2u = E2 * u_hat
    a = E2u + Q * Nu
    Na = nonlinear(a)
    b = E2u + Q * Na
    Nb = nonlinear(b)
    c = E2 * a + Q * (2 * Nb - Nu)
    Nc = nonlinear(c)
    return E * u_hat + coeffs.f1 * Nu + 2 * coeffs.f2 * (Na + Nb) + coeffs.f3 * Nc
