"""Safe loading of trained operators from Lightning checkpoints, exported directories or shipped names.

Nothing here unpickles arbitrary objects: checkpoints are read with ``torch.load(weights_only=True)``,
exported weights with safetensors, and configurations as JSON.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from neurop.inference.model import InferenceModel

__all__ = [
    "CONFIG_FILE",
    "CheckpointError",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "load",
    "load_checkpoint",
    "load_exported",
    "read_checkpoint",
    "shipped_models",
]

FORMAT = "neurop-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
#: State-dict prefixes of the modules an :class:`InferenceModel` holds (the training task's names).
_PREFIXES = ("net.", "input_normalizer.", "output_normalizer.")
#: DataModule hyperparameters that describe the data (the rest are machine settings).
_DATA_KEYS = (
    "n_train",
    "n_val",
    "n_test",
    "seed",
    "stride",
    "test_strides",
    "batch_size",
    "generator_overrides",
)


class CheckpointError(ValueError):
    """A checkpoint or exported model that cannot be loaded safely: pickled objects, damage, bad layout."""


def shipped_dir() -> Path:
    """Directory of the pretrained models shipped with the package (``neurop/pretrained``)."""
    return Path(__file__).resolve().parents[1] / "pretrained"


def shipped_models() -> list[str]:
    """Names of the shipped pretrained models, e.g. ``["fno-burgers", "fno-darcy"]``."""
    root = shipped_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file with ``torch.load(weights_only=True)``, with clear errors.

    Parameters
    ----------
    path : str or Path
        A ``.ckpt``/``.pt`` file.

    Returns
    -------
    dict
        The checkpoint's top-level mapping.

    Raises
    ------
    CheckpointError
        The file holds pickled Python objects (which are never unpickled), or it is truncated,
        corrupted or not a PyTorch checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted save or copy?")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if match:
            raise CheckpointError(
                f"checkpoint {path} contains a pickled Python object ({match.group(1)}); neurop loads only "
                "tensors and plain containers (torch.load(weights_only=True)) and will not unpickle it. "
                "Re-save the checkpoint with primitive hyperparameters, or export it from a trusted "
                "environment with scripts/export.py"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read safely: it is corrupted, truncated, or a pickle file that "
            f"is not a PyTorch checkpoint ({_first_line(err)})"
        ) from None
    except Exception as err:  # noqa: BLE001 - weights_only unpickling of junk raises KeyError, IndexError, ...
        # Nothing was executed (weights_only=True); any other failure means the bytes are not a checkpoint.
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted and cannot be read ({_first_line(err)})"
        ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, expected a dict")
    return ckpt


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _check_state(state: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not key.startswith(_PREFIXES):
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where}: state entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{where}: weight {key!r} has non-finite values (a corrupted file?)")
        out[key] = value
    return out


def _load_state(model: InferenceModel, state: Mapping[str, torch.Tensor], where: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not match the configured model {model.model_config['name']!r} "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{where}: weight {key!r} has shape {tuple(value.shape)} but the configured model expects "
                f"{tuple(expected[key].shape)} (model/PDE config and weights disagree)"
            )
    model.load_state_dict(state, strict=True)


def _pde_from_datamodule(dm: Mapping[str, Any]) -> dict[str, Any]:
    generator = {**dict(dm.get("generator") or {}), **dict(dm.get("generator_overrides") or {})}
    return {
        "name": dm["pde"],
        "dim": int(dm["dim"]),
        "input": dict(dm["input"]),
        "output": dict(dm["output"]),
        "periodic": bool(dm.get("periodic", False)),
        "generator": generator,
        "data": {k: dm[k] for k in _DATA_KEYS if k in dm},
    }


def _metrics_from_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, Mapping) and state.get("best_model_score") is not None:
            score = state["best_model_score"]
            metrics[f"{state.get('monitor', 'score')}_best"] = float(score)
    return metrics


def load_checkpoint(path: str | Path, pde: Mapping[str, Any] | None = None) -> InferenceModel:
    """Build an :class:`InferenceModel` from a Lightning checkpoint of an operator-learning task.

    Parameters
    ----------
    path : str or Path
        A checkpoint written by ``train.py`` (``OperatorTask`` with an ``OperatorDataModule``).
    pde : dict, optional
        The ``pde`` section (``{name, dim, input, output, periodic}``) when the checkpoint has no
        DataModule hyperparameters.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    where = f"checkpoint {path}"
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, Mapping) or "model" not in hp or "model_kwargs" not in hp:
        raise CheckpointError(
            f"{where} has no operator-task hyperparameters (hyper_parameters.model, .model_kwargs); "
            "it was not written by neurop's OperatorTask"
        )
    if "state_dict" not in ckpt or not isinstance(ckpt["state_dict"], Mapping):
        raise CheckpointError(f"{where} has no state_dict")
    if pde is None:
        dm = ckpt.get("datamodule_hyper_parameters")
        if not isinstance(dm, Mapping) or "pde" not in dm:
            raise CheckpointError(
                f"{where} does not record its data module (datamodule_hyper_parameters); pass pde={{name, "
                "dim, input, output, periodic}} to load it"
            )
        pde = _pde_from_datamodule(dm)
    model_cfg = {
        "name": hp["model"],
        "kwargs": dict(hp["model_kwargs"]),
        "in_channels": int(hp["in_channels"]),
        "out_channels": int(hp["out_channels"]),
        "normalize_input": bool(hp.get("normalize_input", True)),
        "normalize_output": bool(hp.get("normalize_output", True)),
    }
    training = {k: hp[k] for k in ("optimizer", "scheduler", "loss", "loss_kwargs") if k in hp} | {
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
    }
    info = {"source": str(path), "checkpoint": path.name, "training": training}
    model = InferenceModel(model_cfg, pde, metrics=_metrics_from_checkpoint(ckpt), info=info)
    _load_state(model, _check_state(ckpt["state_dict"], where), where)
    return model


