"""Every recipe in configs/experiment composes with train.yaml and builds a model that runs on its data shape.

Cheap: no data are generated and nothing is trained; the stored grid comes from the pde generator's field
layout, strided as the recipe's data section says.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import neurop.pdes  # noqa: F401  (registers the generators)
from neurop.cli import CONFIG_DIR, PROJECT_ROOT, register_resolvers
from neurop.cli.train import build_datamodule
from neurop.pdes.base import PDES
from neurop.tasks.rollout import RolloutTask

torch.set_num_threads(1)

RECIPES = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
PAPER_RECIPES = [
    "fno_burgers_paper",
    "fno_darcy_paper",
    "fno2d_ns_paper",
    "fno3d_ns_paper",
    "deeponet_burgers",
    "deeponet_darcy",
]


def _compose(name: str, *overrides: str) -> DictConfig:
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", "logger=none", *overrides])
    GlobalHydra.instance().clear()
    return cfg


def _shapes(cfg: DictConfig) -> tuple[tuple[int, ...], int]:
    """(training grid, target channels) of a recipe's data, from the generator's stored field layout."""
    dm = build_datamodule(cfg)
    assert dm is not None
    fields = PDES.get(dm.pde)(**dm.generator_params).fields()
    spec = fields[cfg.pde.data.input.field]
    stored = spec.shape[-cfg.pde.dim :]
    grid = tuple(-(-n // int(cfg.pde.data.stride)) for n in stored)
    time = cfg.pde.data.output.get("time")
    n_out = 1 if time is None or isinstance(time, int) else int(time[1]) - int(time[0])
    return grid, n_out


def test_the_published_recipes_exist():
    assert set(PAPER_RECIPES) <= set(RECIPES), sorted(set(PAPER_RECIPES) - set(RECIPES))


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_composes_and_its_model_runs_on_its_data_shape(name):
    cfg = _compose(name)
    assert cfg.task_name == name
    task = hydra.utils.instantiate(cfg.model, _convert_="all")
    if build_datamodule(cfg) is None:
        return  # a physics-informed task draws its own points (tested with its model)
    grid, n_out = _shapes(cfg)
    x = torch.randn(2, int(cfg.pde.in_channels), *grid)
    # A POD trunk is fitted to the training outputs by the task when training starts.
    if getattr(task.net, "needs_output_fit", False):
        task.net.fit_outputs(torch.randn(200, n_out, *task.net.n_sensors))
    task.eval()
    with torch.no_grad():
        if isinstance(task, RolloutTask):
            y = task.rollout(x, 2)
            assert y.shape == (2, 2 * int(cfg.pde.out_channels), *grid)
        else:
            y = task(x)
            assert y.shape == (2, int(cfg.pde.out_channels), *grid)
            assert int(cfg.pde.out_channels) == n_out
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "grid", "tests", "width", "epochs"),
    [
        ("fno_burgers_paper", (1024,), ["1024", "256", "8192"], 64, 500),
        ("fno_darcy_paper", (85, 85), ["85"], 32, 500),
        ("fno2d_ns_paper", (64, 64), ["64"], 20, 500),
        ("fno3d_ns_paper", (64, 64), ["64"], 20, 500),
        ("deeponet_burgers", (128,), ["128", "1024", "8192"], 128, 2000),
        ("deeponet_darcy", (29, 29), ["29", "85"], 128, 2000),
    ],
)
def test_published_set_ups(name, grid, tests, width, epochs):
    """Grids, test resolutions, widths and epochs of ../shared/REFERENCE.md (ν = 1e-3 for Navier–Stokes)."""
    cfg = _compose(name)
    assert _shapes(cfg)[0] == grid
    dm = build_datamodule(cfg)
    stored = PDES.get(dm.pde)(**dm.generator_params).fields()[cfg.pde.data.input.field].shape
    labels = [str(math.ceil(stored[-1] / s)) for s in dm.test_strides]
    assert labels == tests
    assert cfg.model.model_kwargs.hidden_channels == width
    assert cfg.trainer.max_epochs == epochs
    assert cfg.model.optimizer.lr == pytest.approx(1e-3)
    assert cfg.model.scheduler.name == "step" and cfg.model.scheduler.gamma == 0.5
    if cfg.model.model == "fno":
        assert cfg.model.scheduler.step_size == 100
        assert cfg.model.optimizer.weight_decay == pytest.approx(1e-4)
        assert cfg.pde.data.batch_size == (10 if name == "fno3d_ns_paper" else 20)
    if cfg.pde.name == "navier_stokes":
        assert cfg.pde.generator.viscosity == pytest.approx(1e-3)
        assert cfg.pde.generator.t_final == 50.0
        assert list(cfg.pde.data.input.time) == [0, 10] and list(cfg.pde.data.output.time) == [10, 50]
    assert (dm.n["train"], dm.n["test"]) in ((1000, 100), (1000, 200))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("fno_burgers_paper", "deeponet_burgers"),
        ("fno_darcy_paper", "deeponet_darcy"),
        ("fno2d_ns_paper", "fno3d_ns_paper"),
    ],
)
def test_recipes_on_one_benchmark_share_its_data_files(a, b):
    dm_a, dm_b = build_datamodule(_compose(a)), build_datamodule(_compose(b))
    assert dm_a is not None and dm_b is not None
    for split in ("train", "val", "test"):
        assert dm_a.path(split) == dm_b.path(split)


# -- scripts/reproduce.py -------------------------------------------------------------------------------
def _reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce", PROJECT_ROOT / "scripts" / "reproduce.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_reproduce_arguments_and_scaling():
    rep = _reproduce_module()
    opts, overrides = rep.parse_args(
        ["recipes=[fno_burgers_paper, deeponet_darcy]", "scale=0.05", "trainer=cpu", "deeponet_darcy:seed=3"]
    )
    assert opts["recipes"] == ["fno_burgers_paper", "deeponet_darcy"] and opts["scale"] == 0.05
    assert rep.recipe_overrides(overrides, "deeponet_darcy") == ["trainer=cpu", "seed=3"]
    assert rep.recipe_overrides(overrides, "fno_burgers_paper") == ["trainer=cpu"]
    with pytest.raises(ValueError, match="scale must be a number in \\(0, 1\\], got 2.0"):
        rep.parse_args(["recipes=[fno_darcy_paper]", "scale=2"])
    with pytest.raises(ValueError, match="names recipe 'fno3d_ns_paper', which is not in recipes"):
        rep.parse_args(["recipes=[fno_darcy_paper]", "fno3d_ns_paper:seed=1"])
    with pytest.raises(ValueError, match="give the recipes to run"):
        rep.parse_args(["scale=0.1"])
    with pytest.raises(ValueError, match="unknown recipe 'fno_heat'; recipes in configs/experiment: .*"):
        rep.compose("fno_heat", [])
    cfg = _compose("fno_burgers_paper")
    assert rep.scaled_overrides(cfg, 0.05) == [
        "pde.data.n_train=50",
        "pde.data.n_val=5",
        "pde.data.n_test=10",
        "trainer.max_epochs=25",
        "trainer.check_val_every_n_epoch=1",
        "model.scheduler.step_size=5",
    ]
    assert rep.scaled_overrides(cfg, 1.0) == []
    assert rep.scaled_overrides(cfg, 0.05, 0.2)[3:] == [
        "trainer.max_epochs=100",
        "trainer.check_val_every_n_epoch=1",
        "model.scheduler.step_size=20",
    ]
    opts, _ = rep.parse_args(["recipes=[fno_darcy_paper]", "scale=0.1"])
    assert opts["epoch_scale"] == 0.1


def test_reproduce_runs_a_recipe_and_writes_both_tables(tmp_path):
    """deeponet_darcy on a 29² solver grid (sensors 15², zero-shot at 29²), 2 samples, 4 epochs."""
    rep = _reproduce_module()
    out = tmp_path / "results.md"
    argv = [
        "recipes=[deeponet_darcy]",
        "scale=0.002",
        f"out={out}",
        f"run_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        "pde.generator.resolution=29",
        "pde.generator.stride=1",
        "pde.data.stride=2",
        "pde.data.num_workers=0",
        "pde.data.generate_device=cpu",
        "model.model_kwargs.n_sensors=[15,15]",
        "model.model_kwargs.hidden_channels=8",
        "model.model_kwargs.n_basis=4",
        "model.model_kwargs.conv_channels=4",
        "model.n_plot=0",
        "logger=none",
        "callbacks.model_summary=null",
    ]
    assert rep.main(argv) == 0
    text = out.read_text()
    # Our error at the published resolution (29², here a zero-shot resolution) next to the published one.
    row = next(line for line in text.splitlines() if line.startswith("| deeponet_darcy | 29 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert 0 < float(cells[2]) < 10
    assert cells[3] == "0.0298" and cells[5:7] == ["2", "4"]
    zero_shot = next(line for line in text.splitlines() if line.startswith("| deeponet_darcy | 15 | 15: "))
    assert "29: " in zero_shot
    assert "Machine: " in text and "GPU" in text


def test_published_numbers_cover_the_paper_recipes():
    from importlib import resources

    import yaml

    published = yaml.safe_load((resources.files("neurop.data") / "published.yaml").read_text())
    for name in PAPER_RECIPES:
        entry = published[name]
        assert 0 < entry["rel_l2"] < 0.05 and entry["source"], name
        assert _shapes(_compose(name))[0][0] == int(entry["resolution"]), name
