"""Lightning DataModule for operator learning: HDF5 files per split, generated on demand, read lazily."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neurop.data.normalize import ChannelStats

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def _canonical(value: Any) -> Any:
    """JSON-friendly canonical form: ints that are whole floats stay floats, tuples become lists."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def params_hash(params: Mapping[str, Any], seed: int) -> str:
    """Six hex digits identifying generator parameters and the data seed."""
    blob = json.dumps({"params": _canonical(params), "seed": int(seed)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:6]


def dataset_filename(pde: str, params: Mapping[str, Any], split: str, n_samples: int, seed: int) -> str:
    """Readable, unambiguous file name, e.g. ``darcy_r421_s5_n1000_3fa2c1_train.h5``.

    Resolution and stride (when the generator has them) and the sample count are spelt out; every
    other parameter and the seed enter through the hash.
    """
    parts = [pde]
    if "resolution" in params:
        parts.append(f"r{params['resolution']}")
    if "stride" in params:
        parts.append(f"s{params['stride']}")
    parts += [f"n{n_samples}", params_hash(params, seed), split]
    return "_".join(parts) + ".h5"


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    return a == b


def _override_value(value: Any) -> str:
    """A value written as a Hydra command-line override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


def _parse_select(spec: Mapping[str, Any], role: str) -> tuple[str, int | tuple[int, int] | None]:
    """``{field: u, time: 0}`` -> ("u", 0); ``{field: w, time: [0, 10]}`` -> ("w", (0, 10))."""
    unknown = set(spec) - {"field", "time"}
    if unknown or "field" not in spec:
        raise ValueError(
            f"data.{role} must be a mapping with keys 'field' and optionally 'time', got {dict(spec)!r}"
        )
    time = spec.get("time")
    if time is None or isinstance(time, int):
        return str(spec["field"]), time
    if isinstance(time, (list, tuple)) and len(time) == 2 and all(isinstance(t, int) for t in time):
        return str(spec["field"]), (int(time[0]), int(time[1]))
    raise ValueError(f"data.{role}.time must be null, an int or [start, stop], got {time!r}")


class H5FieldPairs(Dataset):
    """(input, output) pairs read lazily from one HDF5 file, strided in space.

    The file is opened on first access inside the process that reads (each DataLoader worker opens
    its own handle; a handle is never carried across a fork).

    Parameters
    ----------
    path : str
        HDF5 file with per-sample fields, sample axis first.
    input, output : dict
        Field selections ``{field: name, time: null | int | [start, stop]}``. A time index gives one
        channel; a time range gives ``stop − start`` channels; fields without a time axis give one.
    dim : int
        Number of spatial axes (the trailing axes of each field).
    n_samples : int
        Use the first ``n_samples`` samples.
    stride : int
        Keep every ``stride``-th grid point along each spatial axis.

    Items are ``(x, y)`` float32 tensors of shapes (C_in, *spatial) and (C_out, *spatial).
    """

    def __init__(
        self,
        path: str,
        input: Mapping[str, Any],
        output: Mapping[str, Any],
        dim: int,
        n_samples: int,
        stride: int = 1,
    ) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.path = str(path)
        self.dim = dim
        self.stride = stride
        self.n_samples = n_samples
        self._select = {"input": _parse_select(input, "input"), "output": _parse_select(output, "output")}
        self._file: h5py.File | None = None
        self._pid: int | None = None
        with h5py.File(self.path, "r") as f:
            self._layout = {role: self._check(f, role) for role in self._select}
            available = f[self._select["input"][0]].shape[0]
        if available < n_samples:
            raise ValueError(f"{self.path} holds {available} samples but {n_samples} are requested")

    def _check(self, f: h5py.File, role: str) -> tuple[int, int | None, tuple[int, ...]]:
        """Return (channels, time length or None, stored spatial shape) for ``role``."""
        name, time = self._select[role]
        if name not in f:
            fields = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
            raise KeyError(f"field {name!r} (data.{role}.field) not in {self.path}; fields: {fields}")
        shape = f[name].shape
        if len(shape) == 1 + self.dim:
            if time is not None:
                raise ValueError(
                    f"field {name!r} has no time axis (shape {shape}) but data.{role}.time={time}"
                )
            return 1, None, tuple(shape[1:])
        if len(shape) != 2 + self.dim:
            raise ValueError(
                f"field {name!r} has shape {shape}; expected (sample, [t,] {self.dim} spatial axes)"
            )
        n_t = shape[1]
        if time is None:
            raise ValueError(f"field {name!r} has a time axis of length {n_t}: set data.{role}.time")
        if isinstance(time, int):
            if not -n_t <= time < n_t:
                raise ValueError(f"data.{role}.time={time} is out of range for {n_t} stored times")
            return 1, n_t, tuple(shape[2:])
        start, stop = (t if t >= 0 else n_t + t for t in time)
        if not 0 <= start < stop <= n_t:
            raise ValueError(
                f"data.{role}.time={list(time)} is not a non-empty range within {n_t} stored times"
            )
        return stop - start, n_t, tuple(shape[2:])

    @property
    def in_channels(self) -> int:
        return self._layout["input"][0]

    @property
    def out_channels(self) -> int:
        return self._layout["output"][0]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Grid shape after striding."""
        return tuple(-(-n // self.stride) for n in self._layout["input"][2])

    def __len__(self) -> int:
        return self.n_samples

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def read(self, role: Literal["input", "output"], index: int | slice) -> np.ndarray:
        """Read the selection for ``role`` at sample ``index`` -> (C, *spatial) or (N, C, *spatial)."""
        name, time = self._select[role]
        _, n_t, _ = self._layout[role]
        space = (slice(None, None, self.stride),) * self.dim
        if n_t is None:
            sel: tuple[Any, ...] = (index, *space)
        elif isinstance(time, int):
            sel = (index, time % n_t, *space)
        else:
            start, stop = (t if t >= 0 else n_t + t for t in time)
            sel = (index, slice(start, stop), *space)
        arr = np.asarray(self._handle()[name][sel], dtype=np.float32)
        if n_t is None or isinstance(time, int):
            arr = np.expand_dims(arr, 0 if isinstance(index, int) else 1)
        return arr

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < self.n_samples:
            raise IndexError(f"index {i} out of range for {self.n_samples} samples")
        return torch.from_numpy(self.read("input", i)), torch.from_numpy(self.read("output", i))

    def channel_stats(self, chunk: int = 64) -> tuple[ChannelStats, ChannelStats]:
        """Per-channel statistics of inputs and outputs, read in chunks of samples."""
        stats_in, stats_out = ChannelStats(self.in_channels), ChannelStats(self.out_channels)
        for start in range(0, self.n_samples, chunk):
            sl = slice(start, min(start + chunk, self.n_samples))
            stats_in.update(torch.from_numpy(self.read("input", sl)))
            stats_out.update(torch.from_numpy(self.read("output", sl)))
        return stats_in, stats_out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


AUGMENTATIONS = ("dihedral",)


class DihedralAugment(Dataset):
    """Training pairs under a random symmetry of the square, the same one for input and output.

    Each item is transformed by one of the 8 elements of the dihedral group D4 (rotations by multiples
    of 90° and their reflections), drawn with the global torch RNG (which Lightning seeds per worker).
    This is exact data augmentation for problems whose solution operator commutes with these maps:
    scalar fields on a square grid, an equation and boundary conditions invariant under them (e.g.
    Darcy flow −∇·(a∇u) = const with u = 0 on the boundary: the 5-point solver commutes with them too),
    and an input distribution invariant under them. It is wrong for vector or pseudo-scalar fields
    (e.g. vorticity changes sign under a reflection) and for non-square domains.
    """

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    @staticmethod
    def transform(t: Tensor, k: int) -> Tensor:
        """Element ``k`` (0-7) of D4 on the last two axes: ``k % 4`` quarter turns, then a flip if k >= 4."""
        t = torch.rot90(t, k % 4, dims=(-2, -1))
        return t.flip(-1) if k >= 4 else t

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.base[i]
        k = int(torch.randint(8, ()).item())
        return self.transform(x, k).contiguous(), self.transform(y, k).contiguous()


class OperatorDataModule(L.LightningDataModule):
    """Train/val/test data for learning ``input field -> output field`` of one PDE.

    Each split lives in its own HDF5 file under ``dir`` whose name is derived from the PDE, its
    generator parameters, the sample count and the seed (:func:`dataset_filename`); the splits use
    different per-sample seeds (the generator derives them from ``seed`` and the split name). A
    missing file is generated in :meth:`prepare_data` when ``generate_if_missing``.

    Parameters
    ----------
    pde : str
        Name of the PDE generator (``neurop.pdes.PDES``).
    dim : int
        Spatial dimension of the fields.
    generator : dict
        Keyword arguments of the PDE generator (the pde config's ``generator:`` section).
    dir : str
        Directory of the data files.
    n_train, n_val, n_test : int
        Samples per split.
    input, output : dict
        Field selections, e.g. ``{field: u, time: 0}`` -> ``{field: u, time: -1}`` (see
        :class:`H5FieldPairs`).
    seed : int
        Data seed (per-split seeds are derived from it).
    stride : int
        Load-time sub-sampling of the stored grid: the training (and validation) resolution.
    test_strides : list of int
        Extra test resolutions, each as a load-time stride; each gets its own test dataloader.
    batch_size, num_workers : int
        DataLoader settings (the evaluation loaders use the same batch size).
    generate_if_missing : bool
        Generate missing files in ``prepare_data``; otherwise raise with the command that makes them.
    generator_overrides : dict or None
        Values replacing entries of ``generator`` for these files (e.g. a smaller solve grid for quick
        runs); ``None`` uses ``generator`` as is.
    generate_device : {"auto", "cpu", "cuda"}
        Where missing data are generated (``auto``: CUDA when available).
    generate_batch_size : int
        Samples solved together while generating.
    periodic : bool
        Whether the grid is periodic (used by the task's derivative-based losses).
    files : dict or None
        Explicit data files ``{train: path, val: path, test: path}`` instead of the generated ones, e.g.
        files imported with ``scripts/convert.py``; they are never generated and their generator
        parameters are not compared with ``generator`` (only the pde name is checked).
    augment : {None, "dihedral"}
        Random symmetry of the square applied to each training pair (:class:`DihedralAugment`; 2-D,
        square grids, problems invariant under it, such as Darcy flow). Validation and test data are
        never augmented.
    """

    def __init__(
        self,
        pde: str,
        dim: int,
        generator: Mapping[str, Any],
        dir: str,
        n_train: int,
        n_val: int,
        n_test: int,
        input: Mapping[str, Any],
        output: Mapping[str, Any],
        seed: int = 0,
        stride: int = 1,
        test_strides: Sequence[int] = (),
        batch_size: int = 20,
        num_workers: int = 0,
        generate_if_missing: bool = True,
        generator_overrides: Mapping[str, Any] | None = None,
        generate_device: Literal["auto", "cpu", "cuda"] = "auto",
        generate_batch_size: int = 16,
        periodic: bool = False,
        files: Mapping[str, str] | None = None,
        augment: Literal["dihedral"] | None = None,
    ) -> None:
        super().__init__()
        for key, value in {
            "n_train": n_train,
            "n_val": n_val,
            "n_test": n_test,
            "batch_size": batch_size,
        }.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{key} must be an integer >= 1, got {value!r}")
        for s in [stride, *test_strides]:
            if not isinstance(s, int) or s < 1:
                raise ValueError(f"data.stride and data.test_strides must be integers >= 1, got {s!r}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        if generate_device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"data.generate_device must be 'auto', 'cpu' or 'cuda', got {generate_device!r}")
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"data.augment must be null or one of {list(AUGMENTATIONS)}, got {augment!r}")
        if augment == "dihedral" and int(dim) != 2:
            raise ValueError(
                f"data.augment='dihedral' needs 2-D fields on a square grid, but the pde has dim={dim}"
            )
        _parse_select(input, "input")
        _parse_select(output, "output")
        self.save_hyperparameters(logger=False)
        self.pde = pde
        self.dim = int(dim)
        self.base_generator = dict(generator)
        self.overrides = dict(generator_overrides or {})
        unknown = set(self.overrides) - set(self.base_generator)
        if unknown:
            raise ValueError(
                f"data.generator_overrides has keys {sorted(unknown)} that are not generator parameters; "
                f"known: {sorted(self.base_generator)}"
            )
        self.generator_params = {**self.base_generator, **self.overrides}
        self.dir = Path(dir).expanduser().resolve()
        self.n = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = int(seed)
        self.input_spec = dict(input)
        self.output_spec = dict(output)
        self.stride = int(stride)
        # The training stride is always tested; extra strides add resolutions, duplicates dropped.
        self.test_strides = list(dict.fromkeys([self.stride, *map(int, test_strides)]))
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.generate_if_missing = generate_if_missing
        self.generate_device = generate_device
        self.generate_batch_size = generate_batch_size
        self.periodic = periodic
        self.augment = augment
        self.files: dict[str, Path] | None = None
        if files is not None:
            if set(files) != set(SPLITS):
                raise ValueError(
                    f"data.files must name one file per split {list(SPLITS)}, got keys {sorted(files)}"
                )
            self.files = {split: Path(str(files[split])).expanduser().resolve() for split in SPLITS}
        self.datasets: dict[str, H5FieldPairs] = {}
        self.test_sets: list[H5FieldPairs] = []
        self.input_stats: tuple[list[float], list[float]] | None = None
        self.output_stats: tuple[list[float], list[float]] | None = None

    # -- files --------------------------------------------------------------------------------------
    def path(self, split: Split) -> Path:
        """Absolute path of the file for ``split``."""
        if self.files is not None:
            return self.files[split]
        name = dataset_filename(self.pde, self.generator_params, split, self.n[split], self.seed)
        return self.dir / name

    def generate_command(self, split: Split) -> str:
        """The ``scripts/generate.py`` command that writes the file for ``split``."""
        words = [
            "python scripts/generate.py",
            f"pde={self.pde}",
            f"split={split}",
            f"n_samples={self.n[split]}",
        ]
        words.append(f"seed={self.seed}")
        for key, value in self.overrides.items():
            if key in ("resolution", "stride"):
                words.append(f"{key}={_override_value(value)}")
            else:
                words.append(f"pde.generator.{key}={_override_value(value)}")
        words.append(f"out={self.path(split)}")
        return " ".join(words)

    def _check_file(self, split: Split) -> None:
        """Raise if the file for ``split`` was made with other parameters than the config's."""
        path = self.path(split)
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
        problems = []
        stored_pde = attrs.get("pde")
        if stored_pde is not None and str(stored_pde) != self.pde:
            problems.append(f"pde: file {stored_pde!r} vs config {self.pde!r}")
        if self.files is not None:
            # Imported files carry their source's settings, not the generator's: only the pde must match.
            if problems:
                raise ValueError(
                    f"data file {path} (data.files.{split}) is not {self.pde} data ({problems[0]})"
                )
            return
        stored: dict[str, Any] = {}
        if "params" in attrs:
            try:
                stored = dict(json.loads(attrs["params"]))
            except (TypeError, ValueError):
                problems.append("attribute 'params' is not a JSON object")
        # Only keys present on both sides are compared: the stored `params` are the generator's
        # physical parameters, a subset of its keyword arguments; solver settings (whose stored form
        # may differ, e.g. dt null -> "adaptive") are covered by the file name's hash instead.
        for key, value in self.generator_params.items():
            if key in stored and not _values_equal(_canonical(value), stored[key]):
                problems.append(f"{key}: file {stored[key]!r} vs config {value!r}")
        if "seed" in attrs and int(attrs["seed"]) != self.seed:
            problems.append(f"seed: file {int(attrs['seed'])} vs config {self.seed}")
        if "split" in attrs and str(attrs["split"]) != split:
            problems.append(f"split: file {attrs['split']!r} vs {split!r}")
        if problems:
            raise ValueError(
                f"data file {path} does not match the config ({'; '.join(problems)}). Delete it or point "
                f"data.dir elsewhere, then regenerate with: {self.generate_command(split)}"
            )

    def prepare_data(self) -> None:
        """Generate missing split files (rank 0 only) and check existing ones against the config."""
        for split in SPLITS:
            path = self.path(split)
            if path.exists():
                self._check_file(split)
                continue
            if self.files is not None:
                raise FileNotFoundError(
                    f"data file {path} (data.files.{split}) does not exist; import data with "
                    "scripts/convert.py or fix the path"
                )
            if not self.generate_if_missing:
                raise FileNotFoundError(
                    f"data file {path} is missing and data.generate_if_missing=false. Create it with:\n"
                    f"  {self.generate_command(split)}"
                )
            from neurop.data.generate import generate_dataset

            device = self.generate_device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self.dir.mkdir(parents=True, exist_ok=True)
            generate_dataset(
                self.pde,
                dict(self.generator_params),
                self.n[split],
                path,
                split=split,
                seed=self.seed,
                device=device,
                batch_size=self.generate_batch_size,
                progress=True,
                config={"pde": self.pde, "generator": self.generator_params, "by": "OperatorDataModule"},
            )

    # -- datasets -----------------------------------------------------------------------------------
    def _dataset(self, split: Split, stride: int) -> H5FieldPairs:
        path = self.path(split)
        if not path.exists():
            raise FileNotFoundError(
                f"data file {path} is missing; run prepare_data() (data.generate_if_missing=true) or: "
                f"{self.generate_command(split)}"
            )
        return H5FieldPairs(str(path), self.input_spec, self.output_spec, self.dim, self.n[split], stride)

    def setup(self, stage: str | None = None) -> None:
        """Open the datasets needed for ``stage`` and compute normalisation statistics for fitting."""
        if stage in ("fit", None) and "train" not in self.datasets:
            self._check_file("train")
            self._check_file("val")
            self.datasets["train"] = self._dataset("train", self.stride)
            self.datasets["val"] = self._dataset("val", self.stride)
            stats_in, stats_out = self.datasets["train"].channel_stats()
            self.input_stats = (stats_in.mean.tolist(), stats_in.std.tolist())
            self.output_stats = (stats_out.mean.tolist(), stats_out.std.tolist())
        if stage in ("validate",) and "val" not in self.datasets:
            self.datasets["val"] = self._dataset("val", self.stride)
        if stage in ("test", "predict", None) and not self.test_sets:
            self._check_file("test")
            self.test_sets = [self._dataset("test", s) for s in self.test_strides]

    @property
    def in_channels(self) -> int:
        """Input channels of the configured selection (after :meth:`setup`)."""
        return self._any().in_channels

    @property
    def out_channels(self) -> int:
        """Output channels of the configured selection (after :meth:`setup`)."""
        return self._any().out_channels

    def _any(self) -> H5FieldPairs:
        for ds in [*self.datasets.values(), *self.test_sets]:
            return ds
        raise RuntimeError("call setup() before asking for channel counts")

    @staticmethod
    def resolution_label(shape: Sequence[int]) -> str:
        """``(33, 33)`` -> ``"33"``, ``(256,)`` -> ``"256"``, ``(32, 64)`` -> ``"32x64"``."""
        return str(shape[0]) if len(set(shape)) == 1 else "x".join(map(str, shape))

    @property
    def test_resolutions(self) -> list[str]:
        """Labels of the test dataloaders in order, e.g. ``["33", "65"]``."""
        return [self.resolution_label(ds.spatial_shape) for ds in self.test_sets]

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        if self.augment == "dihedral":
            shape = train.spatial_shape
            if len(set(shape)) != 1:
                raise ValueError(
                    f"data.augment='dihedral' needs a square grid, got training grid {list(shape)}"
                )
            return self._loader(DihedralAugment(train), shuffle=True)
        return self._loader(train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, shuffle=False) for ds in self.test_sets]

    def teardown(self, stage: str | None = None) -> None:
        for ds in [*self.datasets.values(), *self.test_sets]:
            ds.close()