def load_exported(path: str | Path, *, verify: bool = True) -> InferenceModel:
    """Build an :class:`InferenceModel` from a directory written by :func:`neurop.inference.export`.

    Parameters
    ----------
    path : str or Path
        Directory with ``config.json`` and ``model.safetensors``.
    verify : bool
        Check the weights' SHA-256 against ``config.json`` (detects truncated or altered files).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    cfg_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"{path} is not an exported model: {p.name} is missing (export one with "
                "`python scripts/export.py ckpt=<file.ckpt> out=<dir>`)"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({err})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not a neurop model config (format must be {FORMAT!r})")
    if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format_version {cfg['format_version']}; this neurop reads up to "
            f"{FORMAT_VERSION}: upgrade neurop"
        )
    for key in ("model", "pde"):
        if not isinstance(cfg.get(key), dict):
            raise CheckpointError(f"{cfg_path} has no {key!r} section")
    where = f"exported model {path}"
    weights = cfg.get("weights") or {}
    if verify and weights.get("sha256") and _sha256(weights_path) != weights["sha256"]:
        raise CheckpointError(
            f"{where}: {WEIGHTS_FILE} does not match the SHA-256 recorded in {CONFIG_FILE}; the file is "
            "truncated, corrupted or was replaced"
        )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{where}: {WEIGHTS_FILE} is truncated or corrupted ({_first_line(err)})"
        ) from None
    info = dict(cfg.get("info") or {})
    info.setdefault("name", cfg.get("name"))
    info["source"] = str(path)
    info["training"] = cfg.get("training") or {}
    try:
        model = InferenceModel(cfg["model"], cfg["pde"], metrics=cfg.get("metrics"), info=info)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{cfg_path}: incomplete model or pde section ({err!r})") from None
    _load_state(model, _check_state(state, where), where)
    _check_normalizers(model, cfg.get("normalizers") or {}, where)
    return model


def _check_normalizers(model: InferenceModel, stats: Mapping[str, Any], where: str) -> None:
    """The human-readable statistics in config.json must be the ones in the weights."""
    for role, norm in (("input", model.input_normalizer), ("output", model.output_normalizer)):
        entry = stats.get(role)
        if norm is None or entry is None:
            continue
        for key in ("mean", "std"):
            stored = torch.tensor(entry[key], dtype=getattr(norm, key).dtype)
            if stored.shape != getattr(norm, key).shape or not torch.equal(stored, getattr(norm, key)):
                raise CheckpointError(
                    f"{where}: normalizers.{role}.{key} in {CONFIG_FILE} differs from the weights file"
                )


def load(source: str | Path, *, device: str | torch.device = "cpu") -> InferenceModel:
    """Load a trained operator for inference.

    Parameters
    ----------
    source : str or Path
        A Lightning checkpoint file (``.ckpt``), a directory written by ``scripts/export.py``, or the
        name of a shipped pretrained model (:func:`shipped_models`: ``"fno-darcy"``, ``"fno-burgers"``).
    device : str or torch.device
        Where the model lives.

    Returns
    -------
    InferenceModel
        In eval mode, normalisers included; ``model.predict(a)`` and ``model(x)``.

    Examples
    --------
    >>> import neurop
    >>> model = neurop.load("fno-darcy")
    >>> u = model.predict(a)                 # a: (B, 33, 33) or (B, 1, 65, 65), tensor or array
    """
    path = Path(source).expanduser()
    if path.is_dir():
        model = load_exported(path)
    elif path.is_file():
        model = load_checkpoint(path)
    elif isinstance(source, str) and source in shipped_models():
        model = load_exported(shipped_dir() / source)
        model.info["source"] = source
    else:
        raise FileNotFoundError(
            f"model source {str(source)!r} is neither a checkpoint file, an exported directory nor a shipped "
            f"model; shipped models: {', '.join(shipped_models()) or 'none'}"
        )
    return model.to(device)
