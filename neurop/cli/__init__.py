"""Command-line entry points as functions of a Hydra DictConfig; importing registers config resolvers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the parent of the ``neurop`` package); configs/ and datasets/ live here."""

CONFIG_DIR = PROJECT_ROOT / "configs"


def per_dim(value: Any, dim: int) -> list[Any]:
    """``per_dim(12, 2) -> [12, 12]``; a list is returned unchanged if it has ``dim`` entries.

    Used in configs as ``n_modes: ${neurop.per_dim:12,${pde.dim}}`` so one model config serves 1-D,
    2-D and 3-D problems.
    """
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        value = list(value)
        if len(value) != dim:
            raise ValueError(f"expected {dim} entries (one per spatial dimension), got {value}")
        return value
    return [value] * dim


def wandb_offline() -> bool:
    """Offline unless the environment says otherwise: an explicit WANDB_MODE is left to wandb."""
    return "WANDB_MODE" not in os.environ


def _multirun() -> Any:
    """Hydra's config when this process runs a multirun job, else None (single run or plain compose)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    return cfg if cfg.mode == RunMode.MULTIRUN else None


def run_group(default: str) -> str:
    """Logger group of a run: ``default`` (e.g. the pde name), or ``sweep-<date>_<time>`` in a multirun.

    All jobs of one sweep then share a wandb group, each with its own run.
    """
    cfg = _multirun()
    if cfg is None:
        return str(default)
    parts = Path(str(cfg.sweep.dir)).parts[-2:]
    return "sweep-" + "_".join(parts)


def run_name(default: str) -> str:
    """Logger run name: ``default``, with ``-<job number>`` appended in a multirun."""
    cfg = _multirun()
    return str(default) if cfg is None else f"{default}-{cfg.job.num}"


_CLAIMED_DIRS: dict[str, str] = {}


def fresh_dir(path: str) -> str:
    """``path``, or the first of ``path_1``, ``path_2``, … that does not exist yet, created by this call.

    Run directories are named by the second (``outputs/<date>/<time>``), so two runs started in the same
    second by separate processes would otherwise share one directory, and write one ``metrics.csv``
    with two column sets (Lightning's CSV logger then fails). Each candidate is claimed with an atomic
    ``mkdir``, so concurrent processes never get the same one. The answer is remembered per process:
    Hydra may resolve its run directory more than once.
    """
    path = str(path)
    if path not in _CLAIMED_DIRS:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        candidate, n = path, 0
        while True:
            try:
                Path(candidate).mkdir()
                break
            except FileExistsError:
                n += 1
                candidate = f"{path}_{n}"
        _CLAIMED_DIRS[path] = candidate
    return _CLAIMED_DIRS[path]


def register_resolvers() -> None:
    """Register the ``neurop.*`` OmegaConf resolvers used by configs/ (idempotent)."""
    OmegaConf.register_new_resolver("neurop.per_dim", per_dim, replace=True)
    OmegaConf.register_new_resolver("neurop.root", lambda: str(PROJECT_ROOT), replace=True)
    OmegaConf.register_new_resolver("neurop.wandb_offline", wandb_offline, replace=True)
    OmegaConf.register_new_resolver("neurop.run_group", run_group, replace=True)
    OmegaConf.register_new_resolver("neurop.run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("neurop.fresh_dir", fresh_dir, replace=True)


register_resolvers()

__all__ = [
    "CONFIG_DIR",
    "PROJECT_ROOT",
    "fresh_dir",
    "per_dim",
    "register_resolvers",
    "run_group",
    "run_name",
    "wandb_offline",
]
