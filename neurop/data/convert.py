"""Import the community's data files (FNO-paper ``.mat``, neuraloperator ``.pt``) into neurop's HDF5 layout.

Sources and their layouts:

- FNO paper (Li et al., ICLR 2021) MATLAB files, sample axis first in MATLAB order. MATLAB v7.3 files
  are HDF5 files that store arrays transposed (read here with h5py, lazily, and transposed back); older
  versions are read with :func:`scipy.io.loadmat`.

  ========== ===================================== ==============================================
  pde        fields                                neurop fields
  ========== ===================================== ==============================================
  burgers    ``a`` (N, X) u(·,0), ``u`` (N, X) u(·,1)  ``u`` (sample, t=[0, 1], x)
  darcy      ``coeff`` (N, X, Y), ``sol`` (N, X, Y)  ``a``, ``u`` (sample, x, y), boundary included
  navier_    ``u`` (N, X, Y, T) w at t = 1..T and     ``w`` (sample, t, x, y); ``a`` becomes t = 0
  stokes     optionally ``a`` (N, X, Y) w at t = 0
  ========== ===================================== ==============================================

  The public Darcy files have a non-zero solution on the boundary (they were interpolated from another
  grid), whereas ``u = 0`` there in the PDE and in our generated data: ``boundary="zero"`` sets it to
  zero, ``"keep"`` (default) keeps the published values; the largest boundary value is recorded.

- neuraloperator ``.pt`` dictionaries with tensors ``x`` (inputs) and ``y`` (outputs). Darcy
  coefficients may be boolean (an indicator of the high-conductivity phase; mapped to
  ``bool_values``); Burgers and Navier–Stokes outputs may carry a time axis ``(N, T, ...)``. They are
  read with ``torch.load(weights_only=True)``: a file that needs arbitrary Python objects unpickled,
  or that holds anything but tensors, is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from neurop.data.store import DatasetWriter
from neurop.pdes.base import FieldSpec

PDE = Literal["burgers", "darcy", "navier_stokes"]
Format = Literal["auto", "mat", "pt"]
Boundary = Literal["keep", "zero"]
PDE_NAMES = ("burgers", "darcy", "navier_stokes")

#: Expected ``.mat`` fields per pde: (input field, output field); ``None`` = not required.
MAT_FIELDS: dict[str, tuple[str | None, str]] = {
    "burgers": ("a", "u"),
    "darcy": ("coeff", "sol"),
    "navier_stokes": ("a", "u"),
}


class _Array:
    """A lazily read array with the sample axis first: ``read(i0, i1) -> (i1 - i0, *shape)``."""

    def __init__(
        self, shape: tuple[int, ...], read: Callable[[int, int], np.ndarray], is_bool: bool = False
    ) -> None:
        self.shape = shape
        self._read = read
        self.is_bool = is_bool

    def read(self, i0: int, i1: int) -> np.ndarray:
        return np.asarray(self._read(i0, i1), dtype=np.float64)


def _mat_arrays(path: Path) -> tuple[dict[str, _Array], Any]:
    """Numeric arrays of a ``.mat`` file (any version) and an object to close afterwards (or None)."""
    if h5py.is_hdf5(path):
        f = h5py.File(path, "r")
        out = {}
        for name, dset in f.items():
            if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "biuf" or dset.ndim < 1:
                continue
            # MATLAB v7.3 stores column-major: h5py sees the axes reversed, the sample axis last.
            shape = tuple(reversed(dset.shape))
            nd = dset.ndim

            def read(i0: int, i1: int, d: h5py.Dataset = dset, nd: int = nd) -> np.ndarray:
                block = d[(Ellipsis, slice(i0, i1))] if nd > 1 else d[i0:i1]
                return np.transpose(block, tuple(range(nd - 1, -1, -1)))

            out[name] = _Array(shape, read)
        return out, f
    from scipy.io import loadmat

    try:
        raw = loadmat(str(path))
    except Exception as err:  # scipy raises several types for non-MATLAB input
        raise ValueError(f"{path} is neither a MATLAB v7.3 (HDF5) nor an older .mat file: {err}") from err
    out = {}
    for name, value in raw.items():
        if name.startswith("__") or not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            continue
        out[name] = _Array(value.shape, lambda i0, i1, v=value: v[i0:i1], value.dtype == np.bool_)
    return out, None


def _pt_arrays(path: Path) -> dict[str, _Array]:
    """Tensors of a neuraloperator ``.pt`` dictionary, loaded without unpickling arbitrary objects."""
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it needs arbitrary Python objects unpickled, which could run code; "
            f"only dictionaries of tensors are accepted ({str(err).splitlines()[0]})"
        ) from None
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}; expected a dictionary of tensors with keys x, y"
        )
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; only dictionaries of "
                "tensors are accepted"
            )
        arr = value.detach().cpu().numpy()
        out[str(key)] = _Array(arr.shape, lambda i0, i1, a=arr: a[i0:i1], arr.dtype == np.bool_)
    return out


def _need(arrays: Mapping[str, _Array], names: Sequence[str], path: Path, pde: str) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(
            f"{path} has no field(s) {missing} expected for pde {pde!r}; fields found: {sorted(arrays)}"
        )


def _grid(n: int, periodic: bool) -> np.ndarray:
    return np.arange(n) / n if periodic else np.linspace(0.0, 1.0, n)


class _Source:
    """What to write: coordinates, field layouts and a reader of sample blocks in neurop's layout."""

    def __init__(
        self,
        n: int,
        coords: dict[str, np.ndarray],
        fields: dict[str, FieldSpec],
        read: Callable[[int, int], dict[str, np.ndarray]],
        info: dict[str, Any],
        static: dict[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
    ) -> None:
        self.n, self.coords, self.fields, self.read, self.info = n, coords, fields, read, info
        self.static = static or {}


def _burgers(arrays: Mapping[str, _Array], inp: str, out: str, t_final: float) -> _Source:
    a, u = arrays[inp], arrays[out]
    if len(a.shape) != 2:
        raise ValueError(f"burgers input {inp!r} must have shape (N, X), got {a.shape}")
    n, nx = a.shape
    if u.shape[0] != n or u.shape[-1] != nx or len(u.shape) not in (2, 3):
        raise ValueError(f"burgers output {out!r} must have shape ({n}, [T,] {nx}), got {u.shape}")
    has_time = len(u.shape) == 3
    nt_out = u.shape[1] if has_time else 1
    # A time axis that starts with the initial condition is used as is (checked on the first block).
    first = u.read(0, min(n, 4))
    starts_at_0 = has_time and np.allclose(first[:, 0], a.read(0, min(n, 4)))
    nt = nt_out if starts_at_0 else nt_out + 1

    def read(i0: int, i1: int) -> dict[str, np.ndarray]:
        ub = u.read(i0, i1)
        ub = ub if has_time else ub[:, None]
        return {"u": ub if starts_at_0 else np.concatenate([a.read(i0, i1)[:, None], ub], axis=1)}

    coords = {"t": np.linspace(0.0, t_final, nt), "x": _grid(nx, True)}
    return _Source(n, coords, {"u": FieldSpec(("t", "x"), (nt, nx))}, read, {"t_final": t_final})


def _darcy(
    arrays: Mapping[str, _Array],
    inp: str,
    out: str,
    boundary: Boundary,
    bool_values: tuple[float, float],
) -> _Source:
    a, u = arrays[inp], arrays[out]
    if len(a.shape) != 3 or a.shape != u.shape:
        raise ValueError(
            f"darcy {inp!r} and {out!r} must both have shape (N, X, Y), got {a.shape}, {u.shape}"
        )
    n, nx, ny = a.shape
    edge = {"max_abs": 0.0}

    def read(i0: int, i1: int) -> dict[str, np.ndarray]:
        ab, ub = a.read(i0, i1), u.read(i0, i1).copy()
        if a.is_bool:
            ab = np.where(ab > 0.5, bool_values[1], bool_values[0])
        rim = np.concatenate([ub[:, 0], ub[:, -1], ub[:, :, 0], ub[:, :, -1]], axis=1)
        edge["max_abs"] = max(edge["max_abs"], float(np.abs(rim).max()) if rim.size else 0.0)
        if boundary == "zero":
            ub[:, 0], ub[:, -1], ub[:, :, 0], ub[:, :, -1] = 0.0, 0.0, 0.0, 0.0
        return {"a": ab, "u": ub}

    coords = {"x": _grid(nx, False), "y": _grid(ny, False)}
    fields = {"a": FieldSpec(("x", "y"), (nx, ny)), "u": FieldSpec(("x", "y"), (nx, ny))}
    return _Source(n, coords, fields, read, {"boundary": boundary, "boundary_max_abs": edge})


def _ns_from_mat(arrays: Mapping[str, _Array], snapshot_interval: float) -> _Source:
    u = arrays["u"]
    if len(u.shape) != 4:
        raise ValueError(f"navier_stokes field 'u' must have shape (N, X, Y, T), got {u.shape}")
    n, nx, ny, nt_u = u.shape
    a = arrays.get("a")
    if a is not None and a.shape != (n, nx, ny):
        a = None  # not the initial vorticity
    nt = nt_u + (1 if a is not None else 0)

    def read(i0: int, i1: int) -> dict[str, np.ndarray]:
        w = np.moveaxis(u.read(i0, i1), -1, 1)
        if a is not None:
            w = np.concatenate([a.read(i0, i1)[:, None], w], axis=1)
        return {"w": w}

    t0 = 0.0 if a is not None else snapshot_interval
    coords = {"t": t0 + snapshot_interval * np.arange(nt), "x": _grid(nx, True), "y": _grid(ny, True)}
    info = {"initial_condition_included": a is not None, "snapshot_interval": snapshot_interval}
    return _Source(n, coords, {"w": FieldSpec(("t", "x", "y"), (nt, nx, ny))}, read, info)


def _ns_from_pt(arrays: Mapping[str, _Array], t_final: float) -> _Source:
    x, y = arrays["x"], arrays["y"]
    n = x.shape[0]
    shape_x = x.shape[1:] if len(x.shape) == 4 else (1, *x.shape[1:])
    shape_y = y.shape[1:] if len(y.shape) == 4 else (1, *y.shape[1:])
    if len(shape_x) != 3 or shape_x[1:] != shape_y[1:] or y.shape[0] != n:
        raise ValueError(
            f"navier_stokes x and y must be (N, [T,] X, Y) on one grid, got {x.shape}, {y.shape}"
        )
    nt = shape_x[0] + shape_y[0]

    def read(i0: int, i1: int) -> dict[str, np.ndarray]:
        xb = x.read(i0, i1).reshape(i1 - i0, *shape_x)
        yb = y.read(i0, i1).reshape(i1 - i0, *shape_y)
        return {"w": np.concatenate([xb, yb], axis=1)}

    coords = {"t": np.linspace(0.0, t_final, nt), "x": _grid(shape_x[1], True), "y": _grid(shape_x[2], True)}
    return _Source(
        n, coords, {"w": FieldSpec(("t", "x", "y"), (nt, *shape_x[1:]))}, read, {"t_final": t_final}
    )


def detect_format(path: str | Path) -> Literal["mat", "pt"]:
    """``"mat"`` or ``"pt"`` from the file name (``.mat``, ``.pt``/``.pth``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mat":
        return "mat"
    if suffix in (".pt", ".pth"):
        return "pt"
    raise ValueError(
        f"cannot tell the format of {path} from its suffix {suffix!r}; pass fmt='mat' or fmt='pt'"
    )


def parse_range(spec: str, n: int) -> range:
    """``"0:1000"`` / ``"-200:"`` / ``":100"`` -> the sample range within ``n`` samples."""
    parts = spec.split(":")
    if len(parts) != 2:
        raise ValueError(f"a sample range must look like 'start:stop', got {spec!r}")
    try:
        start, stop = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise ValueError(f"a sample range must look like 'start:stop' with integers, got {spec!r}") from None
    r = range(n)[slice(start, stop)]
    if len(r) == 0:
        raise ValueError(f"sample range {spec!r} selects no samples of the {n} in the file")
    return r


def convert(
    src: str | Path,
    out: str | Path,
    pde: PDE,
    fmt: Format = "auto",
    split: str = "train",
    samples: str | None = None,
    boundary: Boundary = "keep",
    bool_values: Sequence[float] = (0.0, 1.0),
    t_final: float = 1.0,
    snapshot_interval: float = 1.0,
    chunk: int = 64,
    overwrite: bool = False,
) -> Path:
    """Convert one source file (or a range of its samples) into one neurop HDF5 file.

    Parameters
    ----------
    src : str or Path
        FNO-paper ``.mat`` or neuraloperator ``.pt`` file.
    out : str or Path
        HDF5 file to write (via ``<out>.partial``, renamed when complete).
    pde : {"burgers", "darcy", "navier_stokes"}
    fmt : {"auto", "mat", "pt"}
        ``auto`` decides from the suffix.
    split : str
        Recorded in the file (``train``, ``val``, ``test``).
    samples : str or None
        Python-style range of samples, e.g. ``"0:1000"`` or ``"-200:"``; ``None`` = all.
    boundary : {"keep", "zero"}
        Darcy only: keep the published boundary values of the solution or set them to zero.
    bool_values : (low, high)
        Values of a boolean Darcy coefficient (False -> low, True -> high).
    t_final : float
        Final time of Burgers data (``.mat`` and ``.pt``) and of Navier–Stokes ``.pt`` data.
    snapshot_interval : float
        Time between Navier–Stokes ``.mat`` snapshots.
    chunk : int
        Samples read and written at a time.
    overwrite : bool
        Replace an existing output file.

    Returns
    -------
    Path
        The written file.
    """
    src, out = Path(src), Path(out)
    if pde not in PDE_NAMES:
        raise ValueError(f"pde must be one of {list(PDE_NAMES)}, got {pde!r}")
    if boundary not in ("keep", "zero"):
        raise ValueError(f"boundary must be 'keep' or 'zero', got {boundary!r}")
    if len(bool_values) != 2:
        raise ValueError(f"bool_values must be (low, high), got {bool_values!r}")
    if not src.is_file():
        raise FileNotFoundError(f"source file {src} does not exist")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    fmt = detect_format(src) if fmt == "auto" else fmt
    if fmt not in ("mat", "pt"):
        raise ValueError(f"fmt must be 'auto', 'mat' or 'pt', got {fmt!r}")
    handle = None
    if fmt == "mat":
        arrays, handle = _mat_arrays(src)
    else:
        arrays = _pt_arrays(src)
    try:
        if fmt == "mat":
            inp, outp = MAT_FIELDS[pde]
            _need(arrays, [outp] if pde == "navier_stokes" else [inp, outp], src, pde)
        else:
            inp, outp = "x", "y"
            _need(arrays, ["x", "y"], src, pde)
        if pde == "burgers":
            source = _burgers(arrays, inp, outp, t_final)
        elif pde == "darcy":
            source = _darcy(arrays, inp, outp, boundary, (float(bool_values[0]), float(bool_values[1])))
        elif fmt == "mat":
            source = _ns_from_mat(arrays, snapshot_interval)
        else:
            source = _ns_from_pt(arrays, t_final)
        picked = range(source.n) if samples is None else parse_range(samples, source.n)
        if picked.step != 1:
            raise ValueError(f"sample range must be contiguous, got step {picked.step}")
        out.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            out.unlink(missing_ok=True)
        solver = {
            "scheme": "imported",
            "source": src.name,
            "format": fmt,
            "samples": [picked.start, picked.stop],
        }
        writer = DatasetWriter.open(
            out,
            pde=pde,
            params={},
            solver=solver,
            seed=0,
            split=split,
            n_samples=len(picked),
            coords=source.coords,
            fields=source.fields,
            static_fields=source.static,
            config={"converted_from": str(src), "pde": pde},
            overwrite=True,
        )
        try:
            for i0 in range(picked.start, picked.stop, chunk):
                i1 = min(i0 + chunk, picked.stop)
                block = source.read(i0, i1)
                if not all(np.isfinite(v).all() for v in block.values()):
                    raise ValueError(f"{src}: samples {i0}:{i1} hold NaN or inf values")
                writer.write(i0 - picked.start, block)
            info = {k: (v["max_abs"] if isinstance(v, dict) else v) for k, v in source.info.items()}
            writer._f.attrs["import"] = json.dumps(info)
            path = writer.finalize()
        except BaseException:
            writer.close()
            raise
    finally:
        if handle is not None:
            handle.close()
    return path


def import_info(path: str | Path) -> dict[str, Any]:
    """What :func:`convert` recorded about the import (boundary treatment, time axis, ...)."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get("import", "{}"))


__all__ = ["MAT_FIELDS", "convert", "detect_format", "import_info", "parse_range"]
