"""HDF5 storage of generated data sets: layout, atomic and resumable writer, readers and shard combination.

File layout (one file per PDE, parameters, resolution and split, or one shard of it)::

    /sample      (sample,)         int64    global sample indices, a dimension scale
    /t, /x, /y   (n,)              float64  1-D coordinates, dimension scales
    /<field>     (sample, *dims)   float32  one chunk per sample, e.g. /u (sample, t, x)
    /<static>    (*dims)           float32  fields shared by all samples, e.g. /f (x, y)

Every field has its dimension scales attached, so ``xarray.open_dataset(path, engine="h5netcdf")``
shows named dimensions and coordinates. Root attributes (see :data:`REQUIRED_ATTRS`) record the PDE,
its parameters and solver (JSON), the seed, split, version, creation time, the number of samples and
how many are complete.

A file is written under ``<path>.partial``; ``n_complete`` is updated after every flushed batch, an
interrupted run resumes from it, and a finished file is renamed to ``<path>`` with :func:`os.replace`
(atomic on POSIX), so a file under its final name is always complete.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

import neurop
from neurop.pdes.base import FieldSpec

PARTIAL_SUFFIX = ".partial"
SAMPLE_DIM = "sample"
#: Root attributes every data file carries (``config`` and shard bookkeeping are extra).
REQUIRED_ATTRS = (
    "pde",
    "params",
    "solver",
    "seed",
    "split",
    "neurop_version",
    "created",
    "n_samples",
    "n_complete",
)
_JSON_ATTRS = ("params", "solver", "config", "shards")
#: Attributes that must agree between a partial file and the run resuming it, and between shards.
_IDENTITY_ATTRS = ("pde", "params", "seed", "split", "n_samples_total")

Compression = Literal["gzip", "lzf"]

__all__ = [
    "PARTIAL_SUFFIX",
    "REQUIRED_ATTRS",
    "DatasetWriter",
    "combine_shards",
    "load_fields",
    "open_dataset",
    "parse_compression",
    "partial_path",
    "read_attrs",
]


def partial_path(path: str | Path) -> Path:
    """Temporary name of a file being written: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


