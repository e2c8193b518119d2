"""The Markdown model card of an exported model, written from its config.json contents."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["model_card"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return f"`{json.dumps(v, sort_keys=True)}`"
    return str(v)


def _selection(sel: Mapping[str, Any]) -> str:
    time = sel.get("time")
    return f"`{sel['field']}`" + ("" if time is None else f" at time index {time}")


def model_card(cfg: Mapping[str, Any]) -> str:
    """Render the model card (README.md) of an exported model.

    Parameters
    ----------
    cfg : dict
        The contents of ``config.json`` (see :func:`neurop.inference.write_exported`).

    Returns
    -------
    str
        Markdown: what the model maps, architecture and size, training recipe and data, measured
        errors, normaliser statistics, usage and limitations.
    """
    name = cfg.get("name", "model")
    model, pde = cfg["model"], cfg["pde"]
    training = cfg.get("training") or {}
    metrics = cfg.get("metrics") or {}
    weights = cfg.get("weights") or {}
    data = pde.get("data") or {}
    lines = [f"# {name}", ""]
    lines += [
        f"A `{model['name']}` neural operator for the `{pde['name']}` PDE ({pde['dim']}-D), mapping "
        f"{_selection(pde['input'])} to {_selection(pde['output'])}, exported by neurop "
        f"{cfg.get('neurop_version', '?')} on {cfg.get('created', '?')}.",
        "",
        "```python",
        "import neurop",
        "",
        f'model = neurop.load("{name}")  # or the path of this directory',
        "pred = model.predict(a)  # tensor, numpy array or xarray; any grid for FNO",
        "```",
        "",
        "## Architecture",
        "",
        f"- network: `{model['name']}`, {model['in_channels']} input / {model['out_channels']} output "
        "channel(s)",
    ]
    lines += [f"- `{k}`: {_fmt(v)}" for k, v in model["kwargs"].items()]
    lines += [
        f"- parameters: {weights.get('n_params', '?'):,}" if isinstance(weights.get("n_params"), int) else "",
        f"- weights: `{weights.get('file', '?')}` ({weights.get('bytes', 0) / 1e6:.2f} MB, "
        f"{weights.get('dtype', '?')}), "
        f"sha256 `{weights.get('sha256', '?')}`",
        f"- normalisers: input {'on' if model['normalize_input'] else 'off'}, output "
        f"{'on' if model['normalize_output'] else 'off'} (per-channel unit Gaussian, training-set "
        "statistics)",
        "",
        "## Training recipe and data",
        "",
    ]
    if training.get("command"):
        lines.append(f"- command: `{training['command']}`")
    if training.get("experiment"):
        lines.append(f"- recipe: `{training['experiment']}`")
    for key in (
        "resolution",
        "max_epochs",
        "epoch",
        "global_step",
        "seed",
        "loss",
        "optimizer",
        "scheduler",
        "checkpoint",
    ):
        if training.get(key) is not None:
            lines.append(f"- {'training grid' if key == 'resolution' else key}: {_fmt(training[key])}")
    lines.append(f"- data generator `{pde['name']}`: {_fmt(pde.get('generator') or {})}")
    for key in ("n_train", "n_val", "n_test", "seed", "stride", "test_strides", "batch_size"):
        if key in data:
            lines.append(f"- data.{key}: {_fmt(data[key])}")
    lines.append(f"- periodic grid: {pde.get('periodic')}")
    if training.get("notes"):
        lines += ["", str(training["notes"])]
    lines += ["", "## Measured error", ""]
    evaluation = cfg.get("evaluation") or []
    if evaluation:
        lines += [
            "Relative L2 error per sample (mean ± std, median, max) measured at export:",
            "",
            "| data | split | resolution | samples | rel. L2 | std | median | max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in evaluation:
            lines.append(
                f"| `{r.get('data')}` | {r.get('split', '')} | {r.get('resolution')} | {r.get('n')} | "
                f"{_fmt(r.get('rel_l2'))} | {_fmt(r.get('rel_l2_std'))} | {_fmt(r.get('rel_l2_median'))} | "
                f"{_fmt(r.get('rel_l2_max'))} |"
            )
        lines.append("")
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in sorted(metrics.items())]
    else:
        lines.append("No metrics were recorded.")
    norms = cfg.get("normalizers") or {}
    lines += ["", "## Normaliser statistics", ""]
    for role in ("input", "output"):
        s = norms.get(role)
        if s:
            lines.append(f"- {role}: mean {_fmt(s['mean'])}, std {_fmt(s['std'])}")
    lines += [
        "",
        "## Limitations",
        "",
        f"- Valid for inputs drawn like the training data (the generator settings above); other "
        f"{pde['name']} parameters or input distributions are out of distribution.",
        "- The error at resolutions other than the training grid is measured above where listed; finer grids "
        "are zero-shot (same weights).",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)
