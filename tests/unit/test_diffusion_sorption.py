"""Tests of the diffusion–sorption generator: PDEBench set-up, boundary conditions, convergence order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurop.constraints import build_residual
from neurop.pdes import PDES
from neurop.pdes.diffusion_sorption import DiffusionSorption, retardation, robin_factor

torch.set_num_threads(1)


def test_defaults_are_the_pdebench_set_up() -> None:
    gen = PDES.get("diffusion_sorption")()
    p = gen.params()
    assert (p["resolution"], p["n_t"], p["t_final"]) == (1024, 101, 500.0)
    assert (p["diffusivity"], p["porosity"], p["rho_s"], p["k_f"], p["n_f"]) == (
        5e-4,
        0.29,
        2880.0,
        3.5e-4,
        0.874,
    )
    assert p["u0_max"] == 0.2
    coords = gen.coords()
    assert coords["t"][0] == 0 and coords["t"][-1] == 500.0 and coords["x"].shape == (1024,)
    assert gen.fields()["u"].dims == ("t", "x")
    # Freundlich retardation R(u) = 1 + (1−φ)/φ ρ_s k_f n_f (u + 1e−6)^(n_f − 1).
    coef = 0.71 / 0.29 * 2880 * 3.5e-4 * 0.874
    assert float(retardation(np.array(0.1), 0.29, 2880.0, 3.5e-4, 0.874)) == pytest.approx(
        1 + coef * (0.1 + 1e-6) ** -0.126, rel=1e-12
    )


@pytest.mark.parametrize("initial", ["uniform", "smooth"])
def test_trajectories_keep_the_boundary_conditions(initial: str) -> None:
    gen = DiffusionSorption(resolution=33, n_t=6, initial=initial)
    u0 = gen.sample_initial([0, 1])
    assert u0.shape == (2, 33) and 0 <= u0.min() and u0.max() <= 0.2
    if initial == "uniform":  # PDEBench: independent U(0, 0.2) values per node
        assert abs(np.corrcoef(u0[0, :-1], u0[0, 1:])[0, 1]) < 0.5
    u = gen.solve_batch([0, 1])["u"].numpy()
    assert u.shape == (2, 6, 33) and np.isfinite(u).all()
    np.testing.assert_allclose(u[:, 0], u0)
    np.testing.assert_allclose(u[:, 1:, 0], 1.0)  # u(0, t) = 1
    h = 1 / 32
    np.testing.assert_allclose(
        u[:, 1:, -1], 5e-4 * (u[:, 1:, -1] - u[:, 1:, -2]) / h, atol=1e-14
    )  # u = D u_x
    assert u[:, 1:, 1:-1].min() > -1e-6 and u.max() <= 1 + 1e-9  # maximum principle inside
    # Sorbing solute enters from the left: the mass in the column grows.
    mass = u[:, :, 1:-1].sum(-1)
    assert (np.diff(mass, axis=1) > 0).all()
    same = DiffusionSorption(resolution=33, n_t=6, initial=initial).solve_batch([0, 1])["u"].numpy()
    np.testing.assert_array_equal(u, same)  # seeded


def test_converges_at_second_order_against_a_fine_reference() -> None:
    """Same initial function on nested grids; errors against a 513-node solve drop 4x per refinement."""
    fine = DiffusionSorption(resolution=513, n_t=3)
    u0 = fine.sample_initial([5])
    ref = fine.solve(u0)
    errors = []
    for n in (17, 33, 65, 129):
        s = 512 // (n - 1)
        un = DiffusionSorption(resolution=n, n_t=3).solve(u0[:, ::s])
        errors.append(float(np.sqrt(((un[:, 1:] - ref[:, 1:, ::s]) ** 2).mean())))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert errors[-1] < 2e-5, errors
    assert min(orders) > 1.7 and sum(orders) / len(orders) > 1.85, (errors, orders)


def test_reference_solution_has_a_second_order_small_grid_residual() -> None:
    """The grid residual the hard constraint imposes vanishes on the generator's solution as dt → 0."""
    res = build_residual("diffusion_sorption", {})
    rms = []
    for n_t in (11, 21, 41):
        u = DiffusionSorption(resolution=33, n_t=n_t).solve_batch([2])["u"][:, None]
        r, b = res.field_residual(u, u)
        assert float(b[:, : 33 + n_t - 1].abs().max()) < 1e-12  # initial and Dirichlet rows exact
        # Away from the unresolved start (the Dirichlet value 1 meets u0 ≤ 0.2 at t = 0).
        t = torch.linspace(0, 500, n_t)[1:]
        rms.append(float(r.reshape(n_t - 1, -1)[t >= 200].pow(2).mean().sqrt()))
    orders = [math.log2(rms[i] / rms[i + 1]) for i in range(2)]
    assert min(orders) > 1.8 and rms[-1] < 1e-3, (rms, orders)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(resolution=4), r"resolution must be an integer >= 5, got 4"),
        (dict(resolution=33, stride=3), r"stride must divide resolution - 1 = 32 .* got stride=3"),
        (dict(porosity=1.5), r"porosity must be in \(0, 1\), got 1.5"),
        (dict(initial="gauss"), r"initial must be one of \('smooth', 'uniform'\), got 'gauss'"),
        (dict(resolution=5, diffusivity=0.5), r"the grid step h=0.25 must exceed the diffusivity D=0.5"),
        (dict(n_t=1), r"n_t must be an integer >= 2, got 1"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DiffusionSorption(**kwargs)


def test_robin_factor_and_bad_initial_shape() -> None:
    assert robin_factor(5e-4, 0.01) == pytest.approx(-0.05 / 0.95)
    with pytest.raises(ValueError, match=r"u0 must have shape \(B, n\) with n >= 5, got \(3,\)"):
        DiffusionSorption(resolution=9).solve(np.zeros(3))
