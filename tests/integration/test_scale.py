"""Running at scale: sweeps and their summary, submitit and Optuna sweepers, DDP, sharded generation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from neurop.cli import CONFIG_DIR, PROJECT_ROOT
from neurop.cli.sweep import summary_tables
from neurop.cli.train import build_datamodule

# A Darcy run small enough for a subprocess job to train in a few seconds.
TINY = [
    "pde=darcy",
    "pde.data.generator_overrides={resolution:17,stride:1}",
    "pde.data.stride=1",
    "pde.data.test_strides=[]",
    "pde.data.n_train=8",
    "pde.data.n_val=4",
    "pde.data.n_test=4",
    "pde.data.batch_size=4",
    "model.model_kwargs.hidden_channels=8",
    "model.model_kwargs.projection_channels=16",
    "model.model_kwargs.n_layers=2",
    "model.model_kwargs.n_modes=[4,4]",
    "model.n_plot=0",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _write_tiny_data(data_dir: Path, overrides: list[str]) -> None:
    """Real generated Darcy files for the tiny config, made once before the jobs of a sweep start."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.data_dir={data_dir}", "paths.output_dir=x"])
    build_datamodule(cfg).prepare_data()


def _train_py(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=PROJECT_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _jobs(sweep_dir: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in sweep_dir.glob("*/job.json")), key=lambda r: r["job"])


