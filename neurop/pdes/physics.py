"""Pointwise PDE problems for physics-informed solvers: domain, residual, initial/boundary data, reference.

A :class:`PhysicsProblem` is one PDE instance on a box ``Π_j [lo_j, hi_j]`` of input coordinates (space,
then time where there is one). Its :meth:`~PhysicsProblem.residual` takes the points and a
:class:`~neurop.layers.jet.Jet` (the network's values and derivatives there) and returns the pointwise
residuals; :meth:`~PhysicsProblem.conditions` samples the initial/boundary/periodicity conditions; and
:meth:`~PhysicsProblem.reference` is the solution on an evaluation grid, exact or from this package's
numerical solvers, against which ``val/rel_l2`` is measured.

Problems are registered in :data:`PROBLEMS` and built from primitives (``build_problem("helmholtz", a1=1,
a2=4)``). The residual formulas themselves live in the PDE modules (``burgers_pointwise_residual`` in
:mod:`neurop.pdes.burgers`, and so on), so an operator's physics loss can reuse them.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from neurop.layers.jet import Jet
from neurop.pdes.base import check_positive
from neurop.registry import Registry

Sampler = Literal["uniform", "lhs"]
SAMPLERS: tuple[str, ...] = ("uniform", "lhs")

PROBLEMS: Registry[type[PhysicsProblem]] = Registry("physics problem")


def check_sampler(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`SAMPLERS`."""
    if method not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {method!r}")


