"""Tests of the pointwise PDE problems (residuals, conditions, references), jets and collocation sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurop.data.collocation import CollocationSampler
from neurop.layers.jet import autograd_jet
from neurop.models.pinn import PINN
from neurop.pdes.allen_cahn import AllenCahn, solve_allen_cahn
from neurop.pdes.burgers import burgers_pointwise_residual, burgers_shock_solution, solve_burgers
from neurop.pdes.darcy import darcy_pointwise_residual
from neurop.pdes.helmholtz import Helmholtz
from neurop.pdes.physics import PROBLEMS, DarcySmooth, DecayingVortex, build_problem, sample_box
from neurop.tasks.physics import PhysicsTask

torch.set_num_threads(1)
F64 = torch.float64


def _points(problem, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return sample_box(problem.bounds, n, "uniform", g, F64)


# ----------------------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize(("a1", "a2"), [(1, 4), (10, 10)])
def test_helmholtz_residual_vanishes_on_exact_solution_only(a1: int, a2: int) -> None:
    p = Helmholtz(a1=a1, a2=a2, n_eval=8)
    x = _points(p, 500)
    res = p.residual(x, autograd_jet(p.exact, x, p.second_axes))
    scale = (a1**2 + a2**2) * math.pi**2  # size of the source term
    assert res.abs().max() < 1e-12 * scale

    def perturbed(z: torch.Tensor) -> torch.Tensor:  # still zero on the boundary
        return p.exact(z) + 1e-3 * (1 - z[:, 0:1] ** 2) * (1 - z[:, 1:2] ** 2)

    res_bad = p.residual(x, autograd_jet(perturbed, x, p.second_axes))
    assert res_bad.abs().max() > 1e-3
    # u = 0 on the boundary, and the reference is the exact solution on the grid
    bc = p.conditions(0, 64, generator=torch.Generator().manual_seed(1), dtype=F64)["bc"]
    assert p.exact(bc.points).abs().max() < 1e-12
    ref = p.reference
    np.testing.assert_allclose(ref.values.reshape(-1), p.exact(ref.points(F64))[:, 0].numpy(), atol=0)


def test_navier_stokes_decaying_mode_is_exact_and_perturbations_are_not() -> None:
    p = DecayingVortex(viscosity=1e-2, wavenumber=2)
    x = _points(p, 400)
    res = p.residual(x, autograd_jet(p.exact, x, p.second_axes))
    assert res.abs().max() < 1e-12
    # a slightly faster decay breaks the vorticity equation only; a non-eigenmode ψ breaks both equations
    slow = DecayingVortex(viscosity=1.1e-2, wavenumber=2)
    res_decay = p.residual(x, autograd_jet(slow.exact, x, p.second_axes))
    assert res_decay[:, 0].abs().max() < 1e-12 and res_decay[:, 1].abs().max() > 1e-2

    def skew(z: torch.Tensor) -> torch.Tensor:
        out = p.exact(z).clone()
        out[:, 0] = out[:, 0] + 0.01 * torch.sin(2 * math.pi * z[:, 0])
        return out

    res_skew = p.residual(x, autograd_jet(skew, x, p.second_axes))
    assert res_skew[:, 0].abs().max() > 0.1 and res_skew[:, 1].abs().max() > 1e-3
    # periodic in x and y, decays at rate 2(2πk)²ν
    ref = p.reference
    assert ref.values.shape == (64, 64, 11)
    ratio = np.abs(ref.values[..., -1]).max() / np.abs(ref.values[..., 0]).max()
    assert ratio == pytest.approx(math.exp(-2 * (4 * math.pi) ** 2 * 1e-2), rel=1e-10)


def _burgers_fd_residual(nu: float, x: np.ndarray, t: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Residual of the Cole–Hopf solution by 4th-order central differences, and the size of its terms."""

    def u(dx: float, dt: float) -> np.ndarray:
        return np.array(
            [
                burgers_shock_solution([xi + dx], [ti + dt], nu)[0, 0].item()
                for xi, ti in zip(x, t, strict=True)
            ]
        )

    c = [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12]
    c2 = [-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12]
    ux_shift = [u(k * h, 0) for k in (-2, -1, 0, 1, 2)]
    u0 = ux_shift[2]
    ux = sum(ci * ui for ci, ui in zip(c, ux_shift, strict=True)) / h
    uxx = sum(ci * ui for ci, ui in zip(c2, ux_shift, strict=True)) / h**2
    ut = sum(ci * u(0, k * h) for ci, k in zip(c, (-2, -1, 0, 1, 2), strict=True)) / h
    args = [torch.from_numpy(a) for a in (u0, ut, ux, uxx)]
    res = burgers_pointwise_residual(*args, nu).numpy()
    return res, np.abs(ut) + np.abs(u0 * ux) + nu * np.abs(uxx)


