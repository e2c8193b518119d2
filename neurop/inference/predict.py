"""Prediction and evaluation on HDF5 data files: batched, with progress, metrics, figures, atomic output."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from neurop.inference.model import InferenceModel, resample, resample_coord

__all__ = [
    "InputFileError",
    "evaluate",
    "format_table",
    "generate_test_data",
    "predict_file",
    "resolution_label",
]

_SPATIAL_NAMES = ("x", "y", "z")


class InputFileError(ValueError):
    """An input data file that does not fit the model: wrong PDE, missing fields, wrong layout."""


def resolution_label(shape: Sequence[int]) -> str:
    """``(33, 33)`` -> ``"33"``, ``(256,)`` -> ``"256"``, ``(32, 64)`` -> ``"32x64"`` (as in metric names)."""
    shape = tuple(int(s) for s in shape)
    return str(shape[0]) if len(set(shape)) == 1 else "x".join(map(str, shape))


def _times(
    selection: Any, n_t: int | None, name: str, path: Path, shape: Sequence[int] | None = None
) -> list[int] | None:
    """Stored time indices a selection reads (None for a field without a time axis)."""
    shown = "" if shape is None else f" has shape {tuple(shape)}:"
    if n_t is None:
        if selection is not None:
            raise InputFileError(
                f"model/PDE mismatch: field {name!r} in {path}{shown} no time axis, but the model selects "
                f"time={selection}"
            )
        return None
    if selection is None:
        raise InputFileError(
            f"model/PDE mismatch: field {name!r} in {path}{shown} a (sample, t, *spatial) layout with "
            f"{n_t} times, but the model expects (sample, *spatial) without a time axis"
        )
    if isinstance(selection, (list, tuple)):
        start, stop = (int(t) if int(t) >= 0 else n_t + int(t) for t in selection)
        if not 0 <= start < stop <= n_t:
            raise InputFileError(
                f"time range {list(selection)} of field {name!r} is outside the {n_t} stored times in {path}"
            )
        return list(range(start, stop))
    t = int(selection)
    if not -n_t <= t < n_t:
        raise InputFileError(f"time index {t} of field {name!r} is outside the {n_t} stored times in {path}")
    return [t % n_t]


@dataclass
class _Role:
    name: str
    times: list[int] | None
    spatial: tuple[int, ...]


@dataclass
class DataFile:
    """An HDF5 data file opened for a model: checked layout, lazy batched reads.

    Parameters
    ----------
    path : Path
        Data file in neurop's layout (``neurop/data/store.py``) or any HDF5 file with the model's input
        field stored sample-first.
    model : InferenceModel
        The model whose input (and, when present, output) selection is read.
    """

    path: Path
    model: InferenceModel
    attrs: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, _Role] = field(default_factory=dict)
    n_samples: int = 0
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    spatial_dims: tuple[str, ...] = ()
    static: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        path = Path(self.path)
        self.path = path
        if not path.is_file():
            raise FileNotFoundError(f"input data file {path} does not exist")
        try:
            self._f = h5py.File(path, "r")
        except OSError as err:
            raise InputFileError(f"input {path} is not a readable HDF5 file ({err})") from None
        try:
            self._inspect()
        except BaseException:
            self._f.close()
            raise

    def _inspect(self) -> None:
        f, path, model = self._f, self.path, self.model
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        self.attrs = attrs
        pde = attrs.get("pde")
        if pde is not None and str(pde) != model.pde:
            raise InputFileError(
                f"model/PDE mismatch: {path} holds {pde!r} data but model {model.name!r} was trained on "
                f"{model.pde!r}"
            )
        if (
            "n_complete" in attrs
            and "n_samples" in attrs
            and int(attrs["n_complete"]) < int(attrs["n_samples"])
        ):
            raise InputFileError(
                f"{path} is incomplete: {attrs['n_complete']} of {attrs['n_samples']} samples written"
            )
        fields = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset) and not v.is_scale)
        d = model.dim
        for role in ("input", "output"):
            sel = model.pde_config[role]
            name = str(sel["field"])
            if name not in f or not isinstance(f[name], h5py.Dataset):
                if role == "output":
                    continue  # no truth: predict only
                raise InputFileError(
                    f"input file {path} has no field {name!r} (model {model.name!r} maps "
                    f"{model.input_field} -> {model.output_field}); its fields: {fields}"
                )
            shape = f[name].shape
            if len(shape) not in (1 + d, 2 + d):
                raise InputFileError(
                    f"model/PDE mismatch: field {name!r} in {path} has shape {shape}; model {model.name!r} "
                    f"expects (sample, [t,] {d} spatial axes) ({d}-D fields)"
                )
            n_t = shape[1] if len(shape) == 2 + d else None
            times = _times(sel.get("time"), n_t, name, path, shape)
            self.roles[role] = _Role(name, times, tuple(shape[-d:]))
        inp = self.roles["input"]
        if len(inp.times or [0]) != model.in_channels:
            raise InputFileError(
                f"model/PDE mismatch: the input selection of {path} gives {len(inp.times or [0])} channel(s) "
                f"but model {model.name!r} takes {model.in_channels}"
            )
        out = self.roles.get("output")
        if out is not None and (
            out.spatial != inp.spatial
            or (out.name == inp.name and out.times is not None and set(out.times) & set(inp.times or []))
        ):
            del self.roles["output"]  # the "truth" would be the input itself (e.g. initial conditions only)
        self.n_samples = int(f[inp.name].shape[0])
        dset = f[inp.name]
        names = []
        for axis in range(dset.ndim - d, dset.ndim):
            dims = dset.dims[axis]
            names.append(
                dims[0].name.rsplit("/", 1)[-1] if len(dims) else _SPATIAL_NAMES[axis - dset.ndim + d]
            )
        self.spatial_dims = tuple(names)
        periodic = self.model.periodic
        for dim_name, n in zip(names, inp.spatial, strict=True):
            if dim_name in f and f[dim_name].shape == (n,):
                self.coords[dim_name] = np.asarray(f[dim_name][()], dtype=np.float64)
            else:
                self.coords[dim_name] = np.arange(n) / n if periodic else np.linspace(0.0, 1.0, n)
        if "t" in f and f["t"].ndim == 1:
            self.coords["t"] = np.asarray(f["t"][()], dtype=np.float64)
        for key, dset in f.items():
            if (
                isinstance(dset, h5py.Dataset)
                and not dset.is_scale
                and key not in (inp.name, *([out.name] if out else []))
            ):
                dims = tuple(dd[0].name.rsplit("/", 1)[-1] if len(dd) else "" for dd in dset.dims)
                if (
                    dims
                    and set(dims) <= set(names)
                    and dset.shape == tuple(len(self.coords[n]) for n in dims)
                ):
                    self.static[key] = (dims, np.asarray(dset[()], dtype=np.float32))

    @property
    def has_truth(self) -> bool:
        return "output" in self.roles

    def read(self, role: str, start: int, stop: int) -> Tensor:
        """Samples ``start:stop`` of ``role`` as a float32 tensor of shape (n, C, *spatial)."""
        r = self.roles[role]
        dset = self._f[r.name]
        if r.times is None:
            arr = np.asarray(dset[start:stop], dtype=np.float32)[:, None]
        else:
            lo, hi = min(r.times), max(r.times) + 1
            arr = np.asarray(dset[start:stop, lo:hi], dtype=np.float32)[:, [t - lo for t in r.times]]
        return torch.from_numpy(np.ascontiguousarray(arr))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> DataFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(
    model: InferenceModel, resolution: int | Sequence[int] | None, native: tuple[int, ...]
) -> tuple[int, ...]:
    if resolution is None:
        return native
    if isinstance(resolution, (int, np.integer)):
        return (int(resolution),) * model.dim
    size = tuple(int(r) for r in resolution)
    if len(size) != model.dim:
        raise ValueError(f"resolution must be an int or {model.dim} ints, got {list(resolution)}")
    return size


def _batches(
    model: InferenceModel,
    data: DataFile,
    size: tuple[int, ...],
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
    desc: str,
) -> Iterator[tuple[int, Tensor, Tensor | None, Tensor, float]]:
    """Yield ``(start, x, truth or None, prediction, forward seconds)`` per batch, on the target grid."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=data.n_samples, desc=desc, unit="sample", dynamic_ncols=True)
    try:
        for start in range(0, data.n_samples, batch_size):
            stop = min(start + batch_size, data.n_samples)
            x = data.read("input", start, stop)
            if tuple(x.shape[2:]) != size:
                x = resample(x, size, model.periodic)
            y = None
            if data.has_truth:
                y = data.read("output", start, stop)
                if tuple(y.shape[2:]) != size:
                    y = resample(y, size, model.periodic)
            t0 = time.perf_counter()
            pred = model.predict_batch(x, batch_size=batch_size, device=device)
            seconds = time.perf_counter() - t0
            if bar is not None:
                bar.update(stop - start)
            yield start, x, y, pred, seconds
    finally:
        if bar is not None:
            bar.close()


