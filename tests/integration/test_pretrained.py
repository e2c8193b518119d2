"""Pretrained operators end to end: train → export → load → predict through the real configs, and the
models shipped in ``neurop/pretrained`` reaching their stated test error on freshly solved data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import neurop
from neurop import pretrained
from neurop.inference import evaluate, export, generate_test_data, load, shipped_models

SHIPPED = ("fno-burgers", "fno-darcy")
#: The fresh-data error may exceed the error stated in the card by this factor (few samples, new seed).
TOLERANCE = 1.25


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_train_export_load_predict_matches_the_trained_model(compose_train, fake_data, tmp_path):
    from neurop.cli.train import train

    cfg = compose_train(["pde=darcy", "model=fno", "trainer.max_epochs=2", "logger=csv"])
    fake_data(cfg)
    metrics, objects = train(cfg)
    task, dm = objects["task"], objects["datamodule"]
    best = objects["trainer"].checkpoint_callback.best_model_path
    assert best and Path(best).is_file()

    out = export(
        best, tmp_path / "exported", name="tiny-darcy", data=[dm.path("test")], resolutions=[None, 9]
    )
    model = load(out)
    assert not model.training and model.info["name"] == "tiny-darcy"
    x = torch.rand(3, 1, 17, 17) * 9 + 3
    task.eval()
    with torch.no_grad():
        expected = task(x)
    # The test step ran on the best checkpoint, so the in-memory task holds the exported weights.
    assert torch.equal(model.predict(x), expected)
    assert torch.equal(load(best).predict(x), expected)
    # Zero-shot on a finer grid: resolution-independent weights, finite outputs on 33².
    fine = model.predict(x[:, 0], resolution=33)
    assert fine.shape == (3, 33, 33) and torch.isfinite(fine).all()

    cfg_json = json.loads((out / "config.json").read_text())
    # Composed without Hydra's app: the recipe comes from the CSV logger's hparams.yaml.
    assert cfg_json["training"]["max_epochs"] == 2 and cfg_json["training"]["seed"] == cfg.seed
    stated = cfg_json["metrics"]["test/rel_l2@17"]
    assert stated == pytest.approx(metrics["test/rel_l2@17"], rel=1e-4)  # export re-measures the same error
    assert "test/rel_l2@9" in cfg_json["metrics"]
    card = (out / "README.md").read_text()
    assert "## Measured error" in card and "max_epochs: 2" in card and "| 9 |" in card


def test_shipped_models_are_listed_small_and_documented():
    assert set(SHIPPED) <= set(shipped_models())
    for name in SHIPPED:
        root = pretrained.path(name)
        assert (root / "model.safetensors").stat().st_size < 4e6, name  # a few MB at most
        cfg = json.loads((root / "config.json").read_text())
        card = (root / "README.md").read_text()
        for needle in ("## Training recipe and data", "configs/experiment/pretrained_", "## Measured error"):
            assert needle in card, (name, needle)
        assert any(k.startswith("test/rel_l2@") for k in cfg["metrics"]), name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reaches_its_stated_error_on_fresh_data(name, tmp_path):
    model = neurop.load(name)
    assert model.info["source"] == name and not model.training
    grid = model.info["training"]["resolution"]
    stated = model.metrics[f"test/rel_l2@{grid}"]
    # New samples (split "fresh", another base seed): none of them was seen in training or testing.
    data = generate_test_data(model, 24, tmp_path / f"{name}.h5", seed=20261130)
    (row,) = evaluate({name: model}, [data], [int(grid)], on_error="raise")
    assert row["n"] == 24 and row["resolution"] == grid
    assert row["rel_l2"] <= TOLERANCE * stated, (row, stated)
