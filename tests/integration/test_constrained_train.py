"""End-to-end training of the hard-constrained models and the soft baseline through the real configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from neurop.cli.train import train
from neurop.constraints import HardConstraint
from neurop.models.hard_constraint import HardConstrainedModel
from neurop.tasks.constrained import ConstrainedTask

torch.set_num_threads(1)

# The FNO backbone of fno_hc / fno_hc_moe lives under backbone_kwargs; fno_pi is a plain FNO.
TINY_NETS = {
    "fno_hc": "model.model_kwargs.backbone_kwargs",
    "fno_hc_moe": "model.model_kwargs.backbone_kwargs",
    "fno_pi": "model.model_kwargs",
}

# Tiny generated data per pde config: diffusion–sorption 17 x-nodes and 6 times, Darcy 17², the
# unforced Navier–Stokes 16² with 5 times.
TINY_DATA = {
    "diffusion_sorption": ["pde.data.generator_overrides={resolution:17,n_t:6}"],
    "darcy": ["pde.data.generator_overrides={resolution:17,stride:1}", "pde.data.generate_device=cpu"],
    "navier_stokes_unforced": [
        "pde.data.generator_overrides={resolution:16,stride:1,t_final:1.0,snapshot_interval:0.25}",
        "pde.data.generate_device=cpu",
        "model.model_kwargs.experts=[1,2,2]",
    ],
}


def _overrides(model: str, pde: str) -> list[str]:
    net = TINY_NETS[model]
    out = [
        f"model={model}",
        f"pde={pde}",
        f"{net}.hidden_channels=8",
        f"{net}.projection_channels=16",
        f"{net}.n_layers=2",
        f"{net}.n_modes='${{neurop.per_dim:2,${{pde.dim}}}}'",
        "pde.data.n_train=4",
        "pde.data.n_val=2",
        "pde.data.n_test=2",
        "pde.data.batch_size=2",
        "pde.data.stride=1",
        "pde.data.test_strides=[]",
        "trainer.max_epochs=2",
        *TINY_DATA[pde],
    ]
    if model != "fno_pi":
        out += ["model.model_kwargs.n_basis=6", "model.model_kwargs.n_points=200"]
    if model == "fno_hc_moe" and pde == "darcy":
        out.append("model.model_kwargs.experts=[2,2]")
    return out


@pytest.mark.filterwarnings("ignore:hard-constraint least-squares solve failed:RuntimeWarning")
@pytest.mark.parametrize(
    ("model", "pde"),
    [
        ("fno_hc_moe", "diffusion_sorption"),
        ("fno_hc", "diffusion_sorption"),
        ("fno_pi", "diffusion_sorption"),
        ("fno_hc", "darcy"),
        ("fno_hc_moe", "darcy"),
        ("fno_pi", "darcy"),
        ("fno_hc_moe", "navier_stokes_unforced"),
    ],
)
def test_constrained_models_train_end_to_end(compose_train, model: str, pde: str) -> None:
    cfg = compose_train(_overrides(model, pde), tiny=True)
    metrics, objects = train(cfg)
    for key in ("train/loss", "train/residual", "val/rel_l2", "val/residual"):
        assert math.isfinite(metrics[key]), (key, metrics)
    test_keys = [k for k in metrics if k.startswith("test/rel_l2")]
    assert test_keys and all(math.isfinite(metrics[k]) for k in test_keys), metrics
    task = objects["task"]
    assert isinstance(task, ConstrainedTask)
    if model == "fno_pi":
        assert task.constraint == "soft" and not isinstance(task.net, HardConstrainedModel)
    else:
        layer = task.net.constraint
        assert isinstance(layer, HardConstraint)
        assert (layer.experts is None) == (model == "fno_hc")
        info = layer.last_info
        assert info is not None and torch.isfinite(info.residual_rms).all()
        if pde == "darcy":  # linear: one exact solve; nonlinear solves may stop at max_iter (with a warning)
            assert info.iterations == 1 and bool(info.converged.all())
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    # The checkpoint restores without Hydra (primitive hyperparameters only).
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    fresh = ConstrainedTask(**raw["hyper_parameters"])
    fresh.load_state_dict(raw["state_dict"])


def test_hard_constraint_needs_a_hard_model(compose_train) -> None:
    cfg = compose_train(_overrides("fno_pi", "darcy") + ["model.constraint=hard"], tiny=True)
    with pytest.raises(
        Exception, match=r"constraint='hard' needs a hard-constrained model .* got model='fno'"
    ):
        train(cfg)


def test_pde_without_grid_residual_is_rejected_by_the_task(compose_train) -> None:
    cfg = compose_train(["model=fno_hc", "pde=burgers"], tiny=True)
    with pytest.raises(Exception, match=r"pde 'burgers' has no grid residual"):
        train(cfg)


def _moe_task(
    pde: str, experts: list[int], expert_residual: str, interface_weight: float = 0.0
) -> ConstrainedTask:
    params = (
        {"resolution": 17, "n_t": 6}
        if pde == "diffusion_sorption"
        else {"resolution": 16, "stride": 1, "t_final": 1.0, "snapshot_interval": 0.25, "forcing": "none"}
    )
    fno = {"n_modes": [2] * len(experts), "hidden_channels": 8, "n_layers": 2, "projection_channels": 16}
    torch.manual_seed(0)
    return ConstrainedTask(
        model="fno_hc_moe",
        model_kwargs={
            "backbone_kwargs": fno,
            "n_basis": 4,
            "n_points": None,
            "experts": experts,
            "on_failure": "warn",
        },
        in_channels=1,
        out_channels=1,
        pde=pde,
        pde_params=params,
        space_time=True,
        expert_residual=expert_residual,
        interface_weight=interface_weight,
    )


@pytest.mark.filterwarnings("ignore:hard-constraint least-squares solve failed:RuntimeWarning")
def test_experts_train_on_their_own_blocks_or_on_the_grid() -> None:
    """``expert_residual='blocks'`` trains on the residual every expert imposes on its block; ``'grid'`` on
    the assembled field, whose residual also holds the jumps between blocks."""
    from neurop.pdes.diffusion_sorption import DiffusionSorption

    y = DiffusionSorption(resolution=17, n_t=6).solve_batch([0, 1])["u"][:, None].float()
    losses = {}
    for mode in ("blocks", "grid"):
        task = _moe_task("diffusion_sorption", [1, 4], mode).eval()
        u, res, bnd = task.physics_loss(y)
        x_in = task.model_input(y)
        grid_res, grid_bnd = task.residual_loss(u, x_in)
        torch.testing.assert_close(bnd, grid_bnd)
        if mode == "grid":
            torch.testing.assert_close(res, grid_res)
        else:
            z = task.input_normalizer.encode(x_in)
            _, experts = task.net(z, x_in, return_experts=True)
            r = task.residual.block_residual(experts.blocks.double(), x_in.double(), [1, 4], (6, 17))
            torch.testing.assert_close(res, r.pow(2).mean().float())
            assert float(res.detach()) < float(
                grid_res.detach()
            )  # the untrained experts disagree at the interfaces
        res.backward()
        assert all(p.grad is not None for p in task.net.backbone.parameters())
        losses[mode] = float(res.detach())
    assert losses["blocks"] != losses["grid"]


def test_non_local_experts_train_on_the_grid_residual() -> None:
    w = torch.randn(2, 1, 5, 16, 16)
    task = _moe_task("navier_stokes", [1, 2, 2], "blocks").eval()
    u, res, _ = task.physics_loss(w)
    torch.testing.assert_close(res, task.residual_loss(u, task.model_input(w))[0])


def test_bad_expert_residual_is_named() -> None:
    with pytest.raises(ValueError, match=r"expert_residual must be one of \('blocks', 'grid'\), got 'edges'"):
        _moe_task("diffusion_sorption", [1, 4], "edges")


@pytest.mark.filterwarnings("ignore:hard-constraint least-squares solve failed:RuntimeWarning")
def test_interface_weight_adds_the_experts_disagreement() -> None:
    from neurop.pdes.diffusion_sorption import DiffusionSorption

    y = DiffusionSorption(resolution=17, n_t=6).solve_batch([0, 1])["u"][:, None].float()
    plain = _moe_task("diffusion_sorption", [1, 4], "blocks").eval()
    _, res0, _ = plain.physics_loss(y)
    jump = plain.last_interface
    assert jump is not None and float(jump) > 0  # untrained experts disagree where their blocks meet
    tied = _moe_task("diffusion_sorption", [1, 4], "blocks", interface_weight=10.0).eval()
    _, res1, _ = tied.physics_loss(y)  # the same weights (same seed), so the same fields
    torch.testing.assert_close(tied.last_interface, jump)
    torch.testing.assert_close(res1.double(), res0.double() + 10.0 * jump, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match=r"interface_weight must be >= 0, got -1.0"):
        _moe_task("diffusion_sorption", [1, 4], "blocks", interface_weight=-1.0)
