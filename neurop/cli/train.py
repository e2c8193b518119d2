"""Train and test a model on one PDE's data from a composed Hydra config (``python train.py ...``)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from neurop.cli import CONFIG_DIR, register_resolvers
from neurop.cli.sweep import write_metrics
from neurop.data.datamodule import OperatorDataModule
from neurop.runtime import configure_cpu_allocator

log = logging.getLogger(__name__)


def task_wrapper(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Log an exception with the run directory, and always close wandb.

    Multirun jobs share one process: a run left open would receive the next job's metrics.
    """

    @functools.wraps(fn)
    def wrapped(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except Exception:
            log.exception("training failed; run directory: %s", cfg.paths.get("output_dir", "?"))
            raise
        finally:
            if "wandb" in sys.modules:
                import wandb

                if wandb.run is not None:
                    log.info("closing wandb run")
                    wandb.finish()

    return wrapped


def _nodes(cfg: DictConfig | None) -> list[DictConfig]:
    """The ``_target_`` nodes of a config group like ``callbacks`` or ``logger`` (null entries skipped)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"expected a mapping of config nodes, got {type(cfg).__name__}")
    nodes = []
    for key, node in cfg.items():
        if node is None:
            continue
        if not (isinstance(node, DictConfig) and "_target_" in node):
            raise ValueError(f"config entry {key!r} has no _target_: {OmegaConf.to_yaml(node)}")
        nodes.append(node)
    return nodes


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Build the callbacks of the ``callbacks`` group."""
    return [hydra.utils.instantiate(node, _convert_="all") for node in _nodes(cfg)]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Build the loggers of the ``logger`` group."""
    return [hydra.utils.instantiate(node, _convert_="all") for node in _nodes(cfg)]


def build_datamodule(cfg: DictConfig) -> OperatorDataModule | None:
    """The DataModule for ``cfg.pde`` (its ``data:`` section plus the generator parameters).

    None when the model's task draws its own points (physics-informed tasks set ``needs_datamodule =
    False``).
    """
    target = cfg.model.get("_target_")
    if target and not getattr(hydra.utils.get_class(target), "needs_datamodule", True):
        return None
    data = OmegaConf.to_container(cfg.pde.data, resolve=True)
    generator = OmegaConf.to_container(cfg.pde.generator, resolve=True)
    assert isinstance(data, dict) and isinstance(generator, dict)
    return OperatorDataModule(pde=cfg.pde.name, dim=cfg.pde.dim, generator=generator, **data)


def _float_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value.item())
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and test the configured model; return the metrics and the objects built.

    Steps: seed; build the DataModule, the task, callbacks, loggers and the Trainer; fit (resuming
    from ``cfg.ckpt_path`` if given); test the best checkpoint (or ``cfg.ckpt_path`` when not
    training).

    Parameters
    ----------
    cfg : DictConfig
        The composed ``configs/train.yaml``.

    Returns
    -------
    metrics : dict of str to float
        All logged metrics (``train/loss``, ``val/rel_l2``, ``test/rel_l2@<resolution>``, …) and
        ``val/rel_l2_best`` when a checkpoint callback monitored it.
    objects : dict
        ``cfg``, ``datamodule``, ``task``, ``callbacks``, ``loggers``, ``trainer``.
    """
    mode = cfg.get("cpu_allocator", "default")
    if configure_cpu_allocator(mode):
        log.info("cpu_allocator=%s: released memory stays in the C heap", mode)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info("building data module for pde %r", cfg.pde.name)
    datamodule = build_datamodule(cfg)

    log.info("building task %s with model %r", cfg.model.get("_target_"), cfg.model.get("model"))
    task: L.LightningModule = hydra.utils.instantiate(cfg.model, _convert_="all")

    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        # Lightning refuses a learning-rate monitor without a logger.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # Physics-informed tasks fix the run length themselves (optimisation steps, evaluation interval).
    overrides = task.trainer_overrides() if hasattr(task, "trainer_overrides") else {}
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, _convert_="all", **overrides
    )
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "task": task,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }
    if loggers:
        hparams = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(hparams, dict)
        hparams.pop("hydra", None)
        hparams["n_params"] = sum(p.numel() for p in task.parameters())
        for logger in loggers:
            logger.log_hyperparams(hparams)

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        log.info("fitting")
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(_float_metrics(trainer.callback_metrics))
        ckpt_cb = trainer.checkpoint_callback
        if ckpt_cb is not None and getattr(ckpt_cb, "best_model_score", None) is not None:
            metrics[f"{ckpt_cb.monitor}_best"] = float(ckpt_cb.best_model_score)

    if cfg.get("test", True):
        ckpt_path = None
        if cfg.get("train", True):
            best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
            if best:
                ckpt_path = best
            else:
                log.warning("no best checkpoint found; testing the current weights")
        else:
            ckpt_path = cfg.get("ckpt_path")
            if ckpt_path is None:
                log.warning("testing without training and without ckpt_path: the weights are untrained")
        log.info("testing (checkpoint: %s)", ckpt_path)
        trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(_float_metrics(trainer.callback_metrics))

    for key in sorted(k for k in metrics if k.startswith("test/")):
        log.info("%s = %.5f", key, metrics[key])
    log.info("outputs in %s", trainer.default_root_dir)
    return metrics, objects


def optimized_metric(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``cfg.optimized_metric`` for sweepers (None when it is not set)."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics and not cfg.get("train", True):
        return None  # a test-only run has no validation metric to return
    if name not in metrics:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]


def run(cfg: DictConfig) -> float | None:
    """Body of the Hydra entry point: train, print the test errors, return the optimised metric."""
    register_resolvers()
    if cfg.get("print_config", True):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    metrics, objects = train(cfg)
    if objects["trainer"].is_global_zero:
        # Read by the sweep summary (neurop.cli.sweep) and by scripts that compare runs.
        write_metrics(cfg.paths.output_dir, metrics)
        for key in sorted(k for k in metrics if k.startswith("test/")):
            print(f"{key}: {metrics[key]:.5f}")
    return optimized_metric(cfg, metrics)


def main() -> None:
    """Console script ``neurop-train``: the same as ``python train.py`` from the repository root."""
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(
            f"config directory {CONFIG_DIR} not found; install neurop from its repository"
        )
    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(run)()


__all__ = ["build_datamodule", "instantiate_callbacks", "instantiate_loggers", "main", "run", "train"]


if __name__ == "__main__":
    main()
