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
