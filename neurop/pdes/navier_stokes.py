"""2-D incompressible Navier–Stokes in vorticity form on the unit torus: spectral solvers and data generator.

The equation is ``w_t + u·∇w = νΔw + f`` on [0, 1)² with ``u = ∇^⊥ψ = (ψ_y, −ψ_x)`` and ``−Δψ = w``; axis
−2 of every array is x and axis −1 is y. Both schemes share one spatial discretisation (real FFTs, the
nonlinear term evaluated on the grid in advective form and truncated by the 2/3 rule), so they integrate the
same system of ODEs for the Fourier coefficients ``ŵ_k``::

    dŵ/dt = −ν|2πk|² ŵ + f̂ − D·FFT(u·∇w),      D = 1 for max(|k_x|, |k_y|) ≤ (2/3)(N/2), else 0.

* ``"cn"``: the scheme of the Fourier Neural Operator paper (Li et al., ICLR 2021): Crank–Nicolson on the
  viscous term, advection and forcing taken at the old step, Δt = 1e−4. First order in time. (The published
  script damps the mean mode as if |2πk|² were 1 there; here it is 0, which is the same for zero-mean w0.)
* ``"etdrk4"``: exponential time differencing RK4 (Cox & Matthews, J. Comput. Phys. 2002): the viscous
  term is integrated exactly, the rest to fourth order, with a CFL-adaptive step chosen for each sample
  (samples of a batch advance with their own steps and meet at each output time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from neurop.pdes.base import PDES, FieldSpec, PDEGenerator, check_positive
from neurop.pdes.grf import GaussianRandomField

Scheme = Literal["etdrk4", "cn"]
Forcing = Literal["fno", "none"]

SCHEMES: tuple[str, ...] = ("etdrk4", "cn")
FORCINGS: tuple[str, ...] = ("fno", "none")
CN_DEFAULT_DT = 1e-4
DEFAULT_CFL = 1.0

# The adaptive step is also at most cfl · _TURNOVER_FRACTION / max|w|: a resolution-independent bound that
# keeps coarse grids accurate, where the CFL step alone would be a large part of the eddy turnover time.
_TURNOVER_FRACTION = 0.05
_W_REFRESH = 8

# Relative slack when deciding whether a time interval is a whole number of steps (1.0 / 1e-4 is not 10000).
_STEP_SLACK = 1e-9


def fno_forcing(n: int, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> Tensor:
    """The FNO paper's forcing ``f(x, y) = 0.1 (sin 2π(x + y) + cos 2π(x + y))`` on the ``n × n`` grid.

    Returns
    -------
    Tensor, shape (n, n)
        Indexed ``[x, y]`` with ``x_i = i / n``, ``y_j = j / n``.
    """
    x = torch.arange(n, device=device, dtype=torch.float64) / n
    s = 2 * math.pi * (x[:, None] + x[None, :])
    return (0.1 * (torch.sin(s) + torch.cos(s))).to(dtype)


class _Spectral:
    """Wavenumbers, operators and work buffers for the pseudo-spectral right-hand side on an ``n × n`` grid.

    Wavenumbers follow the FFT layout, with −n/2 at the Nyquist index of both axes (as in the published
    script), so the cn scheme reproduces it to round-off.
    """

    def __init__(self, n: int, batch: int, device: torch.device) -> None:
        self.n = n
        m = n // 2 + 1
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device)
        kx, ky = k[:, None], k[None, :m]
        self.k2 = (4 * math.pi**2) * (kx**2 + ky**2)  # (n, m), eigenvalues of −Δ
        inv_lap = torch.where(self.k2 > 0, 1.0 / torch.where(self.k2 > 0, self.k2, 1.0), 0.0)
        ikx = (2j * math.pi) * kx.to(torch.complex128)
        iky = (2j * math.pi) * ky.to(torch.complex128)
        # Multipliers taking ŵ to (u, v, w_x, w_y): u = ψ_y, v = −ψ_x with ψ̂ = ŵ / |2πk|².
        # A fifth slot (identity) also returns w itself, for the adaptive step's vorticity bound.
        self.ops = torch.stack(
            [
                (iky * inv_lap).expand(n, m),
                (-ikx * inv_lap).expand(n, m),
                ikx.expand(n, m),
                iky.expand(n, m),
                torch.ones((n, m), dtype=torch.complex128, device=device),
            ]
        )[:, None]  # (5, 1, n, m)
        cut = (2.0 / 3.0) * (n // 2)
        self.mask = ((kx.abs() <= cut) & (ky.abs() <= cut)).to(torch.float64)  # (n, m)
        self._spec = torch.empty((5, batch, n, m), dtype=torch.complex128, device=device)
        self._grid = torch.empty((5, batch, n, n), dtype=torch.float64, device=device)
        self._prod = torch.empty((batch, n, n), dtype=torch.float64, device=device)

    def advection_hat(self, w_hat: Tensor, out: Tensor, with_w: bool = False) -> Tensor:
        """Write ``FFT(u·∇w)`` (not yet dealiased) into ``out``.

        Parameters
        ----------
        w_hat : Tensor, shape (B, n, n//2+1), complex128
        out : Tensor, shape (B, n, n//2+1), complex128
        with_w : bool
            Also transform ``w`` itself, for :meth:`rates`.

        Returns
        -------
        Tensor
            ``out``.
        """
        k = 5 if with_w else 4
        torch.mul(self.ops[:k], w_hat, out=self._spec[:k])
        torch.fft.irfft2(self._spec[:k], s=(self.n, self.n), out=self._grid[:k])
        g = self._grid
        torch.mul(g[0], g[2], out=self._prod)
        self._prod.addcmul_(g[1], g[3])
        return torch.fft.rfft2(self._prod, out=out)

    def rates(self, with_w: bool = True) -> tuple[Tensor, Tensor | None]:
        """``max(|u| + |v|)`` and (if ``with_w``) ``max |w|`` per sample, shape (B,), from the last call."""
        g = self._grid
        speed = (g[0].abs() + g[1].abs()).amax(dim=(-2, -1))
        return speed, (g[4].abs().amax(dim=(-2, -1)) if with_w else None)


def _phi_functions(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``φ1, φ2, φ3`` of ETD methods, ``φ_k(z) = Σ_j z^j / (j + k)!``, accurate for all real ``z ≤ 0``."""
    zs = torch.where(z == 0, -1.0, z)
    p1 = torch.expm1(zs) / zs
    p2 = (p1 - 1.0) / zs
    p3 = (p2 - 0.5) / zs
    small = z.abs() < 1.0
    if bool(small.any()):
        # The recurrence cancels catastrophically near 0; there the Taylor series converges fast.
        zz = z[small]
        s1, s2, s3 = (torch.zeros_like(zz) for _ in range(3))
        term = torch.ones_like(zz)  # z^j
        for j in range(20):
            s1 += term * (1.0 / math.factorial(j + 1))
            s2 += term * (1.0 / math.factorial(j + 2))
            s3 += term * (1.0 / math.factorial(j + 3))
            term = term * zz
        p1[small], p2[small], p3[small] = s1, s2, s3
    return p1, p2, p3


def _etdrk4_coefficients(neg_l: Tensor, h: Tensor) -> tuple[Tensor, ...]:
    """Cox–Matthews coefficients for step(s) ``h``.

    Parameters
    ----------
    neg_l : Tensor, shape (n, m)
        ``ν|2πk|²`` (minus the linear operator).
    h : Tensor, shape (B,) or ()
        Step size(s); 0 leaves a sample unchanged.

    Returns
    -------
    e, e2, q, b1, b2, b3 : Tensor, shape (B, n, m, 2) or (n, m, 2)
        ``e^{Lh}``, ``e^{Lh/2}``, ``(h/2)φ1(Lh/2)``, and ``h(φ1 − 3φ2 + 4φ3)``, ``h(2φ2 − 4φ3)``,
        ``h(4φ3 − φ2)``; each repeated along a trailing axis of 2 (see :func:`_pairs`).
    """
    hh = h.reshape(h.shape + (1, 1))
    z = -neg_l * hh
    p1, p2, p3 = _phi_functions(z)
    q = 0.5 * hh * _phi_functions(0.5 * z)[0]
    out = (
        torch.exp(z),
        torch.exp(0.5 * z),
        q,
        hh * (p1 - 3.0 * p2 + 4.0 * p3),
        hh * (2.0 * p2 - 4.0 * p3),
        hh * (4.0 * p3 - p2),
    )
    return tuple(_pairs(c) for c in out)


def _pairs(c: Tensor) -> Tensor:
    """Repeat a real coefficient along a new trailing axis of 2, to act on ``torch.view_as_real`` views.

    A materialised axis keeps the elementwise kernels vectorised; broadcasting a size-1 trailing axis
    against 2 makes them about 4x slower.
    """
    return c.unsqueeze(-1).expand(*c.shape, 2).contiguous()


def _steps_per_interval(length: float, dt: float) -> int:
    """Fewest equal steps of at most ``dt`` that cover ``length``."""
    return max(1, math.ceil(length / dt * (1.0 - _STEP_SLACK)))


def _check_times(times: Sequence[float] | Tensor | np.ndarray) -> list[float]:
    values = [float(t) for t in (times.tolist() if hasattr(times, "tolist") else times)]
    if not values:
        raise ValueError("times must contain at least one time, got []")
    if not all(math.isfinite(t) for t in values) or values[0] < 0:
        raise ValueError(f"times must be finite and >= 0, got {values}")
    if any(b < a for a, b in zip(values[:-1], values[1:], strict=False)):
        raise ValueError(f"times must be non-decreasing, got {values}")
    return values


def solve_navier_stokes(
    w0: Tensor,
    viscosity: float,
    times: Sequence[float] | Tensor | np.ndarray,
    forcing: Tensor | None = None,
    scheme: Scheme = "etdrk4",
    dt: float | None = None,
    cfl: float = DEFAULT_CFL,
    stride: int = 1,
) -> Tensor:
    """Solve ``w_t + u·∇w = νΔw + f`` on the unit torus for a batch of initial vorticities.

    Parameters
    ----------
    w0 : Tensor, shape (B, N, N)
        Initial vorticity at ``t = 0`` on the grid ``(i/N, j/N)``, indexed ``[x, y]``; any device. Computed in
        float64.
    viscosity : float
        ν > 0.
    times : sequence of float, shape (n_t,)
        Non-decreasing output times ``>= 0``; the solution lands exactly on each (``0`` returns ``w0``).
    forcing : Tensor, shape (N, N) or (B, N, N), optional
        Time-independent forcing ``f``; ``None`` means unforced.
    scheme : {"etdrk4", "cn"}
        ``"etdrk4"`` (fourth order, viscosity exact, adaptive step) or ``"cn"`` (the FNO paper's scheme).
    dt : float, optional
        Step size. ``"cn"``: default 1e−4; ``"etdrk4"``: ``None`` picks each sample's step from ``cfl``, a
        number fixes the step. Each interval between output times is split into equal steps ``<= dt``.
    cfl : float
        ``"etdrk4"`` with ``dt=None``: step ``≈ cfl · min(1 / (N max(|u| + |v|)), 0.05 / max|w|)`` (rounded
        down to a power of 2^(1/8)), chosen per sample so that a sample's result does not depend on the rest
        of its batch. The first bound is the advective CFL limit (unstable above about 1.4), the second keeps
        coarse grids accurate. Ignored by ``"cn"``.
    stride : int
        Return every ``stride``-th grid point per axis (``N`` must be divisible by it).

    Returns
    -------
    Tensor, shape (B, n_t, N // stride, N // stride)
        float64, on the device of ``w0``.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2]:
        raise ValueError(f"w0 must have shape (B, N, N), got {tuple(w0.shape)}")
    n = w0.shape[-1]
    if n < 4 or n % 2:
        raise ValueError(f"grid size N must be even and >= 4, got {n}")
    nu = check_positive("viscosity", viscosity)
    check_positive("cfl", cfl)
    if dt is not None:
        check_positive("dt", dt)
    if int(stride) != stride or stride < 1 or n % stride:
        raise ValueError(f"stride must be a positive integer dividing N = {n}, got {stride!r}")
    stride = int(stride)
    time_list = _check_times(times)
    device = w0.device
    w0 = w0.to(torch.float64)
    if not bool(torch.isfinite(w0).all()):
        raise ValueError("w0 must be finite")
    b = w0.shape[0]
    f_hat = None
    if forcing is not None:
        if forcing.shape not in ((n, n), (b, n, n)):
            raise ValueError(
                f"forcing must have shape ({n}, {n}) or ({b}, {n}, {n}), got {tuple(forcing.shape)}"
            )
        f_hat = torch.fft.rfft2(forcing.to(device=device, dtype=torch.float64))
        if f_hat.ndim == 2:
            f_hat = f_hat.expand(b, -1, -1)

    sp = _Spectral(n, b, device)
    out = torch.empty((b, len(time_list), n // stride, n // stride), dtype=torch.float64, device=device)
    w_hat = torch.fft.rfft2(w0)
    run = _run_cn if scheme == "cn" else _run_etdrk4
    run(sp, w_hat, f_hat, nu, time_list, dt, cfl, out, stride)
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError(
            f"the {scheme} solution became non-finite (viscosity={viscosity}, dt={dt}, cfl={cfl}); "
            "use a smaller dt or cfl"
        )
    return out


def _record(out: Tensor, i: int, w_hat: Tensor, n: int, stride: int) -> None:
    out[:, i] = torch.fft.irfft2(w_hat, s=(n, n))[..., ::stride, ::stride]


def _run_cn(
    sp: _Spectral,
    w_hat: Tensor,
    f_hat: Tensor | None,
    nu: float,
    times: list[float],
    dt: float | None,
    cfl: float,
    out: Tensor,
    stride: int,
) -> None:
    """Crank–Nicolson (viscosity) + forward Euler (advection, forcing), fixed step; updates ``w_hat``."""
    dt_max = CN_DEFAULT_DT if dt is None else dt
    nl = torch.empty_like(w_hat)
    nl_r = torch.view_as_real(nl)
    w_r = torch.view_as_real(w_hat)
    cache: dict[float, tuple[Tensor, Tensor, Tensor | None]] = {}
    t = 0.0
    for i, target in enumerate(times):
        length = target - t
        if length > 0:
            steps = _steps_per_interval(length, dt_max)
            h = length / steps
            if h not in cache:
                half = 0.5 * nu * h * sp.k2
                denom = 1.0 + half
                # ŵ ← ((1 − νk²h/2) ŵ + h (f̂ − D N̂)) / (1 + νk²h/2), with the factors merged.
                forced = None if f_hat is None else torch.view_as_real(h * f_hat / denom).contiguous()
                cache[h] = (_pairs((1.0 - half) / denom), _pairs(-h * sp.mask / denom), forced)
            damp, gain, forced = cache[h]
            for _ in range(steps):
                sp.advection_hat(w_hat, out=nl)
                nl_r.mul_(gain)
                w_r.mul_(damp).add_(nl_r)
                if forced is not None:
                    w_r.add_(forced)
            t = target
        _record(out, i, w_hat, sp.n, stride)


def _run_etdrk4(
    sp: _Spectral,
    w_hat: Tensor,
    f_hat: Tensor | None,
    nu: float,
    times: list[float],
    dt: float | None,
    cfl: float,
    out: Tensor,
    stride: int,
) -> None:
    """ETDRK4 with a fixed step ``<= dt`` or a per-sample CFL step; updates ``w_hat``."""
    b, n = w_hat.shape[0], sp.n
    device = w_hat.device
    neg_l = nu * sp.k2
    neg_mask = _pairs(-sp.mask)
    f_r = None if f_hat is None else torch.view_as_real(f_hat)
    n0_r, na_r, nb_r, nc_r = (torch.view_as_real(torch.empty_like(w_hat)) for _ in range(4))
    a_hat, b_hat, c_hat = (torch.empty_like(w_hat) for _ in range(3))
    a_r, b_r, c_r = (torch.view_as_real(x) for x in (a_hat, b_hat, c_hat))
    w_r = torch.view_as_real(w_hat)
    tmp = torch.empty_like(w_r)

    def rhs(x_hat: Tensor, dest_r: Tensor, with_w: bool = False) -> None:
        # dest = f̂ − D·FFT(u·∇w)
        sp.advection_hat(x_hat, out=torch.view_as_complex(dest_r), with_w=with_w)
        if f_r is None:
            dest_r.mul_(neg_mask)
        else:
            torch.addcmul(f_r, neg_mask, dest_r, out=dest_r)

    def step(coef: tuple[Tensor, ...]) -> None:
        e, e2, q, b1, b2, b3 = coef
        torch.mul(e2, w_r, out=tmp)  # e^{Lh/2} ŵ, shared by stages a and b
        torch.addcmul(tmp, q, n0_r, out=a_r)
        rhs(a_hat, na_r)
        torch.addcmul(tmp, q, na_r, out=b_r)
        rhs(b_hat, nb_r)
        torch.mul(e2, a_r, out=c_r)
        c_r.addcmul_(q, nb_r, value=2.0).addcmul_(q, n0_r, value=-1.0)
        rhs(c_hat, nc_r)
        w_r.mul_(e).addcmul_(b1, n0_r).addcmul_(b3, nc_r)
        torch.add(na_r, nb_r, out=tmp)
        w_r.addcmul_(b2, tmp)

    if dt is not None:
        cache: dict[float, tuple[Tensor, ...]] = {}
        t = 0.0
        for i, target in enumerate(times):
            length = target - t
            if length > 0:
                steps = _steps_per_interval(length, dt)
                h = length / steps
                if h not in cache:
                    cache[h] = _etdrk4_coefficients(
                        neg_l, torch.tensor(h, dtype=torch.float64, device=device)
                    )
                for _ in range(steps):
                    rhs(w_hat, n0_r)
                    step(cache[h])
                t = target
            _record(out, i, w_hat, n, stride)
        return

    # Adaptive steps are rounded down to the ladder 2^(j/8), so a sample's coefficients are recomputed only
    # when its level changes (or for the one or two steps that land on an output time).
    coef = [torch.empty((b, n, n // 2 + 1, 2), dtype=torch.float64, device=device) for _ in range(6)]
    # max|w| costs a fifth inverse FFT; it is refreshed every step only while its bound is within a factor
    # 2 of binding, otherwise every _W_REFRESH steps (it changes on the turnover time, not the step).
    w_max = [0.0] * b
    since_w = _W_REFRESH
    keys: list[float | None] = [None] * b
    t = [0.0] * b
    speed_prev = [0.0] * b
    for i, target in enumerate(times):
        while True:
            remaining = [max(target - tb, 0.0) for tb in t]
            if max(remaining) <= 0:
                break
            near = any(
                wb / _TURNOVER_FRACTION > 0.5 * n * sb for wb, sb in zip(w_max, speed_prev, strict=True)
            )
            with_w = since_w >= _W_REFRESH or near
            rhs(w_hat, n0_r, with_w=with_w)
            speed_t, w_max_t = sp.rates(with_w)
            speed = speed_t.tolist()
            if with_w:
                w_max, since_w = w_max_t.tolist(), 0
            since_w += 1
            speed_prev = speed
            hs: list[float] = []
            new_keys: list[float | None] = []
            for rem, sb, wb in zip(remaining, speed, w_max, strict=True):
                rate = max(n * sb, wb / _TURNOVER_FRACTION)
                h_lad = _ladder_step(cfl / rate) if rate > 0 else math.inf
                if rem <= h_lad:
                    h, key = rem, None
                elif rem < 2 * h_lad:
                    h, key = 0.5 * rem, None  # no sliver step before the output time
                else:
                    h, key = h_lad, h_lad
                hs.append(h)
                new_keys.append(key)
            stale = [j for j in range(b) if new_keys[j] is None or new_keys[j] != keys[j]]
            if stale:
                h_new = torch.tensor([hs[j] for j in stale], dtype=torch.float64, device=device)
                rows = torch.tensor(stale, device=device)
                for c, c_new in zip(coef, _etdrk4_coefficients(neg_l, h_new), strict=True):
                    c[rows] = c_new
            keys = new_keys
            step(tuple(coef))
            t = [target if h == rem else tb + h for tb, h, rem in zip(t, hs, remaining, strict=True)]
        t = [target] * b
        _record(out, i, w_hat, n, stride)


def _ladder_step(h: float) -> float:
    """Largest ``2^(j/8) <= h`` (integer j)."""
    level = math.floor(8 * math.log2(h))
    return 2.0 ** (level / 8)


@PDES.register("navier_stokes")
class NavierStokes(PDEGenerator):
    """The FNO paper's 2-D Navier–Stokes data: vorticity trajectories from Gaussian random initial fields.

    Parameters
    ----------
    resolution : int
        Solver grid points per side N (even).
    stride : int
        Stored grid ``resolution // stride`` per side (every ``stride``-th point).
    viscosity : float
        ν > 0 (the paper: 1e−3, 1e−4, 1e−5).
    t_final : float
        Last stored time; a multiple of ``snapshot_interval``.
    snapshot_interval : float
        Stored times ``0, Δ, 2Δ, ..., t_final``.
    forcing : {"fno", "none"}
        ``"fno"``: ``f = 0.1 (sin 2π(x + y) + cos 2π(x + y))``; ``"none"``: unforced.
    alpha, tau : float
        Initial vorticity ~ N(0, σ²(−Δ + τ²)^−α), σ = τ^(α−1), periodic, zero mean (paper: 2.5, 7).
    scheme : {"etdrk4", "cn"}
        Time integrator, see :func:`solve_navier_stokes`.
    dt : float, optional
        Step size; ``None`` is the scheme's default (cn: 1e−4, etdrk4: CFL-adaptive).
    cfl : float
        CFL number of the adaptive etdrk4 step.
    """

    name: ClassVar[str] = "navier_stokes"

    def __init__(
        self,
        resolution: int = 256,
        stride: int = 4,
        viscosity: float = 1e-3,
        t_final: float = 50.0,
        snapshot_interval: float = 1.0,
        forcing: Forcing = "fno",
        alpha: float = 2.5,
        tau: float = 7.0,
        scheme: Scheme = "etdrk4",
        dt: float | None = None,
        cfl: float = DEFAULT_CFL,
    ) -> None:
        if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 4 or resolution % 2:
            raise ValueError(f"resolution must be an even integer >= 4, got {resolution!r}")
        if isinstance(stride, bool) or int(stride) != stride or stride < 1 or resolution % stride:
            raise ValueError(
                f"stride must be a positive integer dividing resolution={resolution}, got {stride!r}"
            )
        self.resolution, self.stride = int(resolution), int(stride)
        self.viscosity = check_positive("viscosity", viscosity)
        self.t_final = check_positive("t_final", t_final)
        self.snapshot_interval = check_positive("snapshot_interval", snapshot_interval)
        n_int = self.t_final / self.snapshot_interval
        if abs(n_int - round(n_int)) > 1e-9 * max(1.0, n_int):
            raise ValueError(
                f"t_final must be a multiple of snapshot_interval={snapshot_interval}, got {t_final!r}"
            )
        self.n_intervals = int(round(n_int))
        if forcing not in FORCINGS:
            raise ValueError(f"forcing must be one of {', '.join(FORCINGS)}, got {forcing!r}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        self.forcing: Forcing = forcing
        self.scheme: Scheme = scheme
        self.dt = None if dt is None else check_positive("dt", dt)
        self.cfl = check_positive("cfl", cfl)
        self.tau = check_positive("tau", tau)
        self.alpha = float(alpha)
        self.grf = GaussianRandomField(
            2,
            self.resolution,
            alpha=self.alpha,
            tau=self.tau,
            sigma=self.tau ** (self.alpha - 1.0),
            boundary="periodic",
            zero_mean=True,
        )

    # ------------------------------------------------------------------ description
    @property
    def size(self) -> int:
        """Stored grid points per side."""
        return self.resolution // self.stride

    def times(self) -> np.ndarray:
        """Stored times ``0, Δ, ..., t_final``, shape (n_t,)."""
        return np.arange(self.n_intervals + 1) * self.snapshot_interval

    def params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stride": self.stride,
            "viscosity": self.viscosity,
            "t_final": self.t_final,
            "snapshot_interval": self.snapshot_interval,
            "forcing": self.forcing,
            "alpha": self.alpha,
            "tau": self.tau,
        }

    def solver_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "method": "pseudo-spectral, rfft2, 2/3-rule dealiasing of the advective term",
            "scheme": self.scheme,
            "grid": self.resolution,
        }
        if self.scheme == "cn":
            info["dt"] = CN_DEFAULT_DT if self.dt is None else self.dt
        else:
            info["dt"] = self.dt if self.dt is not None else "adaptive"
            info["cfl"] = self.cfl
        return info

    def coords(self) -> dict[str, np.ndarray]:
        x = np.arange(self.size) / self.size
        return {"t": self.times(), "x": x, "y": x.copy()}

    def fields(self) -> dict[str, FieldSpec]:
        return {"w": FieldSpec(("t", "x", "y"), (self.n_intervals + 1, self.size, self.size))}

    def forcing_field(self, device: str | torch.device = "cpu") -> Tensor | None:
        """The forcing on the solver grid, shape (resolution, resolution), or ``None`` when unforced."""
        if self.forcing == "none":
            return None
        return fno_forcing(self.resolution, device=device)

    def static_fields(self) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        f = self.forcing_field()
        full = np.zeros((self.resolution,) * 2) if f is None else f.numpy()
        return {"f": (("x", "y"), full[:: self.stride, :: self.stride].copy())}

    # ------------------------------------------------------------------ solving
    def solve_batch(self, seeds: Sequence[int], device: str | torch.device = "cpu") -> dict[str, Tensor]:
        w0 = self.grf.sample(list(seeds), device=device)
        w = solve_navier_stokes(
            w0,
            self.viscosity,
            self.times(),
            forcing=self.forcing_field(device),
            scheme=self.scheme,
            dt=self.dt,
            cfl=self.cfl,
            stride=self.stride,
        )
        return {"w": w}


# ---------------------------------------------------------------------------------------------- grid residual
def vorticity_derivatives(w: Tensor) -> dict[str, Tensor]:
    """Spectral derivatives and velocity of vorticity fields on the periodic unit square.

    Parameters
    ----------
    w : Tensor, shape (..., N, N)
        Vorticity, axis −2 is x and axis −1 is y.

    Returns
    -------
    dict of str to Tensor, each shape (..., N, N)
        ``w_x``, ``w_y``, ``lap`` (Δw), and the velocity ``u = ψ_y``, ``v = −ψ_x`` with −Δψ = w (mean
        of ψ zero); all linear in ``w``.
    """
    n = w.shape[-1]
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=w.device)
    kx = (2j * math.pi) * k[:, None].to(torch.complex128)
    ky = (2j * math.pi) * torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=w.device)[None, :]
    if n % 2 == 0:
        # The Nyquist mode's derivative is not real-representable; drop it (a real-valued convention).
        kx = kx.clone()
        kx[n // 2] = 0
        ky = ky.clone()
        ky[..., -1] = 0
    kr = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=w.device)
    k2_full = (4 * math.pi**2) * (k[:, None] ** 2 + kr[None, :] ** 2)
    w_hat = torch.fft.rfft2(w.to(torch.float64))
    inv = torch.where(k2_full > 0, 1.0 / torch.where(k2_full > 0, k2_full, 1.0), 0.0)
    psi_hat = w_hat * inv
    shape = (n, n)
    out = {
        "w_x": torch.fft.irfft2(kx * w_hat, s=shape),
        "w_y": torch.fft.irfft2(ky * w_hat, s=shape),
        "lap": torch.fft.irfft2(-k2_full * w_hat, s=shape),
        "u": torch.fft.irfft2(ky * psi_hat, s=shape),
        "v": torch.fft.irfft2(-kx * psi_hat, s=shape),
    }
    return {key: val.to(w.dtype) for key, val in out.items()}


def vorticity_pointwise_residual(
    w_t: Tensor,
    u: Tensor,
    v: Tensor,
    w_x: Tensor,
    w_y: Tensor,
    lap_w: Tensor,
    viscosity: float,
    forcing: float | Tensor = 0.0,
) -> Tensor:
    """``w_t + u w_x + v w_y − νΔw − f`` at points (physics-informed models).

    Parameters
    ----------
    w_t, w_x, w_y, lap_w : Tensor, shape (N,)
        Derivatives of the vorticity.
    u, v : Tensor, shape (N,)
        Velocity ``(ψ_y, −ψ_x)``.
    viscosity : float
        ν.
    forcing : float or Tensor of shape (N,)
        ``f``.

    Returns
    -------
    Tensor, shape (N,)
    """
    return w_t + u * w_x + v * w_y - viscosity * lap_w - forcing
