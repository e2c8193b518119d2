"""Tests of the finite-difference Darcy operator, its solvers and the Darcy data generator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.fft
import scipy.sparse.linalg as spla
import torch

from neurop.pdes import PDES
from neurop.pdes.darcy import Darcy
from neurop.pdes.fd import (
    StencilOperator,
    apply_operator,
    assemble_matrix,
    dst1,
    face_coefficients,
    operator_diagonal,
    pcg_solve,
    relative_residual,
)

PI = math.pi


# ---------------------------------------------------------------------------------------------- manufactured
def _manufactured(s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u = sin(πx) sin(2πy), a = 1 + ½ sin(2πx) cos(πy), f = −∇·(a∇u) exactly, on the (s, s) node grid."""
    x = np.linspace(0.0, 1.0, s)
    X, Y = np.meshgrid(x, x, indexing="ij")
    u = np.sin(PI * X) * np.sin(2 * PI * Y)
    ux = PI * np.cos(PI * X) * np.sin(2 * PI * Y)
    uy = 2 * PI * np.sin(PI * X) * np.cos(2 * PI * Y)
    a = 1 + 0.5 * np.sin(2 * PI * X) * np.cos(PI * Y)
    ax = PI * np.cos(2 * PI * X) * np.cos(PI * Y)
    ay = -0.5 * PI * np.sin(2 * PI * X) * np.sin(PI * Y)
    f = -(ax * ux + ay * uy) + 5 * PI**2 * a * u  # Δu = −5π² u
    return a, u, f


def _sparse_solve(a: np.ndarray, f: np.ndarray, mean: str) -> np.ndarray:
    s = a.shape[0]
    u = np.zeros((s, s))
    u[1:-1, 1:-1] = spla.spsolve(assemble_matrix(a, mean), f[1:-1, 1:-1].ravel()).reshape(s - 2, s - 2)
    return u


@pytest.mark.parametrize("mean", ["harmonic", "arithmetic"])
def test_second_order_convergence_smooth_coefficient(mean: str) -> None:
    sizes = [17, 33, 65]
    errors = []
    for s in sizes:
        a, u_exact, f = _manufactured(s)
        errors.append(np.abs(_sparse_solve(a, f, mean) - u_exact).max())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]
    assert all(1.9 <= p <= 2.1 for p in orders), (errors, orders)
    assert errors[-1] < 2e-3


def test_pcg_matches_manufactured_solution_and_sparse_solve() -> None:
    a, u_exact, f = _manufactured(33)
    u_sparse = _sparse_solve(a, f, "harmonic")
    u, res, _ = pcg_solve(torch.from_numpy(a)[None], torch.from_numpy(f), tol=1e-12)
    assert res.item() <= 1e-12
    np.testing.assert_allclose(u[0].numpy(), u_sparse, atol=1e-11)
    assert np.abs(u[0].numpy() - u_exact).max() < 1e-2


# ---------------------------------------------------------------------------------------------- operator
def _random_coefficient(s: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 5.0, (s, s))


@pytest.mark.parametrize("mean", ["harmonic", "arithmetic"])
def test_matrix_symmetric_positive_definite_and_matrix_free_apply_agrees(mean: str) -> None:
    s = 12
    a = _random_coefficient(s)
    mat = assemble_matrix(a, mean)
    n = s - 2
    assert mat.shape == (n * n, n * n)
    assert mat.nnz == 5 * n * n - 4 * n  # 5-point stencil minus the couplings across the boundary
    assert abs(mat - mat.T).max() == 0.0
    assert np.linalg.eigvalsh(mat.toarray()).min() > 0
    rng = np.random.default_rng(1)
    u = rng.standard_normal((3, s, s))
    ax, ay = face_coefficients(torch.from_numpy(np.broadcast_to(a, (3, s, s)).copy()), mean)
    au = apply_operator(ax, ay, torch.from_numpy(u)).numpy()
    u[:, [0, -1], :] = 0.0  # the sparse matrix sees only the interior values
    u[:, :, [0, -1]] = 0.0
    for k in range(3):
        np.testing.assert_allclose(au[k, 1:-1, 1:-1].ravel(), mat @ u[k, 1:-1, 1:-1].ravel(), rtol=1e-12)
    assert np.all(au[:, [0, -1], :] == 0) and np.all(au[:, :, [0, -1]] == 0)
    op = StencilOperator(torch.from_numpy(a)[None], mean)
    v = torch.from_numpy(u[:1, 1:-1, 1:-1].copy())
    np.testing.assert_allclose(op.matvec(v)[0].numpy().ravel(), mat @ v[0].numpy().ravel(), rtol=1e-12)
    np.testing.assert_allclose(operator_diagonal(ax, ay)[0, 1:-1, 1:-1].numpy().ravel(), mat.diagonal())


