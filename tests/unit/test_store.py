"""HDF5 layout, atomic/resumable writer, readers and shard combination of neurop.data.store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurop.data.store import (
    REQUIRED_ATTRS,
    DatasetWriter,
    combine_shards,
    load_fields,
    open_dataset,
    parse_compression,
    partial_path,
    read_attrs,
)
from neurop.pdes.base import FieldSpec

NT, NX, NY = 3, 6, 5
COORDS = {"t": np.linspace(0.0, 1.0, NT), "x": np.arange(NX) / NX, "y": np.linspace(0.0, 1.0, NY)}
FIELDS = {"w": FieldSpec(("t", "x", "y"), (NT, NX, NY)), "a": FieldSpec(("x", "y"), (NX, NY))}
STATIC = {"f": (("x", "y"), np.arange(NX * NY, dtype=np.float64).reshape(NX, NY))}


def data(indices) -> dict[str, np.ndarray]:
    """Deterministic fields whose values encode the global sample index."""
    idx = np.asarray(indices, dtype=np.float64)[:, None, None]
    a = idx + np.arange(NX)[:, None] * 0.1 + np.arange(NY) * 0.01
    w = a[:, None] * (1.0 + np.arange(NT))[None, :, None, None]
    return {"w": w, "a": a}


def open_writer(path: Path, n: int, start: int = 0, total: int | None = None, **kw) -> DatasetWriter:
    args = dict(
        pde="toy",
        params={"nu": 0.1, "resolution": NX},
        solver={"scheme": "exact"},
        seed=7,
        split="train",
        n_samples=n,
        coords=COORDS,
        fields=FIELDS,
        static_fields=STATIC,
        sample_start=start,
        n_samples_total=total,
        config={"note": "test"},
    )
    args.update(kw)
    return DatasetWriter.open(path, **args)


def write_file(path: Path, n: int, start: int = 0, total: int | None = None, batch: int = 2, **kw) -> Path:
    with open_writer(path, n, start, total, **kw) as w:
        for s in range(0, n, batch):
            e = min(s + batch, n)
            w.write(s, data(range(start + s, start + e)))
        return w.finalize()


def test_layout_xarray_named_dims_coords_and_attrs(tmp_path):
    path = write_file(tmp_path / "d.h5", 5)
    assert not partial_path(path).exists()
    ds = open_dataset(path)
    try:
        assert ds["w"].dims == ("sample", "t", "x", "y")
        assert ds["a"].dims == ("sample", "x", "y")
        assert ds["f"].dims == ("x", "y")
        np.testing.assert_array_equal(ds["sample"].values, np.arange(5))
        for name, values in COORDS.items():
            np.testing.assert_allclose(ds[name].values, values)
        assert ds["w"].dtype == np.float32
        np.testing.assert_allclose(ds["a"].values, data(range(5))["a"], rtol=1e-6)
        np.testing.assert_allclose(ds["f"].values, STATIC["f"][1], rtol=1e-6)
        assert ds.attrs["pde"] == "toy"
    finally:
        ds.close()
    attrs = read_attrs(path)
    assert set(REQUIRED_ATTRS) <= set(attrs)
    assert attrs["params"] == {"nu": 0.1, "resolution": NX}
    assert attrs["solver"] == {"scheme": "exact"}
    assert attrs["config"] == {"note": "test"}
    assert (attrs["seed"], attrs["split"], attrs["n_samples"], attrs["n_complete"]) == (7, "train", 5, 5)
    with h5py.File(path) as f:
        assert f["w"].chunks == (1, NT, NX, NY)
        assert f["w"].dims[0][0].name == "/sample"
        # Raw attribute is JSON text, so any HDF5 tool can read it.
        assert json.loads(f.attrs["params"]) == {"nu": 0.1, "resolution": NX}


@pytest.mark.parametrize("compression", ["gzip", "gzip:9", "lzf"])
def test_compression_round_trip(tmp_path, compression):
    path = write_file(tmp_path / "c.h5", 3, compression=compression)
    with h5py.File(path) as f:
        assert f["w"].compression == compression.split(":")[0]
    np.testing.assert_allclose(load_fields(path, ["w"])["w"], data(range(3))["w"], rtol=1e-6)


@pytest.mark.parametrize("bad", ["zip", "gzip:10", "gzip:x", "lzf:3", 5])
def test_bad_compression_names_value(bad):
    with pytest.raises(ValueError, match=f"compression must be .*got {bad!r}"):
        parse_compression(bad)


def test_partial_file_records_progress_and_resumes(tmp_path):
    path = tmp_path / "r.h5"
    w = open_writer(path, 5)
    w.write(0, data([0, 1]))
    w.close()
    assert not path.exists() and partial_path(path).exists()
    attrs = read_attrs(partial_path(path))
    assert (attrs["n_complete"], attrs["n_samples"]) == (2, 5)
    with pytest.raises(FileNotFoundError, match="holds 2 of 5 samples"):
        open_dataset(path)
    # Unwritten samples read as NaN, never as plausible numbers.
    assert np.isnan(load_fields(partial_path(path), ["a"], index=4)["a"]).all()

    w = open_writer(path, 5)
    assert w.n_complete == 2
    with pytest.raises(ValueError, match="start must equal n_complete = 2, got 0"):
        w.write(0, data([0, 1]))
    w.write(2, data([2, 3, 4]))
    w.finalize()
    np.testing.assert_allclose(load_fields(path, ["w"])["w"], data(range(5))["w"], rtol=1e-6)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seed", 8),
        ("split", "val"),
        ("pde", "other"),
        ("params", {"nu": 0.2, "resolution": NX}),
        ("n_samples", 6),
    ],
)
def test_resume_with_mismatch_raises_unless_overwrite(tmp_path, key, value):
    path = tmp_path / "m.h5"
    w = open_writer(path, 5)
    w.write(0, data([0]))
    w.close()
    kw = {key: value}
    n = kw.pop("n_samples", 5)
    with pytest.raises(ValueError, match=f"does not match this run: {key}"):
        open_writer(path, n, **kw)
    assert read_attrs(partial_path(path))["n_complete"] == 1  # left untouched
    w = open_writer(path, n, overwrite=True, **kw)
    assert w.n_complete == 0
    w.close()


def test_corrupt_partial_file_gives_clear_error(tmp_path):
    path = tmp_path / "x.h5"
    partial_path(path).write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="cannot resume the damaged partial file"):
        open_writer(path, 2)


def test_write_checks_shapes_and_finalize_requires_all_samples(tmp_path):
    w = open_writer(tmp_path / "s.h5", 3)
    bad = data([0])
    bad["a"] = bad["a"][:, :-1]
    with pytest.raises(ValueError, match="field 'a' must have shape"):
        w.write(0, bad)
    with pytest.raises(ValueError, match="fields must be"):
        w.write(0, {"a": data([0])["a"]})
    with pytest.raises(ValueError, match="exceeds n_samples = 3"):
        w.write(0, data(range(4)))
    w.write(0, data([0]))
    with pytest.raises(ValueError, match="n_complete = 1 of n_samples = 3"):
        w.finalize()
    w.close()
    assert not (tmp_path / "s.h5").exists()


def test_layout_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="field 'a': dimension 'z' has no coordinate"):
        open_writer(tmp_path / "e.h5", 2, fields={"a": FieldSpec(("x", "z"), (NX, 3))})
    with pytest.raises(ValueError, match="field 'a': dimension 'y' has length 4 but coordinate 'y' has 5"):
        open_writer(tmp_path / "e.h5", 2, fields={"a": FieldSpec(("x", "y"), (NX, 4))})
    assert not partial_path(tmp_path / "e.h5").exists()


def test_load_fields_index_order_and_stride(tmp_path):
    path = write_file(tmp_path / "l.h5", 6)
    full = data(range(6))
    got = load_fields(path, ["a", "w", "f"], index=[4, 1, 4], stride=2)
    np.testing.assert_allclose(got["a"], full["a"][[4, 1, 4]][:, ::2, ::2], rtol=1e-6)
    # stride applies to x and y only, never to time
    assert got["w"].shape == (3, NT, 3, 3)
    np.testing.assert_allclose(got["f"], STATIC["f"][1][::2, ::2])
    assert load_fields(path, ["a"], index=-1)["a"].shape == (1, NX, NY)
    np.testing.assert_allclose(
        load_fields(path, ["a"], index=slice(1, 5, 2))["a"], full["a"][1:5:2], rtol=1e-6
    )
    with pytest.raises(KeyError, match="unknown field 'q'"):
        load_fields(path, ["q"])
    with pytest.raises(IndexError, match="out of range"):
        load_fields(path, ["a"], index=6)
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        load_fields(path, ["a"], stride=0)


def test_missing_file_error_says_how_to_create(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/generate.py"):
        open_dataset(tmp_path / "nope.h5")


def make_shards(tmp_path: Path, bounds: list[int], **kw) -> list[Path]:
    total = bounds[-1]
    return [
        write_file(tmp_path / f"p{k}.h5", hi - lo, start=lo, total=total, **kw)
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def test_combine_shards_virtual_dataset_equals_single_file(tmp_path):
    single = write_file(tmp_path / "single.h5", 7)
    shards = make_shards(tmp_path, [0, 2, 4, 7])
    out = combine_shards(shards[::-1], tmp_path / "all.h5")  # order of the list does not matter
    with h5py.File(out) as f:
        assert f["w"].is_virtual and f["a"].is_virtual
    a, b = open_dataset(single), open_dataset(out)
    try:
        assert b["w"].dims == ("sample", "t", "x", "y")
        np.testing.assert_array_equal(b["sample"].values, np.arange(7))
        for name in ("w", "a", "f"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
    finally:
        a.close(), b.close()
    attrs = read_attrs(out)
    assert (attrs["n_samples"], attrs["n_complete"], attrs["shards"]) == (7, 7, ["p0.h5", "p1.h5", "p2.h5"])
    np.testing.assert_array_equal(
        load_fields(out, ["a"], index=[5, 0])["a"], load_fields(single, ["a"], index=[5, 0])["a"]
    )


def test_combined_file_survives_moving_the_directory(tmp_path):
    (tmp_path / "d").mkdir()
    shards = make_shards(tmp_path / "d", [0, 1, 3])
    combine_shards(shards, tmp_path / "d" / "all.h5")
    (tmp_path / "d").rename(tmp_path / "moved")
    got = load_fields(tmp_path / "moved" / "all.h5", ["a"])["a"]
    np.testing.assert_allclose(got, data(range(3))["a"], rtol=1e-6)


def test_combine_rejects_gaps_overlaps_and_incompatible_shards(tmp_path):
    s = make_shards(tmp_path, [0, 2, 4, 6])
    with pytest.raises(ValueError, match="leaves samples 2..3 missing"):
        combine_shards([s[0], s[2]], tmp_path / "o.h5")
    with pytest.raises(ValueError, match=r"cover samples 0..3 but the data set has n_samples_total = 6"):
        combine_shards(s[:2], tmp_path / "o.h5")
    other = write_file(tmp_path / "other.h5", 2, start=2, total=6, seed=9)
    with pytest.raises(ValueError, match="incompatible.*seed is 9, expected 7"):
        combine_shards([s[0], other, s[2]], tmp_path / "o.h5")
    overlap = write_file(tmp_path / "ov.h5", 3, start=1, total=6)
    with pytest.raises(ValueError, match="overlaps the previous shard"):
        combine_shards([s[0], overlap, s[2]], tmp_path / "o.h5")
    w = open_writer(tmp_path / "unfinished.h5", 2, start=2, total=6)
    w.close()
    with pytest.raises(FileNotFoundError, match="shard .*unfinished.h5 does not exist"):
        combine_shards([s[0], tmp_path / "unfinished.h5", s[2]], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists() and not partial_path(tmp_path / "o.h5").exists()
    combine_shards(s, tmp_path / "o.h5")
    with pytest.raises(FileExistsError, match="already exists"):
        combine_shards(s, tmp_path / "o.h5")


@pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE", reason="HDF5 file locking is disabled"
)
def test_partial_file_locked_by_another_process_is_never_discarded(tmp_path):
    path = tmp_path / "busy.h5"
    open_writer(path, 3).close()
    holder = (
        "import sys, h5py; f = h5py.File(sys.argv[1], 'r+'); print('ready', flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(partial_path(path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(BlockingIOError, match="is locked: another run is writing it"):
            open_writer(path, 3, overwrite=True)
        assert partial_path(path).exists()
    finally:
        proc.communicate("", timeout=30)
