"""Viscous Burgers' equation on the periodic unit interval: batched pseudo-spectral solver and data generator.

The equation, in conservative form on ``[0, 1)`` with periodic boundary conditions,

    u_t + (u²/2)_x = ν u_xx,

is discretised by a Fourier pseudo-spectral method on ``n`` equispaced points: the quadratic flux is
computed on the grid and dealiased by Orszag's 2/3 rule, the viscous term is diagonal in Fourier space.
Two time integrators are available:

* ``"etdrk4"`` (default): exponential time differencing RK4 (Cox & Matthews 2002, coefficients by
  Kassam & Trefethen 2005), which treats ``ν u_xx`` exactly, so the step is limited only by the
  advection CFL condition, not by the stiff diffusion of the highest modes;
* ``"rk4"``: classical explicit RK4, whose step must also satisfy the diffusion limit
  ``h ≲ 2.78 / (ν k_max²)`` (see :func:`stable_time_step`); it is the plain baseline.

This is the data set of the Fourier Neural Operator paper (Li et al., ICLR 2021): ν = 0.1, ``u0 ~
N(0, 625(−Δ + 25I)^−2)``, 8192 points, map ``u(·, 0) ↦ u(·, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import torch

from neurop.pdes.base import PDES, FieldSpec, PDEGenerator, check_positive
from neurop.pdes.grf import GaussianRandomField
from neurop.pdes.spectral import (
    ETDRK4Coefficients,
    dealias_mask,
    etdrk4_coefficients,
    etdrk4_step,
    wavenumbers,
)

__all__ = ["RK4_SAFETY", "Burgers", "SCHEMES", "cole_hopf_solution", "solve_burgers", "stable_time_step"]

Scheme = Literal["etdrk4", "rk4"]
SCHEMES: tuple[str, ...] = ("etdrk4", "rk4")

# Fraction of the largest linearly stable RK4 step that is used: on the negative real axis RK4 is stable
# for z >= -2.785, and 0.998 of that (z = -2.78, |R| = 0.992) leaves a margin for the nonlinear terms.
RK4_SAFETY = 0.998
# Linearly stable for any viscosity (see stable_time_step). Measured at ν = 0.1 against cfl = 0.25: relative
# L2 error at T = 1 of 6e-15 (8192 points) and 5e-9 (1024 points, worst of 200 samples); cfl = 4 gives 6e-14
# and 1.3e-7, and blows up on 16-point grids.
DEFAULT_CFL = 1.0


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _check_times(times: Sequence[float] | torch.Tensor | np.ndarray) -> list[float]:
    values = [float(t) for t in torch.as_tensor(times, dtype=torch.float64).reshape(-1).tolist()]
    if not values:
        raise ValueError("times must contain at least one time, got an empty sequence")
    if not all(math.isfinite(t) and t >= 0 for t in values):
        raise ValueError(f"times must be finite and >= 0, got {values!r}")
    if any(b < a for a, b in pairwise(values)):
        raise ValueError(f"times must be non-decreasing, got {values!r}")
    return values


def stable_time_step(
    u_max: torch.Tensor,
    n: int,
    viscosity: float,
    scheme: Scheme = "etdrk4",
    cfl: float = DEFAULT_CFL,
) -> torch.Tensor:
    """Largest step each sample may take (before landing exactly on the requested times).

    ``etdrk4``: the advection CFL bound ``h ≤ cfl · dx / max|u|`` only; diffusion is integrated exactly.
    For pure advection of the dealiased modes ETDRK4 reduces to RK4 and is linearly stable up to
    ``cfl = 2√2 · 3 / (2π) ≈ 1.35``; viscosity only enlarges its stability region.

    ``rk4``: additionally the linear stability limit of explicit RK4 for the kept modes, i.e. the
    largest ``h`` with ``|R(h λ_k)| ≤ 1`` for all ``λ_k = −ν k² − i k max|u|`` (``R`` the RK4 stability
    polynomial, found by bisection), times ``RK4_SAFETY``. Without advection this is the diffusion
    limit ``h = 2.78 / (ν k_max²)``; with strong advection on coarse grids it is smaller, because the
    stability region is narrow near its tip on the real axis.

    Parameters
    ----------
    u_max : Tensor, shape (B,)
        ``max_x |u|`` of each sample.
    n : int
        Grid points on [0, 1).
    viscosity : float
    scheme : {"etdrk4", "rk4"}
    cfl : float
        Courant number ``h max|u| / dx``, > 0.

    Returns
    -------
    Tensor, shape (B,), float64, on the CPU
        ``inf`` where ``u_max = 0`` and the scheme has no other limit.
    """
    _check_scheme(scheme)
    check_positive("cfl", cfl)
    dx = 1.0 / n
    u_max = u_max.detach().to("cpu", torch.float64).reshape(-1)
    h = torch.where(u_max > 0, cfl * dx / u_max.clamp_min(1e-300), torch.full_like(u_max, math.inf))
    if scheme == "rk4":
        h = torch.minimum(h, RK4_SAFETY * _rk4_linear_limit(u_max, n, viscosity))
    return h


def _rk4_linear_limit(u_max: torch.Tensor, n: int, viscosity: float) -> torch.Tensor:
    """Largest ``h`` with ``max_k |R(h λ_k)| ≤ 1`` per sample (bisection), shape (B,)."""
    n_keep = int(dealias_mask(n).sum())
    k = wavenumbers(n, real=True)[1:n_keep]
    lam = -viscosity * k**2 - 1j * k * u_max[:, None]  # (B, K)
    # The RK4 region lies inside |z| < 3, so 3 / max|λ| is an upper bound.
    lo = torch.zeros_like(u_max)
    hi = 3.0 / lam.abs().amax(dim=-1)
    for _ in range(60):
        mid = (lo + hi) / 2
        z = mid[:, None] * lam
        amp = (1 + z * (1 + z / 2 * (1 + z / 3 * (1 + z / 4)))).abs().amax(dim=-1)
        ok = amp <= 1 + 1e-12
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    return lo


class _Stepper:
    """Spectral right-hand side and cached step coefficients for one grid, viscosity and scheme.

    The state holds only the modes kept by the 2/3 rule (``m = 0, …, n_keep − 1``). The discarded
    modes of the initial data never enter the (dealiased) flux, so they obey the heat equation and are
    added back exactly, ``exp(−ν k² t) û₀``, when a snapshot is formed. Working on the kept modes
    alone makes every elementwise operation a third cheaper than masking the full half spectrum.
    """

    def __init__(self, n: int, viscosity: float, scheme: Scheme, device: torch.device) -> None:
        self.n, self.scheme = n, scheme
        self.n_keep = int(dealias_mask(n, real=True).sum())
        k = wavenumbers(n, real=True, device=device)
        self.lin_all = -viscosity * k**2
        self.lin = self.lin_all[: self.n_keep]
        # Conservative flux: N(û) = −i k/2 · F[u²]; u has only kept modes and the product is truncated
        # again, so the kept modes are free of aliasing.
        self.nl_factor = -0.5j * k[: self.n_keep]
        self._etd: dict[float, ETDRK4Coefficients] = {}

    def nonlinear(self, u_hat: torch.Tensor) -> torch.Tensor:
        u = torch.fft.irfft(u_hat, n=self.n)  # zero-pads the discarded modes
        return self.nl_factor * torch.fft.rfft(u * u)[..., : self.n_keep]

    def to_grid(self, kept: torch.Tensor, high0: torch.Tensor, t: float) -> torch.Tensor:
        """Physical values from the kept modes and the exactly decayed discarded modes at time ``t``."""
        high = high0 * torch.exp(t * self.lin_all[self.n_keep :])
        return torch.fft.irfft(torch.cat([kept, high], dim=-1), n=self.n)

    def etd(self, h: float) -> ETDRK4Coefficients:
        if h not in self._etd:
            self._etd[h] = etdrk4_coefficients(self.lin, h)
        return self._etd[h]

    def etd_batch(self, hs: list[float]) -> ETDRK4Coefficients:
        """Coefficients for one step size per sample, shape (B, n_keep)."""
        parts = [self.etd(h) for h in hs]
        stack = {f: torch.stack([getattr(c, f) for c in parts]) for f in ("E", "E2", "Q", "f1", "f2", "f3")}
        return ETDRK4Coefficients(**stack, h=float("nan"))

    def rk4_step(self, u_hat: torch.Tensor, h: torch.Tensor | float) -> torch.Tensor:
        def f(v: torch.Tensor) -> torch.Tensor:
            return self.lin * v + self.nonlinear(v)

        k1 = f(u_hat)
        k2 = f(u_hat + (h / 2) * k1)
        k3 = f(u_hat + (h / 2) * k2)
        k4 = f(u_hat + h * k3)
        return u_hat + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def solve_burgers(
    u0: torch.Tensor,
    viscosity: float,
    times: Sequence[float] | torch.Tensor | np.ndarray,
    dt: float | None = None,
    scheme: Scheme = "etdrk4",
    cfl: float = DEFAULT_CFL,
) -> torch.Tensor:
    """Solve ``u_t + (u²/2)_x = ν u_xx`` on the periodic interval [0, 1) for a batch of initial data.

    Time stepping: each interval between consecutive requested times is split into equal steps, so the
    solution lands exactly on every requested time. With ``dt=None`` each sample takes its own step
    ``h ≤`` :func:`stable_time_step` evaluated with its ``max|u|`` at the start of the interval: the
    CFL bound is recomputed at every requested time, and within an interval it holds because viscous
    Burgers obeys the maximum principle (``max|u(t)|`` never increases). Steps are chosen per sample,
    so a sample's result does not depend on the other samples of its batch. With a fixed ``dt`` every
    sample takes steps of at most ``dt`` (no CFL or stability check: use it for convergence studies).

    Parameters
    ----------
    u0 : Tensor, shape (B, n) or (n,)
        Initial values on ``x_j = j / n``; any device, computed in float64.
    viscosity : float
        ν > 0.
    times : sequence of float
        Non-decreasing output times >= 0 (``0`` returns ``u0``).
    dt : float, optional
        Maximum step; ``None`` chooses it from the CFL condition (and, for ``rk4``, the diffusion limit).
    scheme : {"etdrk4", "rk4"}
    cfl : float
        Courant number for the automatic step, > 0 (see :func:`stable_time_step`).

    Returns
    -------
    Tensor, shape (B, len(times), n) (or (len(times), n) for 1-D ``u0``), float64

    Raises
    ------
    FloatingPointError
        If the solution blows up (a step beyond the scheme's stability limit).
    """
    _check_scheme(scheme)
    check_positive("viscosity", viscosity)
    check_positive("cfl", cfl)
    if dt is not None:
        check_positive("dt", dt)
    t_out = _check_times(times)
    squeeze = u0.dim() == 1
    u0 = u0[None] if squeeze else u0
    if u0.dim() != 2 or u0.shape[-1] < 8:
        raise ValueError(f"u0 must have shape (B, n) or (n,) with n >= 8, got {tuple(u0.shape)}")
    if not torch.is_floating_point(u0) or not bool(torch.isfinite(u0).all()):
        raise ValueError("u0 must be a finite floating-point tensor")
    u0 = u0.to(torch.float64)
    batch, n = u0.shape
    stepper = _Stepper(n, float(viscosity), scheme, u0.device)

    out = torch.empty(batch, len(t_out), n, dtype=torch.float64, device=u0.device)
    spec0 = torch.fft.rfft(u0)
    u_hat, high0 = spec0[:, : stepper.n_keep], spec0[:, stepper.n_keep :]
    u_now = u0
    t_prev = 0.0
    for i, t in enumerate(t_out):
        delta = t - t_prev
        if delta > 0:
            if dt is None:
                h_max = stable_time_step(u_now.abs().amax(dim=-1), n, viscosity, scheme, cfl)
            else:
                h_max = torch.full((batch,), float(dt), dtype=torch.float64)
            # The tiny relative slack keeps Δ/h = 10.000000001 from costing an extra step.
            n_steps = [max(1, math.ceil(delta / float(hm) * (1 - 1e-12))) for hm in h_max.tolist()]
            u_hat = _advance(stepper, u_hat, delta, n_steps)
            u_now = stepper.to_grid(u_hat, high0, t)
            if not bool(torch.isfinite(u_now).all()):
                step = f"dt={dt}" if dt is not None else f"cfl={cfl}"
                raise FloatingPointError(
                    f"Burgers {scheme} solution became non-finite by t={t} with {step} "
                    f"(n={n}, viscosity={viscosity}); use a smaller {step.split('=')[0]} "
                    "(cfl <= 1.35 is linearly stable for any viscosity)"
                )
            t_prev = t
        out[:, i] = u_now
    return out[0] if squeeze else out


def _advance(stepper: _Stepper, u_hat: torch.Tensor, delta: float, n_steps: list[int]) -> torch.Tensor:
    """Advance sample ``b`` by ``delta`` in ``n_steps[b]`` equal steps.

    Samples are sorted by their step count so that those still stepping form a leading slice: once a
    sample has taken its steps it costs nothing more, and a batch costs the sum of its samples' steps
    rather than its largest count times the batch size.
    """
    batch = u_hat.shape[0]
    order = sorted(range(batch), key=lambda b: -n_steps[b])
    counts = [n_steps[b] for b in order]
    hs = [delta / m for m in counts]
    uniform = counts[0] == counts[-1]
    perm = torch.tensor(order, device=u_hat.device)
    state = u_hat if uniform else u_hat[perm]
    if stepper.scheme == "etdrk4":
        coeffs = stepper.etd(hs[0]) if uniform else stepper.etd_batch(hs)
    else:
        h_all = torch.tensor(hs, dtype=torch.float64, device=u_hat.device)[:, None]

    def step(v: torch.Tensor, active: int) -> torch.Tensor:
        if stepper.scheme == "etdrk4":
            c = coeffs if uniform else _leading_rows(coeffs, active)
            return etdrk4_step(v, stepper.nonlinear, c)
        return stepper.rk4_step(v, hs[0] if uniform else h_all[:active])

    done = 0
    for phase_end in sorted(set(counts)):
        active = sum(c >= phase_end for c in counts)
        v = state[:active]
        for _ in range(phase_end - done):
            v = step(v, active)
        state = v if active == batch else torch.cat([v, state[active:]])
        done = phase_end
    if uniform:
        return state
    out = torch.empty_like(state)
    out[perm] = state
    return out


def _leading_rows(coeffs: ETDRK4Coefficients, rows: int) -> ETDRK4Coefficients:
    return ETDRK4Coefficients(
        E=coeffs.E[:rows],
        E2=coeffs.E2[:rows],
        Q=coeffs.Q[:rows],
        f1=coeffs.f1[:rows],
        f2=coeffs.f2[:rows],
        f3=coeffs.f3[:rows],
        h=coeffs.h,
    )


def cole_hopf_solution(
    x: Sequence[float] | np.ndarray | torch.Tensor,
    t: float | Sequence[float] | np.ndarray | torch.Tensor,
    viscosity: float,
    amplitudes: Sequence[float] = (0.6, 0.3),
    phases: Sequence[float] = (0.0, 1.0),
    offset: float = 1.0,
) -> torch.Tensor:
    """An exact periodic solution of ``u_t + u u_x = ν u_xx`` from the Cole–Hopf transform.

    ``u = −2ν φ_x / φ`` with the heat-equation solution
    ``φ(x, t) = a₀ + Σ_k a_k exp(−ν (2πk)² t) cos(2πk x + c_k)``, ``k = 1, …, K``; ``a₀ > Σ|a_k|``
    keeps ``φ > 0``, so ``u`` is smooth (analytic) and 1-periodic with zero mean. The closer ``Σ|a_k|``
    is to ``a₀``, the steeper the fronts and the slower the Fourier coefficients decay.

    Parameters
    ----------
    x : array-like, shape (n,)
        Points (any real values; the solution is 1-periodic).
    t : float or array-like, shape (T,)
        Times >= 0.
    viscosity : float
        ν > 0.
    amplitudes, phases : sequence of float, length K
        ``a_k`` and ``c_k`` for ``k = 1, …, K``.
    offset : float
        ``a₀ > Σ|a_k|``.

    Returns
    -------
    Tensor, shape (T, n) (or (n,) for scalar ``t``), float64, on ``x``'s device
    """
    check_positive("viscosity", viscosity)
    if len(amplitudes) != len(phases) or not amplitudes:
        raise ValueError(
            f"amplitudes and phases must be non-empty and of equal length, got {len(amplitudes)} "
            f"and {len(phases)}"
        )
    total = sum(abs(float(a)) for a in amplitudes)
    if not offset > total:
        raise ValueError(f"offset must be > sum(|amplitudes|) = {total} so that φ > 0, got {offset!r}")
    device = x.device if isinstance(x, torch.Tensor) else None
    xs = torch.as_tensor(x, dtype=torch.float64, device=device).reshape(-1)
    scalar_t = not isinstance(t, (Sequence, np.ndarray, torch.Tensor)) or (
        isinstance(t, (np.ndarray, torch.Tensor)) and t.ndim == 0
    )
    ts = torch.as_tensor(t, dtype=torch.float64, device=xs.device).reshape(-1, 1)
    if bool((ts < 0).any()):
        raise ValueError(f"t must be >= 0, got {t!r}")
    phi = torch.full((ts.shape[0], xs.shape[0]), float(offset), dtype=torch.float64, device=xs.device)
    phi_x = torch.zeros_like(phi)
    for k, (a, c) in enumerate(zip(amplitudes, phases, strict=True), start=1):
        w = 2 * math.pi * k
        decay = float(a) * torch.exp(-viscosity * w**2 * ts)
        arg = w * xs + float(c)
        phi = phi + decay * torch.cos(arg)
        phi_x = phi_x - decay * w * torch.sin(arg)
    u = -2 * viscosity * phi_x / phi
    return u[0] if scalar_t else u


@PDES.register("burgers")
class Burgers(PDEGenerator):
    """Viscous Burgers trajectories from Gaussian random initial data (the FNO paper's data set).

    Keyword arguments are those of the ``generator:`` section of ``configs/pde/burgers.yaml``.

    Parameters
    ----------
    resolution : int
        Solver grid points on [0, 1), >= 8.
    stride : int
        Stored grid is every ``stride``-th solver point (``resolution // stride`` points); must divide
        ``resolution``.
    viscosity : float
        ν > 0.
    t_final : float
        Final time T > 0.
    n_snapshots : int
        Stored times are ``T · [0, 1/n, …, 1]`` (``n + 1`` snapshots, the initial condition included).
    alpha, tau, sigma : float
        Initial condition ``u0 ~ N(0, σ²(−Δ + τ²I)^−α)`` on the periodic interval (α > 1/2).
    scheme : {"etdrk4", "rk4"}
        Time integrator, see :func:`solve_burgers`.
    dt : float or None
        Maximum time step; ``None`` uses the CFL-limited step of each sample.
    cfl : float
        Courant number of the automatic step (ignored when ``dt`` is given).
    """

    name = "burgers"

    def __init__(
        self,
        resolution: int = 8192,
        stride: int = 8,
        viscosity: float = 0.1,
        t_final: float = 1.0,
        n_snapshots: int = 1,
        alpha: float = 2.0,
        tau: float = 5.0,
        sigma: float = 25.0,
        scheme: Scheme = "etdrk4",
        dt: float | None = None,
        cfl: float = DEFAULT_CFL,
    ) -> None:
        self.resolution = _check_int("resolution", resolution, 8)
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        if self.resolution % stride or self.resolution // stride < 2:
            raise ValueError(
                f"stride must divide resolution = {self.resolution} and leave >= 2 points, got {stride!r}"
            )
        self.stride = int(stride)
        self.viscosity = check_positive("viscosity", viscosity)
        self.t_final = check_positive("t_final", t_final)
        self.n_snapshots = _check_int("n_snapshots", n_snapshots, 1)
        _check_scheme(scheme)
        self.scheme: Scheme = scheme
        self.dt = None if dt is None else check_positive("dt", dt)
        self.cfl = check_positive("cfl", cfl)
        self.grf = GaussianRandomField(1, self.resolution, alpha, tau, sigma, boundary="periodic")

    def times(self) -> list[float]:
        """Stored times ``T · i / n_snapshots``, ``i = 0, …, n_snapshots`` (the last is exactly T)."""
        n = self.n_snapshots
        return [self.t_final * i / n for i in range(n)] + [self.t_final]

    def params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "stride": self.stride,
            "viscosity": self.viscosity,
            "t_final": self.t_final,
            "n_snapshots": self.n_snapshots,
            "alpha": self.grf.alpha,
            "tau": self.grf.tau,
            "sigma": self.grf.sigma,
        }

    def solver_info(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "dt": self.dt,
            "cfl": self.cfl,
            "method": "Fourier pseudo-spectral, conservative flux (u^2/2)_x, 2/3-rule dealiasing",
            "time_step": (
                "fixed maximum step dt"
                if self.dt is not None
                else "per sample: cfl*dx/max|u| at each stored time"
                + (
                    f", capped by {RK4_SAFETY} x the linear RK4 stability limit of the kept modes"
                    if self.scheme == "rk4"
                    else ""
                )
            ),
            "precision": "float64",
        }

    def coords(self) -> dict[str, np.ndarray]:
        m = self.resolution // self.stride
        return {"t": np.asarray(self.times(), dtype=np.float64), "x": np.arange(m, dtype=np.float64) / m}

    def fields(self) -> dict[str, FieldSpec]:
        return {"u": FieldSpec(("t", "x"), (self.n_snapshots + 1, self.resolution // self.stride))}

    def solve_batch(
        self, seeds: Sequence[int], device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        u0 = self.grf.sample(seeds, device)
        u = solve_burgers(u0, self.viscosity, self.times(), dt=self.dt, scheme=self.scheme, cfl=self.cfl)
        return {"u": u[..., :: self.stride]}


# ---------------------------------------------------------------------------------------------------------
# Pointwise residual and the Dirichlet shock problem of physics-informed networks (Raissi et al., 2019)


def burgers_pointwise_residual(
    u: torch.Tensor, u_t: torch.Tensor, u_x: torch.Tensor, u_xx: torch.Tensor, viscosity: float
) -> torch.Tensor:
    """``u_t + u u_x − ν u_xx`` at points (the residual of physics-informed models).

    Parameters
    ----------
    u, u_t, u_x, u_xx : Tensor, shape (N,)
        The field and its derivatives at N points.
    viscosity : float
        ν.

    Returns
    -------
    Tensor, shape (N,)
    """
    return u_t + u * u_x - viscosity * u_xx


def burgers_shock_solution(
    x: Sequence[float] | np.ndarray | torch.Tensor,
    t: Sequence[float] | np.ndarray | torch.Tensor,
    viscosity: float,
    n_quad: int = 2001,
    width: float = 12.0,
) -> torch.Tensor:
    """Exact solution of ``u_t + u u_x = ν u_xx`` with ``u(x, 0) = −sin πx``, ``u(±1, t) = 0``.

    The Cole–Hopf transform of the odd 2-periodic extension gives (Basdevant et al., 1986)

        u(x, t) = −∫ sin π(x−η) F(x−η) G(η) dη / ∫ F(x−η) G(η) dη,
        F(y) = exp(−cos(πy) / (2πν)),  G(η) = exp(−η²/(4νt)).

    Both integrals are evaluated with ``η = √(4νt)·z`` by the trapezoidal rule on ``z ∈ [−width, width]``
    in the log domain: for ν = 0.01/π the factor F spans e^±50, so the mass of the integrand sits away
    from the Gaussian's centre and Gauss–Hermite nodes would miss it, while the trapezoidal rule is
    spectrally accurate for this analytic, rapidly decaying integrand (the cut-off costs ``e^−(width²−
    1/(πν))`` relative).

    Parameters
    ----------
    x : array-like, shape (n_x,)
        Points in [−1, 1].
    t : array-like, shape (n_t,)
        Times >= 0 (``t = 0`` returns the initial condition).
    viscosity : float
        ν > 0 (the classic problem uses 0.01/π).
    n_quad : int
        Quadrature nodes, >= 101.
    width : float
        Half-width of the z interval, > 0.

    Returns
    -------
    Tensor, shape (n_x, n_t), float64
    """
    check_positive("viscosity", viscosity)
    check_positive("width", width)
    n_quad = _check_int("n_quad", n_quad, 101)
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1)
    ts = torch.as_tensor(np.asarray(t, dtype=np.float64)).reshape(-1)
    if bool((ts < 0).any()):
        raise ValueError(f"t must be >= 0, got min(t) = {float(ts.min())}")
    z = torch.linspace(-width, width, n_quad, dtype=torch.float64)
    out = torch.empty(xs.shape[0], ts.shape[0], dtype=torch.float64)
    for j, tj in enumerate(ts.tolist()):
        if tj == 0.0:
            out[:, j] = -torch.sin(math.pi * xs)
            continue
        eta = math.sqrt(4 * viscosity * tj) * z
        y = xs[:, None] - eta[None, :]
        log_w = -torch.cos(math.pi * y) / (2 * math.pi * viscosity) - z[None, :] ** 2
        w = torch.exp(log_w - log_w.amax(dim=1, keepdim=True))
        out[:, j] = -(torch.sin(math.pi * y) * w).sum(dim=1) / w.sum(dim=1)
    return out
