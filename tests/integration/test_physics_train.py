"""Physics-informed models via real Hydra configs: every (pinn|pig) × pde composes; short runs learn."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from neurop.cli import CONFIG_DIR
from neurop.cli.train import build_datamodule, train
from neurop.tasks.physics import PhysicsTask

torch.set_num_threads(1)

PHYSICS_MODELS = ["pig", "pinn"]
PHYSICS_PDES = sorted(p.stem for p in (CONFIG_DIR / "pde").glob("*.yaml") if "physics" in OmegaConf.load(p))
PLAIN_PDES = sorted(p.stem for p in (CONFIG_DIR / "pde").glob("*.yaml") if "physics" not in OmegaConf.load(p))

# Seconds-long runs: few points and steps, no progress bar, csv logger only.
QUICK = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
    "model.n_collocation=256",
    "model.n_initial=64",
    "model.n_boundary=64",
    "model.eval_every=25",
]


def test_physics_problems_are_the_expected_configs() -> None:
    assert {"allen_cahn", "burgers", "burgers_periodic", "darcy", "helmholtz", "navier_stokes"} <= set(
        PHYSICS_PDES
    )


@pytest.mark.parametrize("pde", PHYSICS_PDES)
@pytest.mark.parametrize("model", PHYSICS_MODELS)
def test_every_physics_model_pde_pair_composes(compose_train, model: str, pde: str) -> None:
    cfg = compose_train([f"model={model}", f"pde={pde}", *QUICK], tiny=False)
    assert build_datamodule(cfg) is None  # the task draws its own points
    task = instantiate(cfg.model, _convert_="all")
    assert isinstance(task, PhysicsTask)
    assert task.problem.name == cfg.pde.physics.problem
    assert task.net.__class__.__name__ == model.upper()
    # one loss evaluation on a handful of points is finite
    terms = task.loss_terms(task.sampler.sample(0))
    assert all(math.isfinite(v.item()) for v in terms.values()), terms


PHYSICS_EXPERIMENTS = sorted(
    p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if p.stem.startswith(("pinn_", "pig_"))
)


@pytest.mark.parametrize("experiment", PHYSICS_EXPERIMENTS)
def test_physics_experiment_configs_compose(compose_train, experiment: str) -> None:
    cfg = compose_train([f"experiment={experiment}", *QUICK], tiny=False)
    task = instantiate(cfg.model, _convert_="all")
    assert isinstance(task, PhysicsTask) and task.hparams.model == experiment.split("_", 1)[0]
    assert task.problem.name == cfg.pde.physics.problem


@pytest.mark.parametrize("model", PHYSICS_MODELS)
def test_pde_without_pointwise_residual_names_the_supported_ones(compose_train, model: str) -> None:
    pde = PLAIN_PDES[0] if PLAIN_PDES else pytest.skip("every pde config has a physics section")
    cfg = compose_train([f"model={model}", f"pde={pde}", *QUICK], tiny=False)
    with pytest.raises(InstantiationException, match=f"pde '{pde}' has no pointwise residual") as info:
        instantiate(cfg.model, _convert_="all")
    assert (
        "supported problems: allen_cahn, burgers, burgers_periodic, darcy, helmholtz, navier_stokes"
        in str(info.value)
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_short_pig_helmholtz_run_lowers_the_error(compose_train) -> None:
    cfg = compose_train(
        ["model=pig", "pde=helmholtz", *QUICK, "logger=csv", "pde.physics.params.n_eval=64",
         "model.model_kwargs.n_gaussians=100", "model.adam_steps=150", "model.lbfgs_steps=25",
         "model.lr=2e-2", "model.loss_weights={residual: 1.0e-3, bc: 1.0}"],
        tiny=False,
    )  # fmt: skip
    metrics, objects = train(cfg)
    task = objects["task"]
    out = Path(cfg.paths.output_dir)
    rows = [r for r in _read_csv(out / "csv" / "metrics.csv") if r.get("val/rel_l2")]
    errors = [float(r["val/rel_l2"]) for r in rows]
    assert len(errors) == task.total_steps // 25 == 7
    # The training clock logged with every evaluation grows and covers the run (evaluation excluded).
    clock = [float(r["val/train_time_s"]) for r in rows]
    assert 0 < clock[0] and all(b > a for a, b in zip(clock, clock[1:], strict=False)), clock
    assert clock[-1] == pytest.approx(task.train_time_s, rel=0.2)
    assert errors[-1] < 0.5 * errors[0] and metrics["test/rel_l2"] < 0.3, errors
    assert (out / "figures" / "physics_solution.png").stat().st_size > 5000
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert objects["trainer"].global_step >= 175


def test_short_pinn_burgers_run_lowers_the_error_and_restores(compose_train) -> None:
    cfg = compose_train(
        ["model=pinn", "pde=burgers", *QUICK, "logger=none", "model.model_kwargs.hidden_channels=16",
         "model.model_kwargs.n_layers=3", "model.adam_steps=200", "model.lbfgs_steps=0", "model.lr=5e-3",
         "model.plot=false"],
        tiny=False,
    )  # fmt: skip
    metrics, objects = train(cfg)
    task = objects["task"]
    assert metrics["test/rel_l2"] < 0.6, metrics
    assert math.isfinite(metrics["train/loss"])
    # the best checkpoint restores without Hydra, with weights_only loading
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    fresh = PhysicsTask(**raw["hyper_parameters"])
    fresh.load_state_dict(raw["state_dict"])
    assert fresh.evaluate() == pytest.approx(task.evaluate(), rel=1e-6)


def test_pinn_trains_in_float64_with_the_trainer_precision(compose_train) -> None:
    # experiment=pinn_burgers runs in float64 (its float32 loss stalls at the rounding floor): the network,
    # the collocation points and the loss must all be double, not silently float32.
    cfg = compose_train(
        ["experiment=pinn_burgers", *QUICK, "logger=none", "model.model_kwargs.hidden_channels=8",
         "model.model_kwargs.n_layers=2", "model.adam_steps=10", "model.lbfgs_steps=5", "model.plot=false",
         "model.n_collocation=128", "model.eval_every=15"],
        tiny=False,
    )  # fmt: skip
    assert cfg.trainer.precision == "64-true"
    metrics, objects = train(cfg)
    task = objects["task"]
    assert {p.dtype for p in task.net.parameters()} == {torch.float64}
    batch = task.batch(0)
    assert batch.points.dtype == torch.float64
    loss, _ = task.loss(batch)
    assert loss.dtype == torch.float64 and math.isfinite(metrics["test/rel_l2"])
