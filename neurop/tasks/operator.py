"""Supervised operator learning as a LightningModule: normalisers, relative-L2 training, metrics, figures."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from neurop.data.normalize import UnitGaussianNormalizer
from neurop.losses import get_loss, relative_h1, relative_l2
from neurop.models import MODELS
from neurop.plotting import plot_samples

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("step", "cosine", "none")
_OPTIMIZER_KEYS = {"name", "lr", "weight_decay", "betas"}
_SCHEDULER_KEYS = {"name", "step_size", "gamma", "t_max", "eta_min", "interval"}

log = logging.getLogger(__name__)


def _resolution_label(shape: tuple[int, ...] | torch.Size) -> str:
    shape = tuple(shape)
    return str(shape[0]) if len(set(shape)) == 1 else "x".join(map(str, shape))


class OperatorTask(L.LightningModule):
    """Learn a map between fields with a registered network.

    Inputs and outputs are normalised per channel to zero mean and unit variance with statistics of
    the training set (buffers, so a checkpoint alone runs inference); the network maps normalised
    inputs to normalised outputs and the loss is taken in physical units after decoding, as in the
    FNO paper (Li et al., ICLR 2021).

    Parameters
    ----------
    model : str
        Name of the network in ``neurop.models.MODELS`` (e.g. ``"fno"``).
    model_kwargs : dict
        Keyword arguments of the network other than the channel counts.
    in_channels, out_channels : int
        Channels of the input and output fields.
    optimizer : dict
        ``{name: adam | adamw, lr, weight_decay, betas (optional)}``.
    scheduler : dict or None
        ``{name: step | cosine | none, step_size, gamma, t_max, eta_min, interval: epoch | step}``;
        ``t_max: null`` spans the whole run. ``None`` means no scheduler.
    loss : {"rel_l2", "rel_h1"}
        Training loss, averaged over the samples of a batch.
    loss_kwargs : dict or None
        Extra arguments of the loss (``rel_h1``: ``derivative`` ("fd" | "spectral"), ``periodic``).
    normalize_input, normalize_output : bool
        Use unit-Gaussian normalisers.
    n_plot : int
        Test samples drawn per test resolution (0 disables figures).
    """

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any],
        in_channels: int,
        out_channels: int,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        loss: Literal["rel_l2", "rel_h1"] = "rel_l2",
        loss_kwargs: dict[str, Any] | None = None,
        normalize_input: bool = True,
        normalize_output: bool = True,
        n_plot: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for key in ("in_channels", "out_channels"):
            if key in model_kwargs:
                raise ValueError(f"give {key} to OperatorTask, not in model_kwargs (got model_kwargs.{key})")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}")
        self.optimizer_cfg = self._check_optimizer(optimizer or {"name": "adam", "lr": 1e-3})
        self.scheduler_cfg = self._check_scheduler(scheduler)
        get_loss(loss)
        if loss not in ("rel_l2", "rel_h1"):
            raise ValueError(f"loss must be 'rel_l2' or 'rel_h1', got {loss!r}")
        self.loss_name = loss
        self.loss_kwargs = dict(loss_kwargs or {})
        allowed = {"rel_l2": set(), "rel_h1": {"derivative", "periodic", "seminorm", "length"}}[loss]
        unknown = set(self.loss_kwargs) - allowed
        if unknown:
            raise ValueError(
                f"loss_kwargs {sorted(unknown)} not accepted by loss {loss!r}; allowed: {sorted(allowed)}"
            )
        self.net = MODELS.build(model, in_channels=in_channels, out_channels=out_channels, **model_kwargs)
        self.input_normalizer = UnitGaussianNormalizer(in_channels) if normalize_input else None
        self.output_normalizer = UnitGaussianNormalizer(out_channels) if normalize_output else None
        self.n_plot = n_plot
        self._plot_buffer: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    # -- configuration checks -----------------------------------------------------------------------
    @staticmethod
    def _check_optimizer(cfg: dict[str, Any]) -> dict[str, Any]:
        cfg = dict(cfg)
        unknown = set(cfg) - _OPTIMIZER_KEYS
        if unknown:
            raise ValueError(f"optimizer keys {sorted(unknown)} unknown; allowed: {sorted(_OPTIMIZER_KEYS)}")
        if cfg.get("name") not in OPTIMIZERS:
            raise ValueError(f"optimizer.name must be one of {sorted(OPTIMIZERS)}, got {cfg.get('name')!r}")
        if not (isinstance(cfg.get("lr"), (int, float)) and cfg["lr"] > 0):
            raise ValueError(f"optimizer.lr must be > 0, got {cfg.get('lr')!r}")
        if cfg.get("weight_decay", 0.0) < 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0, got {cfg['weight_decay']}")
        return cfg

    @staticmethod
    def _check_scheduler(cfg: dict[str, Any] | None) -> dict[str, Any]:
        cfg = dict(cfg or {"name": "none"})
        unknown = set(cfg) - _SCHEDULER_KEYS
        if unknown:
            raise ValueError(f"scheduler keys {sorted(unknown)} unknown; allowed: {sorted(_SCHEDULER_KEYS)}")
        name = cfg.get("name", "none")
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler.name must be one of {list(SCHEDULERS)}, got {name!r}")
        interval = cfg.setdefault("interval", "epoch")
        if interval not in ("epoch", "step"):
            raise ValueError(f"scheduler.interval must be 'epoch' or 'step', got {interval!r}")
        if name == "step" and not (
            int(cfg.get("step_size") or 0) >= 1 and 0 < float(cfg.get("gamma", 0)) <= 1
        ):
            raise ValueError(
                "scheduler 'step' needs step_size >= 1 and 0 < gamma <= 1, got "
                f"step_size={cfg.get('step_size')!r} gamma={cfg.get('gamma')!r}"
            )
        return cfg

    # -- model --------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Predict outputs in physical units.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
        """
        if self.input_normalizer is not None:
            x = self.input_normalizer.encode(x)
        y = self.net(x)
        if self.output_normalizer is not None:
            y = self.output_normalizer.decode(y)
        return y

    def set_normalizer_stats(
        self,
        input_stats: tuple[list[float], list[float]] | None,
        output_stats: tuple[list[float], list[float]] | None,
    ) -> None:
        """Set the normalisers' per-channel (mean, std) (ignored for a disabled normaliser)."""
        if self.input_normalizer is not None and input_stats is not None:
            self.input_normalizer.set_stats(*input_stats)
        if self.output_normalizer is not None and output_stats is not None:
            self.output_normalizer.set_stats(*output_stats)

    def setup(self, stage: str) -> None:
        """Check channel counts against the DataModule and take its normalisation statistics."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        try:
            data_in, data_out = dm.in_channels, dm.out_channels  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            return  # no DataModule, or one that does not describe its channels
        for role, key, data_c, model_c in (
            ("input", "in_channels", data_in, self.hparams.in_channels),
            ("output", "out_channels", data_out, self.hparams.out_channels),
        ):
            if data_c != model_c:
                raise ValueError(
                    f"channel mismatch: the data give {data_c} {role} channels but the model has "
                    f"{key}={model_c}; make pde.{key} match the data selection pde.data.{role}"
                )
        if stage == "fit":
            # On resume the checkpoint, restored after this hook, overwrites these with its own buffers.
            self.set_normalizer_stats(getattr(dm, "input_stats", None), getattr(dm, "output_stats", None))
            for norm in (self.input_normalizer, self.output_normalizer):
                if norm is not None and not bool(norm.fitted):
                    rank_zero_warn(
                        "a normaliser has no statistics (it acts as the identity): the DataModule gave "
                        "none; call set_normalizer_stats() before fitting"
                    )
            if getattr(self.net, "needs_output_fit", False):
                self._fit_net_to_outputs(dm)

    def _fit_net_to_outputs(self, dm: Any) -> None:
        """Show a data-fitted network part (e.g. DeepONet's POD trunk) the normalised training outputs."""
        train = getattr(dm, "datasets", {}).get("train")
        if train is None:
            raise RuntimeError(
                f"{type(self.net).__name__} must see the training outputs before fitting, but the "
                f"DataModule {type(dm).__name__} has no datasets['train']; call net.fit_outputs(y) yourself"
            )
        y = torch.from_numpy(train.read("output", slice(None)))
        if self.output_normalizer is not None:
            y = self.output_normalizer.encode(y)
        kept = self.net.fit_outputs(y)
        if kept is not None:
            log.info("output basis fitted on %d training samples: energy kept %s", y.shape[0], kept.tolist())

    # -- steps --------------------------------------------------------------------------------------
    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.loss_name == "rel_h1":
            return relative_h1(pred, target, dim=pred.ndim - 2, **self.loss_kwargs)
        return relative_l2(pred, target)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self._loss(self(x), y)
        finite = bool(torch.isfinite(loss.detach()))
        # All ranks must agree, or one rank would stop while the others wait in the next collective.
        if not self.trainer.strategy.reduce_boolean_decision(finite, all=True):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, epoch "
                f"{self.current_epoch}, batch {batch_idx}: training stopped; checkpoints written before "
                "this step are kept (lower optimizer.lr, check the data for NaN/inf, or resume from "
                "last.ckpt)"
            )
        # Epoch means under the plain name (comparable across batch sizes), per-step values for curves.
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        pred = self(x)
        self.log("val/rel_l2", relative_l2(pred, y), prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        if self.loss_name != "rel_l2":
            self.log("val/loss", self._loss(pred, y), sync_dist=True, batch_size=x.shape[0])

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        pred = self(x)
        label = _resolution_label(y.shape[2:])
        self.log(
            f"test/rel_l2@{label}",
            relative_l2(pred, y),
            sync_dist=True,
            batch_size=x.shape[0],
            add_dataloader_idx=False,
        )
        if self.loss_name != "rel_l2":
            self.log(
                f"test/loss@{label}",
                self._loss(pred, y),
                sync_dist=True,
                batch_size=x.shape[0],
                add_dataloader_idx=False,
            )
        if self.n_plot > 0 and label not in self._plot_buffer:
            n = self.n_plot
            self._plot_buffer[label] = (x[:n].cpu(), y[:n].cpu(), pred[:n].detach().cpu())

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def on_test_epoch_start(self) -> None:
        self._plot_buffer = {}

    def on_test_epoch_end(self) -> None:
        if not self._plot_buffer or self.trainer.global_rank != 0:
            return
        out_dir = Path(self.trainer.default_root_dir) / "figures"
        for label, (x, y, pred) in self._plot_buffer.items():
            path = plot_samples(
                x,
                y,
                pred,
                out_dir / f"test_samples_{label}.png",
                title=f"{self.hparams.model} test samples at {label}",
                max_samples=self.n_plot,
            )
            for logger in self.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=f"test/samples@{label}", images=[str(path)])
        self._plot_buffer = {}

    # -- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        cfg = self.optimizer_cfg
        kwargs: dict[str, Any] = {"lr": cfg["lr"], "weight_decay": cfg.get("weight_decay", 0.0)}
        if cfg.get("betas") is not None:
            kwargs["betas"] = tuple(cfg["betas"])
        optimizer = OPTIMIZERS[cfg["name"]](self.parameters(), **kwargs)
        sched = self.scheduler_cfg
        if sched["name"] == "none":
            return optimizer
        interval = sched["interval"]
        if sched["name"] == "step":
            scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=int(sched["step_size"]), gamma=float(sched["gamma"])
            )
        else:
            t_max = sched.get("t_max")
            if t_max is None:
                if interval == "step":
                    t_max = self.trainer.estimated_stepping_batches
                else:
                    t_max = self.trainer.max_epochs if self.trainer.max_epochs not in (None, -1) else 1
            if not (isinstance(t_max, (int, float)) and math.isfinite(t_max) and t_max >= 1):
                raise ValueError(
                    f"scheduler.t_max must be >= 1 (or null with finite max_epochs), got {t_max!r}"
                )
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=int(t_max), eta_min=float(sched.get("eta_min") or 0.0)
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
