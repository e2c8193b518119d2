"""Prediction on xarray objects: the input's dimensions and coordinates carried through to the output."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from neurop.inference.model import resample_coord

if TYPE_CHECKING:
    import xarray as xr

    from neurop.inference.model import InferenceModel

__all__ = ["predict_xarray"]


def _predict_dataarray(
    model: InferenceModel,
    da: xr.DataArray,
    batch_size: int,
    resolution: int | Sequence[int] | None,
    device: str | torch.device | None,
) -> xr.DataArray:
    import xarray as xr

    d = model.dim
    if da.ndim < d:
        raise ValueError(
            f"model {model.name!r} needs {d} spatial dimensions (the last ones), got DataArray dims {da.dims}"
        )
    spatial = list(da.dims[da.ndim - d :])
    lead = list(da.dims[: da.ndim - d])
    x = torch.from_numpy(np.ascontiguousarray(da.values, dtype=np.float32))
    sample_dim: Any = None
    if not lead:
        if model.in_channels != 1:
            raise ValueError(
                f"model {model.name!r} takes {model.in_channels} input channels; a DataArray with only the "
                f"spatial dims {da.dims} gives 1"
            )
        x = x[None, None]
    elif len(lead) == 1:
        if model.in_channels == 1:
            sample_dim, x = lead[0], x[:, None]
        elif da.shape[0] == model.in_channels:
            x = x[None]
        else:
            raise ValueError(
                f"model {model.name!r} takes {model.in_channels} input channels; DataArray dims {da.dims} "
                f"with shape {da.shape} have no dimension of that length before the spatial ones"
            )
    elif len(lead) == 2:
        sample_dim = lead[0]
        if da.shape[1] != model.in_channels:
            raise ValueError(
                f"model {model.name!r} takes {model.in_channels} input channels but dimension {lead[1]!r} "
                f"of the DataArray has length {da.shape[1]}"
            )
    else:
        raise ValueError(
            f"expected DataArray dims ([sample, [channel,]] *spatial[{d}]) for model {model.name!r}, "
            f"got {da.dims}"
        )

    y = model.predict_batch(x, batch_size=batch_size, resolution=resolution, device=device).cpu().numpy()
    grid = y.shape[2:]
    coords: dict[Any, Any] = {}
    for dim, n in zip(spatial, grid, strict=True):
        if dim in da.coords:
            values = da.coords[dim].values
            coords[dim] = (dim, resample_coord(values, n, model.periodic) if n != len(values) else values)
    if sample_dim is not None and sample_dim in da.coords:
        coords[sample_dim] = da.coords[sample_dim]
    # A scalar time coordinate is the input's time; it is dropped when the output is at another time.
    shifted = model.pde_config["input"].get("time") != model.pde_config["output"].get("time")
    for name, coord in da.coords.items():
        if coord.ndim == 0 and name not in coords and not (name == "t" and shifted):
            coords[name] = coord
    dims: list[Any] = ([sample_dim] if sample_dim is not None else []) + (
        ["channel"] if model.out_channels > 1 else []
    )
    data = y if sample_dim is not None else y[0]
    if model.out_channels == 1:
        data = data[:, 0] if sample_dim is not None else data[0]
    attrs = {"model": model.name, "pde": model.pde}
    return xr.DataArray(data, dims=[*dims, *spatial], coords=coords, name=model.output_field, attrs=attrs)


def predict_xarray(
    model: InferenceModel,
    a: xr.DataArray | xr.Dataset,
    *,
    batch_size: int = 32,
    resolution: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
) -> xr.DataArray | xr.Dataset:
    """Predict on an xarray object; see :meth:`InferenceModel.predict`.

    A ``Dataset`` is searched for the model's input field; its time selection (``{field, time}`` of
    the training data) is applied on the ``t`` dimension, and the output carries the output
    selection's time as a scalar ``t`` coordinate.
    """
    import xarray as xr

    if isinstance(a, xr.DataArray):
        return _predict_dataarray(model, a, batch_size, resolution, device)
    if not isinstance(a, xr.Dataset):
        raise TypeError(f"expected an xarray DataArray or Dataset, got {type(a).__name__}")
    sel_in, sel_out = model.pde_config["input"], model.pde_config["output"]
    name = model.input_field
    if name not in a.data_vars:
        raise ValueError(
            f"model {model.name!r} reads field {name!r} but the Dataset has variables {sorted(a.data_vars)}"
        )
    da = a[name]
    time_in = sel_in.get("time")
    if time_in is not None:
        if "t" not in da.dims:
            raise ValueError(
                f"field {name!r} has no 't' dimension (dims {da.dims}) for time selection {time_in}"
            )
        da = da.isel(t=slice(*time_in) if isinstance(time_in, (list, tuple)) else int(time_in))
    out = _predict_dataarray(model, da, batch_size, resolution, device)
    time_out = sel_out.get("time")
    if isinstance(time_out, int) and "t" in a.coords and a.coords["t"].ndim == 1:
        out = out.assign_coords(t=a.coords["t"][time_out].values)
    elif "t" in out.coords and out.coords["t"].ndim == 0:
        out = out.drop_vars("t")
    attrs = {k: v for k, v in a.attrs.items() if k in ("pde", "params")}
    attrs.update(model=model.name)
    return xr.Dataset({model.output_field: out}, attrs=attrs)
