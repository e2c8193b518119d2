"""Tests of the FNO, its spectral convolution and helper layers, and of every registered model's basics."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from neurop.layers import (
    ChannelMLP,
    SpectralConv,
    act_linear,
    crop,
    gated_add_,
    get_activation,
    grid_embedding,
    pad_right,
    padding_sizes,
    pointwise_linear,
    two_layer,
)
from neurop.models import FNO, MODELS

torch.set_num_threads(1)

# Tiny constructor kwargs and an input per registered model, so every model gets the generic checks.
MODEL_FACTORIES: dict[str, Callable[[], tuple[dict[str, Any], torch.Tensor]]] = {
    "fno": lambda: (
        dict(
            in_channels=2,
            out_channels=3,
            n_modes=[4, 3],
            hidden_channels=8,
            n_layers=2,
            projection_channels=16,
        ),
        torch.randn(2, 2, 12, 10),
    ),
    "deeponet": lambda: (
        dict(
            in_channels=2,
            out_channels=3,
            n_sensors=[8, 6],
            n_basis=5,
            hidden_channels=8,
            n_layers=2,
            n_harmonics=1,
        ),
        torch.randn(2, 2, 8, 6),
    ),
    "pinn": lambda: (
        dict(in_channels=2, out_channels=2, hidden_channels=8, n_layers=2, fourier_features=3),
        torch.rand(16, 2) * 2 - 1,
    ),
    "pig": lambda: (
        dict(
            in_channels=2, out_channels=1, n_gaussians=12, feature_channels=3, hidden_channels=8, sigma0=0.5
        ),
        torch.rand(16, 2) * 2 - 1,
    ),
    # Hard-constrained models: the input is also the PDE's input (a positive Darcy coefficient).
    "fno_hc": lambda: (
        dict(
            in_channels=1,
            n_basis=4,
            pde="darcy",
            n_points=30,
            backbone_kwargs=dict(n_modes=[3, 3], hidden_channels=6, n_layers=2, projection_channels=8),
        ),
        1.0 + torch.rand(2, 1, 9, 9),
    ),
    "fno_hc_moe": lambda: (
        dict(
            in_channels=1,
            n_basis=4,
            pde="darcy",
            experts=[2, 2],
            n_points=60,
            backbone_kwargs=dict(n_modes=[3, 3], hidden_channels=6, n_layers=2, projection_channels=8),
        ),
        1.0 + torch.rand(2, 1, 9, 9),
    ),
    "hard_constraint": lambda: (
        dict(
            in_channels=1,
            backbone="fno",
            n_basis=3,
            pde="diffusion_sorption",
            experts=[1, 2],
            n_points=20,
            on_failure="warn",
            backbone_kwargs=dict(n_modes=[2, 3], hidden_channels=4, n_layers=1),
        ),
        0.2 * torch.rand(2, 1, 6, 9),
    ),
}


def _factory(name: str) -> tuple[dict[str, Any], torch.Tensor]:
    if name not in MODEL_FACTORIES:
        pytest.fail(f"model {name!r} is registered but has no tiny factory in MODEL_FACTORIES")
    torch.manual_seed(0)
    return MODEL_FACTORIES[name]()


def _reference_spectral(conv: SpectralConv, x: torch.Tensor) -> torch.Tensor:
    """Dense reference: full rfftn, multiply every retained corner block, zero the rest, irfftn."""
    d = conv.dim
    dims = tuple(range(2, d + 2))
    sizes = x.shape[2:]
    xf = torch.fft.rfftn(x, dim=dims, norm="forward")
    out = torch.zeros(xf.shape[0], conv.out_channels, *xf.shape[2:], dtype=xf.dtype)
    # Stored mode axes run in reverse spatial order: (m_d, 2 m_{d-1}, ..., 2 m_1, in, out).
    w = torch.view_as_complex(conv.weight.detach()).permute(*range(d - 1, -1, -1), d, d + 1)
    # Every choice of (non-negative | negative) block along the non-last axes is one corner.
    for corner in range(2 ** (d - 1)):
        src, dst = [slice(None), slice(None)], []
        for ax in range(d - 1):
            m, n = conv.n_modes[ax], sizes[ax]
            neg = (corner >> ax) & 1
            src.append(slice(n - m, n) if neg else slice(0, m))
            dst.append(slice(m, 2 * m) if neg else slice(0, m))
        src.append(slice(0, conv.n_modes[-1]))
        dst.append(slice(None))
        out[tuple(src)] = torch.einsum("bi...,...io->bo...", xf[tuple(src)], w[tuple(dst)])
    out[(slice(None), slice(None)) + (0,) * d] += conv.bias.detach()
    return torch.fft.irfftn(out, s=sizes, dim=dims, norm="forward")


@pytest.mark.parametrize(
    ("n_modes", "grid"),
    [([5], [16]), ([5], [10]), ([3, 4], [9, 12]), ([2, 3, 2], [6, 7, 5]), ([2, 2, 2], [5, 4, 4])],
)
def test_spectral_conv_matches_dense_reference(n_modes: list[int], grid: list[int]) -> None:
    torch.manual_seed(0)
    conv = SpectralConv(3, 2, n_modes).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, *grid, dtype=torch.float64)
    torch.testing.assert_close(conv(x), _reference_spectral(conv, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("n_modes", "grid"), [([3], [7]), ([2, 2], [5, 4]), ([1, 2, 2], [3, 4, 4])])
def test_spectral_conv_gradcheck(n_modes: list[int], grid: list[int]) -> None:
    torch.manual_seed(0)
    conv = SpectralConv(2, 2, n_modes).double()
    x = torch.randn(2, 2, *grid, dtype=torch.float64, requires_grad=True)

    def fn(inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(conv, {"weight": weight, "bias": bias}, (inp,))

    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().normal_().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-7)


def _bandlimited(grid: list[int], kmax: int, channels: int, seed: int) -> Callable[[list[int]], torch.Tensor]:
    """A random real trigonometric polynomial with wavenumbers |k_i| <= kmax, sampled on any grid."""
    gen = torch.Generator().manual_seed(seed)
    d = len(grid)
    ks = torch.cartesian_prod(*[torch.arange(-kmax, kmax + 1)] * d).reshape(-1, d).double()
    amp = torch.randn(ks.shape[0], channels, 2, generator=gen, dtype=torch.float64)

    def sample(shape: list[int]) -> torch.Tensor:
        axes = [torch.arange(n, dtype=torch.float64) / n for n in shape]
        pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*shape, d)
        phase = 2 * torch.pi * pts @ ks.T  # (*shape, K)
        values = torch.cos(phase) @ amp[..., 0] + torch.sin(phase) @ amp[..., 1]  # (*shape, channels)
        return values.movedim(-1, 0).unsqueeze(0)

    return sample


@pytest.mark.parametrize(("n_modes", "grid"), [([4], [10]), ([4, 3], [10, 8]), ([3, 3, 2], [8, 8, 6])])
def test_spectral_conv_commutes_with_fourier_interpolation(n_modes: list[int], grid: list[int]) -> None:
    """Same weights on a 2x grid: the output is the exact interpolant of the coarse output."""
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, n_modes).double()
    kmax = min(n_modes) - 1
    f = _bandlimited(grid, kmax, 2, seed=1)
    coarse, fine = f(grid), f([2 * n for n in grid])
    y_coarse, y_fine = conv(coarse), conv(fine)
    assert y_fine.shape == (1, 3, *[2 * n for n in grid])
    # Subsampling the fine output gives the coarse output ...
    sub = y_fine[(slice(None), slice(None)) + tuple(slice(None, None, 2) for _ in grid)]
    torch.testing.assert_close(sub, y_coarse, rtol=1e-9, atol=1e-10)
    # ... and the fine output is the Fourier interpolant of the coarse one (zero-padded spectrum).
    dims = tuple(range(2, len(grid) + 2))
    spec = torch.fft.fftn(y_coarse, dim=dims, norm="forward")
    # Place each coarse coefficient at its wavenumber on the fine grid, one axis at a time.
    for ax, n in enumerate(grid, start=2):
        shape = list(spec.shape)
        shape[ax] = 2 * n
        wavenumbers = torch.fft.fftfreq(n, 1.0 / n).round().long()
        spec = torch.zeros(shape, dtype=spec.dtype).index_copy_(ax, wavenumbers % (2 * n), spec)
    interp = torch.fft.ifftn(spec, dim=dims, norm="forward").real
    torch.testing.assert_close(y_fine, interp, rtol=1e-9, atol=1e-10)


def test_spectral_conv_rejects_too_coarse_grid() -> None:
    conv = SpectralConv(1, 1, [6, 4])
    with pytest.raises(ValueError, match=r"grid size 10 along spatial axis 0 .* 2 \* n_modes\[0\] = 12"):
        conv(torch.randn(1, 1, 10, 16))
    with pytest.raises(ValueError, match=r"grid size 7 along spatial axis 1 .* = 8"):
        conv(torch.randn(1, 1, 12, 7))


@pytest.mark.parametrize(
    ("n_modes", "grid"), [([6], [32]), ([4, 3], [12, 10]), ([2, 2, 2], [6, 5, 4])], ids=["1d", "2d", "3d"]
)
def test_fno_output_shapes(n_modes: list[int], grid: list[int]) -> None:
    model = FNO(3, 2, n_modes, hidden_channels=6, n_layers=2, projection_channels=8, lifting_channels=5)
    y = model(torch.randn(4, 3, *grid))
    assert y.shape == (4, 2, *grid)
    assert y.is_contiguous()


def test_fno_zero_shot_super_resolution_runs_with_same_weights() -> None:
    torch.manual_seed(0)
    model = FNO(1, 1, [4, 4], hidden_channels=8, n_layers=2)
    f = _bandlimited([16, 16], 2, 1, seed=3)
    coarse, fine = f([16, 16]).float(), f([32, 32]).float()
    with torch.no_grad():
        y_c, y_f = model(coarse), model(fine)
    assert y_f.shape == (1, 1, 32, 32)
    # A nonlinear network is not exactly interpolation-equivariant, but a smooth input must give a
    # fine-grid output close to the coarse one at the shared points.
    rel = (y_f[..., ::2, ::2] - y_c).norm() / y_c.norm()
    assert rel < 0.05, rel


def test_fno_coordinate_folding_equals_concatenated_embedding() -> None:
    """Folding the coordinate channels into the lifting bias must equal concatenating them."""
    torch.manual_seed(0)
    model = FNO(2, 1, [3, 3], hidden_channels=6, n_layers=1, projection_channels=7).double()
    x = torch.randn(3, 2, 8, 9, dtype=torch.float64)
    grid = grid_embedding([8, 9], dtype=torch.float64).expand(3, -1, -1, -1)
    xg = torch.cat([x, grid], dim=1)
    h = F.conv2d(xg, model.lifting.weights[0][:, :, None, None], model.lifting.biases[0])
    expected = model.projection(model.blocks[0](h, last=True))
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(grid[0, 0, :, 0], torch.arange(8, dtype=torch.float64) / 8)


def test_fno_block_matches_channels_first_reference() -> None:
    """The fused channels-last block equals the textbook layer written with 1x1 convolutions."""
    torch.manual_seed(0)
    block = FNO(1, 1, [3, 2], hidden_channels=4, n_layers=1).blocks[0].double()
    x = torch.randn(2, 4, 8, 6, dtype=torch.float64)  # channels first
    spec = block.spectral(x)
    z = spec + F.conv2d(x, block.skip_weight[:, :, None, None])
    a = F.gelu(z)
    mlp = block.channel_mlp
    hid = F.gelu(F.conv2d(a, mlp.weights[0][:, :, None, None], mlp.biases[0]))
    u = F.conv2d(hid, mlp.weights[1][:, :, None, None], mlp.biases[1]) + block.gate[None, :, None, None] * x
    expected = F.gelu(u)
    torch.testing.assert_close(block(x), expected, rtol=1e-12, atol=1e-12)


def test_fno_domain_padding_changes_the_grid_not_the_shape() -> None:
    torch.manual_seed(0)
    kw = dict(in_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=6, n_layers=2)
    plain = FNO(**kw)
    padded = FNO(**kw, domain_padding=0.25)
    padded.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 12, 12)
    y0, y1 = plain(x), padded(x)
    assert y1.shape == y0.shape == (2, 1, 12, 12)
    assert not torch.allclose(y0, y1)
    # A grid that only holds the modes once padded: 7 + round(0.25 * 7) = 9 >= 8.
    assert padded(torch.randn(1, 1, 7, 7)).shape == (1, 1, 7, 7)
    with pytest.raises(ValueError, match="grid size 7"):
        plain(torch.randn(1, 1, 7, 7))


def test_padding_helpers_round_trip() -> None:
    x = torch.randn(2, 3, 5, 6)
    pads = padding_sizes([5, 6], 0.5)
    assert pads == [2, 3]  # round half to even for 2.5, exact 3
    y = pad_right(x, pads)
    assert y.shape == (2, 3, 7, 9)
    assert torch.equal(y[:, :, 5:], torch.zeros(2, 3, 2, 9))
    assert torch.equal(y[:, :, :, 6:], torch.zeros(2, 3, 7, 3))
    assert torch.equal(crop(y, [5, 6]), x)
    assert crop(x, [5, 6]) is x
    with pytest.raises(ValueError, match="domain_padding must be >= 0, got -0.1"):
        padding_sizes([4], -0.1)


@pytest.mark.parametrize("name", MODELS.names())
def test_model_backward_reaches_every_parameter(name: str) -> None:
    kwargs, x = _factory(name)
    model = MODELS.build(name, **kwargs)
    y = model(x)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", MODELS.names())
def test_model_state_dict_round_trip_weights_only(name: str) -> None:
    kwargs, x = _factory(name)
    model = MODELS.build(name, **kwargs).eval()
    buf = io.BytesIO()
    torch.save({"kwargs": kwargs, "state_dict": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    torch.manual_seed(123)  # a differently initialised twin
    twin = MODELS.build(name, **ckpt["kwargs"]).eval()
    twin.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["no_mlp", "tanh_linear_lift", "no_embedding"])
def test_fno_variants_backward(variant: str) -> None:
    kw: dict[str, Any] = dict(in_channels=1, out_channels=2, n_modes=[5], hidden_channels=6, n_layers=3)
    kw.update(
        {
            "no_mlp": dict(channel_mlp=False),
            "tanh_linear_lift": dict(activation="tanh", lifting_channels=None),
            "no_embedding": dict(positional_embedding=False),
        }[variant]
    )
    model = FNO(**kw)
    model(torch.randn(2, 1, 16)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if variant == "no_embedding":
        assert model.lifting.weights[0].shape == (6, 1)


def test_fno_autocast_cpu_bfloat16() -> None:
    model = FNO(1, 1, [4, 4], hidden_channels=8, n_layers=2)
    x = torch.randn(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    y.float().sum().backward()
    ref = model(x)
    assert (y.float() - ref).abs().max() < 0.1 * ref.abs().max() + 1e-2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(activation="swish"),
            r"activation must be one of \['gelu', 'relu', 'silu', 'tanh'\], got 'swish",
        ),
        (dict(n_modes=[]), r"n_modes must have 1, 2 or 3 entries .* got \[\]"),
        (dict(n_modes=[4, 4, 4, 4]), r"n_modes must have 1, 2 or 3 entries .* got \[4, 4, 4, 4\]"),
        (dict(n_modes=4), r"n_modes must be a list .* got 4"),
        (dict(n_modes=[4, 0]), r"n_modes entries must be positive integers, got \[4, 0\]"),
        (dict(hidden_channels=0), r"hidden_channels must be a positive integer, got 0"),
        (dict(n_layers=-1), r"n_layers must be a positive integer, got -1"),
        (dict(in_channels=0), r"in_channels must be a positive integer, got 0"),
        (dict(projection_channels=0), r"projection_channels must be a positive integer, got 0"),
        (dict(lifting_channels=0), r"lifting_channels must be a positive integer, got 0"),
        (dict(domain_padding=-0.5), r"domain_padding must be a float >= 0, got -0.5"),
    ],
)
def test_fno_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    full: dict[str, Any] = dict(in_channels=1, out_channels=1, n_modes=[4, 4])
    full.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FNO(**full)


def test_fno_rejects_unknown_keyword_and_bad_input() -> None:
    with pytest.raises(TypeError, match="width"):
        FNO(1, 1, [4], width=8)  # type: ignore[call-arg]
    model = FNO(2, 1, [4, 4], hidden_channels=4)
    with pytest.raises(ValueError, match=r"input of shape \(B, 2, \*spatial\[2\]\), got \(1, 3, 8, 8\)"):
        model(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"got \(1, 2, 8\)"):
        model(torch.randn(1, 2, 8))


def test_activation_and_channel_mlp() -> None:
    assert get_activation("silu") is F.silu
    mlp = ChannelMLP(3, 2, 5, n_layers=3, activation="relu")
    x = torch.randn(4, 3, 7)
    h = F.relu(F.conv1d(x, mlp.weights[0][..., None], mlp.biases[0]))
    h = F.relu(F.conv1d(h, mlp.weights[1][..., None], mlp.biases[1]))
    torch.testing.assert_close(mlp(x), F.conv1d(h, mlp.weights[2][..., None], mlp.biases[2]))
    w = torch.randn(5, 3)
    torch.testing.assert_close(pointwise_linear(x, w), torch.einsum("oi,bin->bon", w, x))
    with pytest.raises(ValueError, match="hidden_channels must be a positive integer, got 0"):
        ChannelMLP(3, 2, 0)


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one_chunk", "per_sample_chunks"])
@pytest.mark.parametrize("activation", ["gelu", "tanh", "relu", "silu"])
def test_act_linear_memory_lean_backward_matches_finite_differences(
    activation: str, chunk_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk_bytes is not None:
        monkeypatch.setattr("neurop.layers.mlp._CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(0)
    pre = torch.randn(3, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = act_linear(pre, w, b, activation)
    assert y.grad_fn is not None and "ActLinear" in type(y.grad_fn).__name__  # the fused path is tested
    expected = torch.einsum("oi,bin->bon", w, get_activation(activation)(pre)) + b[:, None]
    torch.testing.assert_close(y, expected)
    assert torch.autograd.gradcheck(lambda p, w_, b_: act_linear(p, w_, b_, activation), (pre, w, b))


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one_chunk", "per_sample_chunks"])
@pytest.mark.parametrize("activation", ["gelu", "tanh", "relu", "silu"])
def test_two_layer_memory_lean_backward_matches_finite_differences(
    activation: str, chunk_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk_bytes is not None:
        monkeypatch.setattr("neurop.layers.mlp._CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 3, 5, **f64)
    w1, b1 = torch.randn(6, 3, **f64), torch.randn(6, **f64)
    w2, b2 = torch.randn(2, 6, **f64), torch.randn(2, **f64)
    y = two_layer(x, w1, b1, w2, b2, activation)
    assert y.grad_fn is not None and "TwoLayer" in type(y.grad_fn).__name__  # the fused path is tested
    hidden = get_activation(activation)(torch.einsum("hi,bin->bhn", w1, x) + b1[:, None])
    torch.testing.assert_close(y, torch.einsum("oh,bhn->bon", w2, hidden) + b2[:, None])
    fn = lambda *args: two_layer(*args, activation)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w1, b1, w2, b2))
    # Without a gradient for x (e.g. data fed straight into a 2-layer lifting) the weights still get theirs.
    x_data = x.detach()
    assert torch.autograd.gradcheck(lambda *w: two_layer(x_data, *w, activation), (w1, b1, w2, b2))


def test_gated_add_backward_matches_finite_differences() -> None:
    torch.manual_seed(0)
    q = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(gated_add_(q.clone(), x, g), q + g[:, None] * x)
    assert torch.autograd.gradcheck(lambda q_, x_, g_: gated_add_(q_.clone(), x_, g_), (q, x, g))


@pytest.mark.parametrize("in_channels", [1, 3])
def test_fno_parameter_gradients_match_finite_differences(in_channels: int) -> None:
    """End-to-end check of every hand-written backward (lifting, fused MLPs, gating, spectral)."""
    torch.manual_seed(0)
    model = FNO(in_channels, 2, [2], hidden_channels=3, n_layers=2, lifting_channels=4, projection_channels=5)
    model = model.double()
    x = torch.randn(2, in_channels, 6, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def fn(*ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6)


def test_fno_input_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    model = FNO(1, 1, [2, 2], hidden_channels=3, n_layers=2, projection_channels=4).double()
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-6)


def test_fno_trains_after_inference_mode_call() -> None:
    """Cached DFT matrices first built under inference mode must still work in training."""
    model = FNO(1, 1, [3], hidden_channels=4, n_layers=1)
    x = torch.randn(2, 1, 13)  # a grid size no other test uses, so the cache entry is new here
    with torch.inference_mode():
        y0 = model(x)
    y1 = model(x)
    y1.sum().backward()
    torch.testing.assert_close(y0, y1.detach())
    assert model.blocks[0].spectral.weight.grad is not None


@pytest.mark.parametrize(
    ("n_modes", "grid"), [([3], [10]), ([3, 2], [8, 6]), ([2, 2, 2], [5, 4, 6])], ids=["1d", "2d", "3d"]
)
@pytest.mark.parametrize("channel_mlp", [True, False])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "tanh"])
def test_fno_block_hand_written_backward_matches_autograd(
    n_modes: list[int], grid: list[int], channel_mlp: bool, last: bool, activation: str, monkeypatch
) -> None:
    """The training path (one autograd node, batch walked in slices) equals the module path of plain
    autograd ops in value and in every gradient; tiny slices force several per pass."""
    import neurop.models.fno as fno_module

    monkeypatch.setattr(fno_module, "_BACKWARD_CHUNK_BYTES", 1)
    monkeypatch.setattr(fno_module, "_FORWARD_CHUNK_BYTES", 1)
    torch.manual_seed(0)
    block = fno_module.FNOBlock(5, n_modes, activation, channel_mlp).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a non-trivial gate and spectral bias
    x = torch.randn(3, 5, *grid, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, *grid, dtype=torch.float64)

    def run(fused: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(fno_module.FNOBlock, "_fused", lambda self, x_: fused)
        x.grad = None
        block.zero_grad()
        out = block(x, last=last)
        out.backward(g)
        assert x.grad is not None
        return out.detach(), [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]

    out_f, grads_f = run(True)
    out_m, grads_m = run(False)
    torch.testing.assert_close(out_f, out_m, rtol=1e-12, atol=1e-12)
    names = ["x"] + [n for n, _ in block.named_parameters()]
    for name, a, b in zip(names, grads_f, grads_m, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=lambda m, n=name: f"grad of {n}: {m}")


def test_fno_block_hand_written_backward_matches_finite_differences(monkeypatch) -> None:
    import neurop.models.fno as fno_module

    monkeypatch.setattr(fno_module, "_BACKWARD_CHUNK_BYTES", 1)
    torch.manual_seed(0)
    block = fno_module.FNOBlock(3, [2, 2], "gelu", True).double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in block.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in block.parameters())

    def fn(x_: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        assert block._fused(x_)
        return torch.func.functional_call(block, dict(zip(names, ps, strict=True)), (x_,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("grid", "in_channels"), [([10], 1), ([8, 6], 2), ([5, 4, 6], 1)], ids=["1d", "2d", "3d"]
)
@pytest.mark.parametrize("positional_embedding", [True, False])
def test_fno_fused_lifting_matches_module_path(
    grid: list[int], in_channels: int, positional_embedding: bool, monkeypatch
) -> None:
    """The training lifting (first layer recomputed slice by slice) equals the two-module path in value and in
    every gradient, with and without the coordinate channels folded into its shift."""
    import neurop.models.fno as fno_module

    monkeypatch.setattr(fno_module, "_BACKWARD_CHUNK_BYTES", 1)
    monkeypatch.setattr(fno_module, "_FORWARD_CHUNK_BYTES", 1)
    calls = []
    apply = fno_module._LiftFunction.apply
    monkeypatch.setattr(fno_module._LiftFunction, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    model = FNO(
        in_channels,
        2,
        [2] * len(grid),
        hidden_channels=3,
        n_layers=1,
        lifting_channels=5,
        projection_channels=4,
        positional_embedding=positional_embedding,
    ).double()
    x = torch.randn(3, in_channels, *grid, dtype=torch.float64)
    g = torch.randn(3, 2, *grid, dtype=torch.float64)

    def run(fused: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(fno_module, "_FUSED_LIFT", fused)
        model.zero_grad()
        out = model(x)
        out.backward(g)
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out_f, grads_f = run(True)
    assert calls == [1]
    out_m, grads_m = run(False)
    assert calls == [1]
    torch.testing.assert_close(out_f, out_m, rtol=1e-12, atol=1e-12)
    names = [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, grads_f, grads_m, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12, msg=lambda m, n=name: f"grad of {n}: {m}")


@pytest.mark.parametrize(
    ("n_modes", "grid"), [([3], [10]), ([3, 2], [8, 6]), ([2, 2, 2], [5, 4, 6])], ids=["1d", "2d", "3d"]
)
def test_spectral_transforms_and_their_adjoints(n_modes: list[int], grid: list[int]) -> None:
    """<to_grid(y), g> = Re <y, to_modes(g)> with the adjoint matrices, and vice versa."""
    from neurop.layers.spectral_conv import (
        adjoint_transform_matrices,
        to_grid,
        to_modes,
        transform_matrices,
    )

    torch.manual_seed(0)
    dtype, device = torch.float64, torch.device("cpu")
    fwd, fwd_c, inv, inv_c = transform_matrices(grid, n_modes, dtype, device)
    inv_h, inv_c_h, fwd_h, fwd_c_h = adjoint_transform_matrices(grid, n_modes, dtype, device)
    n_coeffs = n_modes[-1] * 2 ** (len(grid) - 1) * int(torch.tensor(n_modes[:-1]).prod())
    x = torch.randn(2, 3, *grid, dtype=dtype)
    g = torch.randn(2, 3, *grid, dtype=dtype)
    y = torch.randn(n_coeffs, 2, 3, dtype=torch.complex128)
    t = torch.randn(n_coeffs, 2, 3, dtype=torch.complex128)
    lhs = (to_grid(y, grid, n_modes, inv_c, inv) * g.reshape(-1, grid[-1])).sum()
    rhs = (y.conj() * to_modes(g, grid, n_modes, inv_h, inv_c_h)).sum().real
    torch.testing.assert_close(lhs, rhs)
    lhs = (to_modes(x, grid, n_modes, fwd, fwd_c).conj() * t).sum().real
    rhs = (x.reshape(-1, grid[-1]) * to_grid(t, grid, n_modes, fwd_c_h, fwd_h)).sum()
    torch.testing.assert_close(lhs, rhs)
    # Accumulating into ``out`` adds to it.
    base = torch.randn(2 * 3 * (x.numel() // (6 * grid[-1])), grid[-1], dtype=dtype)
    expected = base + to_grid(y, grid, n_modes, inv_c, inv)
    torch.testing.assert_close(to_grid(y, grid, n_modes, inv_c, inv, out=base.clone()), expected)


def test_fno_training_layer_batch_slices(monkeypatch) -> None:
    """CPU: slices of ~chunk bytes per intra-op thread covering the batch; accelerators: one slice."""
    from neurop.models.fno import _batch_slices

    t = torch.empty(7, 4, 256)  # 4 KiB per sample
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _batch_slices(t, 8192) == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 7)]
    assert _batch_slices(t, 1) == [slice(i, i + 1) for i in range(7)]
    assert _batch_slices(t, 8192, channels=8) == [slice(i, i + 1) for i in range(7)]  # counted 8 KiB/sample
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert _batch_slices(t, 8192) == [slice(0, 4), slice(4, 7)]
    assert _batch_slices(torch.empty(7, 4, 256, device="meta"), 1) == [slice(0, 7)]