def parse_compression(compression: str | None) -> dict[str, Any]:
    """h5py keyword arguments for a compression option.

    Parameters
    ----------
    compression : {None, "none", "gzip", "gzip:<level>", "lzf"}
        ``"gzip"`` uses level 4; ``"gzip:9"`` sets the level (0–9). ``"lzf"`` is fast with a
        lower ratio and readable only where h5py is installed.

    Returns
    -------
    dict
        ``{}`` or ``{"compression": ..., "compression_opts": ..., "shuffle": True}``.
    """
    if compression is None or compression == "none":
        return {}
    if not isinstance(compression, str):
        raise ValueError(f"compression must be None, 'gzip', 'gzip:<0-9>' or 'lzf', got {compression!r}")
    name, _, level = compression.partition(":")
    if name == "lzf" and not level:
        return {"compression": "lzf", "shuffle": True}
    if name == "gzip":
        if not level:
            return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        if level.isdigit() and 0 <= int(level) <= 9:
            return {"compression": "gzip", "compression_opts": int(level), "shuffle": True}
    raise ValueError(f"compression must be None, 'gzip', 'gzip:<0-9>' or 'lzf', got {compression!r}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in solver settings and configs; store them as plain JSON.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable: {obj!r}")


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _read_attrs(f: h5py.File) -> dict[str, Any]:
    out = {}
    for key, value in f.attrs.items():
        value = _decode_attr(value)
        if key in _JSON_ATTRS and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Root attributes of a data file, with ``params``, ``solver``, ``config`` decoded from JSON.

    Parameters
    ----------
    path : str or Path
        A finished file or a ``.partial`` one.
    """
    with h5py.File(path, "r") as f:
        return _read_attrs(f)


def _field_dims(dset: h5py.Dataset) -> tuple[str, ...]:
    """Dimension names of a dataset from its attached dimension scales."""
    names = []
    for i, dim in enumerate(dset.dims):
        if len(dim) == 0:
            raise ValueError(f"dataset {dset.name!r} has no dimension scale on axis {i}")
        names.append(dim[0].name.rsplit("/", 1)[-1])
    return tuple(names)


def _check_identity(found: Mapping[str, Any], expected: Mapping[str, Any], what: str, hint: str) -> None:
    for key in _IDENTITY_ATTRS:
        if key in expected and found.get(key) != expected[key]:
            raise ValueError(f"{what}: {key} is {found.get(key)!r}, expected {expected[key]!r}; {hint}")


class DatasetWriter:
    """Write one data file (or shard) atomically and resumably.

    Use :meth:`open`, then :meth:`write` consecutive batches starting at :attr:`n_complete`, then
    :meth:`finalize`. The data lives in ``<path>.partial`` until :meth:`finalize` renames it.

    Parameters
    ----------
    path : str or Path
        Final file name.
    pde : str
        Registered PDE name.
    params, solver : dict
        JSON-serialisable PDE parameters and solver settings.
    seed : int
        Base seed of the data set.
    split : str
        Split name (``"train"``, ``"val"``, ``"test"``, ...).
    n_samples : int
        Samples in this file.
    coords : dict of str to array
        1-D coordinates; every field dimension except ``sample`` must have one.
    fields : dict of str to FieldSpec
        Per-sample fields (stored with a leading ``sample`` axis).
    static_fields : dict of str to (dims, array), optional
        Fields shared by all samples.
    sample_start : int
        Global index of this file's first sample (non-zero for shards).
    n_samples_total : int, optional
        Size of the whole data set (defaults to ``sample_start + n_samples``).
    shard : str, optional
        ``"i/n"`` for a shard, stored as an attribute.
    config : dict, optional
        Resolved configuration stored as JSON.
    compression : str, optional
        See :func:`parse_compression`.
    overwrite : bool
        Discard an incompatible partial file instead of raising. A compatible partial file is
        always resumed.
    """

    def __init__(self, file: h5py.File, path: Path, fields: Mapping[str, FieldSpec]) -> None:
        self._f = file
        self.path = path
        self.fields = dict(fields)

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        pde: str,
        params: Mapping[str, Any],
        solver: Mapping[str, Any],
        seed: int,
        split: str,
        n_samples: int,
        coords: Mapping[str, np.ndarray],
        fields: Mapping[str, FieldSpec],
        static_fields: Mapping[str, tuple[Sequence[str], np.ndarray]] | None = None,
        sample_start: int = 0,
        n_samples_total: int | None = None,
        shard: str = "",
        config: Mapping[str, Any] | None = None,
        compression: str | None = None,
        overwrite: bool = False,
    ) -> DatasetWriter:
        """Create ``<path>.partial`` or resume it; see the class docstring for the parameters."""
        path = Path(path)
        tmp = partial_path(path)
        static_fields = dict(static_fields or {})
        n_total = sample_start + n_samples if n_samples_total is None else n_samples_total
        # Round-trip through JSON so that what is compared on resumption is what is stored.
        identity = {
            "pde": pde,
            "params": json.loads(_json(params)),
            "seed": int(seed),
            "split": split,
            "n_samples_total": int(n_total),
        }
        if tmp.exists():
            try:
                writer = cls._resume(tmp, path, identity, n_samples, sample_start, fields)
            except ValueError:
                if not overwrite:
                    raise
                tmp.unlink()
            else:
                return writer
        _check_layout(coords, fields, static_fields)
        comp = parse_compression(compression)
        f = h5py.File(tmp, "w")
        try:
            f.attrs.update(
                {
                    "pde": pde,
                    "params": _json(params),
                    "solver": _json(solver),
                    "seed": int(seed),
                    "split": split,
                    "neurop_version": neurop.__version__,
                    "created": _now(),
                    "n_samples": int(n_samples),
                    "n_complete": 0,
                    "sample_start": int(sample_start),
                    "n_samples_total": int(n_total),
                    "shard": shard,
                    "config": _json(dict(config) if config is not None else None),
                }
            )
            scales = _write_coords(f, coords, np.arange(sample_start, sample_start + n_samples))
            for name, spec in fields.items():
                dset = f.create_dataset(
                    name,
                    shape=(n_samples, *spec.shape),
                    dtype="f4",
                    chunks=(1, *spec.shape),
                    fillvalue=np.float32(np.nan),
                    **comp,
                )
                _attach(dset, (SAMPLE_DIM, *spec.dims), scales)
            for name, (dims, array) in static_fields.items():
                dset = f.create_dataset(name, data=np.asarray(array, dtype="f4"))
                _attach(dset, tuple(dims), scales)
            f.flush()
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls(f, path, fields)

    @classmethod
    def _resume(
        cls,
        tmp: Path,
        path: Path,
        identity: Mapping[str, Any],
        n_samples: int,
        sample_start: int,
        fields: Mapping[str, FieldSpec],
    ) -> DatasetWriter:
        hint = f"delete {tmp} or pass overwrite=True to start again"
        try:
            f = h5py.File(tmp, "r+")
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                # HDF5 locks files open for writing: never discard a file another process is writing.
                raise BlockingIOError(
                    err.errno, f"the partial file {tmp} is locked: another run is writing it ({err})"
                ) from err
            raise ValueError(f"cannot resume the damaged partial file {tmp} ({err}); {hint}") from err
        try:
            found = _read_attrs(f)
            what = f"partial file {tmp} does not match this run"
            _check_identity(found, identity, what, hint)
            for key, value in (("n_samples", n_samples), ("sample_start", sample_start)):
                if found.get(key) != value:
                    raise ValueError(f"{what}: {key} is {found.get(key)!r}, expected {value!r}; {hint}")
            for name, spec in fields.items():
                shape = f[name].shape if name in f else None
                if shape != (n_samples, *spec.shape):
                    raise ValueError(
                        f"{what}: field {name!r} has shape {shape}, "
                        f"expected {(n_samples, *spec.shape)}; {hint}"
                    )
        except BaseException:
            f.close()
            raise
        return cls(f, path, fields)

    # ------------------------------------------------------------------ writing
    @property
    def n_samples(self) -> int:
        """Samples this file holds when complete."""
        return int(self._f.attrs["n_samples"])

    @property
    def n_complete(self) -> int:
        """Samples written and flushed so far."""
        return int(self._f.attrs["n_complete"])

    @property
    def sample_start(self) -> int:
        """Global index of the first sample in this file."""
        return int(self._f.attrs["sample_start"])

    def write(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Store samples ``start, start+1, ...`` (local indices) of every field and flush.

        Parameters
        ----------
        start : int
            Must equal :attr:`n_complete`: batches are written in order.
        arrays : dict of str to array, each of shape (B, *fields()[name].shape)
            Converted to float32.
        """
        if start != self.n_complete:
            raise ValueError(f"start must equal n_complete = {self.n_complete}, got {start}")
        if set(arrays) != set(self.fields):
            raise ValueError(f"fields must be {sorted(self.fields)}, got {sorted(arrays)}")
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"all fields must have the same number of samples, got {sizes}")
        b = sizes.pop()
        if start + b > self.n_samples:
            raise ValueError(f"batch of {b} at {start} exceeds n_samples = {self.n_samples}")
        for name, array in arrays.items():
            expected = (b, *self.fields[name].shape)
            if tuple(array.shape) != expected:
                raise ValueError(f"field {name!r} must have shape {expected}, got {tuple(array.shape)}")
            self._f[name][start : start + b] = np.asarray(array, dtype=np.float32)
        # Data reaches the file before the counter does, so n_complete never overstates progress.
        self._f.flush()
        self._f.attrs["n_complete"] = start + b
        self._f.flush()

    def finalize(self) -> Path:
        """Close the file and rename it to its final name; all samples must be written."""
        if self.n_complete != self.n_samples:
            raise ValueError(
                f"cannot finalize {self.path}: n_complete = {self.n_complete} of n_samples = {self.n_samples}"
            )
        tmp = Path(self._f.filename)
        self._f.close()
        os.replace(tmp, self.path)
        return self.path

    def close(self) -> None:
        """Close the partial file, keeping it for a later resumption."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_layout(
    coords: Mapping[str, np.ndarray],
    fields: Mapping[str, FieldSpec],
    static_fields: Mapping[str, tuple[Sequence[str], np.ndarray]],
) -> None:
    reserved = set(coords) | {SAMPLE_DIM}
    layouts = [(n, tuple(s.dims), tuple(s.shape)) for n, s in fields.items()]
    layouts += [(n, tuple(d), np.shape(a)) for n, (d, a) in static_fields.items()]
    for name, dims, shape in layouts:
        if name in reserved:
            raise ValueError(f"field name {name!r} clashes with a coordinate name ({sorted(reserved)})")
        if len(dims) != len(shape):
            raise ValueError(f"field {name!r}: dims {dims} and shape {shape} differ in length")
        for dim, n in zip(dims, shape, strict=True):
            if dim not in coords:
                raise ValueError(
                    f"field {name!r}: dimension {dim!r} has no coordinate; known: {sorted(coords)}"
                )
            if len(coords[dim]) != n:
                raise ValueError(
                    f"field {name!r}: dimension {dim!r} has length {n} "
                    f"but coordinate {dim!r} has {len(coords[dim])}"
                )


def _write_coords(
    f: h5py.File, coords: Mapping[str, np.ndarray], sample_index: np.ndarray
) -> dict[str, h5py.Dataset]:
    scales = {}
    for name, values in {SAMPLE_DIM: sample_index, **coords}.items():
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(f"coordinate {name!r} must be 1-D, got shape {values.shape}")
        dset = f.create_dataset(name, data=values)
        dset.make_scale(name)
        scales[name] = dset
    return scales


def _attach(dset: h5py.Dataset, dims: Sequence[str], scales: Mapping[str, h5py.Dataset]) -> None:
    for axis, dim in enumerate(dims):
        dset.dims[axis].attach_scale(scales[dim])


# ---------------------------------------------------------------------------- reading
def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        tmp = partial_path(path)
        if tmp.exists():
            attrs = read_attrs(tmp)
            raise FileNotFoundError(
                f"{path} is not finished: {tmp} holds {attrs.get('n_complete')} of "
                f"{attrs.get('n_samples')} samples; rerun the same generate command to resume"
            )
        raise FileNotFoundError(
            f"no data file {path}; create it with `python scripts/generate.py pde=<name> out={path}`"
        )
    return path


def open_dataset(path: str | Path, **kwargs: Any):
    """Open a data file lazily as an :class:`xarray.Dataset` (engine ``h5netcdf``).

    Parameters
    ----------
    path : str or Path
        A finished file, a ``.partial`` file, or a combined shard file.
    **kwargs
        Passed to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset
        Dimensions ``sample`` and the coordinate names (``t``, ``x``, ``y``); attributes as stored
        (JSON attributes stay strings; use :func:`read_attrs` for decoded ones).
    """
    import xarray as xr

    return xr.open_dataset(_existing(path), engine="h5netcdf", **kwargs)


def _normalise_index(
    index: int | slice | Sequence[int] | np.ndarray, n: int
) -> tuple[Any, np.ndarray | None]:
    """h5py selection for the sample axis, and the reordering that restores the requested order."""
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} is out of range for {n} samples")
        return slice(i % n, i % n + 1), None
    if isinstance(index, slice):
        return index, None
    idx = np.asarray(index, dtype=np.int64).ravel()
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"sample indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}")
    idx = idx % n
    # h5py point selections need strictly increasing indices; read the unique sorted ones and reorder.
    uniq, inverse = np.unique(idx, return_inverse=True)
    return uniq, inverse


def load_fields(
    path: str | Path,
    names: Iterable[str] | None = None,
    index: int | slice | Sequence[int] | np.ndarray = slice(None),
    stride: int = 1,
) -> dict[str, np.ndarray]:
    """Read fields with h5py, selecting samples and sub-sampling the spatial grid.

    Parameters
    ----------
    path : str or Path
        Data file.
    names : iterable of str, optional
        Field names (per-sample or static); default all fields.
    index : int, slice or sequence of int
        Samples to read (positions in this file, not global indices). An int keeps the sample axis
        with length 1.
    stride : int
        Keep every ``stride``-th point along the spatial axes ``x`` and ``y`` (not ``t``).

    Returns
    -------
    dict of str to ndarray (float32)
        Per-sample fields of shape ``(n_selected, *spatial)``; static fields without the sample axis.
    """
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    with h5py.File(_existing(path), "r") as f:
        available = [k for k, d in f.items() if isinstance(d, h5py.Dataset) and not d.is_scale]
        if names is None:
            names = available
        out = {}
        for name in names:
            if name not in available:
                raise KeyError(f"unknown field {name!r} in {path}; fields: {', '.join(sorted(available))}")
            dset = f[name]
            dims = _field_dims(dset)
            sel: list[Any] = [slice(None, None, stride) if d in ("x", "y") else slice(None) for d in dims]
            inverse = None
            if dims[0] == SAMPLE_DIM:
                sel[0], inverse = _normalise_index(index, dset.shape[0])
            data = dset[tuple(sel)]
            if inverse is not None:
                data = data[inverse]
            out[name] = np.asarray(data, dtype=np.float32)
        return out


# ---------------------------------------------------------------------------- shards
def combine_shards(shard_paths: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    """Join finished shards into one file whose per-sample fields are HDF5 virtual datasets.

    Parameters
    ----------
    shard_paths : sequence of str or Path
        Finished shard files of one data set, in any order; together they must cover samples
        ``0 .. n_samples_total - 1`` contiguously.
    out : str or Path
        Combined file. Shard locations are stored relative to its directory when possible, so the
        directory can be moved as a whole.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``; ``xarray`` and h5py read it like an ordinary data file (the shards must stay).
    """
    out = Path(out)
    if not shard_paths:
        raise ValueError("shard_paths must name at least one shard, got none")
    if out.exists() and not overwrite:
        raise FileExistsError(f"out {out} already exists; pass overwrite=True to replace it")
    infos = []
    for p in shard_paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(
                f"shard {p} does not exist (unfinished shards are named {partial_path(p)})"
            )
        if p.resolve() == out.resolve():
            raise ValueError(f"out {out} must differ from the shard files")
        attrs = read_attrs(p)
        if attrs.get("n_complete") != attrs.get("n_samples"):
            raise ValueError(
                f"shard {p} is incomplete: {attrs.get('n_complete')} of {attrs.get('n_samples')}"
            )
        infos.append((int(attrs.get("sample_start", 0)), p, attrs))
    infos.sort(key=lambda item: item[0])
    first = infos[0][2]
    expected = {k: first.get(k) for k in _IDENTITY_ATTRS}
    pos = 0
    for start, p, attrs in infos:
        _check_identity(
            attrs, expected, f"shard {p} is incompatible with {infos[0][1]}", "combine shards of one run"
        )
        if start != pos:
            what = (
                "overlaps the previous shard" if start < pos else f"leaves samples {pos}..{start - 1} missing"
            )
            raise ValueError(f"shard {p} starts at sample {start} and {what}")
        pos += int(attrs["n_samples"])
    n_total = int(first.get("n_samples_total", pos))
    if pos != n_total:
        raise ValueError(
            f"shards cover samples 0..{pos - 1} but the data set has n_samples_total = {n_total}"
        )

    tmp = partial_path(out)
    with h5py.File(infos[0][1], "r") as ref:
        fields, static, coords = {}, {}, {}
        for name, dset in ref.items():
            if dset.is_scale:
                if name != SAMPLE_DIM:
                    coords[name] = dset[()]
                continue
            dims = _field_dims(dset)
            if dims[0] == SAMPLE_DIM:
                fields[name] = (dims, dset.shape[1:])
            else:
                static[name] = (dims, dset[()])
    for _, p, _ in infos[1:]:
        with h5py.File(p, "r") as f:
            for name, (_, shape) in fields.items():
                if name not in f or f[name].shape[1:] != shape:
                    raise ValueError(f"shard {p}: field {name!r} missing or not of shape (*, {shape})")
            for name, values in coords.items():
                if name not in f or not np.array_equal(f[name][()], values):
                    raise ValueError(f"shard {p}: coordinate {name!r} differs from {infos[0][1]}")

    try:
        with h5py.File(tmp, "w") as f:
            attrs = dict(first)
            attrs.update(
                n_samples=n_total,
                n_complete=n_total,
                sample_start=0,
                shard="",
                shards=[_source_name(p, out) for _, p, _ in infos],
                created=_now(),
            )
            for key, value in attrs.items():
                f.attrs[key] = _json(value) if key in _JSON_ATTRS else value
            scales = _write_coords(f, coords, np.arange(n_total))
            for name, (dims, shape) in fields.items():
                layout = h5py.VirtualLayout(shape=(n_total, *shape), dtype="f4")
                for start, p, a in infos:
                    n = int(a["n_samples"])
                    layout[start : start + n] = h5py.VirtualSource(
                        _source_name(p, out), name, shape=(n, *shape)
                    )
                # Missing shard files then read as NaN rather than as plausible zeros.
                dset = f.create_virtual_dataset(name, layout, fillvalue=np.float32(np.nan))
                _attach(dset, dims, scales)
            for name, (dims, values) in static.items():
                _attach(f.create_dataset(name, data=values), dims, scales)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _source_name(shard: Path, out: Path) -> str:
    # HDF5 resolves a relative source name against the virtual file's directory.
    try:
        return os.path.relpath(shard.resolve(), out.resolve().parent)
    except ValueError:  # different drives on Windows
        return str(shard.resolve())