def test_burgers_cole_hopf_solution_satisfies_the_pde() -> None:
    nu = 0.01 / math.pi
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.95, 0.95, 30)
    t = rng.uniform(0.05, 0.25, 30)  # before the shock steepens beyond what h resolves
    res, size = _burgers_fd_residual(nu, x, t, 1e-3)
    assert np.abs(res).max() < 1e-6 * size.max()
    # boundary and initial conditions
    sol = burgers_shock_solution([-1.0, 1.0], [0.0, 0.3, 1.0], nu)
    assert sol.abs().max() < 1e-12
    xs = np.linspace(-1, 1, 9)
    np.testing.assert_allclose(burgers_shock_solution(xs, [0.0], nu)[:, 0], -np.sin(np.pi * xs), atol=1e-15)
    # odd symmetry u(−x) = −u(x)
    s = burgers_shock_solution(xs, [0.5, 1.0], nu).numpy()
    np.testing.assert_allclose(s, -s[::-1], atol=1e-12)


def test_burgers_cole_hopf_matches_the_spectral_solver() -> None:
    # u on [−1, 1] with ν equals the periodic [0, 1) solution v(x', t') with x = 2x' − 1, t' = t / 2,
    # viscosity ν / 2 and v0 = sin 2πx' (the 2-periodic odd extension, rescaled).
    nu, n = 0.05 / math.pi, 512
    xp = torch.arange(n, dtype=F64) / n
    v = solve_burgers(torch.sin(2 * math.pi * xp), nu / 2, [0.0, 0.25, 0.5], dt=2e-4)
    exact = burgers_shock_solution(2 * xp.numpy() - 1, [0.5, 1.0], nu)
    err = (v[1:].T - exact).abs().max()
    assert err < 1e-8, err


def test_burgers_perturbed_solution_has_a_residual() -> None:
    p = build_problem("burgers", n_x=16, n_t=8)
    x = _points(p, 200)
    net = PINN(2, 1, 8, 2, bounds=[list(b) for b in p.bounds]).double()
    res = p.residual(x, net.jet(x, p.second_axes))
    assert res.abs().mean() > 1e-3
    ic = p.conditions(32, 32, dtype=F64)["ic"]
    np.testing.assert_allclose(ic.target[:, 0], -torch.sin(math.pi * ic.points[:, 0]), atol=1e-15)


