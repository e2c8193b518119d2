"""Shared fixtures: offline wandb, headless matplotlib, Hydra composition of the real configs, tiny data."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# Set before anything imports wandb or matplotlib.
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["MPLBACKEND"] = "Agg"

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from neurop.cli import CONFIG_DIR, register_resolvers  # noqa: E402

# Overrides that make any (model, pde) pair train in about a second on a CPU.
TINY_OVERRIDES = [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "logger=none",
    "print_config=false",
    "pde.data.n_train=8",
    "pde.data.n_val=4",
    "pde.data.n_test=4",
    "pde.data.batch_size=4",
    "model.model_kwargs.hidden_channels=8",
    "model.model_kwargs.projection_channels=16",
    "model.model_kwargs.n_layers=2",
    "model.model_kwargs.n_modes='${neurop.per_dim:4,${pde.dim}}'",
    "model.n_plot=2",
]

# Model-specific tiny network settings, by model config name; a model config not listed here gets those
# entries of TINY_OVERRIDES whose model_kwargs key its config has (FNO-like configs get all of them).
TINY_MODEL_OVERRIDES: dict[str, list[str]] = {
    "deeponet": [
        "model.model_kwargs.hidden_channels=8",
        "model.model_kwargs.n_layers=2",
        "model.model_kwargs.n_basis=8",
        "model.model_kwargs.conv_channels=4",
        "model.model_kwargs.n_sensors='${neurop.per_dim:16,${pde.dim}}'",
        "model.n_plot=2",
    ],
    "fno3d": [
        "model.model_kwargs.hidden_channels=8",
        "model.model_kwargs.projection_channels=16",
        "model.model_kwargs.n_layers=2",
        "model.model_kwargs.n_modes=[4,4,2]",
        "model.time_padding=1",
        "model.n_plot=2",
    ],
}


def tiny_overrides(model: str = "fno") -> list[str]:
    """TINY_OVERRIDES made to fit the model config ``configs/model/<model>.yaml``."""
    common = [o for o in TINY_OVERRIDES if not o.startswith("model.")]
    if model in TINY_MODEL_OVERRIDES:
        return common + TINY_MODEL_OVERRIDES[model]
    path = CONFIG_DIR / "model" / f"{model}.yaml"
    kwargs = OmegaConf.load(path).get("model_kwargs") or {} if path.is_file() else {}
    keep = []
    for o in TINY_OVERRIDES:
        if o.startswith("model.model_kwargs."):
            if o.split("=", 1)[0].rsplit(".", 1)[1] not in kwargs:
                continue
        elif not o.startswith("model."):
            continue
        keep.append(o)
    return common + keep


# Tiny stored grids per pde (the generator_overrides written into the test configs).
TINY_GRIDS = {
    "darcy": "{resolution:17,stride:1}",
    "burgers": "{resolution:32,stride:1}",
    "navier_stokes": "{resolution:16,stride:1,t_final:10.0}",
    "diffusion_sorption": "{resolution:17,n_t:9}",
}


@pytest.fixture(autouse=True)
def hydra_cleanup() -> Iterator[None]:
    """Clear Hydra's global state around every test."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "datasets"
    d.mkdir()
    return d


