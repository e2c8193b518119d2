"""Import of FNO-paper .mat (v5 and v7.3) and neuraloperator .pt files: values, layout, safety, training."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from neurop.cli import PROJECT_ROOT
from neurop.cli.train import train
from neurop.data.convert import convert, import_info, parse_range
from neurop.data.datamodule import H5FieldPairs


def _save_v73(path: Path, **arrays: np.ndarray) -> None:
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block and column-major (axis-reversed) datasets."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=np.ascontiguousarray(np.transpose(value)))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


def _burgers_arrays(n: int = 12, nx: int = 32) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(nx) / nx
    k = np.arange(1, n + 1)[:, None]
    a = np.sin(2 * np.pi * x)[None] * k
    u = np.cos(2 * np.pi * x)[None] * k + 0.5
    return a, u


def _read(path: Path, name: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][()]


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_burgers_mat_round_trip(tmp_path, version):
    a, u = _burgers_arrays()
    src = tmp_path / "burgers.mat"
    if version == "v5":
        scipy.io.savemat(src, {"a": a, "u": u})
    else:
        _save_v73(src, a=a, u=u)
    out = convert(src, tmp_path / "test.h5", "burgers", split="test", samples="-4:")
    got = _read(out, "u")
    assert got.shape == (4, 2, 32)
    np.testing.assert_allclose(got[:, 0], a[-4:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], u[-4:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(_read(out, "x"), np.arange(32) / 32)
    np.testing.assert_allclose(_read(out, "t"), [0.0, 1.0])
    with h5py.File(out, "r") as f:
        assert f.attrs["pde"] == "burgers" and f.attrs["split"] == "test" and f.attrs["n_complete"] == 4
    assert not Path(str(out) + ".partial").exists()


@pytest.mark.parametrize("version", ["v5", "v7.3"])
@pytest.mark.parametrize("boundary", ["keep", "zero"])
def test_darcy_mat_round_trip_and_boundary_caveat(tmp_path, version, boundary):
    rng = np.random.default_rng(0)
    coeff = np.where(rng.standard_normal((5, 9, 7)) > 0, 12.0, 3.0)  # non-square: catches transposes
    sol = rng.standard_normal((5, 9, 7)) * 0.01 + 0.02  # non-zero boundary, as in the published files
    src = tmp_path / "darcy.mat"
    if version == "v5":
        scipy.io.savemat(src, {"coeff": coeff, "sol": sol, "Kcoeff": coeff})
    else:
        _save_v73(src, coeff=coeff, sol=sol, Kcoeff=coeff)
    out = convert(src, tmp_path / "train.h5", "darcy", boundary=boundary)
    np.testing.assert_allclose(_read(out, "a"), coeff, rtol=1e-6)
    got = _read(out, "u")
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], sol[:, 1:-1, 1:-1], rtol=1e-6)
    rim = np.concatenate([got[:, 0], got[:, -1], got[:, :, 0], got[:, :, -1]], axis=1)
    if boundary == "zero":
        assert np.all(rim == 0)
    else:
        np.testing.assert_allclose(got, sol, rtol=1e-6)
    true_rim = np.concatenate([sol[:, 0], sol[:, -1], sol[:, :, 0], sol[:, :, -1]], axis=1)
    info = import_info(out)
    assert info["boundary"] == boundary
    assert info["boundary_max_abs"] == pytest.approx(np.abs(true_rim).max())
    np.testing.assert_allclose(_read(out, "x"), np.linspace(0, 1, 9))


def test_navier_stokes_mat_puts_the_initial_vorticity_first(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 8, 6))
    u = rng.standard_normal((3, 8, 6, 5))  # w at t = 1..5, time last (MATLAB order)
    src = tmp_path / "ns.mat"
    _save_v73(src, a=a, u=u, t=np.arange(1.0, 6.0)[None])
    out = convert(src, tmp_path / "ns.h5", "navier_stokes")
    w = _read(out, "w")
    assert w.shape == (3, 6, 8, 6)
    np.testing.assert_allclose(w[:, 0], a, rtol=1e-6)
    np.testing.assert_allclose(w[:, 3], u[..., 2], rtol=1e-6)
    np.testing.assert_allclose(_read(out, "t"), np.arange(6.0))


def test_mat_without_the_expected_fields_names_the_fields_found(tmp_path):
    src = tmp_path / "odd.mat"
    scipy.io.savemat(src, {"input": np.zeros((2, 4)), "output": np.zeros((2, 4))})
    with pytest.raises(
        ValueError, match=r"no field\(s\) \['coeff', 'sol'\].*fields found: \['input', 'output'\]"
    ):
        convert(src, tmp_path / "o.h5", "darcy")
    _save_v73(src, K=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"fields found: \['K'\]"):
        convert(src, tmp_path / "o.h5", "darcy")


def test_pt_darcy_with_boolean_coefficients(tmp_path):
    x = torch.rand(6, 8, 8) > 0.5
    y = torch.randn(6, 8, 8)
    src = tmp_path / "darcy_train_8.pt"
    torch.save({"x": x, "y": y}, src)
    out = convert(src, tmp_path / "d.h5", "darcy", bool_values=(3.0, 12.0), samples="1:4")
    np.testing.assert_array_equal(_read(out, "a"), np.where(x[1:4].numpy(), 12.0, 3.0))
    np.testing.assert_allclose(_read(out, "u"), y[1:4].numpy())


@pytest.mark.parametrize("with_initial", [True, False])
def test_pt_burgers_with_a_time_axis(tmp_path, with_initial):
    x = torch.randn(4, 16)
    later = torch.randn(4, 3, 16)
    y = torch.cat([x[:, None], later], dim=1) if with_initial else later
    src = tmp_path / "burgers.pt"
    torch.save({"x": x, "y": y}, src)
    out = convert(src, tmp_path / "b.h5", "burgers", t_final=2.0)
    u = _read(out, "u")
    assert u.shape == (4, 4, 16)  # the initial condition is stored once either way
    np.testing.assert_allclose(u[:, 0], x.numpy())
    np.testing.assert_allclose(u[:, 1:], later.numpy())
    np.testing.assert_allclose(_read(out, "t"), np.linspace(0, 2, 4))


class Payload:
    """Not a tensor: torch.load(weights_only=True) must not rebuild it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pt_with_arbitrary_objects_is_refused(tmp_path, capsys):
    src = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(2, 4), "y": Payload()}, src)
    with pytest.raises(ValueError, match="refusing to load .*evil.pt: it needs arbitrary Python objects"):
        convert(src, tmp_path / "o.h5", "burgers")
    assert "unpickled!" not in capsys.readouterr().out
    src2 = tmp_path / "list.pt"
    torch.save({"x": torch.zeros(2, 4), "y": [1, 2]}, src2)
    with pytest.raises(ValueError, match="entry 'y' is a list, not a tensor"):
        convert(src2, tmp_path / "o.h5", "burgers")
    src3 = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), src3)
    with pytest.raises(ValueError, match="holds a Tensor; expected a dictionary of tensors with keys x, y"):
        convert(src3, tmp_path / "o.h5", "burgers")


