"""Command-line front ends of export, predict and evaluate: ``key=value`` arguments in, files, tables out."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["evaluate_main", "export_main", "parse_args", "predict_main"]

log = logging.getLogger(__name__)

_REQUIRED = object()


def parse_args(argv: Sequence[str], spec: Mapping[str, Any], usage: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments (Hydra override syntax for values: ``[33,65]``, ``null``, ``true``).

    Parameters
    ----------
    argv : sequence of str
        Arguments without the program name.
    spec : dict
        Allowed keys and defaults; a default of ``_REQUIRED`` marks a required key.
    usage : str
        Printed for ``-h``/``--help`` and on errors.
    """
    from omegaconf import OmegaConf

    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        raise SystemExit(0)
    for a in argv:
        if "=" not in a:
            raise SystemExit(f"arguments are key=value, got {a!r}\n\n{usage}")
    given = OmegaConf.to_container(OmegaConf.from_dotlist(list(argv)), resolve=True)
    assert isinstance(given, dict)
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise SystemExit(f"unknown argument(s) {unknown}; allowed: {sorted(spec)}\n\n{usage}")
    out = {k: given.get(k, v) for k, v in spec.items()}
    missing = [k for k, v in out.items() if v is _REQUIRED]
    if missing:
        raise SystemExit(f"missing required argument(s) {missing}\n\n{usage}")
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


EXPORT_USAGE = """\
Export a training checkpoint to a self-contained directory (safetensors weights, config.json, README.md):

  python scripts/export.py ckpt=outputs/<run>/checkpoints/last.ckpt out=exported/my-model \\
      [name=my-model] [data=datasets/darcy_..._test.h5] [resolutions=[33,65]] [overwrite=true] [notes="..."]

data: test file(s) to measure the error on at each resolution (null: the training run's logged metrics)."""


def export_main(argv: Sequence[str] | None = None) -> None:
    """``scripts/export.py``."""
    from neurop.inference.export import export

    _setup_logging()
    args = parse_args(
        sys.argv[1:] if argv is None else argv,
        {
            "ckpt": _REQUIRED,
            "out": _REQUIRED,
            "name": None,
            "data": None,
            "resolutions": None,
            "batch_size": 32,
            "overwrite": False,
            "notes": None,
        },
        EXPORT_USAGE,
    )
    resolutions = _as_list(args["resolutions"]) or [None]
    out = export(
        args["ckpt"],
        args["out"],
        name=args["name"],
        data=_as_list(args["data"]),
        resolutions=resolutions,
        batch_size=int(args["batch_size"]),
        overwrite=bool(args["overwrite"]),
        notes=args["notes"],
    )
    cfg = json.loads((Path(out) / "config.json").read_text())
    print(f"exported {args['ckpt']} -> {out} ({cfg['weights']['bytes'] / 1e6:.2f} MB)")
    for key, value in sorted(cfg["metrics"].items()):
        print(f"  {key}: {value:.5g}" if isinstance(value, float) else f"  {key}: {value}")


PREDICT_USAGE = """\
Predict every sample of a data file with a trained model and write the predictions in neurop's HDF5 layout:

  python scripts/predict.py model=fno-darcy input=datasets/darcy_test.h5 output=pred.h5 \\
      [resolution=65 | resolution=[65,65]] [device=auto|cpu|cuda] [batch_size=32] [figures=true] \\
      [overwrite=false]

model: a checkpoint (.ckpt), an exported directory or a shipped name (fno-darcy, fno-burgers).
When the input holds the truth, metrics go to <output stem>.metrics.json, figures to <output stem>_figures/.
"""


