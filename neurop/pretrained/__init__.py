"""Pretrained models shipped with neurop, one exported directory each; load with ``neurop.load(name)``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["names", "path"]


def names() -> list[str]:
    """Names of the shipped models (directories holding a ``config.json``)."""
    root = Path(__file__).resolve().parent
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def path(name: str) -> Path:
    """Directory of the shipped model ``name``."""
    known = names()
    if name not in known:
        raise KeyError(f"unknown pretrained model {name!r}; shipped: {', '.join(known) or 'none'}")
    return Path(__file__).resolve().parent / name
