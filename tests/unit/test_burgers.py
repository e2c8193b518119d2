"""Tests of the spectral numerics and the Burgers solver against exact (Cole–Hopf) solutions."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neurop.pdes import PDES
from neurop.pdes.burgers import (
    Burgers,
    cole_hopf_solution,
    solve_burgers,
    stable_time_step,
)
from neurop.pdes.grf import GaussianRandomField
from neurop.pdes.spectral import dealias_mask, etdrk4_coefficients, etdrk4_step, wavenumbers

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pde" / "burgers.yaml"
NU = 0.1


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small FFTs are fastest on one thread; on a shared machine two threads can be 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grid(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) / n


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------- spectral.py
def test_wavenumbers_differentiate_exactly() -> None:
    n = 24
    x = grid(n) * 2.0  # period 2
    u = torch.sin(3 * math.pi * x) + torch.cos(5 * math.pi * x)
    du = torch.fft.ifft(1j * wavenumbers(n, length=2.0) * torch.fft.fft(u)).real
    du_r = torch.fft.irfft(1j * wavenumbers(n, length=2.0, real=True) * torch.fft.rfft(u), n=n)
    exact = 3 * math.pi * torch.cos(3 * math.pi * x) - 5 * math.pi * torch.sin(5 * math.pi * x)
    assert max_err(du, exact) < 1e-12
    assert max_err(du_r, exact) < 1e-12


def test_dealias_mask_keeps_modes_below_a_third() -> None:
    assert dealias_mask(9).tolist() == [True, True, True, False, False]  # m = 0..4, keep 3|m| < 9
    assert int(dealias_mask(8192).sum()) == 2731  # m = 0..2730
    full = dealias_mask(12, real=False)
    assert full.tolist() == [True] * 4 + [False] * 5 + [True] * 3  # m = 0..3 and -3..-1
    two_d = dealias_mask((12, 12))
    assert two_d.shape == (12, 7) and int(two_d.sum()) == 7 * 4


def test_dealiased_product_is_exact_on_kept_modes() -> None:
    # Two fields with kept modes only: their product computed on the n-point grid must agree, on the
    # kept modes, with the product computed on a grid fine enough to have no aliasing at all.
    n, fine = 48, 256
    gen = torch.Generator().manual_seed(0)
    keep = dealias_mask(n)
    spec = torch.randn(2, n // 2 + 1, dtype=torch.complex128, generator=gen) * keep
    spec[:, 0] = spec[:, 0].real
    u, v = torch.fft.irfft(spec, n=n)
    coarse = torch.fft.rfft(u * v) / n
    uf, vf = torch.fft.irfft(spec * fine / n, n=fine)
    exact = torch.fft.rfft(uf * vf)[: n // 2 + 1] / fine
    assert max_err(coarse[keep], exact[keep]) < 1e-13
    # Without the truncation, the top modes of the product would alias: the check above is not vacuous.
    assert max_err(coarse[~keep], exact[~keep]) > 1e-3


def phi_direct(z: torch.Tensor, h: float) -> dict[str, torch.Tensor]:
    """Closed-form ETDRK4 coefficients (accurate where |z| is not small)."""
    ez = torch.exp(z)
    return {
        "Q": h * (torch.exp(z / 2) - 1) / z,
        "f1": h * (-4 - z + ez * (4 - 3 * z + z**2)) / z**3,
        "f2": h * (2 + z + ez * (z - 2)) / z**3,
        "f3": h * (-4 - 3 * z - z**2 + ez * (4 - z)) / z**3,
    }


def test_etdrk4_coefficients_match_closed_form_and_limits() -> None:
    h = 0.1
    lin = torch.tensor([-2.0, -15.0, -1e3, -1e7, 3.0], dtype=torch.float64)
    c = etdrk4_coefficients(lin, h)
    ref = phi_direct(h * lin, h)
    for name in ("Q", "f1", "f2", "f3"):
        torch.testing.assert_close(getattr(c, name), ref[name], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(c.E, torch.exp(h * lin))
    # Tiny |hL|: the closed form cancels catastrophically; the contour values approach RK4's h/2 and h/6.
    tiny = etdrk4_coefficients(torch.tensor([0.0, -1e-12, -1e-7], dtype=torch.float64), h)
    torch.testing.assert_close(tiny.Q, torch.full((3,), h / 2, dtype=torch.float64), rtol=1e-7, atol=0)
    for name in ("f1", "f2", "f3"):
        torch.testing.assert_close(
            getattr(tiny, name), torch.full((3,), h / 6, dtype=torch.float64), rtol=1e-7, atol=0
        )
    # Complex (dispersive) operators keep their imaginary parts.
    lin_c = torch.tensor([-1.0 + 30.0j, 5.0j], dtype=torch.complex128)
    cc = etdrk4_coefficients(lin_c, h)
    ref_c = phi_direct(h * lin_c, h)
    for name in ("Q", "f1", "f2", "f3"):
        torch.testing.assert_close(getattr(cc, name), ref_c[name], rtol=1e-12, atol=0.0)


def test_etdrk4_is_exact_for_constant_forcing() -> None:
    # u_t = λu + g with constant g: ETDRK4 reproduces e^{λt}u0 + (e^{λt} − 1) g / λ for any step.
    lin = torch.tensor([-1e4, -3.0, -0.5, -1e-9], dtype=torch.float64)
    g = torch.tensor([2.0, -1.0, 0.5, 3.0], dtype=torch.complex128)
    u0 = torch.tensor([[1.0, 2.0, -1.0, 0.25]], dtype=torch.complex128)
    coeffs = etdrk4_coefficients(lin, 0.7)
    u = u0
    for _ in range(3):
        u = etdrk4_step(u, lambda v: g.expand_as(v), coeffs)
    t = 2.1
    exact = torch.exp(lin * t) * u0 + torch.expm1(lin * t) / lin * g
    torch.testing.assert_close(u, exact, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bad", [{"h": 0.0}, {"h": -1.0}, {"n_contour": 4}, {"radius": 0.0}])
def test_etdrk4_coefficients_reject_bad_input(bad: dict) -> None:
    kw = {"h": 0.1, **bad}
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        etdrk4_coefficients(torch.tensor([-1.0], dtype=torch.float64), **kw)


# ---------------------------------------------------------------------------------------- Cole–Hopf
def test_cole_hopf_solves_burgers() -> None:
    # Check the reference itself, independently of the solver: spectral x-derivatives on a fine periodic
    # grid and a fourth-order central difference in t.
    n, dt, t = 256, 2.5e-4, 0.05
    x = grid(n)
    kw = {"amplitudes": (0.7, 0.2), "phases": (0.3, -1.0)}
    u = cole_hopf_solution(x, [t - 2 * dt, t - dt, t, t + dt, t + 2 * dt], NU, **kw)
    u_t = (u[0] - 8 * u[1] + 8 * u[3] - u[4]) / (12 * dt)
    ik = 1j * wavenumbers(n, real=True)
    u_x = torch.fft.irfft(ik * torch.fft.rfft(u[2]), n=n)
    u_xx = torch.fft.irfft(ik**2 * torch.fft.rfft(u[2]), n=n)
    residual = u_t + u[2] * u_x - NU * u_xx
    assert u[2].abs().max() > 0.5
    assert residual.abs().max() < 1e-8
    assert (u_t + u[2] * u_x - 1.01 * NU * u_xx).abs().max() > 1e-3  # the check can tell ν from 1.01ν
    assert abs(u[2].mean().item()) < 1e-12  # −2ν (log φ)_x has zero mean


def test_cole_hopf_rejects_vanishing_phi() -> None:
    with pytest.raises(ValueError, match=r"offset must be > sum\(\|amplitudes\|\) = 1.1"):
        cole_hopf_solution(grid(8), 0.0, NU, amplitudes=(0.6, -0.5), phases=(0.0, 0.0))


# ---------------------------------------------------------------------------------------- solver
@pytest.mark.parametrize(("n", "cfl"), [(128, 0.5), (256, 1.0)])
def test_matches_cole_hopf_at_requested_times(n: int, cfl: float) -> None:
    # The time error of the CFL step scales like cfl^3.5 dx^4; the default cfl = 1 gives 3.6e-6 at 128
    # points for this early, fast-decaying transient, cfl = 0.5 gives 4e-7.
    x = grid(n)
    times = [0.0, 0.013, 0.05, 0.05, 0.2, 0.5]  # irregular, with a repeat: must land on each exactly
    kw = {"amplitudes": (0.6, 0.3), "phases": (0.0, 1.0)}
    exact = cole_hopf_solution(x, times, NU, **kw)
    u = solve_burgers(exact[0][None].repeat(2, 1), NU, times, cfl=cfl)
    assert u.shape == (2, len(times), n) and u.dtype == torch.float64
    assert torch.equal(u[:, 0], exact[0].expand(2, -1))
    assert max_err(u, exact[None]) < 1e-6


def test_spectral_convergence_in_space() -> None:
    # A steep front (a₁ = 0.9 close to a₀ = 1): Fourier coefficients decay like exp(−0.47 m). A small
    # fixed step keeps the time error below 1e-11 so the spatial error is what is measured.
    errors = []
    for n in (16, 32, 64, 128):
        exact = cole_hopf_solution(grid(n), [0.0, 0.1], NU, amplitudes=(0.9,), phases=(0.0,))
        u = solve_burgers(exact[0], NU, [0.1], dt=2.5e-4)[-1]
        errors.append(max_err(u, exact[-1]))
    ratios = [a / b for a, b in pairwise(errors)]
    assert errors[0] > 1e-3 and errors[-1] < 1e-10, errors
    # Exponential convergence: each doubling gains more than the previous one (an algebraic rate would
    # gain a constant factor).
    assert ratios[0] > 10 and ratios[1] > 2 * ratios[0], (errors, ratios)


def test_etdrk4_fourth_order_in_time() -> None:
    n, t_end = 64, 0.5
    kw = {"amplitudes": (0.6, 0.3), "phases": (0.0, 1.0)}
    u0, exact = cole_hopf_solution(grid(n), [0.0, t_end], NU, **kw)
    errors = [max_err(solve_burgers(u0, NU, [t_end], dt=t_end / m)[-1], exact) for m in (8, 16, 32)]
    orders = [math.log2(a / b) for a, b in pairwise(errors)]
    assert all(3.6 < p < 4.4 for p in orders), (errors, orders)


def test_rk4_agrees_with_exact_and_etdrk4() -> None:
    n, t_end = 64, 0.3
    kw = {"amplitudes": (0.8,), "phases": (0.5,)}
    u0, exact = cole_hopf_solution(grid(n), [0.0, t_end], NU, **kw)
    u_rk4 = solve_burgers(u0, NU, [t_end], scheme="rk4")[-1]
    u_etd = solve_burgers(u0, NU, [t_end], scheme="etdrk4")[-1]
    assert max_err(u_rk4, exact) < 1e-8
    assert max_err(u_rk4, u_etd) < 1e-6


def test_rk4_diffusion_limit_is_sharp() -> None:
    # Slightly below the limit the explicit scheme is stable; 8% above it the top modes blow up.
    n = 64
    u0 = 1e-3 * torch.sin(2 * math.pi * grid(n))
    u0 = u0 + 1e-8 * torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = stable_time_step(torch.tensor([0.0]), n, NU, "rk4").item()
    k_max = 2 * math.pi * ((n - 1) // 3)
    assert h == pytest.approx(2.78 / (NU * k_max**2), rel=1e-3)  # RK4 reaches z = -2.785 on the real axis
    steps = 400
    stable = solve_burgers(u0, NU, [steps * h], dt=h, scheme="rk4")[-1]
    assert stable.abs().max() < 1e-3
    with pytest.raises(FloatingPointError, match=r"rk4 solution became non-finite .* dt="):
        solve_burgers(u0, NU, [steps * 1.08 * h], dt=1.08 * h, scheme="rk4")


def test_blow_up_raises_naming_the_step() -> None:
    u0 = GaussianRandomField(1, 16, 2.0, 5.0, 25.0).sample(range(20))
    with pytest.raises(FloatingPointError, match=r"non-finite .* with cfl=8.0 .* use a smaller cfl"):
        solve_burgers(u0, NU, [1.0], cfl=8.0)


def test_rk4_step_accounts_for_advection_near_the_diffusion_limit() -> None:
    # On a coarse grid with strong advection, h = 2.78/(ν k_max²) puts the top modes (z ≈ −2.78 − 0.65i)
    # just outside RK4's stability region near its real-axis tip; the linear analysis shortens the step
    # by the percent or so that keeps them inside.
    n = 64
    u0 = GaussianRandomField(1, n, 2.0, 5.0, 25.0).sample([0, 1, 2, 3])
    u_max = u0.abs().amax(-1)
    h = stable_time_step(u_max, n, NU, "rk4", cfl=10.0)
    k_max = 2 * math.pi * ((n - 1) // 3)
    h_diffusion = 2.78 / (NU * k_max**2)
    assert (h < 0.995 * h_diffusion).any() and (h <= h_diffusion * 1.0001).all()
    ref = solve_burgers(u0, NU, [1.0], dt=2.5e-4)[:, -1]
    u = solve_burgers(u0, NU, [1.0], scheme="rk4", cfl=10.0)[:, -1]
    assert max_err(u, ref) < 1e-5  # stable; RK4's error at its limit step is ~2e-6 here
    try:
        naive = solve_burgers(u0, NU, [1.0], dt=h_diffusion, scheme="rk4")[:, -1]
    except FloatingPointError:
        return
    assert max_err(naive, ref) > 1e-2


def test_stable_time_step_cfl() -> None:
    u_max = torch.tensor([2.0, 0.5, 0.0])
    h = stable_time_step(u_max, 100, NU, "etdrk4", cfl=0.8)
    torch.testing.assert_close(h[:2], torch.tensor([0.8 / 100 / 2.0, 0.8 / 100 / 0.5], dtype=torch.float64))
    assert math.isinf(h[2].item())


def test_samples_do_not_depend_on_their_batch() -> None:
    grf = GaussianRandomField(1, 64, alpha=2.0, tau=5.0, sigma=25.0)
    u0 = grf.sample([3, 4, 5])
    assert len({round(float(m), 6) for m in u0.abs().amax(-1)}) == 3  # different CFL steps per sample
    together = solve_burgers(u0, NU, [0.0, 0.5, 1.0])
    alone = torch.stack([solve_burgers(u0[i], NU, [0.0, 0.5, 1.0]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-13)


def test_mean_is_conserved_and_energy_decays() -> None:
    u0 = GaussianRandomField(1, 128, alpha=2.0, tau=5.0, sigma=25.0).sample([7, 8])
    u = solve_burgers(u0, 0.02, [0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(u.mean(-1), u0.mean(-1, keepdim=True).expand(-1, 4), rtol=0, atol=1e-13)
    energy = (u - u.mean(-1, keepdim=True)).pow(2).mean(-1)
    assert (energy[:, 1:] < energy[:, :-1]).all()
    # Maximum principle.
    assert (u.abs().amax(-1) <= u0.abs().amax(-1, keepdim=True) + 1e-9).all()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"viscosity": -0.1}, r"viscosity must be > 0, got -0.1"),
        ({"times": [0.5, 0.2]}, r"times must be non-decreasing"),
        ({"times": [-1.0]}, r"times must be finite and >= 0"),
        ({"times": []}, r"times must contain"),
        ({"dt": 0.0}, r"dt must be > 0, got 0.0"),
        ({"cfl": -1.0}, r"cfl must be > 0"),
        ({"scheme": "euler"}, r"scheme must be one of \('etdrk4', 'rk4'\), got 'euler'"),
    ],
)
def test_solver_rejects_bad_input(kw: dict, match: str) -> None:
    args = {"u0": torch.zeros(2, 16, dtype=torch.float64), "viscosity": NU, "times": [0.1], **kw}
    with pytest.raises(ValueError, match=match):
        solve_burgers(**args)


def test_solver_rejects_bad_u0() -> None:
    with pytest.raises(ValueError, match=r"u0 must have shape"):
        solve_burgers(torch.zeros(2, 3, 16), NU, [0.1])
    with pytest.raises(ValueError, match=r"finite"):
        solve_burgers(torch.full((16,), float("nan")), NU, [0.1])


# ---------------------------------------------------------------------------------------- generator
def small(**kw: object) -> Burgers:
    return Burgers(**{"resolution": 64, "stride": 4, "n_snapshots": 2, **kw})


def test_generator_kwargs_match_config() -> None:
    gen_cfg = yaml.safe_load(CONFIG.read_text())["generator"]
    params = set(inspect.signature(Burgers).parameters)
    assert set(gen_cfg) == params
    assert PDES.get("burgers") is Burgers
    g = Burgers(**{**gen_cfg, "resolution": 32, "stride": 2})
    assert g.scheme == gen_cfg["scheme"] and g.viscosity == gen_cfg["viscosity"]


def test_generator_layout_and_metadata() -> None:
    g = small(t_final=0.5)
    assert g.fields()["u"].dims == ("t", "x") and g.fields()["u"].shape == (3, 16)
    coords = g.coords()
    np.testing.assert_allclose(coords["t"], [0.0, 0.25, 0.5])
    np.testing.assert_allclose(coords["x"], np.arange(16) / 16)
    assert json.loads(json.dumps(g.params()))["viscosity"] == NU
    info = json.loads(json.dumps(g.solver_info()))
    assert info["scheme"] == "etdrk4" and info["dt"] is None


def test_generator_solves_and_subsamples() -> None:
    g = small(t_final=0.5)
    out = g.solve_batch([11, 12])
    u = out["u"]
    assert u.shape == (2, 3, 16) and torch.isfinite(u).all()
    u0 = GaussianRandomField(1, 64, 2.0, 5.0, 25.0, "periodic").sample([11, 12])
    assert torch.equal(u[:, 0], u0[:, ::4])
    full = solve_burgers(u0, NU, [0.0, 0.25, 0.5])
    assert torch.equal(u, full[..., ::4])
    # Deterministic per seed, independent of the batch.
    torch.testing.assert_close(g.solve_batch([12])["u"][0], u[1], rtol=0, atol=1e-13)
    assert not torch.allclose(u[0], u[1])


def test_generator_schemes_agree_with_fine_reference() -> None:
    u0 = GaussianRandomField(1, 64, 2.0, 5.0, 25.0, "periodic").sample([5])
    ref = solve_burgers(u0, NU, [0.0, 0.5, 1.0], dt=2.5e-4)[..., ::4]
    etd = small(t_final=1.0).solve_batch([5])["u"]
    rk4 = small(t_final=1.0, scheme="rk4").solve_batch([5])["u"]
    fine = small(t_final=1.0, dt=1e-3).solve_batch([5])["u"]
    assert max_err(etd, ref) < 1e-6
    # RK4 at its diffusion limit damps the top kept modes by |R(−2.78)| ≈ 0.99 per step instead of
    # e^−2.78 ≈ 0.06, so it is less accurate than its small step suggests.
    assert max_err(rk4, ref) < 1e-5
    assert max_err(fine, ref) < 1e-9


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"viscosity": -0.1}, r"viscosity must be > 0, got -0.1"),
        ({"stride": 3}, r"stride must divide resolution = 64 and leave >= 2 points, got 3"),
        ({"stride": 0}, r"stride must be a positive integer, got 0"),
        ({"resolution": 4}, r"resolution must be an integer >= 8, got 4"),
        ({"resolution": 64.5}, r"resolution must be an integer >= 8, got 64.5"),
        ({"n_snapshots": 0}, r"n_snapshots must be an integer >= 1, got 0"),
        ({"t_final": 0.0}, r"t_final must be > 0, got 0.0"),
        ({"scheme": "cn"}, r"scheme must be one of"),
        ({"dt": -1e-3}, r"dt must be > 0, got -0.001"),
        ({"cfl": 0}, r"cfl must be > 0, got 0"),
        ({"alpha": 0.4}, r"alpha must be > dim/2"),
        ({"tau": -5.0}, r"tau must be > 0, got -5.0"),
        ({"sigma": 0.0}, r"sigma must be > 0"),
    ],
)
def test_generator_rejects_bad_parameters(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small(**kw)