def test_darcy_fd_reference_satisfies_the_pointwise_residual_at_second_order() -> None:
    errs = []
    for res_n in (33, 65, 129):
        p = DarcySmooth(contrast=0.5, forcing=1.0, resolution=res_n, stride=1)
        u = torch.from_numpy(p.reference.values)
        h = 1.0 / (res_n - 1)
        g = torch.linspace(0, 1, res_n, dtype=F64)
        pts = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1)[1:-1, 1:-1].reshape(-1, 2)
        a, a_x, a_y = p.coefficient(pts)
        u_x = ((u[2:, 1:-1] - u[:-2, 1:-1]) / (2 * h)).reshape(-1)
        u_y = ((u[1:-1, 2:] - u[1:-1, :-2]) / (2 * h)).reshape(-1)
        u_xx = ((u[2:, 1:-1] - 2 * u[1:-1, 1:-1] + u[:-2, 1:-1]) / h**2).reshape(-1)
        u_yy = ((u[1:-1, 2:] - 2 * u[1:-1, 1:-1] + u[1:-1, :-2]) / h**2).reshape(-1)
        r = darcy_pointwise_residual(a, a_x, a_y, u_x, u_y, u_xx, u_yy, 1.0)
        errs.append(r.abs().max().item())
        if res_n == 65:
            # a perturbation of relative size 1e-2 leaves an O(1) residual
            du = 0.1 * u.abs().max() * torch.sin(math.pi * g)[:, None] * torch.sin(2 * math.pi * g)[None]
            w = u + du
            w_xx = ((w[2:, 1:-1] - 2 * w[1:-1, 1:-1] + w[:-2, 1:-1]) / h**2).reshape(-1)
            w_yy = ((w[1:-1, 2:] - 2 * w[1:-1, 1:-1] + w[1:-1, :-2]) / h**2).reshape(-1)
            w_x = ((w[2:, 1:-1] - w[:-2, 1:-1]) / (2 * h)).reshape(-1)
            w_y = ((w[1:-1, 2:] - w[1:-1, :-2]) / (2 * h)).reshape(-1)
            assert (
                darcy_pointwise_residual(a, a_x, a_y, w_x, w_y, w_xx, w_yy, 1.0).abs().max() > 30 * errs[-1]
            )
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert errs[0] < 0.02 and min(orders) > 1.85, (errs, orders)


def test_darcy_coefficient_gradient_matches_autograd() -> None:
    p = DarcySmooth(contrast=0.7, resolution=9, stride=1)
    x = _points(p, 50).requires_grad_(True)
    a, a_x, a_y = p.coefficient(x)
    (g,) = torch.autograd.grad(a.sum(), x)
    torch.testing.assert_close(torch.stack([a_x, a_y], 1), g, rtol=1e-12, atol=1e-12)


def test_allen_cahn_reference_satisfies_the_pde_and_converges() -> None:
    n, d, gamma = 512, 1e-4, 5.0
    x = torch.linspace(-1, 1, n + 1, dtype=F64)[:-1]
    u0 = AllenCahn.initial(x)
    tc, dt = 0.5, 1e-3
    sol = solve_allen_cahn(u0, [tc - dt, tc, tc + dt], d, gamma, dt=1e-4)
    k = math.pi * torch.fft.rfftfreq(n, d=1.0 / n, dtype=F64)  # 2π/L · index, L = 2
    u_xx = torch.fft.irfft(-(k**2) * torch.fft.rfft(sol[1]), n=n)
    u_t = (sol[2] - sol[0]) / (2 * dt)
    from neurop.pdes.allen_cahn import allen_cahn_pointwise_residual

    res = allen_cahn_pointwise_residual(sol[1], u_t, u_xx, d, gamma)
    assert res.abs().max() < 1e-3 * u_t.abs().max().clamp(min=1.0)
    wrong = allen_cahn_pointwise_residual(sol[1], u_t, u_xx, d, 1.1 * gamma)
    assert wrong.abs().max() > 0.1
    # halving the step changes the t = 1 solution by less than 1e-8
    coarse = solve_allen_cahn(u0, [1.0], d, gamma, dt=4e-4)
    fine = solve_allen_cahn(u0, [1.0], d, gamma, dt=2e-4)
    assert (coarse - fine).abs().max() < 1e-8


def test_burgers_periodic_initial_condition_interpolates_the_generator_sample() -> None:
    p = build_problem("burgers_periodic", resolution=64, stride=2, n_t=3)
    grid = torch.arange(64, dtype=F64) / 64
    torch.testing.assert_close(p.initial(grid), p._u0_grid, rtol=0, atol=1e-12)
    ref = p.reference
    assert ref.values.shape == (32, 3)
    np.testing.assert_allclose(ref.values[:, 0], p._u0_grid[::2].numpy(), atol=1e-12)
    conds = p.conditions(10, 12, dtype=F64)
    assert set(conds) == {"ic", "periodic"}
    per = conds["periodic"]
    assert (per.points[:, 0] == 0).all() and (per.partner[:, 0] == 1).all()
    torch.testing.assert_close(per.points[:, 1], per.partner[:, 1])