def _rel_l2(pred: Tensor, truth: Tensor) -> Tensor:
    diff = (pred - truth).flatten(1).norm(dim=1)
    return diff / truth.flatten(1).norm(dim=1).clamp_min(1e-12)


def _summary(errors: list[Tensor]) -> dict[str, float]:
    e = torch.cat(errors).double()
    return {
        "rel_l2": float(e.mean()),
        "rel_l2_std": float(e.std()) if e.numel() > 1 else 0.0,
        "rel_l2_median": float(e.median()),
        "rel_l2_max": float(e.max()),
    }


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def _plot_predictions(x: Tensor, pred: Tensor, path: Path, title: str) -> Path:
    """Input and prediction side by side (for files without the truth)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = x.shape[0]
    fig = Figure(figsize=(8, 2.6 * n), layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    for i in range(n):
        for j, (name, field_) in enumerate((("input", x[i, -1]), ("prediction", pred[i, 0]))):
            arr = field_.numpy()
            while arr.ndim > 2:
                arr = arr[..., arr.shape[-1] // 2]
            ax = axes[i, j]
            if arr.ndim == 1:
                ax.plot(np.linspace(0, 1, arr.shape[0], endpoint=False), arr, color="k" if j == 0 else "C1")
            else:
                fig.colorbar(ax.imshow(arr.T, origin="lower", extent=(0, 1, 0, 1)), ax=ax, shrink=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
    fig.suptitle(title)
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _output_layout(
    model: InferenceModel, data: DataFile, size: tuple[int, ...]
) -> tuple[dict[str, np.ndarray], dict[str, tuple[tuple[str, ...], list[int] | None]], list[int] | None]:
    """Coordinates, per-field (dims, stored times) of the prediction file, and the output's times."""
    inp = data.roles["input"]
    out_name = model.output_field
    out_times = None
    sel_out = model.pde_config["output"].get("time")
    if sel_out is not None:
        if inp.times is None or out_name != inp.name:
            if inp.times is not None:
                raise NotImplementedError(
                    "input and output fields with different time axes are not supported"
                )
        n_t = len(data.coords.get("t", [])) or None
        if n_t is None and data.has_truth:
            n_t = data._f[out_name].shape[1]
        if n_t is None:
            raise InputFileError(f"{data.path} has no 't' coordinate to place the output time {sel_out} on")
        out_times = _times(sel_out, n_t, out_name, data.path)
    coords = {
        dim: resample_coord(data.coords[dim], n, model.periodic)
        for dim, n in zip(data.spatial_dims, size, strict=True)
    }
    layout: dict[str, tuple[tuple[str, ...], list[int] | None]] = {}
    if out_name == inp.name:
        times = sorted(set(inp.times or []) | set(out_times or [])) or None
        layout[out_name] = ((("t",) if times else ()) + data.spatial_dims, times)
    else:
        layout[inp.name] = ((("t",) if inp.times else ()) + data.spatial_dims, inp.times)
        layout[out_name] = ((("t",) if out_times else ()) + data.spatial_dims, out_times)
    all_times = sorted({t for _, ts in layout.values() for t in (ts or [])})
    if all_times:
        t_values = data.coords.get("t")
        coords["t"] = t_values[all_times] if t_values is not None else np.asarray(all_times, dtype=np.float64)
        for name, (_, ts) in layout.items():
            if ts is not None and ts != all_times:
                raise NotImplementedError(
                    f"field {name!r} stores times {ts} but the file's times are {all_times}"
                )
    return coords, layout, out_times