def test_face_means() -> None:
    a = np.array([[3.0, 12.0], [12.0, 12.0]])
    ax, ay = face_coefficients(a, "harmonic")
    assert ax[0, 0] == pytest.approx(2 * 3 * 12 / 15) and ax[0, 1] == 12.0
    ax, ay = face_coefficients(a, "arithmetic")
    assert ax[0, 0] == pytest.approx(7.5) and ay[0, 0] == pytest.approx(7.5)
    with pytest.raises(ValueError, match="face_mean.*'geometric'"):
        face_coefficients(a, "geometric")  # type: ignore[arg-type]


def test_dst1_matches_definition_and_scipy() -> None:
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    n = 7
    j = np.arange(1, n + 1)
    S = np.sin(PI * np.outer(j, j) / (n + 1))
    np.testing.assert_allclose(dst1(x, dim=1).numpy(), np.einsum("kj,bjc->bkc", S, x.numpy()), atol=1e-13)
    np.testing.assert_allclose(dst1(x, dim=-1).numpy(), scipy.fft.dst(x.numpy(), type=1) / 2, atol=1e-13)


@pytest.mark.parametrize("backend", ["torch", "scipy"])
def test_poisson_preconditioner_inverts_the_laplacian(backend: str) -> None:
    s = 11
    op = StencilOperator(torch.from_numpy(_random_coefficient(s))[None])
    r = torch.randn(2, s - 2, s - 2, dtype=torch.float64)
    lap = assemble_matrix(np.ones((s, s))).toarray()
    expected = np.linalg.solve(lap, r.reshape(2, -1).numpy().T).T.reshape(r.shape)
    np.testing.assert_allclose(op.poisson_precondition(r, backend).numpy(), expected, rtol=1e-10, atol=1e-14)


def test_poisson_preconditioner_is_exact_for_constant_coefficient() -> None:
    a = torch.full((2, 33, 33), 4.0, dtype=torch.float64)
    u, res, it = pcg_solve(a, 1.0, tol=1e-12)
    assert it == 1 and res.max() <= 1e-12
    np.testing.assert_allclose(
        u[1].numpy(), _sparse_solve(a[0].numpy(), np.ones((33, 33)), "harmonic"), atol=1e-14
    )


def test_relative_residual_matches_sparse_residual() -> None:
    s = 10
    a = _random_coefficient(s)
    u = np.random.default_rng(2).standard_normal((s, s))
    u[[0, -1], :] = 0
    u[:, [0, -1]] = 0
    mat = assemble_matrix(a)
    b = np.full(mat.shape[0], 2.0)
    expected = np.linalg.norm(b - mat @ u[1:-1, 1:-1].ravel()) / np.linalg.norm(b)
    got = relative_residual(torch.from_numpy(a)[None], torch.from_numpy(u)[None], 2.0)
    assert got.shape == (1,) and got.item() == pytest.approx(expected, rel=1e-12)


