"""Unit-Gaussian normalisers: statistics, round trip, buffers in the state dict, resolution independence."""

import pytest
import torch

from neurop.data.normalize import ChannelStats, UnitGaussianNormalizer


def test_fit_gives_zero_mean_unit_std_per_channel_and_round_trip():
    x = (
        torch.randn(16, 3, 10, 12, dtype=torch.float64)
        * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1).double()
    )
    x = x + torch.tensor([2.0, -3.0, 100.0]).view(1, 3, 1, 1)
    norm = UnitGaussianNormalizer(3, eps=0.0).double().fit(x)
    z = norm.encode(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(norm.decode(z), x, atol=1e-12, rtol=0)


def test_statistics_are_per_channel_so_any_grid_works():
    norm = UnitGaussianNormalizer(2).fit(torch.randn(4, 2, 8, 8))
    coarse, fine = torch.randn(2, 2, 5, 5), torch.randn(2, 2, 33, 33)
    for x in (coarse, fine):
        torch.testing.assert_close(norm.decode(norm.encode(x)), x, atol=1e-5, rtol=1e-5)


def test_buffers_are_saved_and_restored():
    a = UnitGaussianNormalizer(2)
    a.set_stats([1.0, 2.0], [3.0, 4.0])
    state = a.state_dict()
    assert set(state) == {"mean", "std", "fitted"}
    b = UnitGaussianNormalizer(2)
    assert not bool(b.fitted)
    b.load_state_dict(state)
    assert bool(b.fitted)
    torch.testing.assert_close(b.mean, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(b.std, torch.tensor([3.0, 4.0]))
    # Buffers, not parameters: an optimiser never touches them.
    assert list(b.parameters()) == []


def test_streaming_stats_match_the_full_batch():
    x = torch.randn(37, 2, 9) * 3 + 1
    stats = ChannelStats(2)
    for chunk in torch.split(x, 5):
        stats.update(chunk)
    flat = x.transpose(0, 1).reshape(2, -1).double()
    torch.testing.assert_close(stats.mean, flat.mean(1))
    torch.testing.assert_close(stats.std, flat.std(1, unbiased=False))


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="channels must be >= 1, got 0"):
        UnitGaussianNormalizer(0)
    norm = UnitGaussianNormalizer(2)
    with pytest.raises(ValueError, match=r"expected shape \(B, 2, \.\.\.\), got \(4, 3, 8\)"):
        norm.encode(torch.zeros(4, 3, 8))
    with pytest.raises(ValueError, match=r"must have shape \(2,\)"):
        norm.set_stats([0.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        norm.set_stats([float("nan"), 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no data seen"):
        _ = ChannelStats(1).std
