"""Time-dependent operator learning: autoregressive rollouts (FNO-2D) and space-time prediction (FNO-3D)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from neurop.losses import relative_l2
from neurop.tasks.operator import OperatorTask, _resolution_label

TrainMode = Literal["rollout", "teacher_forcing"]


def pooled_stats(stats: tuple[list[float], list[float]] | None) -> tuple[float, float] | None:
    """One (mean, std) for channels that are snapshots of one field, from equal-count per-channel stats."""
    if stats is None:
        return None
    mean = torch.tensor(stats[0], dtype=torch.float64)
    std = torch.tensor(stats[1], dtype=torch.float64)
    m = mean.mean()
    var = (std.square() + mean.square()).mean() - m.square()
    return float(m), float(var.clamp_min(0).sqrt())


class RolloutTask(OperatorTask):
    """Autoregressive operator: a window of snapshots in, the next snapshot out, rolled out in time.

    The data give the first ``window`` snapshots as input channels (``in_channels``) and the following
    ``n_steps`` snapshots as target channels (any number, e.g. ``w`` at t = 10..49 for the FNO paper's
    Navier–Stokes ν = 1e−3). The network maps ``in_channels = window * out_channels`` channels to the
    ``out_channels`` channels of one snapshot; :meth:`rollout` feeds its predictions back, dropping
    the oldest snapshot each step, as in the FNO paper's 2-D Navier–Stokes model (Li et al., ICLR 2021).

    All snapshots share one normaliser (the pooled mean and std of the field), so a window shifted in
    time is normalised like the training windows.

    Metrics: ``val/rollout_rel_l2`` (and ``val/rel_l2``, the same value, which checkpoints and sweeps
    monitor) is the relative L2 error of the whole rolled-out trajectory per sample;
    ``val/one_step_rel_l2`` is the error of one step from true windows. Tests log
    ``test/rel_l2@<res>`` (rollout) and ``test/one_step_rel_l2@<res>``.

    Parameters
    ----------
    train_mode : {"rollout", "teacher_forcing"}
        ``rollout``: the training loss is the per-step relative L2 error along the model's own rollout,
        averaged over the steps (backpropagation through the whole rollout, as in the paper);
        ``teacher_forcing``: every step starts from the true window (cheaper, less stable at test).
    max_train_steps : int or None
        Train on at most this many steps of each trajectory (``None``: all of them); validation and
        testing always roll out to the end.
    **kwargs
        As :class:`~neurop.tasks.operator.OperatorTask` (``in_channels``: window channels,
        ``out_channels``: channels of one snapshot).
    """

    def __init__(
        self,
        *args: Any,
        train_mode: TrainMode = "rollout",
        max_train_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if train_mode not in ("rollout", "teacher_forcing"):
            raise ValueError(f"train_mode must be 'rollout' or 'teacher_forcing', got {train_mode!r}")
        if max_train_steps is not None and (not isinstance(max_train_steps, int) or max_train_steps < 1):
            raise ValueError(f"max_train_steps must be null or an integer >= 1, got {max_train_steps!r}")
        c_in, c_out = self.hparams.in_channels, self.hparams.out_channels
        if c_in % c_out:
            raise ValueError(
                f"in_channels={c_in} must be a multiple of out_channels={c_out} (a window of whole snapshots)"
            )
        self.window = c_in // c_out
        self.train_mode = train_mode
        self.max_train_steps = max_train_steps

    # -- normalisers and data checks ------------------------------------------------------------------
    def set_normalizer_stats(
        self,
        input_stats: tuple[list[float], list[float]] | None,
        output_stats: tuple[list[float], list[float]] | None,
    ) -> None:
        """Pool window and target statistics per field channel and use them for every snapshot."""
        c = self.hparams.out_channels
        per_channel: list[tuple[float, float]] = []
        for k in range(c):
            means, stds = [], []
            for stats in (input_stats, output_stats):
                if stats is not None:
                    means += list(stats[0][k::c])
                    stds += list(stats[1][k::c])
            pooled = pooled_stats((means, stds)) if means else None
            if pooled is None:
                return
            per_channel.append(pooled)
        mean = [m for m, _ in per_channel]
        std = [s for _, s in per_channel]
        super().set_normalizer_stats((mean * self.window, std * self.window), (mean, std))

    def setup(self, stage: str) -> None:
        """Check that the data give a window of ``in_channels`` and whole target snapshots."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        try:
            data_in, data_out = dm.in_channels, dm.out_channels  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            return
        c_in, c_out = self.hparams.in_channels, self.hparams.out_channels
        if data_in != c_in:
            raise ValueError(
                f"channel mismatch: the data give {data_in} input channels but the model has "
                f"in_channels={c_in}; make pde.in_channels match the window pde.data.input"
            )
        if data_out % c_out:
            raise ValueError(
                f"the data give {data_out} target channels, not a whole number of snapshots of "
                f"out_channels={c_out} channels"
            )
        if stage == "fit":
            self.set_normalizer_stats(getattr(dm, "input_stats", None), getattr(dm, "output_stats", None))

    # -- rollout --------------------------------------------------------------------------------------
    def rollout(self, x: Tensor, n_steps: int) -> Tensor:
        """Roll the one-step model out from a window.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)
            The first ``window`` snapshots, oldest first.
        n_steps : int
            Number of future snapshots.

        Returns
        -------
        Tensor, shape (B, n_steps * out_channels, *spatial)
            Predicted snapshots in time order.
        """
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        c = self.hparams.out_channels
        window, preds = x, []
        for _ in range(n_steps):
            step = self(window)
            preds.append(step)
            window = torch.cat([window[:, c:], step], dim=1)
        return torch.cat(preds, dim=1)

    def _steps(self, y: Tensor) -> int:
        return y.shape[1] // self.hparams.out_channels

    def _one_step_errors(self, x: Tensor, y: Tensor, n_steps: int) -> Tensor:
        """Mean per-step relative L2 error of one step from the true windows (teacher forcing)."""
        c = self.hparams.out_channels
        traj = torch.cat([x, y], dim=1)
        errors = []
        for t in range(n_steps):
            window = traj[:, t * c : t * c + x.shape[1]]
            target = traj[:, x.shape[1] + t * c : x.shape[1] + (t + 1) * c]
            errors.append(self._loss(self(window), target))
        return torch.stack(errors).mean()

    # -- steps ----------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        n = self._steps(y)
        if self.max_train_steps is not None:
            n = min(n, self.max_train_steps)
        c = self.hparams.out_channels
        if self.train_mode == "teacher_forcing":
            loss = self._one_step_errors(x, y, n)
        else:
            pred = self.rollout(x, n)
            loss = torch.stack(
                [self._loss(pred[:, t * c : (t + 1) * c], y[:, t * c : (t + 1) * c]) for t in range(n)]
            ).mean()
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, epoch "
                f"{self.current_epoch}, batch {batch_idx}: lower optimizer.lr or check the data"
            )
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        pred = self.rollout(x, self._steps(y))
        err = relative_l2(pred, y)
        self.log("val/rollout_rel_l2", err, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        self.log("val/rel_l2", err, sync_dist=True, batch_size=x.shape[0])
        self.log(
            "val/one_step_rel_l2",
            relative_l2(pred[:, : self.hparams.out_channels], y[:, : self.hparams.out_channels]),
            sync_dist=True,
            batch_size=x.shape[0],
        )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        pred = self.rollout(x, self._steps(y))
        label = _resolution_label(y.shape[2:])
        kw = {"sync_dist": True, "batch_size": x.shape[0], "add_dataloader_idx": False}
        self.log(f"test/rel_l2@{label}", relative_l2(pred, y), **kw)
        c = self.hparams.out_channels
        self.log(f"test/one_step_rel_l2@{label}", relative_l2(pred[:, :c], y[:, :c]), **kw)
        if self.n_plot > 0 and label not in self._plot_buffer:
            n = self.n_plot
            # The last snapshot of the rollout: where the accumulated error shows.
            self._plot_buffer[label] = (x[:n].cpu(), y[:n, -c:].cpu(), pred[:n, -c:].detach().cpu())

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """One step from a window (use :meth:`rollout` for trajectories)."""
        return super().predict_step(batch, batch_idx, dataloader_idx)


class SpaceTimeTask(OperatorTask):
    """Space-time operator: a window of snapshots in, all later snapshots out at once (FNO-3D).

    The input window ``(B, in_channels, X, Y)`` is repeated along a time axis of ``out_channels``
    points (plus ``time_padding`` extra points, cropped from the output, because the time direction is
    not periodic), and a network with three spatial axes (an FNO with ``len(n_modes) == 3``) maps it to
    one channel on the ``(X, Y, t)`` grid; the time axis is returned as channels, so the data layout,
    metrics and figures are those of :class:`~neurop.tasks.operator.OperatorTask`. This is the FNO
    paper's 3-D Navier–Stokes model (10 snapshots in, T − 10 out; Li et al., ICLR 2021).

    Parameters
    ----------
    time_padding : int
        Extra time points appended before the network and cropped after it; the time grid is also
        extended to twice the retained time modes when it is shorter.
    **kwargs
        As :class:`~neurop.tasks.operator.OperatorTask`; ``out_channels`` is the number of predicted
        snapshots (one channel each).
    """

    def __init__(self, *args: Any, time_padding: int = 6, **kwargs: Any) -> None:
        model_kwargs = dict(kwargs.get("model_kwargs") or (args[1] if len(args) > 1 else {}))
        n_modes = model_kwargs.get("n_modes")
        if n_modes is None or len(n_modes) != 3:
            raise ValueError(f"SpaceTimeTask needs a network with 3 axes (x, y, t): n_modes={n_modes!r}")
        if not isinstance(time_padding, int) or time_padding < 0:
            raise ValueError(f"time_padding must be an integer >= 0, got {time_padding!r}")
        self._time_modes = int(n_modes[-1])
        super().__init__(*args, **kwargs)
        self.time_padding = time_padding
        self.n_times = int(self.hparams.out_channels)
        # The network predicts one channel on the space-time grid; the task's channels are the times.
        self.net = self._build_net()

    def _build_net(self) -> torch.nn.Module:
        from neurop.models import MODELS

        return MODELS.build(
            self.hparams.model,
            in_channels=self.hparams.in_channels,
            out_channels=1,
            **self.hparams.model_kwargs,
        )

    def time_points(self) -> int:
        """Length of the network's time axis: the predicted times plus padding (>= 2 * time modes)."""
        return max(self.n_times + self.time_padding, 2 * self._time_modes)

    def forward(self, x: Tensor) -> Tensor:
        """Predict all later snapshots.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)
            The input window.

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
            One channel per predicted time.
        """
        if self.input_normalizer is not None:
            x = self.input_normalizer.encode(x)
        nt = self.time_points()
        h = x.unsqueeze(-1).expand(*x.shape, nt)
        y = self.net(h)[:, 0, ..., : self.n_times]  # (B, *spatial, n_times)
        y = torch.movedim(y, -1, 1)
        if self.output_normalizer is not None:
            y = self.output_normalizer.decode(y)
        return y


__all__ = ["RolloutTask", "SpaceTimeTask", "pooled_stats"]