def test_bad_arguments_name_the_value(tmp_path):
    src = tmp_path / "b.mat"
    scipy.io.savemat(src, dict(zip(("a", "u"), _burgers_arrays(), strict=True)))
    with pytest.raises(ValueError, match="pde must be one of .*got 'heat'"):
        convert(src, tmp_path / "o.h5", "heat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample range '20:' selects no samples of the 12"):
        convert(src, tmp_path / "o.h5", "burgers", samples="20:")
    with pytest.raises(ValueError, match="cannot tell the format of .*'.npz'"):
        convert(src.rename(tmp_path / "b.npz"), tmp_path / "o.h5", "burgers")
    assert parse_range("-3:", 10) == range(7, 10)


def test_converted_splits_train_through_the_datamodule(tmp_path, compose_train):
    a, u = _burgers_arrays(n=16, nx=32)
    src = tmp_path / "burgers_data.mat"
    _save_v73(src, a=a, u=u)
    out_dir = tmp_path / "imported"
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "convert.py"),
            str(src),
            "--pde=burgers",
            f"--out-dir={out_dir}",
            "--split=train=0:8",
            "--split=val=8:12",
            "--split=test=12:16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {s: str(out_dir / f"{s}.h5") for s in ("train", "val", "test")}
    pairs = H5FieldPairs(files["test"], {"field": "u", "time": 0}, {"field": "u", "time": -1}, 1, 4)
    x, y = pairs[1]
    np.testing.assert_allclose(x[0].numpy(), a[13], atol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), u[13], atol=1e-6)
    spec = "{" + ",".join(f"{k}:'{v}'" for k, v in files.items()) + "}"
    cfg = compose_train(["pde=burgers", f"+pde.data.files={spec}", "pde.data.generate_if_missing=false"])
    metrics, objects = train(cfg)
    assert objects["datamodule"].path("train") == Path(files["train"])
    assert math.isfinite(metrics["test/rel_l2@32"])


def test_data_files_option_refuses_bad_keys_missing_files_and_other_pdes(tmp_path):
    from neurop.data.datamodule import OperatorDataModule

    a, u = _burgers_arrays(n=4, nx=16)
    src = tmp_path / "b.mat"
    scipy.io.savemat(src, {"a": a, "u": u})
    good = convert(src, tmp_path / "b.h5", "burgers")
    kw = dict(
        dim=1,
        generator={},
        dir=str(tmp_path),
        n_train=2,
        n_val=2,
        n_test=2,
        input={"field": "u", "time": 0},
        output={"field": "u", "time": -1},
    )
    with pytest.raises(
        ValueError, match=r"one file per split \['train', 'val', 'test'\], got keys \['train'\]"
    ):
        OperatorDataModule("burgers", files={"train": str(good)}, **kw)
    missing = {"train": str(good), "val": str(good), "test": str(tmp_path / "nope.h5")}
    with pytest.raises(FileNotFoundError, match=r"nope.h5 \(data.files.test\) does not exist"):
        OperatorDataModule("burgers", files=missing, **kw).prepare_data()
    files = {s: str(good) for s in ("train", "val", "test")}
    with pytest.raises(ValueError, match=r"\(data.files.train\) is not darcy data \(pde: file 'burgers'"):
        OperatorDataModule("darcy", files=files, **kw).prepare_data()
    dm = OperatorDataModule("burgers", files=files, **kw)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.in_channels, dm.out_channels) == (1, 1) and len(dm.datasets["train"]) == 2
