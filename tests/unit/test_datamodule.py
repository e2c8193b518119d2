"""OperatorDataModule and H5FieldPairs: file names, field selections, striding, lazy reads, clear errors."""

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurop.data.datamodule import DihedralAugment, H5FieldPairs, OperatorDataModule, dataset_filename

GEN = {"resolution": 9, "stride": 1, "viscosity": 0.1}


def _write(path: Path, **fields: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for name, arr in fields.items():
            f.create_dataset(name, data=arr)
    return path


def _dm(tmp_path: Path, **kw) -> OperatorDataModule:
    args = dict(
        pde="toy",
        dim=1,
        generator=GEN,
        dir=str(tmp_path),
        n_train=6,
        n_val=3,
        n_test=3,
        input={"field": "u", "time": 0},
        output={"field": "u", "time": -1},
        batch_size=2,
    )
    args.update(kw)
    return OperatorDataModule(**args)


def _write_splits(dm: OperatorDataModule, params=None, seed=None) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        with h5py.File(dm.path(split), "w") as f:
            f.create_dataset("u", data=rng.standard_normal((dm.n[split], 3, 9)).astype(np.float32))
            f.attrs["pde"] = "toy"
            f.attrs["params"] = json.dumps(params or dm.generator_params)
            f.attrs["seed"] = dm.seed if seed is None else seed
            f.attrs["split"] = split


def test_file_names_are_readable_and_unambiguous():
    name = dataset_filename("darcy", {"resolution": 421, "stride": 5, "tau": 3.0}, "train", 1000, 0)
    assert name.startswith("darcy_r421_s5_n1000_") and name.endswith("_train.h5")
    assert len(name.split("_")[4]) == 6
    other_param = dataset_filename("darcy", {"resolution": 421, "stride": 5, "tau": 4.0}, "train", 1000, 0)
    other_seed = dataset_filename("darcy", {"resolution": 421, "stride": 5, "tau": 3.0}, "train", 1000, 1)
    assert len({name, other_param, other_seed}) == 3
    # Key order does not matter.
    assert name == dataset_filename("darcy", {"tau": 3.0, "stride": 5, "resolution": 421}, "train", 1000, 0)


def test_selections_and_strides_read_the_right_values(tmp_path):
    w = np.arange(4 * 12 * 9 * 9, dtype=np.float32).reshape(4, 12, 9, 9)
    path = _write(tmp_path / "ns.h5", w=w)
    ds = H5FieldPairs(
        str(path), {"field": "w", "time": [0, 10]}, {"field": "w", "time": -2}, dim=2, n_samples=3, stride=2
    )
    assert (ds.in_channels, ds.out_channels, ds.spatial_shape, len(ds)) == (10, 1, (5, 5), 3)
    x, y = ds[2]
    assert x.dtype == torch.float32 and x.shape == (10, 5, 5) and y.shape == (1, 5, 5)
    np.testing.assert_array_equal(x.numpy(), w[2, 0:10, ::2, ::2])
    np.testing.assert_array_equal(y.numpy(), w[2, 10:11, ::2, ::2])
    with pytest.raises(IndexError):
        ds[3]


def test_fields_without_time_axis_and_channel_stats(tmp_path):
    rng = np.random.default_rng(1)
    a, u = (
        rng.standard_normal((5, 7, 7)).astype(np.float32),
        rng.standard_normal((5, 7, 7)).astype(np.float32),
    )
    ds = H5FieldPairs(
        str(_write(tmp_path / "d.h5", a=a, u=u)), {"field": "a"}, {"field": "u"}, dim=2, n_samples=5
    )
    np.testing.assert_array_equal(ds[1][0].numpy(), a[1][None])
    s_in, s_out = ds.channel_stats(chunk=2)
    assert s_in.mean.item() == pytest.approx(float(a.astype(np.float64).mean()), rel=1e-10)
    assert s_out.std.item() == pytest.approx(float(u.astype(np.float64).std()), rel=1e-10)


def test_dataset_pickles_without_an_open_handle_and_reads_in_workers(tmp_path):
    u = np.random.default_rng(2).standard_normal((8, 2, 16)).astype(np.float32)
    ds = H5FieldPairs(
        str(_write(tmp_path / "b.h5", u=u)),
        {"field": "u", "time": 0},
        {"field": "u", "time": 1},
        dim=1,
        n_samples=8,
    )
    ds[0]  # opens a handle in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    xs = torch.cat([x for x, _ in loader])
    np.testing.assert_array_equal(xs.numpy(), u[:, 0:1])


@pytest.mark.parametrize(
    ("inp", "match"),
    [
        ({"field": "nope"}, r"field 'nope' \(data.input.field\) not in .*fields: \['u'\]"),
        ({"field": "u"}, r"time axis of length 3: set data.input.time"),
        ({"field": "u", "time": 3}, r"data.input.time=3 is out of range for 3 stored times"),
        ({"field": "u", "time": [2, 1]}, r"data.input.time=\[2, 1\]"),
        ({"field": "u", "when": 0}, r"keys 'field' and optionally 'time'"),
    ],
)
def test_bad_selections_raise_naming_the_value(tmp_path, inp, match):
    path = _write(tmp_path / "b.h5", u=np.zeros((2, 3, 8), dtype=np.float32))
    with pytest.raises((KeyError, ValueError), match=match):
        H5FieldPairs(str(path), inp, {"field": "u", "time": 0}, dim=1, n_samples=2)


def test_too_few_samples(tmp_path):
    path = _write(tmp_path / "b.h5", u=np.zeros((2, 3, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="holds 2 samples but 5 are requested"):
        H5FieldPairs(str(path), {"field": "u", "time": 0}, {"field": "u", "time": 1}, dim=1, n_samples=5)


def test_datamodule_loaders_stats_and_test_resolutions(tmp_path):
    dm = _dm(tmp_path, test_strides=[2, 1])
    _write_splits(dm)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (dm.in_channels, dm.out_channels) == (1, 1)
    assert dm.test_resolutions == ["9", "5"]  # training stride first, duplicates dropped
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 1, 9) and y.shape == (2, 1, 9)
    assert len(dm.test_dataloader()) == 2
    mean, std = dm.input_stats
    with h5py.File(dm.path("train")) as f:
        u0 = f["u"][:, 0].astype(np.float64)
    assert mean[0] == pytest.approx(u0.mean(), rel=1e-9) and std[0] == pytest.approx(u0.std(), rel=1e-9)


def test_missing_file_without_generation_names_the_command(tmp_path):
    dm = _dm(tmp_path, generate_if_missing=False, generator_overrides={"resolution": 5, "viscosity": 0.01})
    with pytest.raises(FileNotFoundError) as info:
        dm.prepare_data()
    msg = str(info.value)
    assert str(dm.path("train")) in msg
    assert "python scripts/generate.py pde=toy split=train n_samples=6 seed=0 resolution=5" in msg
    assert "pde.generator.viscosity=0.01" in msg and f"out={dm.path('train')}" in msg


def test_existing_file_with_other_params_is_refused(tmp_path):
    dm = _dm(tmp_path)
    _write_splits(dm, params={**GEN, "viscosity": 0.05})
    with pytest.raises(ValueError, match=r"does not match the config \(viscosity: file 0.05 vs config 0.1\)"):
        dm.prepare_data()
    dm2 = _dm(tmp_path / "b")
    (tmp_path / "b").mkdir()
    _write_splits(dm2, seed=7)
    with pytest.raises(ValueError, match="seed: file 7 vs config 0"):
        dm2.prepare_data()


def test_constructor_validation(tmp_path):
    with pytest.raises(ValueError, match="data.n_train must be an integer >= 1, got 0"):
        _dm(tmp_path, n_train=0)
    with pytest.raises(ValueError, match="got 0"):
        _dm(tmp_path, test_strides=[0])
    with pytest.raises(ValueError, match=r"generator_overrides has keys \['nu'\]"):
        _dm(tmp_path, generator_overrides={"nu": 1.0})


def _write_2d_splits(dm: OperatorDataModule, n_grid: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        with h5py.File(dm.path(split), "w") as f:
            a = rng.standard_normal((dm.n[split], *n_grid)).astype(np.float32)
            f.create_dataset("a", data=a)
            f.create_dataset("u", data=2.0 * a)  # an equivariant "operator": u = 2a
            f.attrs["pde"] = "toy"
            f.attrs["params"] = json.dumps(dm.generator_params)
            f.attrs["seed"] = dm.seed
            f.attrs["split"] = split


def test_dihedral_augmentation_moves_input_and_output_together_on_training_data_only(tmp_path):
    dm = _dm(tmp_path, dim=2, input={"field": "a"}, output={"field": "u"}, augment="dihedral", batch_size=6)
    _write_2d_splits(dm, (5, 5))
    dm.prepare_data()
    dm.setup("fit")
    with h5py.File(dm.path("train")) as f:
        originals = torch.from_numpy(f["a"][:])
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        x, y = next(iter(dm.train_dataloader()))
        torch.testing.assert_close(y, 2.0 * x)  # the pairs stay pairs
        for xi in x[:, 0]:
            # Each training input is one of the 8 images of a stored sample under the square's symmetries.
            ks = [k for k in range(8) for a in originals if torch.equal(DihedralAugment.transform(a, k), xi)]
            assert len(ks) == 1
            seen.add(ks[0])
    assert seen == set(range(8))
    # Validation data are never augmented.
    x_val, _ = next(iter(dm.val_dataloader()))
    with h5py.File(dm.path("val")) as f:
        torch.testing.assert_close(x_val[:, 0], torch.from_numpy(f["a"][: x_val.shape[0]]))


def test_dihedral_augmentation_is_refused_where_it_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match=r"data.augment must be null or one of \['dihedral'\], got 'flip'"):
        _dm(tmp_path, augment="flip")
    with pytest.raises(ValueError, match="needs 2-D fields on a square grid, but the pde has dim=1"):
        _dm(tmp_path, augment="dihedral")
    dm = _dm(tmp_path, dim=2, input={"field": "a"}, output={"field": "u"}, augment="dihedral")
    _write_2d_splits(dm, (5, 7))
    dm.prepare_data()
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"needs a square grid, got training grid \[5, 7\]"):
        dm.train_dataloader()
