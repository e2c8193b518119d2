"""Tests of the hard-constraint layer: partitions, the least-squares solve, implicit gradients, experts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn

from neurop.constraints import (
    ConstraintSolveError,
    GridResidual,
    HardConstraint,
    build_residual,
    check_partition,
    from_blocks,
    interface_jumps,
    solve_weights,
    to_blocks,
)
from neurop.models import MODELS
from neurop.models.hard_constraint import HardConstrainedModel
from neurop.pdes.darcy import Darcy
from neurop.pdes.diffusion_sorption import DiffusionSorption

torch.set_num_threads(1)

F64 = torch.float64


# ---------------------------------------------------------------------------------------------- helpers
def _smooth_basis(n: int, grid: Sequence[int], seed: int, scale: float = 1.0) -> Tensor:
    """N smooth random fields (1, N, *grid): low-frequency sine/cosine products with random amplitudes."""
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(0, 1, s, dtype=F64) for s in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    out = torch.zeros(n, *grid, dtype=F64)
    for k in range(1, 4):
        amp = torch.randn(n, len(grid), 2, generator=gen, dtype=F64) / k
        for a, x in enumerate(mesh):
            lift = (None,) * len(grid)
            out += amp[(slice(None), a, 0, *lift)] * torch.sin(math.pi * k * x)
            out += amp[(slice(None), a, 1, *lift)] * torch.cos(math.pi * k * x)
    return scale * out.unsqueeze(0)


def _darcy_case(s: int = 9, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Coefficient (1, 1, s, s) and the generator's solution (1, 1, s, s), float64."""
    out = Darcy(resolution=s, stride=1, solver="direct").solve_batch([seed])
    return out["a"][:, None].to(F64), out["u"][:, None].to(F64)


def _ds_case(n_x: int = 9, n_t: int = 6, seed: int = 0) -> Tensor:
    """A diffusion–sorption trajectory (1, 1, n_t, n_x), float64 (also the layer's input)."""
    gen = DiffusionSorption(resolution=n_x, n_t=n_t)
    return gen.solve_batch([seed])["u"][:, None].to(F64)


