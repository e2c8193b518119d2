"""Run paper recipes (``configs/experiment/*.yaml``), shrunk by ``scale``, and tabulate our errors next to the
published ones (``neurop/data/published.yaml``), with the machine and the durations.

Usage (``key=value`` arguments; anything else is a Hydra override applied to every recipe, or to one
recipe when written ``RECIPE:key=value``)::

    python scripts/reproduce.py recipes=[fno_burgers_paper,deeponet_burgers] scale=0.05 \\
        out=docs/results_cpu.md
    python scripts/reproduce.py recipes=[fno3d_ns_paper] scale=1 out=docs/results_gpu.md trainer=gpu
    python scripts/reproduce.py recipes=[fno_burgers_paper,deeponet_darcy] scale=0.05 out=cpu.md \\
        fno_burgers_paper:pde.generator.cfl=4

``scale`` multiplies the sample counts (``n_train``, ``n_val``, ``n_test``), ``trainer.max_epochs``,
``trainer.check_val_every_n_epoch`` and the step scheduler's ``step_size`` (each rounded, at least 1; at
least 2 samples per split), so a CPU finishes in minutes; grids, widths and modes are the recipe's.
``epoch_scale`` (default: ``scale``) scales the epochs, validation interval and step schedule instead, e.g.
fewer samples but more epochs.
``threads=N`` sets ``torch.set_num_threads``; ``run_dir=DIR`` is where runs are written (default
``logs/reproduce/<date>_<time>``). The output file has two tables: the error at the published resolution,
and the zero-shot super-resolution errors at every test resolution of each recipe (trained at one).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

KEYS = ("recipes", "scale", "epoch_scale", "out", "threads", "run_dir")


@dataclass
class Result:
    """One recipe's run: what was used and what it measured."""

    recipe: str
    n_train: int = 0
    epochs: int = 0
    train_resolution: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    data_s: float = 0.0
    train_s: float = 0.0
    error: str | None = None


