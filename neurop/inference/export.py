"""Export a training checkpoint to a self-contained directory: safetensors weights, JSON config, card."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import neurop
from neurop.inference.card import model_card
from neurop.inference.load import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    _sha256,
    load_checkpoint,
    load_exported,
)
from neurop.inference.model import InferenceModel

__all__ = ["export", "read_run", "write_exported"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _run_dir(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def read_run(ckpt: str | Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The training recipe and logged metrics of the run that wrote ``ckpt``, where they can be found.

    Looks for Hydra's ``.hydra/config.yaml`` (else the CSV logger's ``csv/hparams.yaml``) and
    ``overrides.yaml`` and the CSV logger's ``csv/metrics.csv`` in the run directory (the checkpoint's
    ``checkpoints/`` parent). All are read as plain YAML / CSV.

    Returns
    -------
    recipe : dict
        ``command``, ``task_name``, ``seed``, ``max_epochs``, ``experiment`` (when found).
    metrics : dict of str to float
        The last logged ``test/*`` values and the best ``val/rel_l2``.
    """
    import yaml

    run = _run_dir(Path(ckpt))
    recipe: dict[str, Any] = {}
    overrides_file = run / ".hydra" / "overrides.yaml"
    if overrides_file.is_file():
        overrides = yaml.safe_load(overrides_file.read_text()) or []
        recipe["command"] = " ".join(["python train.py", *map(str, overrides)])
        exp = [o.split("=", 1)[1] for o in overrides if str(o).startswith("experiment=")]
        if exp:
            recipe["experiment"] = f"configs/experiment/{exp[0]}.yaml"
    config_file = run / ".hydra" / "config.yaml"
    if not config_file.is_file():
        # Runs composed without Hydra's app (tests, notebooks) still log the resolved config as hparams.
        config_file = run / "csv" / "hparams.yaml"
    if config_file.is_file():
        cfg = yaml.safe_load(config_file.read_text()) or {}
        recipe["task_name"] = cfg.get("task_name")
        recipe["seed"] = cfg.get("seed")
        recipe["max_epochs"] = (cfg.get("trainer") or {}).get("max_epochs")
    metrics: dict[str, float] = {}
    csv_file = run / "csv" / "metrics.csv"
    if csv_file.is_file():
        with open(csv_file, newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if not value or key is None:
                        continue
                    v = float(value)
                    if key.startswith("test/"):
                        metrics[key] = v
                    elif key == "val/rel_l2" and math.isfinite(v):
                        metrics["val/rel_l2_min"] = min(v, metrics.get("val/rel_l2_min", math.inf))
    return recipe, metrics


def _training_grid(model: InferenceModel) -> str | None:
    """Label of the training grid (stored grid of the generator, sub-sampled by the data stride)."""
    from neurop.pdes import PDES

    generator = model.pde_config.get("generator") or {}
    stride = int((model.pde_config.get("data") or {}).get("stride", 1))
    try:
        spec = PDES.get(model.pde)(**generator).fields()[model.input_field]
    except Exception:  # an unknown or changed generator: the grid is just not recorded
        return None
    from neurop.inference.predict import resolution_label

    return resolution_label([-(-n // stride) for n in spec.shape[-model.dim :]])


def _stats(norm: Any) -> dict[str, Any] | None:
    if norm is None:
        return None
    return {
        "mean": norm.mean.tolist(),
        "std": norm.std.tolist(),
        "eps": norm.eps,
        "fitted": bool(norm.fitted),
    }


def write_exported(
    model: InferenceModel,
    out: str | Path,
    *,
    name: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    evaluation: Sequence[Mapping[str, Any]] = (),
    training: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an exported directory, atomically (a temporary sibling renamed into place).

    Parameters
    ----------
    model : InferenceModel
        Any loaded model.
    out : str or Path
        Directory to create.
    name : str, optional
        Model name recorded in the config and card (default: ``out``'s name).
    metrics : dict, optional
        Flat metrics (``{"test/rel_l2@33": 0.01}``) stored and shown in the card.
    evaluation : sequence of dict
        Rows of :func:`neurop.inference.evaluate` behind the metrics.
    training : dict, optional
        Recipe and provenance (command, data, epochs, ...).
    overwrite : bool
        Replace an existing directory.

    Returns
    -------
    Path
        ``out``.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"out {out} already exists; pass overwrite=true to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"parent directory {out.parent} of out does not exist")
    name = name or out.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        weights = tmp / WEIGHTS_FILE
        save_file(state, str(weights), metadata={"format": "pt", "neurop_format": FORMAT})
        cfg = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "neurop_version": neurop.__version__,
            "created": _now(),
            "model": model.model_config,
            "pde": model.pde_config,
            "normalizers": {
                "input": _stats(model.input_normalizer),
                "output": _stats(model.output_normalizer),
            },
            "metrics": dict(metrics if metrics is not None else model.metrics),
            "evaluation": [dict(r) for r in evaluation],
            "training": dict(training if training is not None else model.info.get("training") or {}),
            "weights": {
                "file": WEIGHTS_FILE,
                "sha256": _sha256(weights),
                "bytes": weights.stat().st_size,
                "n_params": model.n_params(),
                "dtype": "float32",
            },
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
        (tmp / CARD_FILE).write_text(model_card(cfg))
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        os.chmod(tmp, 0o755)
        # Read back what was written before it takes the final name.
        load_exported(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def export(
    ckpt: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    data: Sequence[str | Path] = (),
    resolutions: Sequence[int | Sequence[int] | None] = (None,),
    batch_size: int = 32,
    overwrite: bool = False,
    notes: str | None = None,
) -> Path:
    """Export a Lightning checkpoint to a self-contained directory.

    Writes ``model.safetensors`` (network and normaliser buffers), ``config.json`` (model and PDE
    configuration, normaliser statistics, metrics, training recipe, weights checksum) and ``README.md``
    (the model card). The directory loads with :func:`neurop.load` without the training code's configs.

    Parameters
    ----------
    ckpt : str or Path
        Checkpoint written by ``train.py``.
    out : str or Path
        Directory to create.
    name : str, optional
        Model name (default: ``out``'s name).
    data : sequence of path
        Test files to measure the error on (recorded as ``test/rel_l2@<resolution>`` with the rows in
        ``evaluation``); without them the training run's logged metrics are recorded.
    resolutions : sequence
        Grids for the measurement (``None``: each file's own).
    overwrite : bool
        Replace an existing ``out``.
    notes : str, optional
        Free text added to the card.
    """
    from neurop.inference.predict import evaluate

    ckpt = Path(ckpt)
    model = load_checkpoint(ckpt)
    recipe, logged = read_run(ckpt)
    training = dict(model.info.get("training") or {})
    training.update({k: v for k, v in recipe.items() if v is not None})
    training["checkpoint"] = ckpt.name
    grid = _training_grid(model)
    if grid is not None:
        training["resolution"] = grid
    if notes:
        training["notes"] = notes
    metrics = dict(model.metrics)
    metrics.update({f"run/{k}": v for k, v in logged.items()})
    rows: list[dict[str, Any]] = []
    if data:
        rows = evaluate(
            {name or Path(out).name: model}, list(data), resolutions, batch_size=batch_size, on_error="raise"
        )
        for row in rows:
            metrics[f"test/rel_l2@{row['resolution']}"] = row["rel_l2"]
        for row in rows:
            row["data"] = str(row["data"])
    else:
        metrics.update({k: v for k, v in logged.items() if k.startswith("test/")})
    return write_exported(
        model, out, name=name, metrics=metrics, evaluation=rows, training=training, overwrite=overwrite
    )