class CubicResidual(GridResidual):
    """A nonlinear residual with a known zero: g(u) = u³ + u − a, the boundary rows u = a₀ on the edges."""

    name = "cubic"
    n_features = 1
    linear = False
    local = True
    periodic = (False, False)

    def spacing(self, grid: Sequence[int]) -> tuple[float, ...]:
        return (1.0, 1.0)

    def interior(self, grid: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        mask = torch.zeros(tuple(grid), dtype=torch.bool, device=device)
        mask[1:-1, 1:-1] = True
        return mask

    def features(
        self, u: Tensor, inputs: Tensor, spacing: Sequence[float], periodic: Sequence[bool]
    ) -> tuple[Tensor, Tensor]:
        return u.unsqueeze(2), torch.ones(u.shape[2:], dtype=torch.bool, device=u.device)

    def pointwise(self, features: Tensor, inputs: Tensor) -> Tensor:
        u = features[:, 0]
        return u**3 + u - inputs[:, 0]

    def boundary(self, u: Tensor, inputs: Tensor, spacing: Sequence[float]) -> tuple[Tensor, Tensor]:
        edge = ~self.interior(u.shape[2:], u.device)
        return u[..., edge], inputs[:, 1][..., edge]


def _cubic_case(n: int = 4, grid: tuple[int, int] = (8, 8), seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Basis (1, N, *grid), inputs (1, 2, *grid) whose residual vanishes at ω*, and ω* (N,)."""
    basis = _smooth_basis(n, grid, seed)
    omega = torch.linspace(0.5, -0.5, n, dtype=F64)
    u = torch.einsum("n,bn...->b...", omega, basis)
    inputs = torch.stack([u**3 + u, u], dim=1)
    return basis, inputs, omega


# ---------------------------------------------------------------------------------------------- partitions
@pytest.mark.parametrize(
    ("grid", "parts"),
    [((8, 6), (2, 3)), ((9, 9), (2, 2)), ((6, 17), (1, 4)), ((4, 8, 8), (1, 2, 2)), ((12,), (3,))],
)
def test_blocks_round_trip_and_cover_the_grid(grid: tuple[int, ...], parts: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, *grid)
    blocks = to_blocks(x, check_partition(grid, parts))
    assert blocks.shape[:2] == (2 * math.prod(parts), 3)
    torch.testing.assert_close(from_blocks(blocks, parts, grid), x, rtol=0, atol=0)
    # Block (sample 1, last expert) is the last corner of the grid.
    corner = x[1][(slice(None), *[slice(n - s, n) for n, s in zip(grid, blocks.shape[2:], strict=True)])]
    torch.testing.assert_close(blocks[-1], corner, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("grid", "parts", "match"),
    [
        ((17, 17), (3, 1), r"experts\[0\]=3 divides neither grid axis 0 of size 17 nor 16"),
        ((6, 10), (1, 4), r"experts\[1\]=4 divides neither grid axis 1 of size 10 nor 9"),
        ((8, 8), (2,), r"one block count per grid axis \(2 axes, grid \[8, 8\]\), got \[2\]"),
        ((8, 8), (0, 1), r"experts\[0\] must be an integer >= 1, got 0"),
    ],
)
def test_partition_errors_name_the_values(grid: tuple[int, ...], parts: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_partition(grid, parts)


# ---------------------------------------------------------------------------------------------- the solve
def test_linear_solve_recovers_the_generator_solution_of_darcy() -> None:
    """With the exact discrete solution among smooth basis functions, ω picks it and the residual vanishes."""
    a, u = _darcy_case(9)
    basis = torch.cat([u, _smooth_basis(3, (9, 9), seed=1, scale=float(u.abs().max()))], dim=1)
    layer = HardConstraint(build_residual("darcy", {}), n_points=40, ridge=1e-12).eval()
    out = layer(basis, a)
    info = layer.last_info
    assert info is not None and info.iterations == 1 and bool(info.converged.all())
    torch.testing.assert_close(
        layer.last_omega[0, 0], torch.tensor([1.0, 0, 0, 0], dtype=F64), atol=1e-6, rtol=0
    )
    r, bnd = layer.residual.field_residual(out, a)
    assert float(r.abs().max()) < 1e-6 and float(bnd.abs().max()) < 1e-9
    assert float(info.residual_rms.max()) < 1e-8


@pytest.mark.parametrize("experts", [None, [2, 2]])
def test_nonlinear_solve_drives_the_residual_below_tolerance(experts: list[int] | None) -> None:
    basis, inputs, omega = _cubic_case()
    layer = HardConstraint(CubicResidual(), n_points=36, experts=experts, tol=1e-10, ridge=1e-14).eval()
    out = layer(basis, inputs)
    info = layer.last_info
    assert info is not None and info.iterations > 1  # Levenberg–Marquardt, not one linear solve
    assert bool(info.converged.all()) and not bool(info.singular.any())
    assert float(info.residual_rms.max()) < 1e-9
    torch.testing.assert_close(layer.last_omega[0], omega.expand_as(layer.last_omega[0]), atol=1e-7, rtol=0)
    r, bnd = layer.residual.field_residual(out, inputs)
    assert float(r.abs().max()) < 1e-8 and float(bnd.abs().max()) < 1e-8


def test_diffusion_sorption_solve_is_stationary_and_beats_the_reference_weights() -> None:
    """Least squares: the solved cost is at most that of ω = e₀ when basis 0 is the reference solution."""
    u = _ds_case(17, 11)
    basis = torch.cat([u, 0.1 * _smooth_basis(5, (11, 17), seed=2)], dim=1)
    res = build_residual("diffusion_sorption", {})
    layer = HardConstraint(res, n_points=None, tol=1e-8, ridge=0.0).eval()
    out = layer(basis, u)
    info = layer.last_info
    assert info is not None and bool(info.converged.all()) and float(info.grad_ratio.max()) <= 1e-6
    r_hc, b_hc = res.field_residual(out, u)
    r_ref, b_ref = res.field_residual(u, u)
    cost = r_hc.pow(2).mean() + b_hc.pow(2).mean()
    cost_ref = r_ref.pow(2).mean() + b_ref.pow(2).mean()
    assert float(cost) <= float(cost_ref) * (1 + 1e-9)


def test_solve_weights_is_batched_over_problems() -> None:
    """All problems of a batch are solved together and equal their separate solves."""
    basis, inputs, _ = _cubic_case(grid=(6, 6))
    res = CubicResidual()
    feats = res.features(basis, inputs, (1.0, 1.0), (False, False))[0].reshape(1, 4, 1, -1)
    feats = torch.cat([feats, 2 * feats])
    inp = inputs.reshape(1, 2, -1).expand(2, -1, -1)
    rows = torch.zeros(2, 4, 0, dtype=F64)
    target = torch.zeros(2, 0, dtype=F64)
    omega, info = solve_weights(feats, inp, rows, target, res.pointwise, linear=False, tol=1e-10)
    assert omega.shape == (2, 4) and info.converged.shape == (2,)
    for i in range(2):
        single, _ = solve_weights(
            feats[i : i + 1], inp[i : i + 1], rows[:1], target[:1], res.pointwise, linear=False, tol=1e-10
        )
        torch.testing.assert_close(single[0], omega[i], atol=1e-9, rtol=0)
    torch.testing.assert_close(omega[1], omega[0] / 2, atol=1e-8, rtol=0)


def test_converged_problems_leave_the_batch_without_changing_any_result() -> None:
    """Problems converging after different numbers of iterations: the solve without autograd drops each one
    from the batch when it converges; its weights, flags and the iteration count equal the masked solve
    that keeps every problem (the unrolled one) and each problem's separate solve."""
    basis, inputs, _ = _cubic_case(grid=(6, 6))
    res = CubicResidual()
    feats = res.features(basis, inputs, (1.0, 1.0), (False, False))[0].reshape(1, 4, 1, -1)
    scales = [1.0, 8.0, 0.05, 3.0]  # ω* = ω₀ / scale: the far starts need more iterations
    feats = torch.cat([s * feats for s in scales])
    inp = inputs.reshape(1, 2, -1).expand(len(scales), -1, -1)
    rows = torch.zeros(len(scales), 4, 0, dtype=F64)
    target = torch.zeros(len(scales), 0, dtype=F64)
    kw = dict(linear=False, tol=1e-10, ridge=0.0)
    omega, info = solve_weights(feats, inp, rows, target, res.pointwise, **kw)
    masked, info_m = solve_weights(feats, inp, rows, target, res.pointwise, backward="unroll", **kw)
    alone = [
        solve_weights(feats[i : i + 1], inp[:1], rows[:1], target[:1], res.pointwise, **kw)
        for i in range(len(scales))
    ]
    iterations = [a[1].iterations for a in alone]
    assert len(set(iterations)) > 1  # the problems do converge at different iterations
    assert info.iterations == info_m.iterations == max(iterations)
    torch.testing.assert_close(omega, masked.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(omega, torch.cat([a[0] for a in alone]), atol=1e-12, rtol=0)
    assert bool(info.converged.all()) and bool(info_m.converged.all())
    torch.testing.assert_close(info.residual_rms, info_m.residual_rms, atol=1e-14, rtol=0)


# ---------------------------------------------------------------------------------------------- gradients
def test_linear_implicit_gradients_match_finite_differences() -> None:
    a, _ = _darcy_case(7)
    layer = HardConstraint(build_residual("darcy", {}), n_points=15).eval()
    basis = _smooth_basis(3, (7, 7), seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b: layer(b, a), (basis,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("experts", [None, [1, 2]])
def test_nonlinear_implicit_gradients_match_finite_differences(experts: list[int] | None) -> None:
    u = _ds_case(9, 6)
    layer = HardConstraint(build_residual("diffusion_sorption", {}), n_points=20, experts=experts, tol=1e-8)
    layer.eval()
    torch.manual_seed(0)
    basis = (u + 0.3 * torch.randn(1, 3, 6, 9, dtype=F64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b: layer(b, u), (basis,), eps=1e-6, atol=1e-5, rtol=1e-3)


def _grad(layer: HardConstraint, basis: Tensor, inputs: Tensor, weight: Tensor) -> Tensor:
    b = basis.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad((layer(b, inputs) * weight).sum(), b)
    return g


@pytest.mark.parametrize("pde", ["diffusion_sorption", "navier_stokes"])
def test_implicit_gradients_match_an_unrolled_solve(pde: str) -> None:
    torch.manual_seed(0)
    if pde == "diffusion_sorption":
        inputs = _ds_case(9, 6)
        basis = inputs + 0.3 * torch.randn(1, 4, 6, 9, dtype=F64)
        kw: dict = dict(experts=[1, 2])
    else:
        w0 = _smooth_basis(1, (8, 8), seed=4)[:, :, None].expand(1, 1, 4, 8, 8)
        inputs = w0.contiguous()
        basis = inputs + 0.3 * _smooth_basis(4, (4, 8, 8), seed=5)
        kw = dict(experts=[1, 2, 2])
    res = build_residual(pde, {"t_final": 1.0} if pde == "navier_stokes" else {})
    implicit = HardConstraint(res, n_points=40, tol=1e-10, **kw).eval()
    unrolled = HardConstraint(res, n_points=40, tol=1e-10, backward="unroll", **kw).eval()
    weight = torch.randn(1, 1, *basis.shape[2:], dtype=F64)
    g_imp, g_unr = _grad(implicit, basis, inputs, weight), _grad(unrolled, basis, inputs, weight)
    assert implicit.last_info is not None and implicit.last_info.iterations > 1
    assert float((g_imp - g_unr).norm() / g_unr.norm()) < 1e-5


def test_backward_is_implicit_not_unrolled() -> None:
    """The implicit path records one autograd node for the solve, not the iterations."""
    u = _ds_case(9, 6)
    layer = HardConstraint(build_residual("diffusion_sorption", {}), n_points=20).eval()
    basis = (u + 0.3 * torch.randn(1, 3, 6, 9, dtype=F64)).requires_grad_(True)
    out = layer(basis, u)
    names: set[str] = set()
    seen: set[int] = set()
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        names.add(type(fn).__name__)
        stack += [nxt for nxt, _ in fn.next_functions]
    assert any("ImplicitWeights" in n for n in names), names
    assert not any("Cholesky" in n for n in names), names


# ---------------------------------------------------------------------------------------------- experts
def test_one_expert_equals_the_global_constraint() -> None:
    u = _ds_case(9, 6)
    basis = u + 0.3 * _smooth_basis(4, (6, 9), seed=6)
    res = build_residual("diffusion_sorption", {})
    one = HardConstraint(res, n_points=30, experts=[1, 1]).eval()
    glob = HardConstraint(res, n_points=30, experts=None).eval()
    torch.testing.assert_close(one(basis, u), glob(basis, u), rtol=0, atol=0)
    torch.testing.assert_close(one.last_omega, glob.last_omega, rtol=0, atol=0)


@pytest.mark.parametrize("pde", ["diffusion_sorption", "darcy"])
def test_experts_are_independent(pde: str) -> None:
    """Changing the basis inside one block (away from boundary rows) changes only that block's weights."""
    if pde == "diffusion_sorption":
        inputs = _ds_case(17, 6)
        basis = inputs + 0.3 * _smooth_basis(4, (6, 17), seed=7)
        experts, changed = [1, 4], (slice(1, None), slice(5, 8))  # block 1 holds x nodes 4..8
        changed_block = 1
    else:
        inputs, u = _darcy_case(9)
        basis = torch.cat([u, _smooth_basis(3, (9, 9), seed=8, scale=float(u.abs().max()))], dim=1)
        experts, changed = [2, 2], (slice(1, 4), slice(1, 4))  # inside block 0 (nodes 0..4 x 0..4)
        changed_block = 0
    layer = HardConstraint(build_residual(pde, {}), n_points=None, experts=experts).eval()
    out0 = layer(basis, inputs)
    omega0 = layer.last_omega.clone()
    bumped = basis.clone()
    bumped[(0, slice(None), *changed)] += 0.05 * torch.randn_like(bumped[(0, slice(None), *changed)])
    out1 = layer(bumped, inputs)
    omega1 = layer.last_omega
    assert omega0.shape == (1, 4, 4)
    others = [k for k in range(4) if k != changed_block]
    torch.testing.assert_close(omega1[:, others], omega0[:, others], rtol=0, atol=1e-12)
    assert float((omega1[:, changed_block] - omega0[:, changed_block]).abs().max()) > 1e-6
    # The output of each expert is its weights times the basis on its block.
    parts = experts
    blocks = to_blocks(bumped, parts)
    expected = from_blocks(
        torch.einsum("kn,kn...->k...", omega1[0], blocks).unsqueeze(1), parts, basis.shape[2:]
    )
    torch.testing.assert_close(out1, expected)
    assert not torch.equal(out0, out1)


@pytest.mark.parametrize("expert_boundary", ["global", "local"])
def test_experts_boundary_rows_global_or_local(expert_boundary: str) -> None:
    """Global rows tie every expert to the whole boundary; local rows only to the boundary in its block."""
    a, u = _darcy_case(9)
    basis = torch.cat([u, _smooth_basis(3, (9, 9), seed=10, scale=float(u.abs().max()))], dim=1)
    layer = HardConstraint(
        build_residual("darcy", {}), n_points=None, experts=[2, 2], expert_boundary=expert_boundary
    ).eval()
    layer(basis, a)
    omega0 = layer.last_omega.clone()
    bumped = basis.clone()
    bumped[0, 1:, 0, 1:3] += 0.01  # boundary nodes (0, 1..2): in block 0 only
    layer(bumped, a)
    moved = (layer.last_omega - omega0).abs().amax(-1)[0]  # per expert
    assert float(moved[0]) > 1e-8
    if expert_boundary == "global":
        assert bool((moved[1:] > 1e-11).all()), moved
    else:
        assert float(moved[1:].max()) < 1e-14, moved
    assert bool(layer.last_info.converged.all())


def test_problems_spread_over_devices_equal_one_solve() -> None:
    """Chunks of the samples × experts problems solved "elsewhere" (CPU twice here) give the same weights
    and gradients as one batched solve."""
    u = torch.cat([_ds_case(9, 6, seed=s) for s in (0, 1)])
    torch.manual_seed(0)
    basis = u + 0.3 * torch.randn(2, 4, 6, 9, dtype=F64)
    res = build_residual("diffusion_sorption", {})
    one = HardConstraint(res, n_points=20, experts=[1, 2], tol=1e-8).eval()
    spread = HardConstraint(res, n_points=20, experts=[1, 2], tol=1e-8, devices=["cpu", "cpu", "cpu"]).eval()
    weight = torch.randn(2, 1, 6, 9, dtype=F64)
    torch.testing.assert_close(_grad(spread, basis, u, weight), _grad(one, basis, u, weight))
    torch.testing.assert_close(spread.last_omega, one.last_omega)
    assert spread.last_info is not None and spread.last_info.converged.shape == (4,)
    with pytest.raises(
        ValueError, match=r"devices must be a non-empty list of device names or None, got 'cpu'"
    ):
        HardConstraint(res, devices="cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"devices has an invalid device name 'gpu0'"):
        HardConstraint(res, devices=["gpu0"])


def test_local_expert_rows_need_row_locations() -> None:
    basis, inputs, _ = _cubic_case()
    layer = HardConstraint(CubicResidual(), n_points=36, experts=[2, 2], expert_boundary="local")
    with pytest.raises(ValueError, match=r"expert_boundary='local' needs the locations .* pde 'cubic'"):
        layer(basis, inputs)
    with pytest.raises(
        ValueError, match=r"expert_boundary must be one of \('global', 'local'\), got 'mixed'"
    ):
        HardConstraint(CubicResidual(), expert_boundary="mixed")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ wrapping models
class TinyConv(nn.Module):
    """A two-layer convolutional grid model (test-only backbone)."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(hidden_channels, out_channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@pytest.mark.parametrize("backbone", ["fno", "tiny_conv_test_only"])
@pytest.mark.parametrize("experts", [None, [2, 2]])
def test_layer_wraps_any_grid_backbone(
    backbone: str, experts: list[int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MODELS._entries, "tiny_conv_test_only", TinyConv)
    kwargs = (
        dict(n_modes=[3, 3], hidden_channels=6, n_layers=2, projection_channels=8)
        if backbone == "fno"
        else dict(hidden_channels=5)
    )
    torch.manual_seed(0)
    model = MODELS.build(
        "hard_constraint",
        in_channels=1,
        backbone=backbone,
        backbone_kwargs=kwargs,
        n_basis=6,
        pde="darcy",
        experts=experts,
        n_points=60,
    )
    assert isinstance(model, HardConstrainedModel) and isinstance(model.backbone, MODELS.get(backbone))
    a, _ = _darcy_case(9)
    out = model(a.float())
    assert out.shape == (1, 1, 9, 9) and out.dtype == torch.float32
    info = model.constraint.last_info
    assert info is not None and bool(info.converged.all())
    assert info.converged.numel() == (1 if experts is None else 4)
    out.square().mean().backward()
    assert all(p.grad is not None and bool(torch.any(p.grad != 0)) for p in model.backbone.parameters())


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_partition_is_reported_with_the_grid() -> None:
    layer = HardConstraint(build_residual("diffusion_sorption", {}), experts=[1, 3])
    u = _ds_case(11, 6)
    with pytest.raises(ValueError, match=r"experts\[1\]=3 divides neither grid axis 1 of size 11 nor 10"):
        layer(u.expand(1, 4, -1, -1), u)
    with pytest.raises(ValueError, match=r"one block count per grid axis .* \(2 axes\), got \[2, 2, 1\]"):
        HardConstraint(build_residual("darcy", {}), experts=[2, 2, 1])


def test_more_basis_functions_than_rows_is_rejected() -> None:
    a, _ = _darcy_case(9)
    layer = HardConstraint(build_residual("darcy", {}), n_points=4, n_boundary=2)
    with pytest.raises(
        ValueError,
        match=r"more basis functions \(N=8\) than least-squares rows per expert "
        r"\(4 sampled points \+ 2 boundary rows = 6\)",
    ):
        layer(torch.randn(1, 8, 9, 9, dtype=F64), a)


def test_pde_without_grid_residual_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"pde 'burgers' has no grid residual.*darcy, diffusion_sorption"):
        build_residual("burgers", {})
    with pytest.raises(ValueError, match="pde 'burgers' has no grid residual"):
        MODELS.build("fno_hc", in_channels=1, pde="burgers", backbone_kwargs=dict(n_modes=[2]))
    with pytest.raises(ValueError, match=r"parameters \['nu'\] are not darcy generator parameters"):
        build_residual("darcy", {"nu": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_points=0), r"n_points must be a positive integer or None, got 0"),
        (dict(ridge=-1.0), r"ridge must be >= 0, got -1.0"),
        (dict(tol=2.0), r"tol must be in \(0, 1\), got 2.0"),
        (dict(on_failure="ignore"), r"on_failure must be one of \('raise', 'warn'\), got 'ignore'"),
        (dict(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
    ],
)
def test_layer_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HardConstraint(build_residual("darcy", {}), **kwargs)


def test_model_builders_reject_bad_arguments() -> None:
    kw = dict(in_channels=1, backbone_kwargs=dict(n_modes=[2, 2]))
    with pytest.raises(ValueError, match=r"use fno_hc_moe for experts=\[2, 2\]"):
        MODELS.build("fno_hc", experts=[2, 2], **kw)
    with pytest.raises(ValueError, match="fno_hc_moe needs experts"):
        MODELS.build("fno_hc_moe", experts=None, **kw)
    with pytest.raises(ValueError, match="out_channels=2"):
        MODELS.build("fno_hc", out_channels=2, **kw)
    with pytest.raises(ValueError, match=r"backbone_kwargs must not set out_channels \(got 3\)"):
        MODELS.build("fno_hc", in_channels=1, backbone_kwargs=dict(n_modes=[2, 2], out_channels=3))


def test_singular_solve_raises_with_the_final_residual() -> None:
    a, _ = _darcy_case(9)
    layer = HardConstraint(build_residual("darcy", {}), n_points=30, ridge=0.0)
    basis = _smooth_basis(2, (9, 9), seed=9)
    basis = torch.cat([basis, basis[:, :1]], dim=1)  # two identical basis functions: JᵀJ is singular
    with pytest.raises(
        ConstraintSolveError, match=r"1 of 1 problems failed \(1 singular\).*final residual rms"
    ):
        layer(basis, a)
    warn = HardConstraint(build_residual("darcy", {}), n_points=30, ridge=0.0, on_failure="warn")
    with pytest.warns(RuntimeWarning, match="final residual rms max"):
        out = warn(basis, a)
    assert torch.isfinite(out).all()
    # The default ridge makes the same problem solvable.
    assert torch.isfinite(HardConstraint(build_residual("darcy", {}), n_points=30)(basis, a)).all()


def test_non_converging_solve_raises_with_the_final_residual() -> None:
    basis, inputs, _ = _cubic_case()
    layer = HardConstraint(CubicResidual(), n_points=36, max_iter=1, tol=1e-12)
    with pytest.raises(
        ConstraintSolveError,
        match=r"problems failed \(0 singular\) after 1 iterations; "
        r"final residual rms max \d",
    ):
        layer(3 * basis, inputs)


# ------------------------------------------------------------------------------------------ block residual
@pytest.mark.parametrize("pde", ["diffusion_sorption", "darcy"])
def test_layer_returns_the_experts_block_fields(pde: str) -> None:
    """``return_experts`` gives every expert's own field on its block; assembling them gives ``u``."""
    if pde == "diffusion_sorption":
        inputs = _ds_case(17, 6)
        basis = inputs + 0.3 * _smooth_basis(4, (6, 17), seed=11)
        experts = [1, 4]
    else:
        inputs, u = _darcy_case(9)
        basis = torch.cat([u, _smooth_basis(3, (9, 9), seed=12, scale=float(u.abs().max()))], dim=1)
        experts = [2, 2]
    layer = HardConstraint(build_residual(pde, {}), n_points=None, experts=experts).eval()
    u, out = layer(basis, inputs, return_experts=True)
    blocks = out.blocks
    torch.testing.assert_close(u, layer(basis, inputs), rtol=0, atol=0)
    expected = torch.einsum("kn,kn...->k...", layer.last_omega[0], to_blocks(basis, experts)).unsqueeze(1)
    torch.testing.assert_close(blocks, expected)
    torch.testing.assert_close(from_blocks(blocks, experts, basis.shape[2:]), u)


def test_block_residual_is_the_field_residual_for_one_block() -> None:
    u = _ds_case(9, 6) + 0.01 * _smooth_basis(1, (6, 9), seed=13)
    res = build_residual("diffusion_sorption", {})
    whole, _ = res.field_residual(u, u)
    torch.testing.assert_close(res.block_residual(u, u, [1, 1], (6, 9)), whole, rtol=0, atol=0)


def test_block_residual_ignores_jumps_between_blocks_and_sees_each_block() -> None:
    """Constant blocks solve diffusion–sorption exactly (u_t = u_xx = 0): the per-block residual is zero
    where the assembled field's residual is large at the jumps; a wrong field in one block shows up in
    exactly that block's points."""
    res = build_residual("diffusion_sorption", {})
    grid, parts = (6, 17), [1, 4]
    inputs = _ds_case(17, 6)
    levels = torch.tensor([0.9, 0.5, 0.2, 0.05], dtype=F64)
    blocks = levels.reshape(4, 1, 1, 1).expand(4, 1, 6, 5).clone()  # 17 = 4 * 4 + 1: blocks of 5 nodes
    r_blocks = res.block_residual(blocks, inputs, parts, grid)
    assert r_blocks.shape == (1, 4 * 5 * 5 - 2 * 5)  # t >= 1, x not at the two domain ends
    assert float(r_blocks.abs().max()) < 1e-12
    r_grid, _ = res.field_residual(from_blocks(blocks, parts, grid), inputs)
    assert float(r_grid.abs().max()) > 1.0
    bent = blocks.clone()
    bent[2, 0, 2:, 2] += 0.01  # an interior node of block 2 from t index 2 on
    r_bent = res.block_residual(bent, inputs, parts, grid).reshape(-1)
    sizes = [20, 25, 25, 20]  # interior points per block (5 times x 5 nodes, less a domain end)
    per_block = r_bent.split(sizes)
    assert [float(p.abs().max()) > 1e-6 for p in per_block] == [False, False, True, False]


def test_block_residual_refuses_a_non_local_residual() -> None:
    res = build_residual("navier_stokes", {})
    w = torch.zeros(4, 1, 3, 4, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"pde 'navier_stokes' is not local"):
        res.block_residual(w, torch.zeros(1, 1, 3, 8, 8, dtype=F64), [1, 2, 2], (3, 8, 8))


@pytest.mark.parametrize(("n_x", "nodes"), [(17, [[4], [8], [12]]), (16, [[3, 4], [7, 8], [11, 12]])])
def test_interface_jumps_compare_neighbouring_experts_where_blocks_meet(n_x: int, nodes: list) -> None:
    """Blocks that share a node are compared there; blocks that do not, on the two nodes either side."""
    gen = torch.Generator().manual_seed(14)
    fields = torch.randn(2, 3, 5, n_x, generator=gen, dtype=F64)
    weights = torch.randn(2, 4, 3, generator=gen, dtype=F64)
    full = torch.einsum("bkn,bn...->bk...", weights, fields)  # every expert's field on the whole grid
    expected = [full[:, j, :, i] - full[:, j + 1, :, i] for j in range(3) for i in nodes[j]]
    torch.testing.assert_close(interface_jumps(fields, weights, [1, 4]), torch.cat(expected, dim=1))
    same = interface_jumps(fields, weights[:, :1].expand(-1, 4, -1), [1, 4])
    assert float(same.abs().max()) == 0.0
    assert interface_jumps(fields, weights[:, :1], [1, 1]).shape == (2, 0)


def test_interface_jumps_in_two_axes_pair_the_blocks_of_each_cross_section() -> None:
    gen = torch.Generator().manual_seed(15)
    fields = torch.randn(1, 2, 9, 9, generator=gen, dtype=F64)
    weights = torch.randn(1, 4, 2, generator=gen, dtype=F64)  # blocks (0,0), (0,1), (1,0), (1,1)
    full = torch.einsum("bkn,bn...->bk...", weights, fields)[0]
    expected = torch.cat(
        [
            full[0, 4, 0:5] - full[2, 4, 0:5],  # axis 0, shared row 4: left column blocks, then right ones
            full[1, 4, 4:9] - full[3, 4, 4:9],
            full[0, 0:5, 4] - full[1, 0:5, 4],  # axis 1, shared column 4: top row of blocks, then bottom
            full[2, 4:9, 4] - full[3, 4:9, 4],
        ]
    )
    torch.testing.assert_close(interface_jumps(fields, weights, [2, 2])[0], expected)
