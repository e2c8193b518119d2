"""Autoregressive rollouts and the space-time task: rollout = repeated steps, pooled normalisers, training."""

from __future__ import annotations

import math

import pytest
import torch

from neurop.cli.train import train
from neurop.tasks.rollout import RolloutTask, SpaceTimeTask, pooled_stats

FNO = {"n_modes": [3, 3], "hidden_channels": 6, "n_layers": 2, "projection_channels": 8}


def _task(window: int = 3, channels: int = 1, **kw) -> RolloutTask:
    torch.manual_seed(0)
    return RolloutTask(
        model="fno", model_kwargs=FNO, in_channels=window * channels, out_channels=channels, **kw
    ).double()


@pytest.mark.parametrize(("window", "channels"), [(3, 1), (2, 2)])
def test_rollout_equals_repeated_one_step_calls(window, channels):
    task = _task(window, channels)
    stats = (([0.3, -0.1] * window)[: window * channels], [2.0] * window * channels)
    task.set_normalizer_stats(stats, None)
    x = torch.randn(2, window * channels, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        pred = task.rollout(x, 4)
        traj = list(x.split(channels, dim=1))
        for _ in range(4):
            traj.append(task(torch.cat(traj[-window:], dim=1)))
    assert pred.shape == (2, 4 * channels, 12, 12)
    torch.testing.assert_close(pred, torch.cat(traj[window:], dim=1), rtol=0, atol=0)
    # The second step depends on the first prediction, not on the oldest input snapshot.
    x2 = x.clone()
    x2[:, :channels] += 1.0
    with torch.no_grad():
        pred2 = task.rollout(x2, 4)
    assert not torch.allclose(pred2[:, :channels], pred[:, :channels])
    if window == 3:
        # After `window` steps the input window is gone, but its effect persists through the predictions.
        assert not torch.allclose(pred2[:, -channels:], pred[:, -channels:])


def test_rollout_is_differentiable_through_every_step():
    task = _task()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    task.rollout(x, 5)[:, -1].sum().backward()
    assert x.grad is not None and x.grad[:, 0].abs().sum() > 0  # the oldest snapshot reaches step 5


def test_teacher_forcing_error_starts_every_step_from_the_true_window():
    task = _task(window=2)
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    y = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    traj = torch.cat([x, y], dim=1)
    with torch.no_grad():
        expected = sum(task._loss(task(traj[:, t : t + 2]), traj[:, t + 2 : t + 3]) for t in range(3)) / 3
        torch.testing.assert_close(task._one_step_errors(x, y, 3), expected)


def test_pooled_stats_are_those_of_all_snapshots_together():
    rng = torch.Generator().manual_seed(1)
    data = [
        torch.randn(50, generator=rng, dtype=torch.float64) * s + m for m, s in [(0, 1), (2, 3), (-1, 0.5)]
    ]
    means = [float(d.mean()) for d in data]
    stds = [float(d.std(unbiased=False)) for d in data]
    m, s = pooled_stats((means, stds))
    allv = torch.cat(data)
    assert m == pytest.approx(float(allv.mean()), rel=1e-12)
    assert s == pytest.approx(float(allv.std(unbiased=False)), rel=1e-12)


def test_normalisers_share_the_field_statistics():
    task = _task(window=2, channels=1)
    task.set_normalizer_stats(([1.0, 3.0], [1.0, 1.0]), ([2.0], [1.0]))
    # Snapshots with means 1, 3, 2 and unit variance: pooled mean 2, variance 1 + 2/3.
    torch.testing.assert_close(task.input_normalizer.mean, torch.tensor([2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(
        task.output_normalizer.std, torch.tensor([math.sqrt(5 / 3)] * 1, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"train_mode": "scheduled"}, "train_mode must be 'rollout' or 'teacher_forcing', got 'scheduled'"),
        ({"max_train_steps": 0}, "max_train_steps must be null or an integer >= 1, got 0"),
        ({"in_channels": 5, "out_channels": 2}, "in_channels=5 must be a multiple of out_channels=2"),
    ],
)
def test_bad_settings_name_the_value(kw, match):
    args = {"model": "fno", "model_kwargs": FNO, "in_channels": 3, "out_channels": 1, **kw}
    with pytest.raises(ValueError, match=match):
        RolloutTask(**args)


def test_space_time_task_predicts_one_channel_per_time():
    torch.manual_seed(0)
    task = SpaceTimeTask(
        model="fno",
        model_kwargs={**FNO, "n_modes": [3, 3, 4]},
        in_channels=3,
        out_channels=5,
        time_padding=2,
    )
    assert task.time_points() == 8  # max(5 + 2, 2 * 4)
    x = torch.randn(2, 3, 12, 12)
    y = task(x)
    assert y.shape == (2, 5, 12, 12)
    y.square().mean().backward()
    assert all(p.grad is not None for p in task.net.parameters())
    with pytest.raises(ValueError, match=r"needs a network with 3 axes \(x, y, t\): n_modes=\[3, 3\]"):
        SpaceTimeTask(model="fno", model_kwargs=FNO, in_channels=3, out_channels=5)


NS_ROLLOUT = [
    "pde=navier_stokes",
    "pde.data.generator_overrides={resolution:16,stride:1,t_final:13.0}",
    "pde.data.output.time=[10,14]",
]


@pytest.mark.parametrize("mode", ["rollout", "teacher_forcing"])
def test_fno_rollout_trains_on_navier_stokes_with_the_rollout_metric(compose_train, fake_data, mode):
    cfg = compose_train(
        ["model=fno_rollout", *NS_ROLLOUT, f"model.train_mode={mode}", "trainer.max_epochs=2"]
    )
    fake_data(cfg)
    metrics, objects = train(cfg)
    for key in ("train/loss", "val/rollout_rel_l2", "val/one_step_rel_l2", "test/rel_l2@16"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert metrics["val/rel_l2"] == pytest.approx(metrics["val/rollout_rel_l2"])
    task = objects["task"]
    assert isinstance(task, RolloutTask) and task.window == 10
    # One pooled statistic for every snapshot.
    assert torch.unique(task.input_normalizer.mean).numel() == 1
    restored = RolloutTask.load_from_checkpoint(objects["trainer"].checkpoint_callback.best_model_path)
    assert restored.train_mode == mode
    x = torch.randn(1, 10, 16, 16)
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored.eval().rollout(x, 2), task.rollout(x, 2))


def test_fno3d_trains_on_navier_stokes_space_time(compose_train, fake_data):
    cfg = compose_train(["model=fno3d", *NS_ROLLOUT, "pde.out_channels=4"])
    fake_data(cfg)
    metrics, objects = train(cfg)
    assert math.isfinite(metrics["test/rel_l2@16"]) and math.isfinite(metrics["val/rel_l2"])
    assert objects["task"].net.dim == 3
