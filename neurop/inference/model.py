"""An inference-ready operator (network plus normalisers, in eval mode) and resampling to any grid."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurop.data.normalize import UnitGaussianNormalizer
from neurop.models import MODELS

__all__ = ["InferenceModel", "resample", "resample_coord", "selection_channels"]

#: Keys of the ``model`` section of an inference config.
MODEL_KEYS = ("name", "kwargs", "in_channels", "out_channels", "normalize_input", "normalize_output")
#: Keys of the ``pde`` section that inference needs (``data`` and ``generator`` are provenance).
PDE_KEYS = ("name", "dim", "input", "output", "periodic")


def selection_channels(selection: Mapping[str, Any]) -> int | None:
    """Channels a field selection gives: ``stop − start`` for a time range, else 1.

    Parameters
    ----------
    selection : dict
        ``{field: name, time: null | int | [start, stop]}`` as in the pde configs' ``data.input``.

    Returns
    -------
    int or None
        ``None`` for a range with a negative end, which depends on the file's number of times.
    """
    time = selection.get("time")
    if isinstance(time, (list, tuple)):
        if len(time) != 2:
            raise ValueError(f"a time selection must be null, an int or [start, stop], got {time!r}")
        start, stop = int(time[0]), int(time[1])
        return stop - start if start >= 0 and stop >= 0 else None
    return 1


def resample_coord(values: np.ndarray, n: int, periodic: bool) -> np.ndarray:
    """1-D coordinates of the same domain sampled with ``n`` points.

    Parameters
    ----------
    values : ndarray, shape (m,)
        Uniform coordinates: ``[x0, x0 + L/m, ...)`` when ``periodic`` (end point excluded), else
        ``[x0, ..., x1]`` with both ends included.
    n : int
        New number of points.
    periodic : bool
        Whether the end point is excluded.

    Returns
    -------
    ndarray, shape (n,), float64
    """
    values = np.asarray(values, dtype=np.float64)
    m = values.shape[0]
    if n == m:
        return values.copy()
    if m < 2:
        raise ValueError(f"cannot resample a coordinate with {m} point(s)")
    if periodic:
        length = (values[1] - values[0]) * m
        return values[0] + length * np.arange(n) / n
    return np.linspace(values[0], values[-1], n)


def _resample_axis(x: Tensor, axis: int, n: int, periodic: bool) -> Tensor:
    m = x.shape[axis]
    if n == m:
        return x
    index: list[Any] = [slice(None)] * x.ndim
    if periodic and m % n == 0:
        index[axis] = slice(None, None, m // n)
        return x[tuple(index)]
    if not periodic and (m - 1) % (n - 1) == 0:
        index[axis] = slice(None, None, (m - 1) // (n - 1))
        return x[tuple(index)]
    if periodic:
        # Trigonometric interpolation: keep (or zero-pad) the shared wavenumbers, rescale for the new n.
        spec = torch.fft.rfft(x.to(torch.float64), dim=axis)
        k = min(m, n) // 2 + 1
        spec = spec.narrow(axis, 0, min(k, spec.shape[axis]))
        if n > m and m % 2 == 0:
            # The input's Nyquist coefficient stands for the pair ±m/2; on the finer grid they are distinct
            # modes, so it is split between them (irfft adds the conjugate one).
            spec = spec.clone()
            spec.select(axis, m // 2).mul_(0.5)
        out = torch.fft.irfft(spec, n=n, dim=axis) * (n / m)
        return out.to(x.dtype)
    # Boundary-included grids: linear interpolation through the end points.
    moved = x.movedim(axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, m)
    out = F.interpolate(flat, size=n, mode="linear", align_corners=True)
    return out.reshape(*shape[:-1], n).movedim(-1, axis)


def resample(x: Tensor, size: Sequence[int], periodic: bool) -> Tensor:
    """Resample fields on a uniform grid to another number of points per axis.

    Grids that are an integer sub-sampling of the input are taken exactly (every k-th point); others
    are interpolated: trigonometrically on periodic grids, linearly on grids that include both end
    points (e.g. Darcy's).

    Parameters
    ----------
    x : Tensor, shape (B, C, *spatial)
    size : sequence of int
        New grid, one entry per spatial axis, each ``>= 2``.
    periodic : bool
        Whether the grid is periodic (end point excluded).

    Returns
    -------
    Tensor, shape (B, C, *size)
    """
    dim = x.ndim - 2
    size = [int(s) for s in size]
    if len(size) != dim:
        raise ValueError(f"resolution must have {dim} entries (one per spatial axis), got {size}")
    for s in size:
        if s < 2:
            raise ValueError(f"resolution entries must be >= 2, got {size}")
    for axis, n in enumerate(size):
        x = _resample_axis(x, axis + 2, n, periodic)
    return x.contiguous()


def _check_section(section: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in section]
    if missing:
        raise ValueError(f"{what} section is missing keys {missing}; it has {sorted(section)}")


class InferenceModel(nn.Module):
    """A trained operator ready for prediction: network, normalisers and what it was trained on.

    Built by :func:`neurop.load`; it is in eval mode with gradients disabled. ``model(x)`` is the raw
    forward (the same arithmetic as the training task's); :meth:`predict` accepts tensors, numpy arrays
    and xarray objects, any batch size and (for resolution-independent models such as FNO) any grid.

    Parameters
    ----------
    model : dict
        ``{name, kwargs, in_channels, out_channels, normalize_input, normalize_output}``: the registered
        network and its keyword arguments.
    pde : dict
        ``{name, dim, input, output, periodic, ...}``: the PDE, its spatial dimension, the field
        selections the model maps (``{field, time}``) and whether the grid is periodic. Extra keys
        (``generator``, ``data``) are kept as provenance.
    metrics : dict, optional
        Measured errors, e.g. ``{"test/rel_l2@33": 0.012}``.
    info : dict, optional
        Provenance (source, training recipe, export time, ...).
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        pde: Mapping[str, Any],
        metrics: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        _check_section(model, MODEL_KEYS, "model")
        _check_section(pde, PDE_KEYS, "pde")
        self.model_config = copy.deepcopy(dict(model))
        self.pde_config = copy.deepcopy(dict(pde))
        self.metrics = copy.deepcopy(dict(metrics or {}))
        self.info = copy.deepcopy(dict(info or {}))
        in_c, out_c = int(model["in_channels"]), int(model["out_channels"])
        dim = int(pde["dim"])
        kwargs = dict(model["kwargs"])
        # A model whose grid dimension or channels differ from its PDE's cannot have been trained on it.
        n_modes = kwargs.get("n_modes")
        if n_modes is not None and len(n_modes) != dim:
            raise ValueError(
                f"model/PDE mismatch: model.kwargs.n_modes={list(n_modes)} has {len(n_modes)} entries but "
                f"pde {pde['name']!r} has dim={dim}"
            )
        for role, key, channels in (("input", "in_channels", in_c), ("output", "out_channels", out_c)):
            expected = selection_channels(pde[role])
            if expected is not None and expected != channels:
                raise ValueError(
                    f"model/PDE mismatch: model.{key}={channels} but the pde {role} selection "
                    f"{dict(pde[role])} gives {expected} channel(s)"
                )
        self.net = MODELS.build(str(model["name"]), in_channels=in_c, out_channels=out_c, **kwargs)
        self.input_normalizer = UnitGaussianNormalizer(in_c) if model["normalize_input"] else None
        self.output_normalizer = UnitGaussianNormalizer(out_c) if model["normalize_output"] else None
        self.requires_grad_(False)
        self.eval()

    # -- description ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Short name (a shipped model's name, or the source it was loaded from)."""
        return str(self.info.get("name") or self.info.get("source") or self.model_config["name"])

    @property
    def dim(self) -> int:
        """Number of spatial axes."""
        return int(self.pde_config["dim"])

    @property
    def in_channels(self) -> int:
        return int(self.model_config["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.model_config["out_channels"])

    @property
    def pde(self) -> str:
        """Name of the PDE the model was trained on."""
        return str(self.pde_config["name"])

    @property
    def periodic(self) -> bool:
        return bool(self.pde_config["periodic"])

    @property
    def input_field(self) -> str:
        return str(self.pde_config["input"]["field"])

    @property
    def output_field(self) -> str:
        return str(self.pde_config["output"]["field"])

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def n_params(self) -> int:
        """Number of network parameters."""
        return sum(p.numel() for p in self.net.parameters())

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, pde={self.pde!r}, {self.input_field} -> {self.output_field}, "
            f"dim={self.dim}, channels={self.in_channels}->{self.out_channels}"
        )

    # -- prediction -----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Map inputs to outputs in physical units (normalise, network, de-normalise).

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)

        Returns
        -------
        Tensor, shape (B, out_channels, *spatial)
        """
        if self.input_normalizer is not None:
            x = self.input_normalizer.encode(x)
        y = self.net(x)
        if self.output_normalizer is not None:
            y = self.output_normalizer.decode(y)
        return y

    def _shape_error(self, shape: Sequence[int]) -> ValueError:
        c = self.in_channels
        allowed = (
            f"(batch, {c}, *spatial), ({c}, *spatial)"
            if c > 1
            else "(batch, 1, *spatial), (batch, *spatial), (*spatial)"
        )
        return ValueError(
            f"model {self.name!r} ({self.pde}, {self.dim}-D fields, {c} input channel(s)) expects input of "
            f"shape {allowed} with {self.dim} spatial axes of at least 2 points, got shape {tuple(shape)}"
        )

    def _as_batch(self, x: Tensor) -> tuple[Tensor, str]:
        """Add the missing batch/channel axes; return the batch and how to undo it."""
        d, c = self.dim, self.in_channels
        if x.ndim < d or min(x.shape[x.ndim - d :], default=0) < 2:
            raise self._shape_error(tuple(x.shape))
        if x.ndim == d + 2 and x.shape[1] == c:
            return x, "full"
        if x.ndim == d + 1:
            if c == 1:
                return x.unsqueeze(1), "no_channel"
            if x.shape[0] == c:
                return x.unsqueeze(0), "single"
        if x.ndim == d and c == 1:
            return x.reshape(1, 1, *x.shape), "single_no_channel"
        raise self._shape_error(tuple(x.shape))

    def _undo_batch(self, y: Tensor, how: str) -> Tensor:
        squeeze_channel = self.out_channels == 1 and how in ("no_channel", "single_no_channel")
        if how in ("single", "single_no_channel"):
            y = y[0]
            return y[0] if squeeze_channel else y
        return y[:, 0] if squeeze_channel else y

    def _size(self, resolution: int | Sequence[int] | None) -> list[int] | None:
        if resolution is None:
            return None
        if isinstance(resolution, (int, np.integer)):
            return [int(resolution)] * self.dim
        size = [int(r) for r in resolution]
        if len(size) != self.dim:
            raise ValueError(
                f"resolution must be an int or {self.dim} ints (one per spatial axis), got {list(resolution)}"
            )
        return size

    def predict_batch(
        self,
        x: Tensor,
        batch_size: int = 32,
        resolution: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
    ) -> Tensor:
        """Predict a channels-first batch, in chunks of ``batch_size``.

        Parameters
        ----------
        x : Tensor, shape (B, in_channels, *spatial)
        batch_size : int
            Samples per forward pass.
        resolution : int or sequence of int, optional
            Resample the inputs to this grid first (the output is on that grid).
        device : str or torch.device, optional
            Where to compute (default: the model's device); the result returns to ``x``'s device.

        Returns
        -------
        Tensor, shape (B, out_channels, *grid)
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels or min(x.shape[2:]) < 2:
            raise self._shape_error(tuple(x.shape))
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        size = self._size(resolution)
        if size is not None:
            x = resample(x, size, self.periodic)
        dev = self.device if device is None else torch.device(device)
        if dev != self.device:
            self.to(dev)
        dtype = next(self.net.parameters()).dtype
        with torch.inference_mode():
            if x.shape[0] <= batch_size:
                return self(x.to(dev, dtype)).to(x.device)
            chunks = [
                self(x[i : i + batch_size].to(dev, dtype)).to(x.device)
                for i in range(0, x.shape[0], batch_size)
            ]
        return torch.cat(chunks)

    def predict(
        self,
        a: Any,
        *,
        batch_size: int = 32,
        resolution: int | Sequence[int] | None = None,
        device: str | torch.device | None = None,
    ) -> Any:
        """Predict the output field for inputs of any supported type, at any resolution.

        Parameters
        ----------
        a : Tensor, ndarray, xarray.DataArray or xarray.Dataset
            Tensors and arrays: shape ``(B, C, *spatial)``; with one input channel also ``(B, *spatial)``
            or ``(*spatial)``; with several, also ``(C, *spatial)``. A ``DataArray`` has its spatial
            dimensions last (e.g. ``(sample, x, y)``), optionally a channel dimension before them.
            A ``Dataset`` (e.g. ``neurop.data.open_dataset(path)``) is searched for the model's input
            field and time selection.
        batch_size : int
            Samples per forward pass.
        resolution : int or sequence of int, optional
            Resample the inputs to this grid first (zero-shot super-resolution for FNO).
        device : str or torch.device, optional
            Where to compute (default: the model's device).

        Returns
        -------
        Same kind as ``a``
            Tensors give tensors (on ``a``'s device), arrays give float32 arrays, both with the
            axes of ``a`` (the channel axis dropped when ``a`` had none and there is one output
            channel). xarray inputs give a ``DataArray`` named after the output field (a
            ``Dataset`` holding it for a ``Dataset``) with the input's dimensions and coordinates, the
            spatial ones resampled when ``resolution`` is given.
        """
        module = type(a).__module__
        if isinstance(a, Tensor):
            x, how = self._as_batch(a)
            y = self.predict_batch(x, batch_size, resolution, device)
            return self._undo_batch(y, how)
        if isinstance(a, np.ndarray):
            x, how = self._as_batch(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
            y = self.predict_batch(x, batch_size, resolution, device)
            return self._undo_batch(y, how).numpy()
        if module.startswith("xarray"):
            from neurop.inference.xr import predict_xarray

            return predict_xarray(self, a, batch_size=batch_size, resolution=resolution, device=device)
        raise TypeError(
            "predict takes a torch.Tensor, numpy.ndarray, xarray.DataArray or xarray.Dataset, got "
            f"{type(a).__name__}"
        )