def test_pcg_errors_and_jacobi() -> None:
    a = torch.from_numpy(np.stack([_random_coefficient(17, k) for k in range(2)]))
    u_p, res_p, it_p = pcg_solve(a, 1.0, tol=1e-10)
    u_j, res_j, it_j = pcg_solve(a, 1.0, tol=1e-10, preconditioner="jacobi")
    assert res_p.max() <= 1e-10 and res_j.max() <= 1e-10
    assert it_j > it_p
    np.testing.assert_allclose(u_j.numpy(), u_p.numpy(), atol=1e-9 * u_p.abs().max().item())
    with pytest.raises(RuntimeError, match="max_iter=2"):
        pcg_solve(a, 1.0, tol=1e-10, max_iter=2)
    with pytest.raises(ValueError, match="float64.*float32"):
        pcg_solve(a.float(), 1.0, tol=1e-10)
    with pytest.raises(ValueError, match="preconditioner.*'ilu'"):
        pcg_solve(a, 1.0, preconditioner="ilu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(B, s, s\)"):
        pcg_solve(a[0], 1.0)


# ---------------------------------------------------------------------------------------------- generator
SOLVER_NAMES = ["direct", "amg", "cg"]


@pytest.fixture(scope="module")
def piecewise_solutions() -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    seeds = [0, 1, 2]
    a = Darcy(resolution=65, stride=1).sample_coefficient(seeds)
    out = {name: Darcy(resolution=65, stride=1, solver=name, tol=1e-10).solve(a) for name in SOLVER_NAMES}
    return a, out


def test_coefficient_is_two_valued(piecewise_solutions) -> None:
    a, _ = piecewise_solutions
    assert a.dtype == torch.float64 and a.shape == (3, 65, 65)
    values = set(torch.unique(a).tolist())
    assert values == {3.0, 12.0}
    for k in range(3):  # the zero-mean field takes both signs in every sample
        assert 0.05 < (a[k] == 12.0).double().mean() < 0.95


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_piecewise_solution_boundary_positivity_residual(piecewise_solutions, solver: str) -> None:
    a, out = piecewise_solutions
    u, res = out[solver]
    assert u.shape == a.shape
    assert torch.all(u[:, [0, -1], :] == 0) and torch.all(u[:, :, [0, -1]] == 0)
    assert torch.all(u[:, 1:-1, 1:-1] > 0)  # f = 1 > 0 and A is an M-matrix
    independent = relative_residual(a, u, 1.0)
    assert torch.all(independent <= 1e-8), independent
    # atol: the direct solver's residuals are round-off, summed in a different order.
    np.testing.assert_allclose(res.numpy(), independent.numpy(), rtol=1e-6, atol=1e-12)
    # 3 ≤ a_face ≤ 12 gives A_3 ≤ A ≤ A_12 (Loewner order), hence fᵀu_12 < fᵀu < fᵀu_3 for f = 1,
    # with u_c = u_1 / c the constant-coefficient solutions.
    u_1 = pcg_solve(torch.ones_like(a[:1]), 1.0, tol=1e-12)[0][0]
    total = u.sum(dim=(-2, -1))
    assert torch.all(total > u_1.sum() / 12) and torch.all(total < u_1.sum() / 3)


def test_solvers_agree(piecewise_solutions) -> None:
    _, out = piecewise_solutions
    ref = out["direct"][0]
    for name in ("amg", "cg"):
        err = (out[name][0] - ref).abs().max() / ref.abs().max()
        assert err < 1e-8, (name, err)


def test_harmonic_and_arithmetic_differ_only_near_interfaces(piecewise_solutions) -> None:
    a, out = piecewise_solutions
    u_h = out["direct"][0]
    u_a, _ = Darcy(resolution=65, stride=1, solver="direct", face_mean="arithmetic").solve(a)
    rel = ((u_a - u_h).abs().max() / u_h.abs().max()).item()
    assert 1e-4 < rel < 0.1  # both are consistent discretisations of the same problem
    # Arithmetic ≥ harmonic on every face, so A_arith ≥ A_harm (Loewner) and fᵀu drops for f = 1.
    assert u_a.sum() < u_h.sum()


@pytest.mark.parametrize("solver", ["amg", "cg"])
def test_iteration_cap_raises(solver: str) -> None:
    gen = Darcy(resolution=33, stride=1, solver=solver, max_iter=1)
    with pytest.raises(RuntimeError, match="max_iter=1"):
        gen.solve(gen.sample_coefficient([0]))