@pytest.fixture
def compose_train(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose configs/train.yaml with the tiny overrides, a temporary run dir and data dir.

    ``compose_train(overrides, tiny=True, run_name="run")``; later overrides win.
    """

    def _compose(overrides: Sequence[str] = (), tiny: bool = True, run_name: str = "run") -> DictConfig:
        register_resolvers()
        GlobalHydra.instance().clear()
        pde = next((o.split("=", 1)[1] for o in overrides if o.startswith("pde=")), "darcy")
        model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), "fno")
        base = tiny_overrides(model) if tiny else []
        if tiny and pde in TINY_GRIDS:
            base.append(f"pde.data.generator_overrides={TINY_GRIDS[pde]}")
            base += ["pde.data.stride=1", "pde.data.test_strides=[]"]
        out = tmp_path / run_name
        out.mkdir(exist_ok=True)
        paths = [f"paths.output_dir={out}", f"paths.work_dir={tmp_path}", f"paths.data_dir={data_dir}"]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[*base, *paths, *overrides])
        return cfg

    return _compose


def _fake_fields(pde: str, params: dict[str, Any], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random fields in the public layout of each pde (smooth enough that losses are well defined)."""
    res, stride = int(params["resolution"]), int(params["stride"])
    if pde == "darcy":
        s = (res - 1) // stride + 1
        a = np.where(rng.standard_normal((n, s, s)) > 0, 12.0, 3.0)
        g = np.linspace(0, 1, s)
        bubble = np.outer(g * (1 - g), g * (1 - g))
        u = bubble[None] * (1.0 + 0.1 * a.mean(axis=(1, 2), keepdims=True))
        return {"a": a, "u": u}
    if pde == "burgers":
        s = res // stride
        x = np.linspace(0, 1, s, endpoint=False)
        amp = rng.standard_normal((n, 1, 1))
        t = np.linspace(0, 1, int(params.get("n_snapshots", 1)) + 1)[None, :, None]
        return {"u": amp * np.sin(2 * np.pi * x)[None, None] * np.exp(-t)}
    if pde == "navier_stokes":
        s = res // stride
        n_t = int(round(float(params["t_final"]) / float(params.get("snapshot_interval", 1.0)))) + 1
        x = np.linspace(0, 1, s, endpoint=False)
        base = np.sin(2 * np.pi * x)[:, None] * np.cos(2 * np.pi * x)[None, :]
        amp = rng.standard_normal((n, 1, 1, 1))
        decay = np.exp(-0.05 * np.arange(n_t))[None, :, None, None]
        return {"w": amp * base[None, None] * decay, "f": base}
    if pde == "diffusion_sorption":
        s = (res - 1) // stride + 1
        x = np.linspace(0, 1, s)[None, None, :]
        t = np.linspace(0, 1, int(params["n_t"]))[None, :, None]
        amp = 0.1 * (1.0 + rng.random((n, 1, 1)))
        return {"u": amp * (1.0 + np.cos(np.pi * x)) * (1.0 - 0.5 * t) + t * np.exp(-5 * x)}
    raise ValueError(f"no fake data for pde {pde!r}")


def write_fake_split(path: Path, pde: str, params: dict[str, Any], n: int, split: str, seed: int) -> None:
    """Write one split file in the public HDF5 layout (fields sample-first, root attrs)."""
    rng = np.random.default_rng(abs(hash((split, seed))) % 2**32)
    fields = _fake_fields(pde, params, n, rng)
    with h5py.File(path, "w") as f:
        for name, arr in fields.items():
            f.create_dataset(name, data=arr.astype(np.float32))
        f.attrs["pde"] = pde
        f.attrs["params"] = json.dumps(params)
        f.attrs["solver"] = json.dumps({"scheme": "fake"})
        f.attrs["seed"] = seed
        f.attrs["split"] = split


@pytest.fixture
def fake_data() -> Callable[[DictConfig], None]:
    """``fake_data(cfg)`` writes tiny train/val/test files where the DataModule of ``cfg`` expects them."""

    def _write(cfg: DictConfig) -> None:
        from neurop.cli.train import build_datamodule

        dm = build_datamodule(cfg)
        for split in ("train", "val", "test"):
            path = dm.path(split)
            if not path.exists():
                write_fake_split(path, dm.pde, dm.generator_params, dm.n[split], split, dm.seed)

    return _write


def set_keys(cfg: DictConfig, **values: Any) -> DictConfig:
    """Set dotted keys (``set_keys(cfg, **{"trainer.max_epochs": 2})``) in place."""
    with open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
    return cfg