def test_submitit_local_sweep_writes_one_run_per_job_and_a_summary(tmp_path):
    data_dir = tmp_path / "data"
    _write_tiny_data(data_dir, TINY)
    sweep = tmp_path / "sweep"
    proc = _train_py(
        [
            "-m",
            "hydra/launcher=submitit_local",
            *TINY,
            f"paths.data_dir={data_dir}",
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    jobs = _jobs(sweep)
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"]
    for j in jobs:
        run = Path(j["output_dir"])
        assert run.parent == sweep and (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "csv" / "metrics.csv").is_file()
        # Each job its own wandb run, all in one group named after the sweep.
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1
        hparams = yaml.safe_load((run / "csv" / "hparams.yaml").read_text())
        assert hparams["logger"]["wandb"]["group"] == "sweep-" + "_".join(sweep.parts[-2:])
        assert hparams["logger"]["wandb"]["name"] == f"train-{j['job']}"
        assert math.isfinite(j["metrics"]["test/rel_l2@17"])
    # The two seeds give different models.
    assert jobs[0]["metrics"]["val/rel_l2"] != jobs[1]["metrics"]["val/rel_l2"]
    summary = (sweep / "summary.md").read_text()
    assert "2 jobs, 0 failed" in summary
    assert "| 0 | seed=1 | COMPLETED |" in summary and "| 1 | seed=2 | COMPLETED |" in summary
    assert (sweep / "summary.csv").read_text().count("\n") == 3


def test_a_failed_job_does_not_stop_the_sweep_and_is_marked_failed(tmp_path):
    data_dir = tmp_path / "data"
    _write_tiny_data(data_dir, TINY)
    sweep = tmp_path / "sweep"
    proc = _train_py(
        [
            "-m",
            *TINY,
            "logger=csv",
            f"paths.data_dir={data_dir}",
            "model.optimizer.lr=-1,1e-3",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode != 0  # Hydra reports the failure at the end of the sweep ...
    jobs = _jobs(sweep)
    assert [j["status"] for j in jobs] == ["FAILED", "COMPLETED"]  # ... after running every job
    assert "optimizer.lr must be > 0, got -1" in jobs[0]["error"]
    summary = (sweep / "summary.md").read_text()
    assert "2 jobs, 1 failed" in summary
    assert "| 0 | model.optimizer.lr=-1 | FAILED |" in summary


def test_summary_table_lists_metrics_and_varied_overrides():
    records = [
        {
            "job": 0,
            "overrides": ["pde=darcy", "seed=1"],
            "status": "COMPLETED",
            "metrics": {"val/rel_l2": 0.1},
        },
        {
            "job": 1,
            "overrides": ["pde=darcy", "seed=2"],
            "status": "FAILED",
            "error": "ValueError: x",
            "metrics": {},
        },
    ]
    md, table = summary_tables(records)
    assert "Common overrides: `pde=darcy`" in md
    assert "| 0 | seed=1 | COMPLETED | 0.1 |  |" in md
    assert "| 1 | seed=2 | FAILED |  | ValueError: x |" in md
    assert table.splitlines()[0] == "job,overrides,status,val/rel_l2,error"


def test_optuna_search_minimises_the_returned_metric(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    data_dir = tmp_path / "data"
    _write_tiny_data(data_dir, TINY)
    sweep = tmp_path / "sweep"
    proc = _train_py(
        [
            "hparams_search=fno_optuna",
            *TINY,
            "trainer.max_epochs=1",
            "logger=csv",
            f"paths.data_dir={data_dir}",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=2",
            "hydra.sweeper.params={model.optimizer.lr:'tag(log, interval(1e-4, 1e-2))'}",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    jobs = _jobs(sweep)
    assert len(jobs) == 2 and all(j["status"] == "COMPLETED" for j in jobs)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [j["metrics"]["val/rel_l2_best"] for j in jobs]
    assert best["best_value"] == pytest.approx(min(values), rel=1e-6)


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("hydra/launcher=nope", ["slurm", "submitit_local", "basic"]),
        ("trainer=nope", ["cpu", "ddp", "ddp_cpu", "gpu"]),
    ],
)
def test_unknown_launcher_or_trainer_lists_the_choices(override, choices):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        with pytest.raises(MissingConfigException) as err:
            compose("train", overrides=[override], return_hydra_config=True)
    message = str(err.value)
    assert "nope" in message
    for choice in choices:
        assert choice in message


def test_ddp_on_two_cpu_processes_matches_a_single_process(tmp_path):
    """`trainer=ddp_cpu`: 2 gloo processes with batch 2 each against 1 process with batch 4 on the same data.

    Both take the same number of optimiser steps on the same mean gradient over 4 samples; only the
    order in which samples are drawn differs (the distributed sampler shuffles differently), so final
    validation errors agree to a few percent, and evaluating the DDP checkpoint in one process
    reproduces the DDP run's synchronised test metric to rounding.
    """
    data_dir = tmp_path / "data"
    common = [*TINY, "trainer.max_epochs=3", "logger=csv", f"paths.data_dir={data_dir}", "seed=7"]
    _write_tiny_data(data_dir, common)
    ddp_dir, single_dir, eval_dir = tmp_path / "ddp", tmp_path / "single", tmp_path / "eval"
    proc = _train_py([*common, "trainer=ddp_cpu", "pde.data.batch_size=2", f"hydra.run.dir={ddp_dir}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    proc = _train_py([*common, f"hydra.run.dir={single_dir}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    last = torch.load(ddp_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6 and last["epoch"] == 2  # 8 samples / (2 ranks x 2) = 2 steps per epoch
    ddp = json.loads((ddp_dir / "metrics.json").read_text())  # written by rank 0 only
    single = json.loads((single_dir / "metrics.json").read_text())
    assert not list(ddp_dir.glob("**/metrics.json"))[1:]
    assert ddp["val/rel_l2"] == pytest.approx(single["val/rel_l2"], rel=0.05)

    # The DDP run tested its best checkpoint (top-1, besides last.ckpt): one process must agree.
    (best,) = [p for p in (ddp_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    proc = _train_py([*common, "train=false", f"ckpt_path={best}", f"hydra.run.dir={eval_dir}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["test/rel_l2@17"] == pytest.approx(ddp["test/rel_l2@17"], rel=1e-5)


def test_sharded_generation_with_range_syntax_equals_one_unsharded_run(tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra

    # Composing outside `python generate.py` still resolves the run directory, which claims (creates) it
    # relative to the working directory: keep it out of the repository's outputs/.
    monkeypatch.chdir(tmp_path)

    from neurop.cli.generate import generate

    def run(overrides: list[str]) -> Path:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("generate", overrides=overrides)
        return generate(cfg, tmp_path)

    base = ["pde=darcy", "resolution=17", "stride=1", "n_samples=5", "progress=false"]
    whole = run([*base, "out=whole.h5"])
    for i in range(3):  # what `-m n_shards=3 shard='range(3)'` launches
        run([*base, "out=sharded.h5", "n_shards=3", f"shard={i}"])
    combined = run([*base, "out=sharded.h5", "combine=true"])
    with h5py.File(whole) as a, h5py.File(combined) as b:
        for name in ("a", "u"):
            np.testing.assert_array_equal(a[name][...], b[name][...])
    with pytest.raises(ValueError, match=r"shard must be an integer index 0\.\.2 .*got shard='1/3'"):
        run([*base, "out=x.h5", "n_shards=3", "shard=1/3"])
    with pytest.raises(ValueError, match=r"shard must be 'i/n' with integers 0 <= i < n, got '5/4'"):
        run([*base, "out=x.h5", "shard=5/4"])
    assert not list(tmp_path.glob("x*.h5*"))


def test_slurm_launcher_config_exposes_cluster_keys():
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2"],
            return_hydra_config=True,
        )
    launcher = OmegaConf.to_container(cfg.hydra.launcher)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["partition"] == "gpu" and launcher["nodes"] == 2
    for key in ("gpus_per_node", "timeout_min", "mem_gb", "tasks_per_node"):
        assert key in launcher
