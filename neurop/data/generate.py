"""Batched, resumable and shardable generation of PDE data sets into HDF5 files."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurop.data.store import DatasetWriter, parse_compression, partial_path
from neurop.pdes import PDES

log = logging.getLogger(__name__)

__all__ = ["default_filename", "generate_dataset", "parse_shard", "sample_seed", "shard_path", "shard_range"]


def _split_key(split: str) -> int:
    # A stable 32-bit key per split name (Python's hash() is salted per process).
    return int.from_bytes(hashlib.sha256(split.encode()).digest()[:4], "little")


def sample_seed(seed: int, split: str, index: int) -> int:
    """Deterministic seed of sample ``index`` of ``split`` in a data set with base ``seed``.

    Seeds come from :class:`numpy.random.SeedSequence` with entropy ``seed`` and spawn key
    ``(hash(split), index)``, so they are independent across splits and samples and do not depend on
    batch size, sharding or resumption.

    Parameters
    ----------
    seed : int
        Base seed, >= 0.
    split : str
        Any non-empty split name; ``"train"``, ``"val"`` and ``"test"`` draw disjoint samples.
    index : int
        Global sample index, >= 0.

    Returns
    -------
    int
        A seed in ``[0, 2**63)``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    ss = np.random.SeedSequence(int(seed), spawn_key=(_split_key(split), int(index)))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def parse_shard(shard: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse ``"i/n"`` (or a pair) into ``(i, n)`` with ``0 <= i < n``.

    Examples
    --------
    >>> parse_shard("3/16")
    (3, 16)
    """
    allowed = "'i/n' with integers 0 <= i < n"
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", shard)
        if m is None:
            raise ValueError(f"shard must be {allowed}, got {shard!r}")
        i, n = int(m.group(1)), int(m.group(2))
    elif isinstance(shard, (tuple, list)) and len(shard) == 2:
        i, n = shard
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (i, n)):
            raise ValueError(f"shard must be {allowed}, got {shard!r}")
        i, n = int(i), int(n)
    else:
        raise ValueError(f"shard must be {allowed}, got {shard!r}")
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be {allowed}, got {shard!r}")
    return i, n


def shard_range(n_samples: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """Global sample range ``[lo, hi)`` of shard ``(i, n)``: ``[i*N//n, (i+1)*N//n)``."""
    if shard is None:
        return 0, n_samples
    i, n = shard
    return i * n_samples // n, (i + 1) * n_samples // n


def shard_path(out: str | Path, i: int, n: int) -> Path:
    """File name of shard ``i`` of ``n`` next to ``out``: ``darcy.h5`` -> ``darcy.shard-003-of-016.h5``."""
    out = Path(out)
    width = max(3, len(str(n - 1)))
    return out.with_name(f"{out.stem}.shard-{i:0{width}d}-of-{n:0{width}d}{out.suffix}")


def default_filename(pde: str, params: Mapping[str, Any], split: str) -> str:
    """Conventional file name ``<pde>_<resolution>_s<stride>_<split>.h5`` (parts that exist)."""
    parts = [pde]
    if params.get("resolution") is not None:
        parts.append(str(params["resolution"]))
    if params.get("stride") is not None:
        parts.append(f"s{params['stride']}")
    parts.append(split)
    return "_".join(parts) + ".h5"


def _check_output(out: Path, overwrite: bool) -> None:
    parent = out.parent
    if not parent.exists():
        raise FileNotFoundError(
            f"out directory {str(parent)!r} does not exist (out={str(out)!r}); create it first"
        )
    if not parent.is_dir():
        raise NotADirectoryError(f"out directory {str(parent)!r} is not a directory (out={str(out)!r})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"out directory {str(parent)!r} is not writable (out={str(out)!r})")
    if out.is_dir():
        raise IsADirectoryError(f"out must be a file name, got the directory {str(out)!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"out {str(out)!r} already exists; pass overwrite=True to replace it")


def _to_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to(device="cpu", dtype=torch.float32).numpy()
    return np.asarray(t, dtype=np.float32)


class _Progress:
    """A tqdm bar with samples/s and ETA, or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def generate_dataset(
    pde: str,
    params: Mapping[str, Any],
    n_samples: int,
    out: str | Path,
    *,
    split: str = "train",
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    shard: tuple[int, int] | str | None = None,
    overwrite: bool = False,
    compression: str | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Solve ``n_samples`` instances of a registered PDE and store them in one HDF5 file.

    Sample ``k`` is drawn from :func:`sample_seed` ``(seed, split, k)``, so the data depend only on
    (pde, params, seed, split, k), not on batch size, device order, sharding or interruptions. The
    file is written as ``<out>.partial``; a rerun of an interrupted call resumes from its
    ``n_complete`` samples; the finished file is renamed to ``out``.

    Parameters
    ----------
    pde : str
        Registered name (``"burgers"``, ``"darcy"``, ``"navier_stokes"``, ...).
    params : dict
        Keyword arguments of the PDE generator class (the ``generator:`` section of its config).
    n_samples : int
        Size of the whole data set (all shards together), >= 1.
    out : str or Path
        Output file; its directory must exist.
    split : str
        Split name; different splits draw different samples.
    seed : int
        Base seed, >= 0.
    device : str
        Torch device passed to the solver (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    batch_size : int
        Samples solved together, >= 1.
    shard : (i, n) or "i/n", optional
        Write only samples ``[i*n_samples//n, (i+1)*n_samples//n)``; see
        :func:`neurop.data.store.combine_shards`.
    overwrite : bool
        Replace an existing ``out`` (when the new file is finished) and discard an incompatible
        partial file.
    compression : str, optional
        ``None``, ``"gzip"``, ``"gzip:<level>"`` or ``"lzf"``.
    progress : bool
        Show a progress bar with samples/s and ETA.
    config : dict, optional
        Resolved configuration to store (default: these arguments).

    Returns
    -------
    Path
        ``out``, complete.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    sample_seed(seed, split, 0)  # validates seed and split
    parse_compression(compression)
    shard_t = parse_shard(shard) if shard is not None else None
    if shard_t is not None and shard_t[1] > n_samples:
        raise ValueError(
            f"shard count must be <= n_samples = {n_samples} (no empty shards), got shard={shard!r}"
        )
    if pde not in PDES:
        raise ValueError(f"pde must be one of {', '.join(PDES.names())}, got {pde!r}")
    out = Path(out)
    _check_output(out, overwrite)
    params = dict(params)
    generator = PDES.get(pde)(**params)

    lo, hi = shard_range(int(n_samples), shard_t)
    if config is None:
        config = {
            "pde": pde,
            "params": params,
            "n_samples": int(n_samples),
            "split": split,
            "seed": int(seed),
            "device": str(device),
            "batch_size": int(batch_size),
            "shard": None if shard_t is None else f"{shard_t[0]}/{shard_t[1]}",
            "compression": compression,
        }
    fields = generator.fields()
    writer = DatasetWriter.open(
        out,
        pde=pde,
        params=generator.params(),
        solver=generator.solver_info(),
        seed=int(seed),
        split=split,
        n_samples=hi - lo,
        coords=generator.coords(),
        fields=fields,
        static_fields=generator.static_fields(),
        sample_start=lo,
        n_samples_total=int(n_samples),
        shard="" if shard_t is None else f"{shard_t[0]}/{shard_t[1]}",
        config=config,
        compression=compression,
        overwrite=overwrite,
    )
    done0 = writer.n_complete
    if done0:
        log.info("resuming %s at sample %d of %d", partial_path(out), done0, hi - lo)
    desc = f"{pde} {split}" + ("" if shard_t is None else f" shard {shard_t[0]}/{shard_t[1]}")
    bar = _Progress(progress, hi - lo, done0, desc)
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for start in range(done0, hi - lo, int(batch_size)):
                stop = min(start + int(batch_size), hi - lo)
                seeds = [sample_seed(int(seed), split, lo + k) for k in range(start, stop)]
                result = generator.solve_batch(seeds, device)
                missing = set(fields) - set(result)
                if missing:
                    raise ValueError(
                        f"{pde}.solve_batch returned fields {sorted(result)}, missing {sorted(missing)}"
                    )
                arrays = {name: _to_numpy(result[name]) for name in fields}
                for name, array in arrays.items():
                    if not np.isfinite(array).all():
                        bad = sorted({lo + start + int(i) for i in np.nonzero(~np.isfinite(array))[0]})
                        raise FloatingPointError(
                            f"{pde}.solve_batch returned non-finite values of {name!r} for samples {bad} "
                            f"(params={params}); nothing of this batch was stored"
                        )
                writer.write(start, arrays)
                bar.update(stop - start)
    except BaseException:
        # Keep the partial file (closed cleanly) so that the same call resumes from n_complete.
        writer.close()
        raise
    finally:
        bar.close()
    path = writer.finalize()
    dt = time.perf_counter() - t0
    n_new = hi - lo - done0
    log.info("wrote %s: %d samples in %.1f s (%.2f samples/s)", path, n_new, dt, n_new / max(dt, 1e-9))
    return path
