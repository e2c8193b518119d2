"""DeepONet: shapes, gradients, query points vs the grid, sensor resampling, periodic trunk, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from neurop.models import MODELS
from neurop.models.deeponet import DeepONet, grid_points, sample_grid

CASES = [
    {"n_sensors": [16], "periodic": True, "n_harmonics": 2},
    {"n_sensors": [13, 13], "periodic": False, "branch": "cnn"},
    {"n_sensors": [8, 8], "periodic": True},
    {"n_sensors": [4, 5, 6], "periodic": True},
]


def _model(in_channels: int = 2, out_channels: int = 3, **kw) -> DeepONet:
    torch.manual_seed(0)
    kw = {"n_basis": 6, "hidden_channels": 12, "n_layers": 2, "conv_channels": 4, **kw}
    return MODELS.build("deeponet", in_channels=in_channels, out_channels=out_channels, **kw)


@pytest.mark.parametrize("kw", CASES)
def test_shapes_and_gradients_reach_every_parameter(kw):
    model = _model(**kw)
    x = torch.randn(3, 2, *kw["n_sensors"])
    y = model(x)
    assert y.shape == (3, 3, *kw["n_sensors"])
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kw", CASES)
def test_query_points_on_the_grid_equal_the_grid_evaluation(kw):
    model = _model(**kw).double()
    x = torch.randn(2, 2, *kw["n_sensors"], dtype=torch.float64)
    grid = model(x)
    points = grid_points(kw["n_sensors"], kw["periodic"], dtype=torch.float64)
    torch.testing.assert_close(model.evaluate(x, points), grid.flatten(2), rtol=0, atol=1e-12)
    # A per-sample query set, shuffled: the same values in the shuffled order.
    perm = torch.randperm(points.shape[0])
    per_sample = points[perm].expand(2, -1, -1)
    torch.testing.assert_close(model.evaluate(x, per_sample), grid.flatten(2)[..., perm], rtol=0, atol=1e-12)


def test_output_is_the_branch_trunk_product_plus_bias():
    model = _model(in_channels=1, out_channels=2, n_sensors=[8]).double()
    with torch.no_grad():
        model.bias.copy_(torch.tensor([0.5, -2.0]))
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    q = torch.rand(5, 1, dtype=torch.float64)
    b = model.branch_coefficients(x)  # (B, C, p)
    t = model.trunk_basis(q)  # (Q, C, p)
    expected = torch.stack(
        [torch.stack([t[:, c] @ b[i, c] + model.bias[c] for c in range(2)]) for i in range(2)]
    )
    torch.testing.assert_close(model.evaluate(x, q), expected)


def test_periodic_features_make_the_output_periodic():
    model = _model(in_channels=1, out_channels=1, n_sensors=[16], n_harmonics=2).double()
    x = torch.randn(2, 1, 16, dtype=torch.float64)
    q = torch.rand(7, 1, dtype=torch.float64)
    torch.testing.assert_close(model.evaluate(x, q), model.evaluate(x, q + 1.0), rtol=0, atol=1e-12)
    plain = _model(in_channels=1, out_channels=1, n_sensors=[16], n_harmonics=0).double()
    assert not torch.allclose(plain.evaluate(x, q), plain.evaluate(x, q + 1.0))


@pytest.mark.parametrize(("periodic", "fine"), [(True, 64), (False, 61)])
def test_nested_finer_grid_gives_the_same_branch_input(periodic, fine):
    """A finer grid containing the sensor grid: the branch sees exactly the same values."""
    model = _model(in_channels=1, out_channels=1, n_sensors=[16], periodic=periodic).double()
    coarse_pts = grid_points([16], periodic, dtype=torch.float64)
    fine_pts = grid_points([fine], periodic, dtype=torch.float64)

    def f(p):
        return torch.sin(2 * math.pi * p[:, 0]) + p[:, 0] ** 2 * (0 if periodic else 1)

    coarse = f(coarse_pts).view(1, 1, 16)
    fine_x = f(fine_pts).view(1, 1, fine)
    torch.testing.assert_close(model.sensor_values(fine_x), coarse, rtol=0, atol=1e-12)
    # A non-nesting grid goes through interpolation: exact for this function only at shared points,
    # close elsewhere.
    odd = f(grid_points([fine + 1], periodic, dtype=torch.float64)).view(1, 1, fine + 1)
    assert (model.sensor_values(odd) - coarse).abs().max() < 5e-3


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("periodic", [True, False])
def test_sample_grid_is_exact_for_multilinear_functions(dim, periodic):
    """Multilinear interpolation reproduces x + 2y - 3z + 1 exactly (periodic: wrap to the first point)."""
    shape = [5, 6, 7][:dim]
    pts = grid_points(shape, periodic, dtype=torch.float64)
    coeff = torch.tensor([1.0, 2.0, -3.0][:dim], dtype=torch.float64)
    x = (pts @ coeff + 1).view(1, 1, *shape)
    q = torch.rand(11, dim, dtype=torch.float64)
    if periodic:
        q = q * torch.tensor([(n - 1) / n for n in shape], dtype=torch.float64)  # stay inside the last cell
    got = sample_grid(x, q, periodic)
    torch.testing.assert_close(got.view(-1), q @ coeff + 1, rtol=0, atol=1e-12)
    if periodic:
        # Half-way between the last point and the wrapped first one along axis 0.
        mid = torch.zeros(1, dim, dtype=torch.float64)
        mid[0, 0] = 1 - 0.5 / shape[0]
        ends = x.reshape(shape[0], -1)[[0, -1], 0]
        torch.testing.assert_close(sample_grid(x, mid, True).view(()), ends.mean())


def test_other_resolutions_are_accepted_with_the_same_weights():
    model = _model(in_channels=1, out_channels=1, n_sensors=[8, 8])
    for n in (8, 16, 11):
        assert model(torch.randn(2, 1, n, n)).shape == (2, 1, n, n)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_sensors": 16}, "n_sensors must be a list of 1 to 3 grid sizes, got 16"),
        ({"n_sensors": [16], "branch": "rnn"}, "branch must be 'mlp' or 'cnn', got 'rnn'"),
        ({"n_sensors": [16], "n_basis": 0}, "n_basis must be a positive integer, got 0"),
        ({"n_sensors": [16], "n_harmonics": -1}, "n_harmonics must be an integer >= 0, got -1"),
        ({"n_sensors": [16], "activation": "swish"}, "activation must be one of .*got 'swish'"),
        ({"n_sensors": [8, 8], "branch": "cnn"}, r"n_sensors=\[8, 8\] is too small for the cnn branch"),
    ],
)
def test_bad_settings_name_the_value(kw, match):
    with pytest.raises(ValueError, match=match):
        _model(**kw)


def test_bad_input_shapes_are_refused():
    model = _model(in_channels=2, out_channels=1, n_sensors=[8, 8])
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 2, \*grid\[2\]\), got \(1, 3, 8, 8\)"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="query points must have 2 coordinates"):
        model.evaluate(torch.randn(1, 2, 8, 8), torch.rand(5, 3))


@pytest.mark.parametrize(("grid", "branch"), [([8], "mlp"), ([11], "mlp"), ([13, 13], "cnn")])
def test_gradients_match_finite_differences(grid, branch):
    """Input and query-point gradients by gradcheck; grid 11 goes through the sensor interpolation."""
    dim = len(grid)
    model = _model(
        in_channels=1,
        out_channels=1,
        n_sensors=[8] if dim == 1 else [13, 13],
        branch=branch,
        periodic=dim == 1,
        n_harmonics=1 if dim == 1 else 0,
        activation="tanh",
    ).double()
    x = torch.randn(1, 1, *grid, dtype=torch.float64, requires_grad=True)
    # Query points away from grid nodes, where interpolation is differentiable.
    q = (0.05 + 0.9 * torch.rand(3, dim, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(model.evaluate, (x, q), eps=1e-6, atol=1e-6)


# -- POD trunk (POD-DeepONet) -------------------------------------------------------------------------


def _pod_data(grid: list[int], n: int = 40, rank: int = 3, channels: int = 2) -> torch.Tensor:
    """Outputs that are a fixed mean plus ``rank`` fixed fields with random weights, per channel."""
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(channels, *grid, generator=g, dtype=torch.float64)
    fields = torch.randn(channels, rank, *grid, generator=g, dtype=torch.float64)
    w = torch.randn(n, channels, rank, generator=g, dtype=torch.float64)
    return mean + torch.einsum("ncr,cr...->nc...", w, fields)


@pytest.mark.parametrize("grid", [[16], [7, 9]])
def test_pod_trunk_spans_the_training_outputs_with_orthonormal_modes(grid):
    y = _pod_data(grid)
    model = _model(
        in_channels=1, out_channels=2, n_sensors=grid, n_basis=5, trunk="pod", periodic=False
    ).double()
    kept = model.fit_outputs(y)
    torch.testing.assert_close(kept, torch.ones(2), rtol=0, atol=1e-6)  # rank 3 <= 5 modes: all energy
    modes = model.pod_modes.flatten(2)[:, :3]  # (C, 3, P): the modes that carry the data
    gram = modes @ modes.transpose(1, 2)
    off_diagonal = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
    assert off_diagonal.abs().max() < 1e-10 * gram.abs().max()  # orthogonal
    # Every training output is the mean plus a combination of the modes, with coefficients of unit variance.
    centred = (y - model.pod_mean).flatten(2)  # (N, C, P)
    coef = torch.linalg.solve(gram, torch.einsum("ncp,ckp->ckn", centred, modes))  # (C, 3, N)
    torch.testing.assert_close(torch.einsum("ckn,ckp->ncp", coef, modes), centred, rtol=0, atol=1e-9)
    torch.testing.assert_close(
        coef.square().mean(-1), torch.ones(2, 3, dtype=torch.float64), rtol=0, atol=1e-10
    )
    # A POD trunk has no trainable trunk: only the branch and the bias.
    assert not hasattr(model, "trunk")
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"branch", "bias"}


def test_pod_output_is_branch_times_modes_plus_mean_and_interpolates_between_nodes():
    grid = [9, 9]
    model = _model(
        in_channels=1, out_channels=2, n_sensors=grid, n_basis=4, trunk="pod", periodic=False
    ).double()
    model.fit_outputs(_pod_data(grid))
    x = torch.randn(3, 1, *grid, dtype=torch.float64)
    b = model.branch_coefficients(x)  # (B, C, K)
    expected = (
        torch.einsum("bck,ck...->bc...", b, model.pod_modes) + model.pod_mean + model.bias.view(1, 2, 1, 1)
    )
    out = model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # Grid nodes queried as arbitrary (shuffled, per-sample) points give the grid values.
    points = grid_points(grid, False, dtype=torch.float64)
    perm = torch.randperm(points.shape[0])
    per_sample = points[perm].expand(3, -1, -1)
    torch.testing.assert_close(model.evaluate(x, per_sample), out.flatten(2)[..., perm], rtol=0, atol=1e-12)
    # Midway between two nodes along y: the mean of the two node values (multilinear interpolation).
    mid = torch.tensor([[2 / 8, 3.5 / 8]], dtype=torch.float64)
    torch.testing.assert_close(
        model.evaluate(x, mid)[..., 0], 0.5 * (out[..., 2, 3] + out[..., 2, 4]), rtol=0, atol=1e-12
    )
    # Finer grids: the branch resamples the input, the modes are interpolated.
    assert model(torch.randn(2, 1, 17, 17, dtype=torch.float64)).shape == (2, 2, 17, 17)


def test_pod_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    grid = [9, 9]
    kw = {
        "in_channels": 1,
        "out_channels": 1,
        "n_sensors": grid,
        "n_basis": 4,
        "trunk": "pod",
        "periodic": False,
    }
    model = _model(**kw)
    model.fit_outputs(_pod_data(grid, channels=1).float())
    torch.save(model.state_dict(), tmp_path / "pod.pt")
    fresh = _model(**kw)
    fresh.load_state_dict(torch.load(tmp_path / "pod.pt", weights_only=True))
    x = torch.randn(2, 1, *grid)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_pod_trunk_bad_use_is_explained():
    with pytest.raises(ValueError, match=r"trunk must be 'mlp' or 'pod', got 'svd'"):
        _model(n_sensors=[8], trunk="svd")
    with pytest.raises(
        ValueError, match=r"n_basis=70 exceeds the 64 points of the sensor grid n_sensors=\[8, 8\]"
    ):
        _model(n_sensors=[8, 8], n_basis=70, trunk="pod")
    model = _model(in_channels=1, out_channels=1, n_sensors=[8], n_basis=4, trunk="pod")
    with pytest.raises(RuntimeError, match="the POD trunk is not fitted: call fit_outputs"):
        model(torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match=r"training outputs must have shape \(N, 1, 8\).*got \(5, 1, 16\)"):
        model.fit_outputs(torch.randn(5, 1, 16))
    with pytest.raises(ValueError, match="fitting the modes needs at least 2 training samples, got 1"):
        model.fit_outputs(torch.randn(1, 1, 8))
    # Fewer samples than modes: the modes beyond the data's rank are zero, and the user is told.
    with pytest.warns(
        UserWarning, match="3 training samples span at most 2 modes; the other modes of n_basis=4"
    ):
        kept = model.fit_outputs(torch.randn(3, 1, 8))
    assert kept.item() == pytest.approx(1.0)
    norms = model.pod_modes[0].norm(dim=-1)
    assert (norms[:2] > 0).all() and norms[2:].max() < 1e-6 * norms[0]
    assert _model(n_sensors=[8]).fit_outputs(torch.randn(5, 3, 8)) is None  # an MLP trunk ignores it