def predict_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``scripts/predict.py``; returns the result of :func:`neurop.inference.predict_file`."""
    from neurop.inference import load, predict_file

    _setup_logging()
    args = parse_args(
        sys.argv[1:] if argv is None else argv,
        {
            "model": _REQUIRED,
            "input": _REQUIRED,
            "output": _REQUIRED,
            "resolution": None,
            "device": "auto",
            "batch_size": 32,
            "figures": True,
            "n_plot": 4,
            "overwrite": False,
            "progress": True,
        },
        PREDICT_USAGE,
    )
    model = load(str(args["model"]), device=_device(args["device"]))
    result = predict_file(
        model,
        args["input"],
        args["output"],
        resolution=args["resolution"],
        batch_size=int(args["batch_size"]),
        progress=bool(args["progress"]),
        figures=bool(args["figures"]),
        n_plot=int(args["n_plot"]),
        overwrite=bool(args["overwrite"]),
    )
    print(
        f"wrote {result['output']}: {result['n_samples']} samples at {result['resolution']}, "
        f"{result['samples_per_s']:.1f} samples/s"
    )
    if "rel_l2" in result:
        print(
            f"relative L2: mean {result['rel_l2']:.5g}, median {result['rel_l2_median']:.5g}, "
            f"max {result['rel_l2_max']:.5g} ({result['metrics_file']})"
        )
    if "figure" in result:
        print(f"figure: {result['figure']}")
    return result


EVALUATE_USAGE = """\
Evaluate checkpoints on data files at several resolutions; one table:

  python scripts/evaluate.py model=[fno-darcy,outputs/<run>/checkpoints/last.ckpt] \\
      data=[datasets/darcy_..._test.h5] resolutions=[33,65] [out=table.md|table.csv|table.json]
  python scripts/evaluate.py model=fno-burgers data=fresh n_fresh=20 resolutions=[256,1024]
  python scripts/evaluate.py model=[fno-darcy,fno-burgers] data=fresh \\
      resolutions="{darcy:[33,65],burgers:[256,1024]}"

data=fresh solves n_fresh new samples of each model's PDE with its training generator settings (seed, split
"fresh": independent of the training data). resolutions: grid sizes (null: each file's own); an int applies to
every spatial axis (65 on Darcy is 65x65); a mapping gives each PDE its own list."""


def evaluate_main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``scripts/evaluate.py``; returns the table rows."""
    from neurop.inference import evaluate, format_table, generate_test_data, load

    _setup_logging()
    args = parse_args(
        sys.argv[1:] if argv is None else argv,
        {
            "model": _REQUIRED,
            "data": _REQUIRED,
            "resolutions": None,
            "n_fresh": 20,
            "seed": 2026,
            "batch_size": 32,
            "device": "auto",
            "out": None,
            "progress": False,
        },
        EVALUATE_USAGE,
    )
    device = _device(args["device"])
    models = {str(src): load(str(src), device=device) for src in _as_list(args["model"])}
    res_arg = args["resolutions"]
    if isinstance(res_arg, Mapping):
        unknown = sorted(set(res_arg) - {m.pde for m in models.values()})
        if unknown:
            raise SystemExit(
                f"resolutions names PDE(s) {unknown} that no model was trained on; models' PDEs: "
                f"{sorted({m.pde for m in models.values()})}"
            )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="neurop-fresh-") as tmp:
        for label, model in models.items():
            per_pde = res_arg.get(model.pde) if isinstance(res_arg, Mapping) else res_arg
            resolutions = _as_list(per_pde) or [None]
            files = []
            for d in _as_list(args["data"]):
                if d == "fresh":
                    path = Path(tmp) / f"{model.pde}_{len(os.listdir(tmp))}_fresh.h5"
                    log.info("solving %d fresh %s samples", args["n_fresh"], model.pde)
                    files.append(
                        generate_test_data(model, int(args["n_fresh"]), path, seed=int(args["seed"]))
                    )
                else:
                    files.append(Path(str(d)))
            rows += evaluate(
                {label: model},
                files,
                resolutions,
                batch_size=int(args["batch_size"]),
                device=device,
                progress=bool(args["progress"]),
            )
    table = format_table(rows)
    print(table)
    if args["out"]:
        _write_table(Path(str(args["out"])), rows, table)
    return rows


def _write_table(path: Path, rows: list[dict[str, Any]], table: str) -> None:
    import csv

    tmp = path.with_name(path.name + ".partial")
    if path.suffix == ".json":
        tmp.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    elif path.suffix == ".csv":
        keys = sorted({k for r in rows for k in r})
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    else:
        tmp.write_text(table + "\n")
    os.replace(tmp, path)
    print(f"table written to {path}")