def test_generator_fields_coords_and_determinism() -> None:
    gen = Darcy(resolution=33, stride=4, solver="cg", tol=1e-10)
    assert PDES.get("darcy") is Darcy
    m = 9
    assert gen.fields()["a"].dims == ("x", "y") and gen.fields()["u"].shape == (m, m)
    c = gen.coords()
    np.testing.assert_allclose(c["x"], np.linspace(0, 1, m))
    np.testing.assert_allclose(c["y"], np.linspace(0, 1, m))
    out1 = gen.solve_batch([5, 6])
    out2 = gen.solve_batch([6])
    assert out1["a"].shape == (2, m, m) and out1["u"].shape == (2, m, m)
    assert torch.equal(out1["a"][1], out2["a"][0])
    assert torch.allclose(out1["u"][1], out2["u"][0], rtol=0, atol=1e-12)
    assert torch.equal(gen.solve_batch([5, 6])["u"], out1["u"])
    full = Darcy(resolution=33, stride=1, solver="cg", tol=1e-10).solve_batch([5, 6])
    assert torch.equal(full["a"][:, ::4, ::4], out1["a"])
    torch.testing.assert_close(full["u"][:, ::4, ::4], out1["u"], rtol=0, atol=1e-12)
    json.dumps(gen.params())
    json.dumps(gen.solver_info())


def test_auto_solver_resolution() -> None:
    assert Darcy(resolution=9, stride=1).resolve_solver("cpu") == "cg"
    assert Darcy(resolution=9, stride=1, solver="direct").resolve_solver("cuda") == "direct"
    high = Darcy(resolution=9, stride=1, a_high=1e4, a_low=1.0)
    assert high.resolve_solver("cpu") == "amg" and high.resolve_solver("cuda") == "cg"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"resolution": 421, "stride": 8}, r"stride.*420.*stride=8"),
        ({"resolution": 2}, r"resolution.*>= 3.*2"),
        ({"resolution": 10.5}, r"resolution.*10\.5"),
        ({"stride": 0}, r"stride.*>= 1.*0"),
        ({"a_low": 0.0}, r"a_low must be > 0, got 0\.0"),
        ({"a_high": -12.0}, r"a_high must be > 0, got -12\.0"),
        ({"tol": 0.0}, r"tol must be > 0, got 0\.0"),
        ({"tol": 2.0}, r"tol must be in \(0, 1\), got 2\.0"),
        ({"tau": -1.0}, r"tau must be > 0, got -1\.0"),
        ({"alpha": 0.5}, r"alpha must be > 1.*0\.5"),
        ({"forcing": 0.0}, r"forcing must be finite and non-zero, got 0\.0"),
        ({"solver": "lu"}, r"solver must be one of \('auto', 'direct', 'amg', 'cg'\), got 'lu'"),
        ({"face_mean": "min"}, r"face_mean must be one of .*harmonic.*got 'min'"),
        ({"max_iter": 0}, r"max_iter.*>= 1.*0"),
    ],
)
def test_bad_arguments_name_key_and_value(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        Darcy(**kwargs)


def test_yaml_generator_section_builds() -> None:
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "pde" / "darcy.yaml").read_text())
    gen = PDES.build("darcy", **cfg["generator"])
    assert gen.stored_size == 85 and gen.resolve_solver("cpu") == "cg"


def test_solutions_transform_with_the_square_symmetries_so_dihedral_augmentation_is_exact() -> None:
    """Rotating/reflecting the coefficient rotates/reflects the solution (data.augment='dihedral')."""
    from neurop.data.datamodule import DihedralAugment

    gen = Darcy(resolution=33, stride=1, solver="direct")
    a = gen.sample_coefficient([3])
    u, _ = gen.solve(a)
    for k in range(8):
        a_k = DihedralAugment.transform(a, k)
        u_k, _ = gen.solve(a_k)
        torch.testing.assert_close(u_k, DihedralAugment.transform(u, k), rtol=0, atol=1e-12 * u.abs().max())
    # The 8 maps are distinct (a generic field is moved by all but the identity).
    images = torch.stack([DihedralAugment.transform(a[0], k) for k in range(8)]).flatten(1)
    assert torch.cdist(images, images).fill_diagonal_(1.0).min() > 0