def sample_box(
    bounds: Sequence[tuple[float, float]],
    n: int,
    method: Sampler = "uniform",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` points in the box ``Π_j [lo_j, hi_j]``.

    Parameters
    ----------
    bounds : sequence of (lo, hi)
        One pair per coordinate.
    n : int
        Number of points, >= 0.
    method : {"uniform", "lhs"}
        Independent uniform draws, or a Latin hypercube (each coordinate's ``n`` strata hit once).
    generator : torch.Generator, optional
        CPU generator for reproducible draws.
    dtype : torch.dtype

    Returns
    -------
    Tensor, shape (n, len(bounds)), on CPU
    """
    check_sampler(method)
    if n < 0:
        raise ValueError(f"number of points must be >= 0, got {n}")
    d = len(bounds)
    u = torch.rand(n, d, generator=generator, dtype=torch.float64)
    if method == "lhs" and n > 0:
        strata = torch.stack([torch.randperm(n, generator=generator) for _ in range(d)], dim=1)
        u = (strata.to(torch.float64) + u) / n
    lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype)


def sample_face(
    bounds: Sequence[tuple[float, float]],
    axis: int,
    value: float,
    n: int,
    method: Sampler = "uniform",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``n`` points on the face ``x_axis = value`` of the box (other coordinates sampled as in the box)."""
    pts = sample_box(bounds, n, method, generator, dtype)
    pts[:, axis] = value
    return pts


@dataclass
class Condition:
    """One sampled constraint besides the residual.

    ``kind="value"``: ``u[:, channels](points) = target``. ``kind="periodic"``: the field and its first
    derivative along ``axis`` agree at ``points`` and ``partner`` (the opposite face).

    Attributes
    ----------
    kind : {"value", "periodic"}
    points : Tensor, shape (M, d)
    target : Tensor, shape (M, len(channels)), or None for periodic conditions
    partner : Tensor, shape (M, d), or None for value conditions
    axis : int
        Periodic axis (unused for value conditions).
    channels : list of int
        Output channels constrained.
    """

    kind: Literal["value", "periodic"]
    points: Tensor
    target: Tensor | None = None
    partner: Tensor | None = None
    axis: int = 0
    channels: list[int] = field(default_factory=lambda: [0])


@dataclass
class Reference:
    """A solution on a tensor-product evaluation grid.

    Attributes
    ----------
    axes : tuple of ndarray
        1-D coordinates per input axis, in the problem's coordinate order.
    values : ndarray, shape (len(axes[0]), len(axes[1]), ...)
        The evaluated channel of the solution, float64.
    """

    axes: tuple[np.ndarray, ...]
    values: np.ndarray

    def points(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The grid points, shape (prod(values.shape), d), in C order of ``values``."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return torch.from_numpy(np.stack([m.reshape(-1) for m in mesh], axis=1)).to(dtype)


class PhysicsProblem(abc.ABC):
    """One PDE instance for a physics-informed solver (see the module docstring).

    Subclasses set the class attributes, take primitives in ``__init__`` (validated, errors naming the
    key and value) and are registered with ``@PROBLEMS.register(name)``.

    Attributes
    ----------
    coord_names : tuple of str
        Input coordinate names, e.g. ``("x", "t")``.
    bounds : tuple of (lo, hi)
        The box, one pair per coordinate.
    time_axis : int or None
        Index of the time coordinate (used by causal weighting); None for steady problems.
    out_channels : int
        Network outputs (e.g. 2 for stream function and vorticity).
    eval_channel : int
        Output channel compared with the reference.
    second_axes : tuple of int
        Axes whose second derivatives the residual needs.
    zero_dirichlet_axes : tuple of int
        Axes with ``u = 0`` (every channel) on both faces: a hard boundary condition can impose them exactly.
    """

    name: ClassVar[str]
    coord_names: ClassVar[tuple[str, ...]]
    bounds: tuple[tuple[float, float], ...]
    time_axis: ClassVar[int | None] = None
    out_channels: ClassVar[int] = 1
    eval_channel: ClassVar[int] = 0
    second_axes: ClassVar[tuple[int, ...]] = ()
    zero_dirichlet_axes: ClassVar[tuple[int, ...]] = ()

    @property
    def dim(self) -> int:
        """Number of input coordinates."""
        return len(self.bounds)

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters."""

    @abc.abstractmethod
    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        """Pointwise residuals.

        Parameters
        ----------
        x : Tensor, shape (N, d)
        jet : Jet
            Network values and derivatives at ``x`` (``second_axes`` included).

        Returns
        -------
        Tensor, shape (N, n_equations)
        """

    @abc.abstractmethod
    def conditions(
        self,
        n_initial: int,
        n_boundary: int,
        method: Sampler = "uniform",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> dict[str, Condition]:
        """Sampled initial (``"ic"``), boundary (``"bc"``) and periodicity (``"periodic"``) conditions."""

    @abc.abstractmethod
    def compute_reference(self) -> Reference:
        """The reference solution (computed once; use :attr:`reference`)."""

    @cached_property
    def reference(self) -> Reference:
        """The reference solution on the evaluation grid (cached)."""
        return self.compute_reference()

    def exact(self, x: Tensor) -> Tensor | None:
        """The exact solution at points, shape (N, out_channels), or None when only a numerical one exists."""
        return None

    def initial_value(self, x: Tensor) -> Tensor | None:
        """``u`` at the initial time, at points ``x`` (N, d), of which only the spatial coordinates are read.

        Returns a Tensor of shape (N, out_channels) in ``x``'s dtype, differentiable in ``x`` (the hard
        initial condition of :class:`neurop.tasks.physics.PhysicsTask` differentiates it), or None for
        steady problems and those without a closed-form initial condition.
        """
        return None

    @classmethod
    def has_initial_value(cls) -> bool:
        """Whether the problem implements :meth:`initial_value`."""
        return cls.initial_value is not PhysicsProblem.initial_value

    def _periodic(
        self, axis: int, n: int, method: Sampler, generator: torch.Generator | None, dtype: torch.dtype
    ) -> Condition:
        lo, hi = self.bounds[axis]
        pts = sample_face(self.bounds, axis, lo, n, method, generator, dtype)
        partner = pts.clone()
        partner[:, axis] = hi
        return Condition("periodic", pts, partner=partner, axis=axis, channels=list(range(self.out_channels)))

    def _dirichlet_faces(
        self,
        axes: Sequence[int],
        n: int,
        method: Sampler,
        generator: torch.Generator | None,
        dtype: torch.dtype,
    ) -> Tensor:
        """About ``n`` points spread over both faces of each axis in ``axes``."""
        faces = [(a, v) for a in axes for v in self.bounds[a]]
        per = max(1, math.ceil(n / len(faces)))
        return torch.cat([sample_face(self.bounds, a, v, per, method, generator, dtype) for a, v in faces])[
            :n
        ]


def build_problem(name: str, **params: Any) -> PhysicsProblem:
    """Build the registered problem ``name``; an unknown name lists the known ones."""
    if name not in PROBLEMS:
        raise KeyError(
            f"unknown physics problem {name!r}; known physics problems: {', '.join(PROBLEMS.names())}"
        )
    return PROBLEMS.build(name, **params)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _grid(lo: float, hi: float, n: int, periodic: bool) -> np.ndarray:
    return np.linspace(lo, hi, n, endpoint=not periodic)


# --------------------------------------------------------------------------------------------- Burgers


@PROBLEMS.register("burgers")
class BurgersShock(PhysicsProblem):
    """Burgers ``u_t + u u_x = ν u_xx`` on [−1, 1]×[0, 1], ``u0 = −sin πx``, ``u(±1, t) = 0`` (Raissi et al.).

    Reference: the exact Cole–Hopf solution (:func:`neurop.pdes.burgers.burgers_shock_solution`) on
    ``n_x × n_t`` points, by default Raissi's 256 × 100 grid.

    Parameters
    ----------
    viscosity : float
        ν > 0; the classic value is 0.01/π.
    n_x, n_t : int
        Evaluation grid.
    """

    name = "burgers"
    coord_names = ("x", "t")
    time_axis = 1
    second_axes = (0,)
    zero_dirichlet_axes = (0,)

    def __init__(self, viscosity: float = 0.01 / math.pi, n_x: int = 256, n_t: int = 100) -> None:
        self.viscosity = check_positive("viscosity", viscosity)
        self.n_x = _check_int("n_x", n_x, 2)
        self.n_t = _check_int("n_t", n_t, 2)
        self.bounds = ((-1.0, 1.0), (0.0, 1.0))

    def params(self) -> dict[str, Any]:
        return {"viscosity": self.viscosity, "n_x": self.n_x, "n_t": self.n_t}

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        from neurop.pdes.burgers import burgers_pointwise_residual

        r = burgers_pointwise_residual(jet.value(), jet.d(1), jet.d(0), jet.dd(0), self.viscosity)
        return r[:, None]

    def initial_value(self, x: Tensor) -> Tensor:
        """``u0 = −sin πx``, shape (N, 1)."""
        return -torch.sin(math.pi * x[:, :1])

    def conditions(self, n_initial, n_boundary, method="uniform", generator=None, dtype=torch.float32):
        ic = sample_face(self.bounds, 1, 0.0, n_initial, method, generator, dtype)
        bc = self._dirichlet_faces([0], n_boundary, method, generator, dtype)
        return {
            "ic": Condition("value", ic, target=self.initial_value(ic)),
            "bc": Condition("value", bc, target=torch.zeros(bc.shape[0], 1, dtype=dtype)),
        }

    def compute_reference(self) -> Reference:
        from neurop.pdes.burgers import burgers_shock_solution

        x = np.linspace(-1.0, 1.0, self.n_x)
        t = np.linspace(0.0, 1.0, self.n_t)
        return Reference((x, t), burgers_shock_solution(x, t, self.viscosity).numpy())


@PROBLEMS.register("burgers_periodic")
class BurgersPeriodic(PhysicsProblem):
    """Periodic Burgers ``u_t + (u²/2)_x = ν u_xx`` on [0, 1)×[0, T] with ``u0`` drawn by the data generator.

    The initial condition is sample ``seed`` of :class:`neurop.pdes.burgers.Burgers` (the FNO data set's
    Gaussian random field on ``resolution`` points), evaluated off the grid by its trigonometric
    interpolant; the reference is the generator's spectral ETDRK4 solution on every ``stride``-th point.

    Parameters
    ----------
    viscosity, t_final, alpha, tau, sigma : float
        As in the generator.
    seed : int
        Which sample.
    resolution : int
        Solver grid.
    stride : int
        Evaluation grid = every stride-th solver point.
    n_t : int
        Evaluation times ``linspace(0, T, n_t)``.
    """

    name = "burgers_periodic"
    coord_names = ("x", "t")
    time_axis = 1
    second_axes = (0,)

    def __init__(
        self,
        viscosity: float = 0.1,
        t_final: float = 1.0,
        alpha: float = 2.0,
        tau: float = 5.0,
        sigma: float = 25.0,
        seed: int = 0,
        resolution: int = 1024,
        stride: int = 4,
        n_t: int = 101,
    ) -> None:
        from neurop.pdes.burgers import Burgers

        self.generator = Burgers(
            resolution=resolution, stride=stride, viscosity=viscosity, t_final=t_final, n_snapshots=1,
            alpha=alpha, tau=tau, sigma=sigma,
        )  # fmt: skip
        self.viscosity = self.generator.viscosity
        self.t_final = self.generator.t_final
        self.seed = _check_int("seed", seed, 0)
        self.n_t = _check_int("n_t", n_t, 2)
        self.bounds = ((0.0, 1.0), (0.0, self.t_final))
        u0 = self.generator.grf.sample([self.seed], "cpu")[0].to(torch.float64)
        self._u0_grid = u0
        self._u0_hat = torch.fft.rfft(u0) / u0.shape[0]

    def params(self) -> dict[str, Any]:
        return {**self.generator.params(), "seed": self.seed, "n_t": self.n_t}

    def initial(self, x: Tensor) -> Tensor:
        """``u0`` at arbitrary points by its trigonometric interpolant, shape (N,), float64."""
        n = self._u0_grid.shape[0]
        k = torch.arange(self._u0_hat.shape[0], dtype=torch.float64)
        w = torch.full_like(k, 2.0)
        w[0] = 1.0
        if n % 2 == 0:
            w[-1] = 1.0  # the Nyquist mode appears once
        phase = 2 * math.pi * x.to(torch.float64)[:, None] * k[None]
        c = self._u0_hat
        return (w * (c.real * torch.cos(phase) - c.imag * torch.sin(phase))).sum(dim=1)

    def initial_value(self, x: Tensor) -> Tensor:
        """``u0`` at the spatial coordinate of ``x`` (N, 2), shape (N, 1), in ``x``'s dtype."""
        return self.initial(x[:, 0])[:, None].to(x.dtype)

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        from neurop.pdes.burgers import burgers_pointwise_residual

        r = burgers_pointwise_residual(jet.value(), jet.d(1), jet.d(0), jet.dd(0), self.viscosity)
        return r[:, None]

    def conditions(self, n_initial, n_boundary, method="uniform", generator=None, dtype=torch.float32):
        ic = sample_face(self.bounds, 1, 0.0, n_initial, method, generator, dtype)
        return {
            "ic": Condition("value", ic, target=self.initial(ic[:, 0])[:, None].to(dtype)),
            "periodic": self._periodic(0, n_boundary, method, generator, dtype),
        }

    def compute_reference(self) -> Reference:
        from neurop.pdes.burgers import solve_burgers

        t = np.linspace(0.0, self.t_final, self.n_t)
        u = solve_burgers(self._u0_grid, self.viscosity, t, scheme="etdrk4")  # (n_t, n)
        x = self.generator.coords()["x"]
        return Reference((x, t), u[:, :: self.generator.stride].T.numpy())


# ----------------------------------------------------------------------------------------------- Darcy


@PROBLEMS.register("darcy")
class DarcySmooth(PhysicsProblem):
    """Darcy ``−∇·(a∇u) = f`` on (0, 1)², ``u = 0`` on the boundary, smooth ``a = exp(c sin 2πx cos 2πy)``.

    Reference: the package's 5-point finite-difference solver (:func:`neurop.pdes.fd.pcg_solve`) on
    ``resolution²`` nodes (second order: about 1e−5 relative at 257²), evaluated on every ``stride``-th
    node.

    Parameters
    ----------
    contrast : float
        ``c`` in the coefficient; ``a`` ranges over ``[e^−c, e^c]``.
    forcing : float
        Constant ``f``, non-zero.
    resolution, stride : int
        Reference grid; ``stride`` must divide ``resolution − 1``.
    """

    name = "darcy"
    coord_names = ("x", "y")
    second_axes = (0, 1)
    zero_dirichlet_axes = (0, 1)

    def __init__(
        self, contrast: float = 0.5, forcing: float = 1.0, resolution: int = 257, stride: int = 2
    ) -> None:
        self.contrast = float(contrast)
        if not math.isfinite(self.contrast):
            raise ValueError(f"contrast must be finite, got {contrast!r}")
        self.forcing = float(forcing)
        if not math.isfinite(self.forcing) or self.forcing == 0:
            raise ValueError(f"forcing must be finite and non-zero, got {forcing!r}")
        self.resolution = _check_int("resolution", resolution, 5)
        self.stride = _check_int("stride", stride, 1)
        if (self.resolution - 1) % self.stride:
            raise ValueError(f"stride must divide resolution - 1 = {self.resolution - 1}, got {stride!r}")
        self.bounds = ((0.0, 1.0), (0.0, 1.0))

    def params(self) -> dict[str, Any]:
        return {"contrast": self.contrast, "forcing": self.forcing, "resolution": self.resolution}

    def coefficient(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, a_x, a_y)`` at points ``x`` of shape (N, 2)."""
        c, w = self.contrast, 2 * math.pi
        sx, cx = torch.sin(w * x[:, 0]), torch.cos(w * x[:, 0])
        sy, cy = torch.sin(w * x[:, 1]), torch.cos(w * x[:, 1])
        a = torch.exp(c * sx * cy)
        return a, a * c * w * cx * cy, -a * c * w * sx * sy

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        from neurop.pdes.darcy import darcy_pointwise_residual

        a, a_x, a_y = self.coefficient(x)
        r = darcy_pointwise_residual(a, a_x, a_y, jet.d(0), jet.d(1), jet.dd(0), jet.dd(1), self.forcing)
        return r[:, None]

    def conditions(self, n_initial, n_boundary, method="uniform", generator=None, dtype=torch.float32):
        bc = self._dirichlet_faces([0, 1], n_boundary, method, generator, dtype)
        return {"bc": Condition("value", bc, target=torch.zeros(bc.shape[0], 1, dtype=dtype))}

    def compute_reference(self) -> Reference:
        from neurop.pdes.fd import pcg_solve

        g = np.linspace(0.0, 1.0, self.resolution)
        mesh = np.meshgrid(g, g, indexing="ij")
        pts = torch.from_numpy(np.stack([m.reshape(-1) for m in mesh], axis=1))
        a = self.coefficient(pts)[0].reshape(1, self.resolution, self.resolution)
        u, _, _ = pcg_solve(a, self.forcing, tol=1e-12, mean="arithmetic")
        s = self.stride
        return Reference((g[::s], g[::s]), u[0, ::s, ::s].numpy())


# --------------------------------------------------------------------------------------- Navier–Stokes


@PROBLEMS.register("navier_stokes")
class DecayingVortex(PhysicsProblem):
    """Unforced 2-D Navier–Stokes in vorticity form on the unit torus with an exactly decaying solution.

    The network outputs ``(ψ, w)``; the residuals are ``w + Δψ`` and ``w_t + ψ_y w_x − ψ_x w_y − νΔw``.
    Any vorticity made of Laplacian eigenmodes with one wavenumber ``|k|`` has ``ψ ∝ w``, so the
    advection vanishes and ``w = w0 exp(−8π²k²νt)`` with ``w0 = sin 2πkx sin 2πky + ½ cos 2πkx cos 2πky``.

    Parameters
    ----------
    viscosity : float
        ν > 0.
    t_final : float
        T > 0.
    wavenumber : int
        k >= 1.
    n_xy, n_t : int
        Evaluation grid (``n_xy²`` periodic points, ``n_t`` times).
    """

    name = "navier_stokes"
    coord_names = ("x", "y", "t")
    time_axis = 2
    out_channels = 2
    eval_channel = 1
    second_axes = (0, 1)

    def __init__(
        self,
        viscosity: float = 1e-3,
        t_final: float = 1.0,
        wavenumber: int = 1,
        n_xy: int = 64,
        n_t: int = 11,
    ) -> None:
        self.viscosity = check_positive("viscosity", viscosity)
        self.t_final = check_positive("t_final", t_final)
        self.wavenumber = _check_int("wavenumber", wavenumber, 1)
        self.n_xy = _check_int("n_xy", n_xy, 2)
        self.n_t = _check_int("n_t", n_t, 2)
        self.bounds = ((0.0, 1.0), (0.0, 1.0), (0.0, self.t_final))

    def params(self) -> dict[str, Any]:
        return {"viscosity": self.viscosity, "t_final": self.t_final, "wavenumber": self.wavenumber}

    def exact(self, x: Tensor) -> Tensor:
        w_k = 2 * math.pi * self.wavenumber
        lam = 2 * w_k**2
        w0 = torch.sin(w_k * x[:, 0]) * torch.sin(w_k * x[:, 1]) + 0.5 * torch.cos(w_k * x[:, 0]) * torch.cos(
            w_k * x[:, 1]
        )
        w = w0 * torch.exp(-lam * self.viscosity * x[:, 2])
        return torch.stack([w / lam, w], dim=1)

    def residual(self, x: Tensor, jet: Jet) -> Tensor:
        from neurop.pdes.navier_stokes import vorticity_pointwise_residual

        lap_psi = jet.dd(0, 0) + jet.dd(1, 0)
        r_w = vorticity_pointwise_residual(
            jet.d(2, 1), jet.d(1, 0), -jet.d(0, 0), jet.d(0, 1), jet.d(1, 1), jet.dd(0, 1) + jet.dd(1, 1),
            self.viscosity,
        )  # fmt: skip
        return torch.stack([jet.value(1) + lap_psi, r_w], dim=1)

    def conditions(self, n_initial, n_boundary, method="uniform", generator=None, dtype=torch.float32):
        ic = sample_face(self.bounds, 2, 0.0, n_initial, method, generator, dtype)
        per = max(1, n_boundary // 2)
        return {
            "ic": Condition(
                "value", ic, target=self.exact(ic.to(torch.float64))[:, 1:].to(dtype), channels=[1]
            ),
            "periodic_x": self._periodic(0, per, method, generator, dtype),
            "periodic_y": self._periodic(1, per, method, generator, dtype),
        }

    def compute_reference(self) -> Reference:
        g = np.linspace(0.0, 1.0, self.n_xy, endpoint=False)
        t = np.linspace(0.0, self.t_final, self.n_t)
        ref = Reference((g, g, t), np.zeros((self.n_xy, self.n_xy, self.n_t)))
        values = self.exact(ref.points(torch.float64))[:, self.eval_channel]
        return Reference((g, g, t), values.reshape(self.n_xy, self.n_xy, self.n_t).numpy())


# The remaining problems live in their own PDE modules; importing them registers them.
from neurop.pdes import allen_cahn, helmholtz  # noqa: E402,F401

__all__ = [
    "PROBLEMS",
    "SAMPLERS",
    "BurgersPeriodic",
    "BurgersShock",
    "Condition",
    "DarcySmooth",
    "DecayingVortex",
    "PhysicsProblem",
    "Reference",
    "build_problem",
    "check_sampler",
    "sample_box",
    "sample_face",
]
