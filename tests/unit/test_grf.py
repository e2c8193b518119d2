"""Tests of the Gaussian random field sampler: empirical spectra, zero mean, seeding and validation."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from neurop.pdes.grf import (
    PRESETS,
    GaussianRandomField,
    fno_burgers_grf,
    fno_darcy_grf,
    fno_navier_stokes_grf,
)

N_DRAWS = 4000


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_spectrum(power: torch.Tensor, lam: np.ndarray, n_draws: int, real_modes: torch.Tensor) -> None:
    """``power`` is the mean of ``n_draws`` squared coefficients with expectation ``lam``.

    A complex Gaussian coefficient gives an exponential |c|² (relative std 1/√S), a real one a χ²₁
    (relative std √2/√S); allow 5 standard errors per mode and a tight bound on the average ratio.
    """
    lam_t = torch.as_tensor(lam)
    ratio = power / lam_t
    rel_std = torch.where(real_modes, math.sqrt(2.0), 1.0) / math.sqrt(n_draws)
    assert ((ratio - 1).abs() < 5 * rel_std).all(), ratio
    assert abs(ratio.mean().item() - 1) < 5 * math.sqrt(2.0 / (n_draws * ratio.numel()))


def test_periodic_1d_spectrum_matches_eigenvalues() -> None:
    n = 32
    grf = GaussianRandomField(1, n, alpha=2.0, tau=5.0, sigma=25.0)
    u = grf.sample(range(N_DRAWS))
    assert u.shape == (N_DRAWS, n) and u.dtype == torch.float64
    # By construction E|fft(u)_k|² = N² λ_k.
    power = torch.fft.fft(u).abs().pow(2).mean(0) / n**2
    m = torch.fft.fftfreq(n, d=1.0 / n)
    real_modes = (m == 0) | (m.abs() == n // 2)
    assert_spectrum(power, grf.eigenvalues(), N_DRAWS, real_modes)
    # Pointwise variance is the trace of the covariance, Σ λ_k.
    var = u.var(0).mean().item()
    assert var == pytest.approx(grf.eigenvalues().sum(), rel=5 * math.sqrt(2.0 / N_DRAWS))


def test_periodic_2d_spectrum_matches_eigenvalues() -> None:
    n, draws = 16, 2000
    grf = GaussianRandomField(2, n, alpha=2.5, tau=7.0, sigma=7.0**1.5)
    u = grf.sample(range(draws))
    assert u.shape == (draws, n, n)
    power = torch.fft.fft2(u).abs().pow(2).mean(0) / n**4
    m = torch.fft.fftfreq(n, d=1.0 / n)
    edge = (m == 0) | (m.abs() == n // 2)
    real_modes = edge[:, None] & edge[None, :]
    assert_spectrum(power, grf.eigenvalues(), draws, real_modes)


def cosine_projection(n: int) -> torch.Tensor:
    """Trapezoidal projection onto the orthonormal cosine basis on [0, 1], modes 0..n−2, shape (n−1, n).

    On the grid x_j = j/(n−1) the trapezoidal rule integrates products of these modes exactly (DCT-I
    orthogonality), so the projection returns the KL coefficients ξ_k √λ_k without quadrature error.
    """
    x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    k = torch.arange(n - 1, dtype=torch.float64)
    phi = math.sqrt(2.0) * torch.cos(math.pi * k[:, None] * x[None, :])
    phi[0] = 1.0
    w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
    w[[0, -1]] /= 2
    return phi * w


def test_neumann_1d_cosine_coefficients_have_prescribed_variance() -> None:
    n = 33
    grf = GaussianRandomField(1, n, alpha=2.0, tau=3.0, sigma=3.0, boundary="neumann")
    u = grf.sample(range(N_DRAWS))
    np.testing.assert_allclose(grf.coords(), np.linspace(0, 1, n))
    coef = u @ cosine_projection(n).T
    power = coef.pow(2).mean(0)
    assert_spectrum(power, grf.eigenvalues()[: n - 1], N_DRAWS, torch.ones(n - 1, dtype=torch.bool))


def test_neumann_2d_cosine_coefficients_have_prescribed_variance() -> None:
    n, draws = 13, 2000
    grf = GaussianRandomField(2, n, alpha=2.0, tau=3.0, sigma=3.0, boundary="neumann")
    u = grf.sample(range(draws))
    p = cosine_projection(n)
    coef = p @ u @ p.T
    power = coef.pow(2).mean(0)
    lam = grf.eigenvalues()[: n - 1, : n - 1]
    assert_spectrum(power, lam, draws, torch.ones(n - 1, n - 1, dtype=torch.bool))


def test_eigenvalues_formula() -> None:
    g = GaussianRandomField(1, 8, alpha=2.0, tau=5.0, sigma=25.0)
    lam = g.eigenvalues()
    assert lam[1] == pytest.approx(625.0 / ((2 * math.pi) ** 2 + 25.0) ** 2)
    assert lam[-1] == lam[1]  # fft ordering: the last entry is mode −1
    gn = GaussianRandomField(2, 8, alpha=2.0, tau=3.0, sigma=3.0, boundary="neumann")
    assert gn.eigenvalues()[1, 2] == pytest.approx(9.0 / (5 * math.pi**2 + 9.0) ** 2)
    np.testing.assert_allclose(g.coords(), np.arange(8) / 8)


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
@pytest.mark.parametrize("dim", [1, 2])
def test_zero_mean(dim: int, boundary: str) -> None:
    n = 17
    g = GaussianRandomField(dim, n, alpha=2.0, tau=3.0, boundary=boundary, zero_mean=True)
    assert g.eigenvalues()[(0,) * dim] == 0.0
    u = g.sample(range(20))
    # The constant mode's coefficient is the grid mean (periodic) or the trapezoidal mean (Neumann).
    w = torch.ones(n, dtype=torch.float64) / n
    if boundary == "neumann":
        w = cosine_projection(n)[0]
    means = u @ w if dim == 1 else torch.einsum("bij,i,j->b", u, w, w)
    assert means.abs().max() < 1e-12
    g_mean = GaussianRandomField(dim, n, alpha=2.0, tau=3.0, boundary=boundary, zero_mean=False)
    u_mean = g_mean.sample(range(20))
    means_full = u_mean @ w if dim == 1 else torch.einsum("bij,i,j->b", u_mean, w, w)
    assert means_full.abs().max() > 1e-3


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_seeding_is_deterministic_and_batch_independent(boundary: str) -> None:
    g = GaussianRandomField(2, 12, alpha=2.0, tau=3.0, boundary=boundary)
    a = g.sample([5, 6, 7])
    assert torch.equal(a, g.sample([5, 6, 7]))
    assert torch.equal(a[1], g.sample(6)[0])  # an int seed draws one sample, the same as in a batch
    assert not torch.allclose(a[0], a[1])
    assert not torch.allclose(a[0], g.sample([8])[0])
    b = g.sample([5], dtype=torch.float32)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b[0], a[0].float())


def test_presets_follow_the_fno_paper() -> None:
    burgers = fno_burgers_grf(64)
    assert (burgers.alpha, burgers.tau, burgers.sigma, burgers.boundary) == (2.0, 5.0, 25.0, "periodic")
    assert burgers.eigenvalues()[0] == pytest.approx(1.0)  # 625 · 25^−2
    darcy = fno_darcy_grf(21)
    assert darcy.boundary == "neumann" and darcy.zero_mean and darcy.eigenvalues()[0, 0] == 0
    assert darcy.eigenvalues()[0, 1] == pytest.approx(3.0**2 * (math.pi**2 + 9.0) ** -2)
    ns = fno_navier_stokes_grf(32)
    assert ns.zero_mean and ns.sigma == pytest.approx(7.0**1.5)
    assert set(PRESETS) == {"fno_burgers", "fno_darcy", "fno_navier_stokes"}


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"dim": 3}, r"dim must be 1 or 2, got 3"),
        ({"size": 1}, r"size must be an integer >= 2, got 1"),
        ({"size": 10.5}, r"size must be an integer >= 2, got 10.5"),
        ({"alpha": 0.5}, r"alpha must be > dim/2 = 0.5 .*got 0.5"),
        ({"dim": 2, "alpha": 1.0}, r"alpha must be > dim/2 = 1.0 .*got 1.0"),
        ({"tau": 0.0}, r"tau must be > 0, got 0.0"),
        ({"sigma": -1.0}, r"sigma must be > 0, got -1.0"),
        ({"boundary": "dirichlet"}, r"boundary must be 'periodic' or 'neumann', got 'dirichlet'"),
    ],
)
def test_bad_parameters_name_the_key(kw: dict, match: str) -> None:
    args = {"dim": 1, "size": 16, "alpha": 2.0, "tau": 3.0, **kw}
    with pytest.raises(ValueError, match=match):
        GaussianRandomField(**args)