# ------------------------------------------------------------------------------------------- jets


@pytest.mark.parametrize("activation", ["tanh", "sin", "gelu"])
@pytest.mark.parametrize("fourier", [0, 3])
def test_pinn_jet_matches_nested_autograd(activation: str, fourier: int) -> None:
    torch.manual_seed(0)
    net = PINN(3, 2, 7, 2, activation, fourier, 1.5, bounds=[[0, 1], [-1, 2], [0, 0.5]]).double()
    x = torch.rand(20, 3, dtype=F64)
    fast, slow = net.jet(x, (0, 2)), autograd_jet(net, x, (0, 2))
    for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net(x), fast.u, rtol=1e-12, atol=1e-12)
    with pytest.raises(KeyError, match="axis 1 was not computed"):
        fast.dd(1)


def test_pinn_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="activation must be one of .* got 'relu'"):
        PINN(2, activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden_channels must be an integer >= 1, got 0"):
        PINN(2, hidden_channels=0)
    with pytest.raises(ValueError, match="fourier_scale must be > 0, got -1"):
        PINN(2, fourier_features=2, fourier_scale=-1.0)
    with pytest.raises(ValueError, match=r"bounds must be 2 pairs .* got \[\[0, 1\]\]"):
        PINN(2, bounds=[[0, 1]])


# --------------------------------------------------------------------------------- problems, sampling


def test_problems_are_registered_and_bad_parameters_are_named() -> None:
    assert set(PROBLEMS.names()) >= {"allen_cahn", "burgers", "burgers_periodic", "darcy", "helmholtz",
                                     "navier_stokes"}  # fmt: skip
    with pytest.raises(KeyError, match="unknown physics problem 'heat'; known physics problems: allen_cahn"):
        build_problem("heat")
    with pytest.raises(ValueError, match="a1 must be an integer >= 1 .* got 0"):
        build_problem("helmholtz", a1=0)
    with pytest.raises(ValueError, match="viscosity must be > 0, got -1"):
        build_problem("burgers", viscosity=-1)
    with pytest.raises(ValueError, match="stride must divide resolution - 1 = 16, got 3"):
        build_problem("darcy", resolution=17, stride=3)


def test_latin_hypercube_hits_every_stratum_once() -> None:
    g = torch.Generator().manual_seed(0)
    pts = sample_box([(0.0, 2.0), (-1.0, 0.0)], 50, "lhs", g, F64)
    for j, (lo, hi) in enumerate([(0.0, 2.0), (-1.0, 0.0)]):
        strata = torch.floor((pts[:, j] - lo) / (hi - lo) * 50).long()
        assert sorted(strata.tolist()) == list(range(50))
    with pytest.raises(ValueError, match="sampler must be one of .* got 'sobol'"):
        sample_box([(0.0, 1.0)], 4, "sobol")  # type: ignore[arg-type]


def test_collocation_sampler_layout_and_resampling() -> None:
    p = build_problem("allen_cahn")
    s = CollocationSampler(p, 30, 10, 8, "uniform", resample_every=3, seed=1)
    b0 = s.sample(0)
    assert b0.n_interior == 30 and b0.points.shape == (30 + 10 + 2 * 8, 2)
    start, n, partner = b0.rows["periodic"]
    torch.testing.assert_close(b0.points[start : start + n], b0.conditions["periodic"].points)
    torch.testing.assert_close(b0.points[partner : partner + n], b0.conditions["periodic"].partner)
    assert s.sample(2) is b0 and s.sample(3) is not b0
    lo = torch.tensor([-1.0, 0.0])
    hi = torch.tensor([1.0, 1.0])
    assert ((b0.points >= lo) & (b0.points <= hi)).all()
    again = CollocationSampler(p, 30, 10, 8, "uniform", resample_every=3, seed=1).sample(0)
    torch.testing.assert_close(again.points, b0.points)
    with pytest.raises(ValueError, match="n_collocation must be an integer >= 1, got 0"):
        CollocationSampler(p, 0)


def test_causal_weights_favour_early_times() -> None:
    task = PhysicsTask("pinn", {"hidden_channels": 4, "n_layers": 1}, {"problem": "allen_cahn", "params": {}},
                       causal={"n_chunks": 4, "epsilon": 10.0})  # fmt: skip
    x = torch.tensor([[0.0, 0.1], [0.0, 0.4], [0.0, 0.6], [0.0, 0.9]])
    res = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    loss, w_min = task._residual_loss(x, res)
    # slab losses are all 1: weights exp(−10·(0, 1, 2, 3))
    expected = sum(math.exp(-10 * k) for k in range(4)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert w_min.item() == pytest.approx(math.exp(-30), rel=1e-4)
    with pytest.raises(ValueError, match="causal weighting needs a time-dependent problem; 'helmholtz'"):
        PhysicsTask("pinn", None, {"problem": "helmholtz", "params": {}}, causal={"n_chunks": 4})


def test_task_rejects_missing_physics_and_bad_weights() -> None:
    with pytest.raises(
        ValueError,
        match="pde 'diffusion_sorption' has no pointwise residual.*supported "
        "problems: allen_cahn, burgers, burgers_periodic, darcy, helmholtz, navier_stokes",
    ):
        PhysicsTask("pinn", None, None, pde_name="diffusion_sorption")
    with pytest.raises(ValueError, match="loss_weights key 'ic' is not a term of 'helmholtz'"):
        PhysicsTask("pinn", None, {"problem": "helmholtz"}, loss_weights={"ic": 1.0})
    with pytest.raises(ValueError, match="unknown lbfgs keys \\['foo'\\]"):
        PhysicsTask("pinn", None, {"problem": "helmholtz"}, lbfgs={"foo": 1})
    with pytest.raises(ValueError, match="in_channels=3"):
        PhysicsTask("pinn", {"in_channels": 3}, {"problem": "helmholtz"})


def test_loss_terms_vanish_for_the_exact_solution() -> None:
    task = PhysicsTask("pinn", {"hidden_channels": 4, "n_layers": 1}, {"problem": "helmholtz",
                       "params": {"n_eval": 8}}, n_collocation=64, n_boundary=32)  # fmt: skip
    batch = task.sampler.sample(0, "cpu", F64)
    p = task.problem
    task.jet = lambda x: autograd_jet(p.exact, x, p.second_axes)  # type: ignore[method-assign]
    terms = task.loss_terms(batch)
    assert set(terms) == {"residual", "bc"}
    assert max(v.item() for v in terms.values()) < 1e-20


def test_lbfgs_step_undoes_a_non_finite_step() -> None:
    task = PhysicsTask(
        "pinn", {"hidden_channels": 4, "n_layers": 1}, {"problem": "helmholtz", "params": {"n_eval": 8}}
    )
    before = [p.detach().clone() for p in task.net.parameters()]

    class BlowUp(torch.optim.LBFGS):
        def step(self, closure):  # type: ignore[override]
            self.state["marker"] = 1
            with torch.no_grad():
                for p in task.net.parameters():
                    p.fill_(float("nan"))
            return torch.tensor(float("nan"))

    opt = BlowUp(task.net.parameters())
    batch = task.batch(0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss, _ = task.loss(batch)
        loss.backward()
        return loss

    loss = task.lbfgs_step(opt, closure)
    assert torch.isfinite(loss) and not opt.state
    for p, q in zip(task.net.parameters(), before, strict=True):
        assert torch.equal(p, q)


def test_pde_suggested_loss_weights_are_overridden_key_by_key() -> None:
    physics = {"problem": "helmholtz", "params": {"n_eval": 8}, "loss_weights": {"residual": 1e-4, "bc": 2.0}}
    task = PhysicsTask("pinn", {"hidden_channels": 4, "n_layers": 1}, physics, loss_weights={"bc": 3.0})
    assert task.loss_weights == {"residual": 1e-4, "bc": 3.0}
    with pytest.raises(ValueError, match="physics must be .* got keys \\['params', 'problem', 'weights'\\]"):
        PhysicsTask("pinn", None, {"problem": "helmholtz", "params": {}, "weights": {}})


def test_lbfgs_step_that_does_not_move_restarts_the_history():
    """A stalled L-BFGS step (here: started at the exact minimum) drops the history; a moving one keeps it."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    target = torch.tensor([[0.5]])
    x = torch.tensor([[1.0, -2.0]])
    task = SimpleNamespace(net=net, lbfgs_restarts=0)
    opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=1, max_eval=25, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-14)  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = ((net(x) - target) ** 2).sum()
        loss.backward()
        return loss

    PhysicsTask.lbfgs_step(task, opt, closure)  # moves towards the minimum
    assert task.lbfgs_restarts == 0 and opt.state[opt._params[0]]["n_iter"] == 1
    with torch.no_grad():  # put the parameters exactly at a minimum: zero gradient, no move
        net.weight.zero_()
        net.bias.copy_(target[0])
    PhysicsTask.lbfgs_step(task, opt, closure)
    assert task.lbfgs_restarts == 1
    assert not opt.state, "the curvature history must be dropped after a step that did not move"


@pytest.mark.parametrize("restart", [False, True])
def test_lbfgs_history_is_dropped_when_points_are_redrawn_only_if_asked(restart: bool) -> None:
    """With ``lbfgs_restart_on_resample``, the L-BFGS state is empty exactly on steps that redraw points."""
    import lightning as L

    task = PhysicsTask("pinn", {"hidden_channels": 4, "n_layers": 1}, {"problem": "helmholtz", "params": {}},
                       n_collocation=32, n_boundary=8, resample_every=3, lbfgs_restart_on_resample=restart,
                       adam_steps=2, lbfgs_steps=8, eval_every=10, plot=False)  # fmt: skip
    seen: dict[int, int] = {}  # step -> L-BFGS iterations in its history when the step starts
    inner = task.lbfgs_step

    def spy(optimizer, closure):
        state = getattr(optimizer, "optimizer", optimizer).state
        seen[task.global_step] = sum(s.get("n_iter", 0) for s in state.values())
        return inner(optimizer, closure)

    task.lbfgs_step = spy  # type: ignore[method-assign]
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        **task.trainer_overrides())  # fmt: skip
    trainer.fit(task)
    assert sorted(seen) == list(range(2, 10))
    assert seen[2] == 0  # first L-BFGS step
    if restart:  # points redrawn at steps 3, 6 and 9: history restarts there and grows in between
        assert seen == {2: 0, 3: 0, 4: 1, 5: 2, 6: 0, 7: 1, 8: 2, 9: 0}
    else:
        assert seen == {s: s - 2 for s in range(2, 10)}


@pytest.mark.parametrize(("decay_every", "expected_decays"), [(1, 6), (4, 1), (1000, 0)])
def test_adam_learning_rate_decays_every_lr_decay_every_steps(decay_every: int, expected_decays: int) -> None:
    """``lr_decay`` is applied after every ``lr_decay_every``-th Adam step (1: every step)."""
    import lightning as L

    task = PhysicsTask("pinn", {"hidden_channels": 4, "n_layers": 1}, {"problem": "helmholtz", "params": {}},
                       n_collocation=32, n_boundary=8, adam_steps=6, lr=0.01, lr_decay=0.5,
                       lr_decay_every=decay_every, eval_every=6, plot=False)  # fmt: skip
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        **task.trainer_overrides())  # fmt: skip
    trainer.fit(task)
    adam = trainer.optimizers[0]
    assert adam.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**expected_decays, rel=1e-12)
    with pytest.raises(ValueError, match="lr_decay_every must be an integer >= 1, got 0"):
        PhysicsTask("pinn", {}, {"problem": "helmholtz", "params": {}}, lr_decay_every=0)


# ----------------------------------------------------------------------------------- hard initial condition


@pytest.mark.parametrize("problem", ["allen_cahn", "burgers", "burgers_periodic"])
@pytest.mark.parametrize("model", ["pinn", "pig"])
def test_hard_initial_condition_is_exact_and_its_jet_matches_autograd(problem: str, model: str) -> None:
    kwargs = {"hidden_channels": 8, "n_layers": 1} if model == "pinn" else {"n_gaussians": 16}
    params = {"resolution": 64, "stride": 4} if problem == "burgers_periodic" else {}
    task = PhysicsTask(model, kwargs, {"problem": problem, "params": params}, hard_initial=True,
                       n_collocation=32, n_initial=16, n_boundary=8).double()  # fmt: skip
    p = task.problem
    x = _points(p, 40, seed=3)
    # The fused jet (values, first derivatives, u_xx) equals nested autograd of the constrained forward.
    fast, slow = task.jet(x), autograd_jet(task.forward, x, p.second_axes)
    for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # A second derivative in time (no current problem needs one) takes the 2·n_t term.
    p.second_axes = (0, 1)  # instance attribute shadows the class's
    fast, slow = task.jet(x), autograd_jet(task.forward, x, (0, 1))
    torch.testing.assert_close(fast.d2u, slow.d2u, rtol=1e-10, atol=1e-10)
    # At t = t0 the solution is u0 to rounding, whatever the network, so the ic term vanishes.
    x0 = x.clone()
    x0[:, 1] = p.bounds[1][0]
    assert torch.equal(task(x0), p.initial_value(x0))
    terms = task.loss_terms(task.sampler.sample(0, "cpu", F64))
    assert terms["ic"].item() < 1e-28
    assert terms["residual"].item() > 1e-6  # the untrained network is no solution


@pytest.mark.parametrize(
    ("problem", "hard_initial"),
    [("helmholtz", False), ("darcy", False), ("burgers", False), ("burgers", True)],
)
@pytest.mark.parametrize("model", ["pinn", "pig"])
def test_hard_boundary_condition_is_exact_and_its_jet_matches_autograd(
    problem: str, hard_initial: bool, model: str
) -> None:
    kwargs = {"hidden_channels": 8, "n_layers": 1} if model == "pinn" else {"n_gaussians": 16}
    task = PhysicsTask(model, kwargs, {"problem": problem, "params": {}}, hard_boundary=True,
                       hard_initial=hard_initial, n_collocation=32, n_initial=16,
                       n_boundary=8).double()  # fmt: skip
    p = task.problem
    x = _points(p, 40, seed=5)
    fast, slow = task.jet(x), autograd_jet(task.forward, x, p.second_axes)
    for a, b in ((fast.u, slow.u), (fast.du, slow.du), (fast.d2u, slow.d2u)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # Every second derivative, time included, through the product rule's 2·f_j·n_j term.
    p.second_axes = tuple(range(p.dim))
    fast, slow = task.jet(x), autograd_jet(task.forward, x, p.second_axes)
    torch.testing.assert_close(fast.d2u, slow.d2u, rtol=1e-10, atol=1e-10)
    # On the Dirichlet faces u = 0 whatever the network, so the bc term vanishes; inside it does not.
    for a in p.zero_dirichlet_axes:
        for v in p.bounds[a]:
            xf = x.clone()
            xf[:, a] = v
            assert task(xf).abs().max().item() < 1e-14
    assert task(x).abs().min().item() > 0
    terms = task.loss_terms(task.sampler.sample(0, "cpu", F64))
    assert terms["bc"].item() < 1e-28
    assert terms["residual"].item() > 1e-6
    if hard_initial:
        assert terms["ic"].item() < 1e-28


def test_hard_boundary_condition_is_refused_without_zero_dirichlet_faces() -> None:
    match = (
        r"hard_boundary=true needs a problem with u = 0 on both faces of some axis; 'allen_cahn' has none; "
        r"problems that have them: burgers, darcy, helmholtz"
    )
    with pytest.raises(ValueError, match=match):
        PhysicsTask("pinn", None, {"problem": "allen_cahn", "params": {}}, hard_boundary=True)


def test_hard_initial_condition_is_refused_where_there_is_no_closed_form_u0() -> None:
    match = (
        r"hard_initial=true needs a time-dependent problem with a closed-form initial condition; "
        r"'helmholtz' has none; problems that have one: allen_cahn, burgers, burgers_periodic"
    )
    with pytest.raises(ValueError, match=match):
        PhysicsTask("pinn", None, {"problem": "helmholtz", "params": {}}, hard_initial=True)
