"""Relative Lp and H1 losses: exact values, per-sample averaging, derivatives and their convergence."""

import math

import pytest
import torch

from neurop.losses import get_loss, relative_h1, relative_l2, relative_lp, spatial_gradient


def test_relative_l2_exact_values_and_per_sample_mean():
    target = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    pred = target.clone()
    pred[0] *= 1.1  # relative error exactly 0.1
    pred[1] *= 0.7  # relative error exactly 0.3
    per_sample = relative_l2(pred, target, reduction="none")
    torch.testing.assert_close(per_sample, torch.tensor([0.1, 0.3], dtype=torch.float64))
    assert relative_l2(pred, target).item() == pytest.approx(0.2, rel=1e-12)
    assert relative_l2(pred, target, reduction="sum").item() == pytest.approx(0.4, rel=1e-12)
    # Zero prediction: error equals the target's norm.
    assert relative_l2(torch.zeros_like(target), target).item() == pytest.approx(1.0, rel=1e-12)


def test_relative_l2_is_not_a_batch_norm_ratio():
    # Per-sample averaging weights a small-norm sample as much as a large one (FNO paper's loss).
    target = torch.stack([torch.ones(1, 8), 100 * torch.ones(1, 8)]).double()
    pred = target + torch.stack([torch.ones(1, 8), torch.zeros(1, 8)]).double()
    assert relative_l2(pred, target).item() == pytest.approx(0.5, rel=1e-12)


def test_relative_lp_l1_and_linf_exact():
    target = torch.tensor([[1.0, -2.0, 3.0, -4.0]], dtype=torch.float64)
    pred = target + torch.tensor([[1.0, 0.0, -1.0, 2.0]], dtype=torch.float64)
    assert relative_lp(pred, target, p=1).item() == pytest.approx(4.0 / 10.0)
    assert relative_lp(pred, target, p=float("inf")).item() == pytest.approx(2.0 / 4.0)


def test_relative_lp_errors_name_the_value():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\) vs \(2, 4\)"):
        relative_l2(a, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="p must be >= 1, got 0.5"):
        relative_lp(a, a, p=0.5)
    with pytest.raises(ValueError, match="'median'"):
        relative_l2(a, a, reduction="median")
    with pytest.raises(ValueError, match="'l7'"):
        get_loss("l7")


def _periodic_grid(n):
    return torch.arange(n, dtype=torch.float64) / n


def test_spectral_gradient_is_exact_for_trigonometric_fields():
    n = 32
    x = _periodic_grid(n)
    u = torch.sin(2 * math.pi * 3 * x)[:, None] * torch.cos(2 * math.pi * 2 * x)[None, :]
    gx, gy = spatial_gradient(u[None, None], dim=2, derivative="spectral", periodic=True)
    ex = 6 * math.pi * torch.cos(2 * math.pi * 3 * x)[:, None] * torch.cos(2 * math.pi * 2 * x)[None, :]
    ey = -4 * math.pi * torch.sin(2 * math.pi * 3 * x)[:, None] * torch.sin(2 * math.pi * 2 * x)[None, :]
    torch.testing.assert_close(gx[0, 0], ex, atol=1e-10, rtol=0)
    torch.testing.assert_close(gy[0, 0], ey, atol=1e-10, rtol=0)


def test_fd_gradient_second_order_convergence_periodic_and_bounded():
    errs_p, errs_b = [], []
    for n in (32, 64, 128):
        x = _periodic_grid(n)
        (g,) = spatial_gradient(torch.sin(2 * math.pi * x)[None, None], dim=1, derivative="fd", periodic=True)
        errs_p.append((g[0, 0] - 2 * math.pi * torch.cos(2 * math.pi * x)).abs().max().item())
        xb = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        (gb,) = spatial_gradient(torch.exp(xb)[None, None], dim=1, derivative="fd", periodic=False)
        errs_b.append((gb[0, 0] - torch.exp(xb)).abs().max().item())
    for errs in (errs_p, errs_b):
        orders = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
        assert all(1.9 < o < 2.1 for o in orders), orders


def test_relative_h1_exact_value_spectral():
    # e = 0.1 sin(4πx), y = sin(2πx): ‖e‖²_H1 / ‖y‖²_H1 = 0.01 (1 + 16π²) / (1 + 4π²); grid sums cancel.
    n = 64
    x = _periodic_grid(n)
    y = torch.sin(2 * math.pi * x)[None, None]
    pred = y + 0.1 * torch.sin(4 * math.pi * x)[None, None]
    expected = math.sqrt(0.01 * (1 + 16 * math.pi**2) / (1 + 4 * math.pi**2))
    got = relative_h1(pred, y, dim=1, derivative="spectral", periodic=True)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    semi = relative_h1(pred, y, dim=1, derivative="spectral", periodic=True, seminorm=True)
    assert semi.item() == pytest.approx(math.sqrt(0.01 * 16 / 4), rel=1e-10)
    # Finite differences approach the same value as the grid is refined.
    fd = relative_h1(pred, y, dim=1, derivative="fd", periodic=True)
    assert fd.item() == pytest.approx(expected, rel=2e-2)


def test_relative_h1_penalises_roughness_more_than_l2():
    n = 64
    x = _periodic_grid(n)
    y = torch.sin(2 * math.pi * x)[None, None]
    rough = y + 0.05 * torch.sin(2 * math.pi * 10 * x)[None, None]
    assert relative_h1(rough, y, dim=1, derivative="spectral", periodic=True) > 5 * relative_l2(rough, y)


def test_spectral_derivative_rejects_non_periodic_data():
    with pytest.raises(ValueError, match="periodic"):
        spatial_gradient(torch.zeros(1, 1, 8), dim=1, derivative="spectral", periodic=False)
    with pytest.raises(ValueError, match="'cubic'"):
        spatial_gradient(torch.zeros(1, 1, 8), dim=1, derivative="cubic")


def test_losses_are_differentiable():
    target = torch.randn(3, 1, 12, 12, dtype=torch.float64)
    pred = torch.randn(3, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: relative_l2(p, target), (pred,))
    assert torch.autograd.gradcheck(lambda p: relative_h1(p, target, dim=2, derivative="fd"), (pred,))
