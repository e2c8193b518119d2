"""Inference: safe checkpoint loading, export round trips, prediction on every input type, bad input."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import neurop
from neurop.data.store import DatasetWriter, partial_path
from neurop.inference import (
    CheckpointError,
    InferenceModel,
    InputFileError,
    evaluate,
    format_table,
    load_checkpoint,
    load_exported,
    predict_file,
    resample,
    resample_coord,
    write_exported,
)
from neurop.inference.cli import evaluate_main, predict_main
from neurop.pdes.base import FieldSpec
from neurop.tasks.operator import OperatorTask

S = 17  # Darcy-like grid (boundary included)
NX = 32  # Burgers-like periodic grid


def _task(dim: int = 2, in_channels: int = 1, seed: int = 0) -> OperatorTask:
    torch.manual_seed(seed)
    task = OperatorTask(
        model="fno",
        model_kwargs={"n_modes": [4] * dim, "hidden_channels": 8, "n_layers": 2, "projection_channels": 16},
        in_channels=in_channels,
        out_channels=1,
    )
    task.set_normalizer_stats(([7.5] * in_channels, [4.5] * in_channels), ([0.005], [0.004]))
    return task.eval()


DARCY_DM = {
    "pde": "darcy",
    "dim": 2,
    "generator": {"resolution": 33, "stride": 2, "tau": 3.0},
    "dir": "/nowhere",
    "n_train": 8,
    "n_val": 2,
    "n_test": 2,
    "input": {"field": "a"},
    "output": {"field": "u"},
    "seed": 0,
    "stride": 1,
    "test_strides": [],
    "batch_size": 4,
    "periodic": False,
}
BURGERS_DM = {
    **DARCY_DM,
    "pde": "burgers",
    "dim": 1,
    "generator": {"resolution": 64, "stride": 2},
    "input": {"field": "u", "time": 0},
    "output": {"field": "u", "time": -1},
    "periodic": True,
}


def _save_ckpt(task: OperatorTask, path: Path, dm: dict[str, Any], **extra: Any) -> Path:
    """A checkpoint with the layout Lightning writes (state_dict, hyper_parameters, datamodule ones)."""
    ckpt = {
        "epoch": 3,
        "global_step": 12,
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "datamodule_hyper_parameters": dm,
        **extra,
    }
    torch.save(ckpt, path)
    return path


@pytest.fixture
def darcy_ckpt(tmp_path: Path) -> tuple[OperatorTask, Path]:
    task = _task()
    return task, _save_ckpt(task, tmp_path / "darcy.ckpt", DARCY_DM)


@pytest.fixture
def burgers_ckpt(tmp_path: Path) -> tuple[OperatorTask, Path]:
    task = _task(dim=1)
    return task, _save_ckpt(task, tmp_path / "burgers.ckpt", BURGERS_DM)


def _darcy_file(path: Path, n: int = 5, s: int = S, pde: str = "darcy", with_u: bool = True) -> Path:
    rng = np.random.default_rng(0)
    a = np.where(rng.standard_normal((n, s, s)) > 0, 12.0, 3.0)
    g = np.linspace(0, 1, s)
    u = np.outer(g * (1 - g), g * (1 - g))[None] * (1 + 0.01 * a)
    fields = {"a": FieldSpec(("x", "y"), (s, s))}
    if with_u:
        fields["u"] = FieldSpec(("x", "y"), (s, s))
    w = DatasetWriter.open(
        path,
        pde=pde,
        params={"resolution": s},
        solver={"scheme": "test"},
        seed=0,
        split="test",
        n_samples=n,
        coords={"x": g, "y": g},
        fields=fields,
    )
    w.write(0, {"a": a, "u": u} if with_u else {"a": a})
    return w.finalize()


def _burgers_file(path: Path, n: int = 6) -> Path:
    x = np.arange(NX) / NX
    amp = np.random.default_rng(1).standard_normal((n, 1))
    u0 = amp * np.sin(2 * np.pi * x)[None] + 0.3
    u1 = 0.5 * u0 + 0.1
    w = DatasetWriter.open(
        path,
        pde="burgers",
        params={"resolution": NX},
        solver={"scheme": "test"},
        seed=0,
        split="test",
        n_samples=n,
        coords={"t": np.array([0.0, 1.0]), "x": x},
        fields={"u": FieldSpec(("t", "x"), (2, NX))},
    )
    w.write(0, {"u": np.stack([u0, u1], axis=1)})
    return w.finalize()


# -- resampling ------------------------------------------------------------------------------------
def test_resample_subsamples_exactly_and_interpolates_band_limited_fields():
    x = torch.arange(64, dtype=torch.float64) / 64
    f = (torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x))[None, None]
    assert torch.equal(resample(f, [16], periodic=True), f[..., ::4])
    for n in (40, 24, 100):  # not divisors: trigonometric interpolation is exact for these modes
        xn = torch.arange(n, dtype=torch.float64) / n
        exact = torch.sin(2 * math.pi * xn) + 0.5 * torch.cos(6 * math.pi * xn)
        assert torch.allclose(resample(f, [n], periodic=True)[0, 0], exact, atol=1e-12), n
    g = torch.linspace(0, 1, 33, dtype=torch.float64)
    lin = (2 * g[:, None] + 3 * g[None, :])[None, None]
    assert torch.equal(resample(lin, [17, 9], periodic=False), lin[..., ::2, ::4])
    g20 = torch.linspace(0, 1, 20, dtype=torch.float64)
    assert torch.allclose(resample(lin, [20, 20], periodic=False)[0, 0], 2 * g20[:, None] + 3 * g20[None, :])
    np.testing.assert_allclose(resample_coord(np.arange(8) / 8 * 2.0, 4, periodic=True), [0, 0.5, 1, 1.5])
    np.testing.assert_allclose(resample_coord(np.linspace(0, 1, 5), 3, periodic=False), [0, 0.5, 1])
    with pytest.raises(ValueError, match="resolution must have 2 entries"):
        resample(lin, [9], periodic=False)


# -- loading ---------------------------------------------------------------------------------------
def test_checkpoint_loads_with_identical_outputs(darcy_ckpt):
    task, path = darcy_ckpt
    model = neurop.load(path)
    assert isinstance(model, InferenceModel) and not model.training
    assert (model.pde, model.dim, model.input_field, model.output_field) == ("darcy", 2, "a", "u")
    assert model.info["training"]["epoch"] == 3
    x = torch.rand(3, 1, S, S) * 9 + 3
    with torch.no_grad():
        expected = task(x)
    assert torch.equal(model(x), expected)
    assert torch.equal(model.predict(x), expected)
    assert all(not p.requires_grad for p in model.parameters())


def test_export_round_trip_is_bitwise_identical(darcy_ckpt, tmp_path):
    _, path = darcy_ckpt
    model = load_checkpoint(path)
    out = write_exported(model, tmp_path / "exp", name="tiny", metrics={"test/rel_l2@17": 0.5})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    again = neurop.load(out)
    x = torch.rand(2, 1, S, S)
    assert torch.equal(again(x), model(x))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["normalizers"]["output"]["mean"] == [pytest.approx(0.005)]
    assert again.metrics == {"test/rel_l2@17": 0.5}
    card = (out / "README.md").read_text()
    assert "# tiny" in card and "`test/rel_l2@17` | 0.5" in card and "darcy" in card
    with pytest.raises(FileExistsError, match="already exists"):
        write_exported(model, out)
    write_exported(model, out, overwrite=True, name="tiny2")
    assert json.loads((out / "config.json").read_text())["name"] == "tiny2"


def test_pickled_object_checkpoint_is_refused(tmp_path):
    task = _task()
    path = _save_ckpt(task, tmp_path / "evil.ckpt", DARCY_DM, args=argparse.Namespace(lr=1))
    with pytest.raises(CheckpointError, match=r"pickled Python object \(argparse.Namespace\)"):
        neurop.load(path)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_damaged_checkpoint_is_refused(darcy_ckpt, tmp_path, damage):
    _, path = darcy_ckpt
    data = path.read_bytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(
        {"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"\x80\x02junk" * 50}[damage]
    )
    with pytest.raises(CheckpointError, match=r"bad.ckpt .*(truncated|corrupted|empty)"):
        neurop.load(bad)


def test_damaged_export_is_refused(darcy_ckpt, tmp_path):
    out = write_exported(load_checkpoint(darcy_ckpt[1]), tmp_path / "exp")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_exported(out)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_exported(out, verify=False)


def test_model_pde_mismatch_in_config_is_refused(darcy_ckpt, tmp_path):
    out = write_exported(load_checkpoint(darcy_ckpt[1]), tmp_path / "exp")
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["pde"]["dim"] = 1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"model/PDE mismatch: model.kwargs.n_modes=\[4, 4\] .* dim=1"):
        load_exported(out)
    cfg["pde"].update(dim=2, input={"field": "a", "time": [0, 3]})
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model/PDE mismatch: model.in_channels=1 .* gives 3 channel"):
        load_exported(out)
    cfg["pde"]["input"] = {"field": "a"}
    cfg["normalizers"]["input"]["mean"] = [1.0]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="normalizers.input.mean"):
        load_exported(out)


def test_model_pde_mismatch_in_checkpoint_is_refused(tmp_path):
    # A 2-D network recorded with a 1-D PDE's data module, and a 1-channel one with a 3-time input.
    path = _save_ckpt(_task(dim=2), tmp_path / "dims.ckpt", BURGERS_DM)
    with pytest.raises(ValueError, match=r"model/PDE mismatch: .*n_modes=\[4, 4\].*'burgers' has dim=1"):
        neurop.load(path)
    path = _save_ckpt(
        _task(dim=1), tmp_path / "chan.ckpt", {**BURGERS_DM, "input": {"field": "u", "time": [0, 3]}}
    )
    with pytest.raises(ValueError, match=r"model/PDE mismatch: model.in_channels=1 .* gives 3 channel"):
        neurop.load(path)


def test_unknown_source_lists_shipped_models():
    with pytest.raises(FileNotFoundError, match="neither a checkpoint file.*shipped models"):
        neurop.load("no-such-model")


def test_import_neurop_stays_light():
    code = (
        "import sys, neurop; assert 'torch' not in sys.modules, 'torch imported'; "
        "print(callable(neurop.load))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# -- predict on arrays -----------------------------------------------------------------------------
def test_predict_accepts_every_array_layout(darcy_ckpt):
    model = load_checkpoint(darcy_ckpt[1])
    x = torch.rand(7, 1, S, S) * 9 + 3
    full = model(x)
    assert torch.allclose(model.predict(x, batch_size=3), full, atol=1e-6)
    assert torch.allclose(model.predict(x[:, 0]), full[:, 0], atol=1e-6)
    assert torch.allclose(model.predict(x[0, 0]), full[0, 0], atol=1e-6)
    arr = model.predict(x.numpy())
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (7, 1, S, S)
    np.testing.assert_allclose(arr, full.numpy(), atol=1e-6)
    # Any resolution: the input is resampled first; a finer grid gives a finer prediction.
    fine = model.predict(x[:, 0], resolution=33)
    assert fine.shape == (7, 33, 33) and torch.isfinite(fine).all()
    assert torch.allclose(model.predict(x, resolution=9), model(x[..., ::2, ::2]), atol=1e-6)
    with pytest.raises(ValueError, match=r"2-D fields, 1 input channel.*got shape \(7, 2, 17, 17\)"):
        model.predict(torch.rand(7, 2, S, S))
    with pytest.raises(ValueError, match=r"got shape \(4, 1, 32\)"):
        model.predict(torch.rand(4, 1, 32))
    with pytest.raises(TypeError, match="got list"):
        model.predict([[1.0]])


def test_predict_xarray_carries_coordinates(burgers_ckpt, darcy_ckpt, tmp_path):
    from neurop.data import open_dataset

    model = load_checkpoint(burgers_ckpt[1])
    with open_dataset(_burgers_file(tmp_path / "b.h5")) as ds:
        out = model.predict(ds)
        u0 = torch.from_numpy(ds["u"].isel(t=0).values)
        assert out["u"].dims == ("sample", "x")
        assert float(out["u"]["t"]) == 1.0  # the output selection's time
        np.testing.assert_array_equal(out["x"].values, ds["x"].values)
        np.testing.assert_allclose(out["u"].values, model.predict(u0).numpy(), atol=1e-6)
        coarse = model.predict(ds["u"].isel(t=0), resolution=16)
        assert coarse.dims == ("sample", "x") and "t" not in coarse.coords
        np.testing.assert_allclose(coarse["x"].values, np.arange(16) / 16)
    darcy = load_checkpoint(darcy_ckpt[1])
    with open_dataset(_darcy_file(tmp_path / "d.h5")) as ds:
        da = darcy.predict(ds["a"], resolution=9)
        assert da.name == "u" and da.shape == (5, 9, 9)
        np.testing.assert_allclose(da["y"].values, np.linspace(0, 1, 9))
        with pytest.raises(ValueError, match=r"reads field 'a' but the Dataset has variables \['u'\]"):
            darcy.predict(ds[["u"]])


# -- files -----------------------------------------------------------------------------------------
def test_predict_file_writes_our_layout_metrics_and_figure(darcy_ckpt, tmp_path):
    import xarray as xr

    model = load_checkpoint(darcy_ckpt[1])
    src = _darcy_file(tmp_path / "in.h5")
    out = tmp_path / "pred.h5"
    result = predict_file(model, src, out, batch_size=2, progress=False)
    with xr.open_dataset(out, engine="h5netcdf") as ds, h5py.File(src) as f:
        assert ds["u"].dims == ("sample", "x", "y") and ds.attrs["pde"] == "darcy"
        np.testing.assert_array_equal(ds["a"].values, f["a"][()])
        expected = model(torch.from_numpy(f["a"][()])[:, None])[:, 0]
        np.testing.assert_allclose(ds["u"].values, expected.numpy(), atol=1e-6)
        truth = torch.from_numpy(f["u"][()])
    err = ((expected - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)).mean()
    assert result["rel_l2"] == pytest.approx(float(err), rel=1e-5)
    assert json.loads(Path(result["metrics_file"]).read_text())["rel_l2"] == pytest.approx(result["rel_l2"])
    assert Path(result["figure"]).stat().st_size > 1000
    with pytest.raises(FileExistsError, match="already exists"):
        predict_file(model, src, out, progress=False)


def test_predict_file_burgers_layout_and_finer_grid(burgers_ckpt, tmp_path):
    import xarray as xr

    model = load_checkpoint(burgers_ckpt[1])
    src = _burgers_file(tmp_path / "b.h5")
    out = tmp_path / "pred.h5"
    result = predict_file(model, src, out, resolution=64, progress=False, figures=False)
    assert result["resolution"] == "64" and "figure" not in result
    with xr.open_dataset(out, engine="h5netcdf") as ds, h5py.File(src) as f:
        assert ds["u"].shape == (6, 2, 64)
        np.testing.assert_array_equal(ds["t"].values, [0.0, 1.0])
        u0 = resample(torch.from_numpy(f["u"][:, :1]).double(), [64], periodic=True).float()
        np.testing.assert_allclose(ds["u"].values[:, 0], u0[:, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(ds["u"].values[:, 1], model(u0)[:, 0].numpy(), atol=1e-5)


def test_predict_file_without_truth_predicts_only(darcy_ckpt, tmp_path):
    model = load_checkpoint(darcy_ckpt[1])
    src = _darcy_file(tmp_path / "in.h5", with_u=False)
    result = predict_file(model, src, tmp_path / "p.h5", progress=False)
    assert "rel_l2" not in result and "metrics_file" not in result
    assert Path(result["figure"]).is_file()


def _no_output(tmp_path: Path) -> None:
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith("pred")]
    assert left == [], left


def test_bad_input_files_are_refused_without_output(darcy_ckpt, burgers_ckpt, tmp_path):
    model = load_checkpoint(darcy_ckpt[1])
    out = tmp_path / "pred.h5"
    burgers = _burgers_file(tmp_path / "b.h5")
    with pytest.raises(InputFileError, match="holds 'burgers' data but model .* trained on 'darcy'"):
        predict_file(model, burgers, out, progress=False)
    other = _darcy_file(tmp_path / "other.h5", pde="something")
    with pytest.raises(InputFileError, match="'something' data"):
        predict_file(model, other, out, progress=False)
    with h5py.File(tmp_path / "nofield.h5", "w") as f:
        f.create_dataset("b", data=np.zeros((2, S, S), np.float32))
    with pytest.raises(InputFileError, match=r"no field 'a' .*its fields: \['b'\]"):
        predict_file(model, tmp_path / "nofield.h5", out, progress=False)
    with h5py.File(tmp_path / "wrongdim.h5", "w") as f:
        f.create_dataset("a", data=np.zeros((2, 3, S, S), np.float32))
    with pytest.raises(InputFileError, match=r"model/PDE mismatch: field 'a' .* shape \(2, 3, 17, 17\)"):
        predict_file(model, tmp_path / "wrongdim.h5", out, progress=False)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputFileError, match="not a readable HDF5 file"):
        predict_file(model, tmp_path / "junk.h5", out, progress=False)
    _no_output(tmp_path)


def test_failure_mid_file_leaves_no_partial_output(darcy_ckpt, tmp_path, monkeypatch):
    model = load_checkpoint(darcy_ckpt[1])
    src = _darcy_file(tmp_path / "in.h5", n=6)
    calls = {"n": 0}
    forward = model.forward

    def failing(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("device lost")
        return forward(x)

    monkeypatch.setattr(model, "forward", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        predict_file(model, src, tmp_path / "pred.h5", batch_size=2, progress=False)
    _no_output(tmp_path)
    assert not partial_path(tmp_path / "pred.h5").exists()


def test_evaluate_table_records_mismatches(darcy_ckpt, burgers_ckpt, tmp_path):
    darcy, burgers = load_checkpoint(darcy_ckpt[1]), load_checkpoint(burgers_ckpt[1])
    files = [_darcy_file(tmp_path / "d.h5"), _burgers_file(tmp_path / "b.h5")]
    rows = evaluate({"d": darcy, "b": burgers}, files, [None, 9])
    assert len(rows) == 8
    ok = {(r["model"], r["data"], r["resolution"]): r["rel_l2"] for r in rows if "error" not in r}
    assert set(ok) == {("d", "d.h5", "17"), ("d", "d.h5", "9"), ("b", "b.h5", "32"), ("b", "b.h5", "9")}
    assert all(math.isfinite(v) for v in ok.values())
    table = format_table(rows)
    assert table.count("\n") == 9 and "holds 'burgers' data" in table
    with pytest.raises(InputFileError):
        evaluate([darcy], files[1:], on_error="raise")


def test_cli_predict_and_evaluate(darcy_ckpt, tmp_path, capsys):
    src = _darcy_file(tmp_path / "in.h5")
    out = tmp_path / "cli.h5"
    result = predict_main(
        [f"model={darcy_ckpt[1]}", f"input={src}", f"output={out}", "resolution=9", "progress=false"]
    )
    assert out.is_file() and result["resolution"] == "9"
    assert "relative L2" in capsys.readouterr().out
    rows = evaluate_main(
        [f"model=[{darcy_ckpt[1]}]", f"data={src}", "resolutions=[9,17]", f"out={tmp_path}/t.csv"]
    )
    assert [r["resolution"] for r in rows] == ["9", "17"]
    assert (tmp_path / "t.csv").read_text().count("\n") == 3
    with pytest.raises(SystemExit, match=r"unknown argument\(s\) \['resolutoin'\]"):
        predict_main([f"model={darcy_ckpt[1]}", f"input={src}", f"output={out}", "resolutoin=9"])
    with pytest.raises(SystemExit, match=r"missing required argument\(s\) \['output'\]"):
        predict_main([f"model={darcy_ckpt[1]}", f"input={src}"])
