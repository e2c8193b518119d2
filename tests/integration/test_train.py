"""End-to-end training through the real Hydra configs on tiny data: every (model, pde) pair, checkpoints,
resolution change, resume, bad input and loggers."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException, MissingConfigException
from omegaconf import OmegaConf

from neurop.cli import CONFIG_DIR, PROJECT_ROOT
from neurop.cli.train import build_datamodule, optimized_metric, train
from neurop.models import MODELS
from neurop.runtime import _glibc
from neurop.tasks.operator import OperatorTask

PDE_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "pde").glob("*.yaml"))
MODEL_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def _is_operator_model(config_name: str) -> bool:
    target = OmegaConf.load(CONFIG_DIR / "model" / f"{config_name}.yaml").get("_target_")
    return target == "neurop.tasks.operator.OperatorTask"


def _has_operator_data(config_name: str) -> bool:
    return "data" in OmegaConf.load(CONFIG_DIR / "pde" / f"{config_name}.yaml")


# Supervised (operator) models train on every pde with a data section; physics-informed models and
# problems without generated data are tested elsewhere.
PAIRS = [(m, p) for m in MODEL_CONFIGS if _is_operator_model(m) for p in PDE_CONFIGS if _has_operator_data(p)]


def _model_name(config_name: str) -> str:
    return OmegaConf.load(CONFIG_DIR / "model" / f"{config_name}.yaml")["model"]


def test_every_model_config_names_a_registered_model():
    for name in MODEL_CONFIGS:
        assert _model_name(name) in MODELS, f"configs/model/{name}.yaml: {_model_name(name)!r} not in MODELS"


@pytest.mark.parametrize(("model", "pde"), PAIRS)
def test_train_every_model_pde_pair(compose_train, fake_data, model, pde):
    cfg = compose_train([f"model={model}", f"pde={pde}"])
    kw = cfg.model.model_kwargs  # grid models size one entry per axis: n_modes (FNO), n_sensors (DeepONet)
    assert len(kw.get("n_modes", kw.get("n_sensors"))) == cfg.pde.dim  # e.g. a 1-D FNO for burgers
    fake_data(cfg)
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    label = dm.test_resolutions[0]
    for key in ("train/loss", "val/rel_l2", f"test/rel_l2@{label}"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert metrics["val/rel_l2_best"] == pytest.approx(metrics["val/rel_l2"])  # one epoch: last is best
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "figures" / f"test_samples_{label}.png").stat().st_size > 1000
    assert objects["task"].net.__class__ is MODELS.get(_model_name(model))
    assert (dm.in_channels, dm.out_channels) == (cfg.pde.in_channels, cfg.pde.out_channels)
    assert optimized_metric(cfg, metrics) == metrics["val/rel_l2"]


def test_generates_missing_data_trains_at_33_and_tests_at_65(compose_train, data_dir):
    pytest.importorskip("neurop.pdes.darcy")  # registers the real generator
    cfg = compose_train(
        [
            "pde=darcy",
            "pde.data.generator_overrides={resolution:65,stride:1}",
            "pde.data.stride=2",
            "pde.data.test_strides=[1]",
            "pde.data.generate_device=cpu",
            "trainer.max_epochs=2",
            "logger=csv",
        ]
    )
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    assert sorted(p.name.rsplit("_", 1)[1] for p in data_dir.glob("darcy_r65_s1_*.h5")) == [
        "test.h5",
        "train.h5",
        "val.h5",
    ]
    assert dm.test_resolutions == ["33", "65"]
    for res in ("33", "65"):
        assert 0 < metrics[f"test/rel_l2@{res}"] < 1.5, metrics
    csv = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text()
    assert "test/rel_l2@33" in csv and "test/rel_l2@65" in csv and "val/rel_l2" in csv


def _predict(task: OperatorTask, x: torch.Tensor) -> torch.Tensor:
    task.eval()
    with torch.no_grad():
        return task(x)


def test_checkpoint_restores_without_hydra_and_with_weights_only(compose_train, fake_data):
    cfg = compose_train(["pde=darcy"])
    fake_data(cfg)
    _, objects = train(cfg)
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    x = torch.randn(3, 1, 17, 17)
    # The test step loaded the best weights into the task, so it predicts like the checkpoint should.
    expected = _predict(objects["task"], x)

    restored = OperatorTask.load_from_checkpoint(ckpt, map_location="cpu")
    torch.testing.assert_close(_predict(restored, x), expected, rtol=0, atol=0)
    assert bool(restored.input_normalizer.fitted) and bool(restored.output_normalizer.fitted)

    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert {"input_normalizer.mean", "output_normalizer.std"} <= set(raw["state_dict"])
    fresh = OperatorTask(**raw["hyper_parameters"])
    fresh.load_state_dict(raw["state_dict"])
    torch.testing.assert_close(_predict(fresh, x), expected, rtol=0, atol=0)
    # The same weights evaluate on a finer grid.
    assert _predict(fresh, torch.randn(2, 1, 33, 33)).shape == (2, 1, 33, 33)


def test_pod_deeponet_fits_its_basis_when_training_starts_and_its_checkpoint_restores(
    compose_train, fake_data
):
    grid = "model.model_kwargs.n_sensors=[17,17]"  # the tiny Darcy grid: POD modes live on the training grid
    cfg = compose_train(
        ["model=deeponet", "pde=darcy", "model.model_kwargs.trunk=pod", grid, "model.model_kwargs.n_basis=4"]
    )
    fake_data(cfg)
    metrics, objects = train(cfg)
    task = objects["task"]
    assert bool(task.net.pod_fitted) and task.net.pod_modes.abs().sum() > 0
    assert math.isfinite(metrics["test/rel_l2@17"])
    # The modes are those of the normalised training outputs.
    y = torch.from_numpy(objects["datamodule"].datasets["train"].read("output", slice(None)))
    torch.testing.assert_close(
        task.net.pod_mean, task.output_normalizer.encode(y).mean(0), rtol=1e-5, atol=1e-6
    )

    x = torch.randn(3, 1, 17, 17)
    expected = _predict(task, x)
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    torch.testing.assert_close(
        _predict(OperatorTask.load_from_checkpoint(ckpt, map_location="cpu"), x), expected
    )
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    fresh = OperatorTask(**raw["hyper_parameters"])
    fresh.load_state_dict(raw["state_dict"])
    torch.testing.assert_close(_predict(fresh, x), expected, rtol=0, atol=0)


def test_test_only_run_from_a_checkpoint_reproduces_the_test_error(compose_train, fake_data):
    cfg = compose_train(["pde=darcy"], run_name="fit")
    fake_data(cfg)
    metrics, objects = train(cfg)
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    again = compose_train(["pde=darcy", "train=false", f"ckpt_path={ckpt}"], run_name="eval")
    metrics2, _ = train(again)
    assert "train/loss" not in metrics2
    assert metrics2["test/rel_l2@17"] == pytest.approx(metrics["test/rel_l2@17"], rel=1e-6)


def test_resume_from_checkpoint_continues_the_epoch_count(compose_train, fake_data):
    first = compose_train(["pde=burgers"], run_name="first")
    fake_data(first)
    _, objects = train(first)
    steps_per_epoch = objects["trainer"].global_step
    assert steps_per_epoch == 2  # 8 samples, batch 4
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"

    second = compose_train(["pde=burgers", "trainer.max_epochs=3", f"ckpt_path={last}"], run_name="second")
    _, objects = train(second)
    trainer = objects["trainer"]
    assert trainer.current_epoch == 3
    assert trainer.global_step == 3 * steps_per_epoch
    resumed = torch.load(Path(second.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["global_step"] == 3 * steps_per_epoch


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    compose_train, fake_data, monkeypatch
):
    cfg = compose_train(["pde=darcy", "trainer.max_epochs=3"])
    fake_data(cfg)
    original = OperatorTask.forward

    def poisoned(self, x):
        y = original(self, x)
        return y * float("nan") if self.training and self.current_epoch >= 1 else y

    monkeypatch.setattr(OperatorTask, "forward", poisoned)
    with pytest.raises(
        FloatingPointError, match=r"non-finite training loss \(nan\) at global step 2, epoch 1"
    ):
        train(cfg)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_channel_mismatch_names_both_numbers(compose_train, fake_data):
    cfg = compose_train(["pde=darcy", "pde.in_channels=3"])
    fake_data(cfg)
    with pytest.raises(ValueError, match=r"the data give 1 input channels but the model has in_channels=3"):
        train(cfg)


def test_missing_data_with_generation_off_prints_the_command(compose_train):
    cfg = compose_train(["pde=darcy", "pde.data.generate_if_missing=false"])
    dm = build_datamodule(cfg)
    with pytest.raises(FileNotFoundError) as info:
        train(cfg)
    msg = str(info.value)
    assert str(dm.path("train")) in msg
    assert "python scripts/generate.py pde=darcy split=train n_samples=8 seed=0 resolution=17 stride=1" in msg


@pytest.mark.parametrize(("group", "choice", "known"), [("model", "nope", "fno"), ("pde", "heat", "burgers")])
def test_unknown_group_option_lists_the_choices(group, choice, known):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        with pytest.raises(MissingConfigException) as info:
            compose("train", overrides=[f"{group}={choice}"])
    msg = str(info.value)
    assert f"Could not find '{group}/{choice}'" in msg and known in msg


def test_unknown_registered_model_name_lists_the_known_ones(compose_train, fake_data):
    cfg = compose_train(["pde=darcy", "model.model=fnoo"])
    fake_data(cfg)
    with pytest.raises(InstantiationException, match="unknown model 'fnoo'; known models: .*fno"):
        train(cfg)


def test_wandb_offline_logger_creates_a_run_directory(compose_train, fake_data):
    assert os.environ["WANDB_MODE"] == "offline"
    cfg = compose_train(["pde=burgers", "logger=wandb"])
    fake_data(cfg)
    train(cfg)
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    import wandb

    assert wandb.run is None  # finished by the task wrapper


def test_debug_fast_dev_run(compose_train, fake_data):
    cfg = compose_train(["pde=darcy", "debug=fdr"])
    assert cfg.trainer.fast_dev_run is True and cfg.logger in (None, {})
    fake_data(cfg)
    metrics, _ = train(cfg)
    assert math.isfinite(metrics["test/rel_l2@17"])


def test_paper_recipe_composes_with_the_paper_settings():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=fno_darcy_paper",
                "trainer=gpu",
                "paths.output_dir=/tmp/x",
                "paths.work_dir=/tmp",
            ],
        )
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.max_epochs == 500
    assert cfg.pde.data.generator_overrides is None
    assert (cfg.pde.generator.resolution, cfg.pde.generator.stride, cfg.pde.data.stride) == (421, 5, 1)
    assert (cfg.pde.data.n_train, cfg.pde.data.n_test, cfg.pde.data.batch_size) == (1000, 100, 20)
    assert cfg.pde.data.augment == "dihedral"  # our addition to the paper's training
    kw = cfg.model.model_kwargs
    assert list(kw.n_modes) == [12, 12] and kw.hidden_channels == 32
    opt, sched = cfg.model.optimizer, cfg.model.scheduler
    assert (opt.name, opt.lr, opt.weight_decay) == ("adam", 1e-3, 1e-4)
    assert (sched.name, sched.step_size, sched.gamma) == ("step", 100, 0.5)
    assert cfg.model.normalize_input and cfg.model.normalize_output
    dm = build_datamodule(cfg)
    assert dm.path("train").name.startswith("darcy_r421_s5_n1000_")


@pytest.mark.slow
def test_train_py_command_line(tmp_path, data_dir):
    """`python train.py` in a subprocess (Hydra's real entry point) writes its run directory."""
    run_dir = tmp_path / "cli_run"
    overrides = [
        "pde=burgers",
        "pde.data.generator_overrides={resolution:32,stride:1}",
        "pde.data.n_train=8",
        "pde.data.n_val=4",
        "pde.data.n_test=4",
        "pde.data.batch_size=4",
        "model.model_kwargs.hidden_channels=8",
        "trainer.max_epochs=1",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
    ]
    # Data files are written by the test (the generators may be slow or absent); see conftest.py.
    from conftest import write_fake_split

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *overrides[:-2],
                f"paths.data_dir={data_dir}",
                "paths.output_dir=x",
                "paths.work_dir=x",
            ],
        )
    dm = build_datamodule(cfg)
    for split in ("train", "val", "test"):
        write_fake_split(dm.path(split), "burgers", dm.generator_params, dm.n[split], split, 0)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "test/rel_l2@32:" in proc.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert (run_dir / "train.log").is_file()
    if _glibc() is not None:  # configs/train.yaml: cpu_allocator: retain
        assert "cpu_allocator=retain" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_h1_loss_and_step_scheduler_train(compose_train, fake_data):
    cfg = compose_train(
        [
            "pde=burgers",
            "model.loss=rel_h1",
            "model.loss_kwargs={derivative:spectral,periodic:true}",
            "model.scheduler.name=step",
            "model.scheduler.step_size=1",
            "model.scheduler.gamma=0.5",
            "model.scheduler.interval=step",
            "trainer.max_epochs=2",
        ]
    )
    fake_data(cfg)
    metrics, objects = train(cfg)
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["test/loss@32"])
    # 4 optimiser steps, each halving the learning rate.
    lr = objects["trainer"].optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(cfg.model.optimizer.lr * 0.5**4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": {"name": "sgd", "lr": 1e-3}}, "optimizer.name must be one of .*got 'sgd'"),
        ({"optimizer": {"name": "adam", "lr": -1.0}}, "optimizer.lr must be > 0, got -1.0"),
        (
            {"optimizer": {"name": "adam", "lr": 1e-3, "momentum": 0.9}},
            r"optimizer keys \['momentum'\] unknown",
        ),
        ({"scheduler": {"name": "plateau"}}, "scheduler.name must be one of .*got 'plateau'"),
        ({"scheduler": {"name": "step", "step_size": 0, "gamma": 0.5}}, "step_size=0"),
        ({"loss": "mse"}, "loss must be one of .*got 'mse'"),
        (
            {"loss_kwargs": {"derivative": "fd"}},
            r"loss_kwargs \['derivative'\] not accepted by loss 'rel_l2'",
        ),
        ({"model_kwargs": {"n_modes": [4], "in_channels": 2}}, "give in_channels to OperatorTask"),
    ],
)
def test_task_rejects_bad_settings_naming_the_value(kwargs, match):
    args = {"model": "fno", "model_kwargs": {"n_modes": [4]}, "in_channels": 1, "out_channels": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        OperatorTask(**args)


def test_last_checkpoint_is_the_final_epoch_even_when_validation_skips_it(compose_train, fake_data):
    # Validation (and so the best-checkpoint callback) runs at epochs 1 and 3 only; last.ckpt must still be
    # rewritten at every epoch end, so that resuming loses nothing (Lightning 2.6's own save_last would
    # leave it at the last epoch that improved the best).
    cfg = compose_train(["pde=burgers", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2"])
    fake_data(cfg)
    _, objects = train(cfg)
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == objects["trainer"].global_step
    assert objects["trainer"].checkpoint_callback.monitor == "val/rel_l2"
    assert sorted(p.name for p in ckpts.glob("*.ckpt")) == ["epoch_001.ckpt", "last.ckpt"]