def parse_args(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Split ``key=value`` arguments into this script's options and Hydra overrides for the recipes.

    An override written ``RECIPE:key=value`` applies to that recipe only (see :func:`recipe_overrides`).
    """
    opts: dict[str, Any] = {
        "scale": 1.0,
        "epoch_scale": None,
        "out": "results.md",
        "threads": None,
        "run_dir": None,
    }
    overrides = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in KEYS:
            opts[key] = value
        else:
            overrides.append(arg)
    if "recipes" not in opts:
        raise ValueError("give the recipes to run, e.g. recipes=[fno_burgers_paper,deeponet_burgers]")
    names = [r.strip() for r in opts["recipes"].strip("[]").split(",") if r.strip()]
    if not names:
        raise ValueError(f"recipes lists no recipe: {opts['recipes']!r}")
    opts["recipes"] = names
    for o in overrides:
        head, sep, rest = o.partition(":")
        if sep and "=" not in head and "=" in rest and head not in names:
            raise ValueError(f"override {o!r} names recipe {head!r}, which is not in recipes={names}")
    if opts["epoch_scale"] is None:
        opts["epoch_scale"] = opts["scale"]
    for key in ("scale", "epoch_scale"):
        try:
            opts[key] = float(opts[key])
        except ValueError:
            raise ValueError(f"{key} must be a number in (0, 1], got {opts[key]!r}") from None
        if not 0 < opts[key] <= 1:
            raise ValueError(f"{key} must be a number in (0, 1], got {opts[key]}")
    if opts["threads"] is not None:
        if not str(opts["threads"]).isdigit() or int(opts["threads"]) < 1:
            raise ValueError(f"threads must be a positive integer, got {opts['threads']!r}")
        opts["threads"] = int(opts["threads"])
    return opts, overrides


def recipe_overrides(overrides: Sequence[str], recipe: str) -> list[str]:
    """The overrides for ``recipe``: the plain ones and those written ``<recipe>:key=value``."""
    out = []
    for o in overrides:
        head, sep, rest = o.partition(":")
        if sep and "=" not in head and "=" in rest:
            if head == recipe:
                out.append(rest)
        else:
            out.append(o)
    return out


def scaled_overrides(cfg: Any, scale: float, epoch_scale: float | None = None) -> list[str]:
    """Hydra overrides that shrink a composed recipe's sample counts (by ``scale``) and its epochs,
    validation interval and step schedule (by ``epoch_scale``, default ``scale``)."""
    epoch_scale = scale if epoch_scale is None else epoch_scale

    def s(value: int, factor: float, least: int = 1) -> int:
        return max(least, int(round(value * factor)))

    out = []
    if scale != 1 and cfg.pde.get("data") is not None:
        for split in ("train", "val", "test"):
            out.append(f"pde.data.n_{split}={s(int(cfg.pde.data[f'n_{split}']), scale, 2)}")
    if epoch_scale != 1:
        epochs = s(int(cfg.trainer.max_epochs), epoch_scale)
        out.append(f"trainer.max_epochs={epochs}")
        every = int(cfg.trainer.get("check_val_every_n_epoch") or 1)
        out.append(f"trainer.check_val_every_n_epoch={min(s(every, epoch_scale), epochs)}")
        sched = cfg.model.get("scheduler") or {}
        if sched.get("name") == "step":
            out.append(f"model.scheduler.step_size={s(int(sched.step_size), epoch_scale)}")
    return out


def compose(recipe: str, overrides: Sequence[str]) -> Any:
    """``configs/train.yaml`` with ``experiment=<recipe>`` and the overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from neurop.cli import CONFIG_DIR, register_resolvers

    if not (CONFIG_DIR / "experiment" / f"{recipe}.yaml").is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
        raise ValueError(f"unknown recipe {recipe!r}; recipes in configs/experiment: {known}")
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose("train", overrides=[f"experiment={recipe}", *overrides])
    finally:
        GlobalHydra.instance().clear()


def machine() -> str:
    """Platform, CPU (and GPU) names, torch version and threads."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [platform.platform(), f"{cpu} ({os.cpu_count()} logical cores)"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    else:
        parts.append("no GPU")
    parts.append(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    return "; ".join(parts)


def run_recipe(
    recipe: str, scale: float, overrides: Sequence[str], run_dir: Path, epoch_scale: float | None = None
) -> Result:
    """Compose, shrink, generate the data if missing, train and test one recipe."""
    from neurop.cli.train import build_datamodule, train

    result = Result(recipe)
    overrides = recipe_overrides(overrides, recipe)
    try:
        cfg = compose(recipe, overrides)
        out_dir = run_dir / recipe
        out_dir.mkdir(parents=True, exist_ok=True)
        extra = [
            *scaled_overrides(cfg, scale, epoch_scale),
            f"paths.output_dir={out_dir}",
            f"paths.work_dir={run_dir}",
            "print_config=false",
            "trainer.enable_progress_bar=false",
            "callbacks.rich_progress_bar=null",
        ]
        cfg = compose(recipe, [*extra, *overrides])
        result.n_train = int(cfg.pde.data.n_train)
        result.epochs = int(cfg.trainer.max_epochs)
        t0 = time.perf_counter()
        dm = build_datamodule(cfg)
        if dm is not None:
            dm.prepare_data()
        result.data_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics, objects = train(cfg)
        result.train_s = time.perf_counter() - t0
        result.metrics = metrics
        dm = objects["datamodule"]
        labels = dm.test_resolutions if dm is not None else _resolutions(metrics)
        result.train_resolution = labels[0] if labels else ""
    except Exception as err:  # one failed recipe must not lose the others' results
        traceback.print_exc()
        result.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return result


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _resolutions(metrics: dict[str, float]) -> list[str]:
    labels = [k.split("@", 1)[1] for k in metrics if k.startswith("test/rel_l2@")]
    return sorted(labels, key=lambda s: [int(p) for p in s.split("x")])


def render(
    results: Sequence[Result], published: dict[str, Any], opts: dict[str, Any], argv: Sequence[str]
) -> str:
    """The Markdown report."""
    lines = [
        "# Reproduced results",
        "",
        f"Made by `python scripts/reproduce.py {' '.join(argv)}` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Scale {opts['scale']} (samples), {opts['epoch_scale']} (epochs): the sample counts, and the epochs "
        "and step schedule, of each recipe multiplied by these (grids, widths and modes as published). "
        "Errors are relative L2 on our test set; the published "
        "value is at the resolution given, from the paper named in `neurop/data/published.yaml`. "
        "data (s): time to generate missing data files (0 when they existed already).",
        "",
        "| recipe | resolution | our test rel L2 | published | goal | n_train | epochs | data (s) "
        "| train+test (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pub = published.get(r.recipe, {})
        res = str(pub.get("resolution", r.train_resolution))
        ours = r.metrics.get(f"test/rel_l2@{res}")
        if ours is None:
            ours = r.metrics.get(f"test/rel_l2@{r.train_resolution}")
            res = r.train_resolution if ours is not None else res
        cell = r.error and f"failed: {r.error}" or _fmt(ours)
        lines.append(
            f"| {r.recipe} | {res} | {cell} | {_fmt(pub.get('rel_l2'))} | {_fmt(pub.get('goal'))} | "
            f"{r.n_train} | {r.epochs} | {r.data_s:.0f} | {r.train_s:.0f} |"
        )
    lines += [
        "",
        "## Zero-shot super-resolution",
        "",
        "Each model is trained at one resolution (first column) and tested with the same weights at every "
        "test resolution of its recipe.",
        "",
        "| recipe | trained at | test rel L2 by resolution |",
        "|---|---|---|",
    ]
    for r in results:
        if r.error:
            continue
        cells = ", ".join(
            f"{res}: {_fmt(r.metrics[f'test/rel_l2@{res}'])}" for res in _resolutions(r.metrics)
        )
        lines.append(f"| {r.recipe} | {r.train_resolution} | {cells} |")
    rollout = [r for r in results if any(k.startswith("test/one_step_rel_l2@") for k in r.metrics)]
    if rollout:
        lines += ["", "Autoregressive models: one-step test error (from true windows) by resolution.", ""]
        for r in rollout:
            cells = ", ".join(
                f"{k.split('@', 1)[1]}: {_fmt(v)}"
                for k, v in r.metrics.items()
                if k.startswith("test/one_step_rel_l2@")
            )
            lines.append(f"- {r.recipe}: {cells}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, overrides = parse_args(argv)
    except ValueError as err:
        print(f"error: {err}\n\n{__doc__}", file=sys.stderr)
        return 2
    import torch

    if opts["threads"] is not None:
        torch.set_num_threads(opts["threads"])
    published = yaml.safe_load((resources.files("neurop.data") / "published.yaml").read_text())
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = Path(opts["run_dir"] or Path("logs") / "reproduce" / stamp).resolve()
    results = []
    for recipe in opts["recipes"]:
        print(f"== {recipe} (scale {opts['scale']}/{opts['epoch_scale']}) -> {run_dir / recipe}", flush=True)
        results.append(run_recipe(recipe, opts["scale"], overrides, run_dir, opts["epoch_scale"]))
        out = Path(opts["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(results, published, opts, argv))  # rewritten after each recipe
    print(Path(opts["out"]).read_text())
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