def predict_file(
    model: InferenceModel,
    input: str | Path,
    output: str | Path,
    *,
    resolution: int | Sequence[int] | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = True,
    figures: bool = True,
    n_plot: int = 4,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict every sample of a data file and write the predictions as a data file of the same PDE.

    The output uses neurop's HDF5 layout (``neurop/data/store.py``; readable with
    ``xarray.open_dataset(path, engine="h5netcdf")``): the input field(s) as given to the model and the
    output field holding the predictions (for Burgers, ``u`` with ``t = [0, 1]``: the initial condition
    and the predicted solution). It is written under ``<output>.partial`` and renamed when complete; on
    any error nothing is left under either name. When the input file holds the truth, per-sample
    relative L2 errors are summarised in ``<output stem>.metrics.json``; figures go to
    ``<output stem>_figures/``.

    Parameters
    ----------
    model : InferenceModel
        From :func:`neurop.load`.
    input, output : str or Path
        Data file to read; prediction file to write.
    resolution : int or sequence of int, optional
        Predict on this grid (inputs, and the truth for metrics, resampled); default the file's grid.
    batch_size : int
        Samples per forward pass.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; default the model's device.
    progress : bool
        Show a progress bar.
    figures : bool
        Save a figure of the first ``n_plot`` samples.
    overwrite : bool
        Replace an existing ``output``.

    Returns
    -------
    dict
        ``n_samples``, ``resolution``, ``samples_per_s``, ``output``, and when the truth is present
        ``rel_l2`` (mean), ``rel_l2_std``, ``rel_l2_median``, ``rel_l2_max``; ``figure`` and
        ``metrics_file`` when written.
    """
    from neurop.data.store import DatasetWriter, partial_path
    from neurop.pdes.base import FieldSpec

    input, output = Path(input), Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"output {output} already exists; pass overwrite=true to replace it")
    if output.resolve() == input.resolve():
        raise ValueError(f"output {output} must differ from the input file")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output directory {output.parent} does not exist")
    with DataFile(input, model) as data:
        size = _size(model, resolution, data.roles["input"].spatial)
        coords, layout, out_times = _output_layout(model, data, size)
        inp = data.roles["input"]
        fields = {
            name: FieldSpec(dims, tuple(len(coords[d]) for d in dims)) for name, (dims, _) in layout.items()
        }
        static = {}
        for name, (dims, arr) in data.static.items():
            t = torch.from_numpy(arr)[None, None]
            if tuple(arr.shape) != tuple(len(coords[d]) for d in dims) and len(dims) == model.dim:
                t = resample(t, [len(coords[d]) for d in dims], model.periodic)
            if tuple(t.shape[2:]) == tuple(len(coords[d]) for d in dims):
                static[name] = (dims, t[0, 0].numpy())
        params = data.attrs.get("params")
        try:
            params = json.loads(params) if isinstance(params, str) else None
        except ValueError:
            params = None
        solver = {
            "scheme": "neural operator",
            "model": model.name,
            "architecture": model.model_config["name"],
            "source": str(model.info.get("source", "")),
        }
        config = {
            "input": str(input.resolve()),
            "resolution": list(size),
            "batch_size": batch_size,
            "device": str(device or model.device),
            "by": "neurop.inference.predict_file",
        }
        tmp = partial_path(output)
        tmp.unlink(missing_ok=True)  # a stale partial prediction from a crashed run is never resumed
        writer = DatasetWriter.open(
            output,
            pde=model.pde,
            params=params if isinstance(params, dict) else dict(model.pde_config.get("generator") or {}),
            solver=solver,
            seed=int(data.attrs.get("seed", 0)),
            split=str(data.attrs.get("split", "predict")),
            n_samples=data.n_samples,
            coords=coords,
            fields=fields,
            static_fields=static,
            config=config,
        )
        errors: list[Tensor] = []
        plot: tuple[Tensor, Tensor | None, Tensor] | None = None
        forward_s = 0.0
        t_start = time.perf_counter()
        try:
            for start, x, y, pred, sec in _batches(
                model, data, size, batch_size, device, progress, f"predict {input.name}"
            ):
                forward_s += sec
                pred = pred.cpu()
                arrays = {}
                for name, (_, ts) in layout.items():
                    if name == model.output_field and name == inp.name and ts is not None:
                        arr = torch.empty(x.shape[0], len(ts), *size)
                        for c, t in enumerate(inp.times or []):
                            arr[:, ts.index(t)] = x[:, c]
                        for c, t in enumerate(out_times or []):
                            arr[:, ts.index(t)] = pred[:, c]
                    elif name == model.output_field:
                        arr = pred if ts else pred[:, 0]
                    else:
                        arr = x if ts else x[:, 0]
                    arrays[name] = arr.numpy()
                writer.write(start, arrays)
                if y is not None:
                    errors.append(_rel_l2(pred, y))
                if plot is None and n_plot > 0:
                    plot = (x[:n_plot], None if y is None else y[:n_plot], pred[:n_plot])
            result: dict[str, Any] = {
                "model": model.name,
                "input": str(input),
                "output": str(output),
                "n_samples": data.n_samples,
                "resolution": resolution_label(size),
                "samples_per_s": data.n_samples / max(forward_s, 1e-12),
                "seconds": time.perf_counter() - t_start,
            }
            if errors:
                result.update(_summary(errors))
            writer.finalize()
        except BaseException:
            writer.close()
            tmp.unlink(missing_ok=True)
            raise
    stem = output.with_suffix("")
    if errors:
        result["metrics_file"] = str(stem.with_name(stem.name + ".metrics.json"))
        _write_json(Path(result["metrics_file"]), result)
    if figures and plot is not None:
        from neurop.plotting import plot_samples

        fig_path = stem.with_name(stem.name + "_figures") / f"samples_{resolution_label(size)}.png"
        title = f"{model.name} on {input.name} at {resolution_label(size)}"
        x, y, p = plot
        if y is not None:
            plot_samples(x, y, p, fig_path, title=title, max_samples=n_plot)
        else:
            _plot_predictions(x, p, fig_path, title)
        result["figure"] = str(fig_path)
    return result


def evaluate(
    models: Mapping[str, InferenceModel] | Sequence[InferenceModel],
    data: Sequence[str | Path],
    resolutions: Sequence[int | Sequence[int] | None] = (None,),
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = False,
    on_error: str = "record",
) -> list[dict[str, Any]]:
    """Relative L2 error of every model on every data file at every resolution.

    Parameters
    ----------
    models : dict of str to InferenceModel, or sequence
        Models (keys or ``model.name`` label the rows).
    data : sequence of path
        Data files holding inputs and truth.
    resolutions : sequence
        Grids to evaluate on (``None``: the file's own); each an int or one int per axis.
    on_error : {"record", "raise"}
        ``"record"`` puts a mismatch (e.g. a Burgers model on Darcy data) in the row's ``error``.

    Returns
    -------
    list of dict
        One row per (model, file, resolution): ``model``, ``data``, ``pde``, ``resolution``, ``n``,
        ``rel_l2``, ``rel_l2_std``, ``rel_l2_median``, ``rel_l2_max``, ``samples_per_s``, ``error``.
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', got {on_error!r}")
    named = dict(models) if isinstance(models, Mapping) else {m.name: m for m in models}
    rows = []
    for label, model in named.items():
        for path in data:
            for res in resolutions:
                row: dict[str, Any] = {"model": label, "data": Path(path).name, "pde": model.pde}
                try:
                    with DataFile(Path(path), model) as df:
                        if not df.has_truth:
                            raise InputFileError(
                                f"{path} has no {model.output_field!r} truth to evaluate against"
                            )
                        size = _size(model, res, df.roles["input"].spatial)
                        errors, seconds = [], 0.0
                        for _, _, y, pred, sec in _batches(
                            model, df, size, batch_size, device, progress, label
                        ):
                            assert y is not None
                            errors.append(_rel_l2(pred.cpu(), y))
                            seconds += sec
                        row.update(resolution=resolution_label(size), n=df.n_samples, **_summary(errors))
                        row.update(split=df.attrs.get("split"), seed=df.attrs.get("seed"))
                        row["samples_per_s"] = df.n_samples / max(seconds, 1e-12)
                except (InputFileError, ValueError) as err:
                    if on_error == "raise":
                        raise
                    row.update(resolution="" if res is None else str(res), error=str(err))
                rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of evaluation rows (numbers with 4 significant digits)."""
    columns = list(
        columns or ["model", "data", "resolution", "n", "rel_l2", "rel_l2_std", "rel_l2_max", "samples_per_s"]
    )
    if any(r.get("error") for r in rows):
        columns.append("error")

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def generate_test_data(
    model: InferenceModel,
    n_samples: int,
    out: str | Path,
    *,
    seed: int = 2026,
    split: str = "fresh",
    batch_size: int = 16,
    progress: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Solve fresh samples of the model's PDE with its training generator settings.

    The split name (default ``"fresh"``) and seed give samples independent of the training, validation
    and test splits (see :func:`neurop.data.sample_seed`).

    Parameters
    ----------
    model : InferenceModel
        Its ``pde_config["generator"]`` parameters are used.
    n_samples : int
        Samples to solve.
    out : str or Path
        Data file to write.
    overrides : dict, optional
        Generator parameters to change (e.g. ``{"resolution": 257}``).
    """
    from neurop.data.generate import generate_dataset

    params = dict(model.pde_config.get("generator") or {})
    if not params:
        raise ValueError(f"model {model.name!r} does not record its generator parameters")
    params.update(overrides or {})
    return generate_dataset(
        model.pde, params, n_samples, out, split=split, seed=seed, batch_size=batch_size, progress=progress
    )
