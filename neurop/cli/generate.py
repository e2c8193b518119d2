"""Command-line data generation: a Hydra config (configs/generate.yaml) in, one HDF5 file or shard out."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from neurop.cli import CONFIG_DIR
from neurop.data.generate import generate_dataset, parse_shard, shard_path
from neurop.data.store import combine_shards

log = logging.getLogger(__name__)

__all__ = ["find_shards", "generate", "main", "output_path", "stored_config"]


def _apply_shorthands(cfg: DictConfig) -> None:
    """Copy the top-level ``resolution``/``stride`` overrides into ``pde.generator``."""
    for key in ("resolution", "stride"):
        value = cfg.get(key)
        if value is None:
            continue
        if key not in cfg.pde.generator:
            raise ValueError(
                f"{key}={value} was given but pde {cfg.pde.name!r} has no generator parameter {key!r}; "
                f"its parameters: {', '.join(cfg.pde.generator)}"
            )
        with open_dict(cfg):
            cfg.pde.generator[key] = value


def output_path(cfg: DictConfig, base_dir: str | Path) -> Path:
    """The (unsharded) output file of a generate config, as an absolute path.

    ``out`` if given (relative paths against ``base_dir``), else
    ``<paths.data_dir>/<dataset_filename(...)>``, the name the training data module looks for.
    """
    base_dir = Path(base_dir)
    if cfg.get("out") is not None:
        out = Path(str(cfg.out)).expanduser()
        return out if out.is_absolute() else base_dir / out
    from neurop.data.datamodule import dataset_filename

    params = OmegaConf.to_container(cfg.pde.generator, resolve=True)
    name = dataset_filename(cfg.pde.name, params, cfg.split, int(cfg.n_samples), int(cfg.seed))
    data_dir = Path(str(cfg.paths.data_dir)).expanduser()
    return (data_dir if data_dir.is_absolute() else base_dir / data_dir) / name


def find_shards(out: str | Path) -> list[Path]:
    """All shard files of ``out`` (``<stem>.shard-i-of-n<suffix>``); raise if any of the n is missing."""
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.shard-(\d+)-of-(\d+)" + re.escape(out.suffix))
    found: dict[int, dict[int, Path]] = {}
    for p in out.parent.glob(f"{out.stem}.shard-*-of-*{out.suffix}"):
        m = pattern.fullmatch(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise FileNotFoundError(f"no finished shards of {out} (expected {shard_path(out, 0, 4).name} etc.)")
    if len(found) > 1:
        raise ValueError(
            f"shards of {out} with different shard counts {sorted(found)}; remove the stale ones"
        )
    ((n, shards),) = found.items()
    missing = sorted(set(range(n)) - set(shards))
    if missing:
        raise FileNotFoundError(
            f"shards {missing} of {n} of {out} are not finished: run them with shard=i/{n} first"
        )
    return [shards[i] for i in range(n)]


def stored_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config saved in the file; of ``paths`` only ``data_dir`` (the rest is per run)."""
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "paths":
            out[key] = {"data_dir": str(cfg.paths.data_dir)}
        else:
            value = cfg[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return out


def generate(cfg: DictConfig, base_dir: str | Path = ".") -> Path:
    """Generate (or combine) the data set described by a composed ``generate`` config.

    Parameters
    ----------
    cfg : DictConfig
        ``configs/generate.yaml`` composed with a ``pde`` group entry; modified in place by the
        ``resolution``/``stride`` shorthands.
    base_dir : str or Path
        Directory that relative ``out`` and ``paths.data_dir`` resolve against (the directory the
        command was started from).

    Returns
    -------
    Path
        The finished file: the data set, its shard, or the combined file.
    """
    _apply_shorthands(cfg)
    out = output_path(cfg, base_dir)
    shard = cfg.get("shard")
    if cfg.get("combine"):
        if shard is not None:
            raise ValueError(f"combine=true joins all shards; unset shard (got shard={shard!r})")
        path = combine_shards(find_shards(out), out, overwrite=bool(cfg.overwrite))
        log.info("combined shards into %s", path)
        print(path)
        return path
    shard_t = None
    n_shards = cfg.get("n_shards")
    if n_shards is not None:
        # Range syntax for sweeps: `-m n_shards=16 shard='range(16)'` gives shard=0..15.
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
        if isinstance(shard, bool) or not isinstance(shard, int):
            raise ValueError(
                f"with n_shards={n_shards}, shard must be an integer index 0..{n_shards - 1} "
                f"(e.g. shard='range({n_shards})' in a multirun), got shard={shard!r}"
            )
        shard = [shard, n_shards]
    if shard is not None:
        shard_t = parse_shard(OmegaConf.to_container(shard) if OmegaConf.is_config(shard) else shard)
        out = shard_path(out, *shard_t)
    if cfg.get("out") is None:
        out.parent.mkdir(parents=True, exist_ok=True)
    config = stored_config(cfg)
    path = generate_dataset(
        str(cfg.pde.name),
        config["pde"]["generator"],
        int(cfg.n_samples),
        out,
        split=str(cfg.split),
        seed=int(cfg.seed),
        device=str(cfg.device),
        batch_size=int(cfg.batch_size),
        shard=shard_t,
        overwrite=bool(cfg.overwrite),
        compression=cfg.compression,
        progress=bool(cfg.progress),
        config=config,
    )
    log.info("data set written to %s", path)
    print(path)
    return path


def main() -> None:
    """Console entry point (``neurop-generate`` and ``scripts/generate.py``)."""
    import hydra
    from hydra.utils import get_original_cwd

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="generate")
    def _main(cfg: DictConfig) -> None:
        generate(cfg, get_original_cwd())

    _main()


if __name__ == "__main__":
    main()
