"""Batched generation driver, seeds, shards, resumption, error messages and the Hydra generate CLI."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from neurop.cli.generate import CONFIG_DIR, find_shards, generate, main
from neurop.data.generate import generate_dataset, parse_shard, sample_seed, shard_path, shard_range
from neurop.data.store import combine_shards, load_fields, open_dataset, partial_path, read_attrs
from neurop.pdes.base import PDES, FieldSpec, PDEGenerator, sample_generator

REPO = Path(__file__).resolve().parents[2]


class Toy(PDEGenerator):
    """Exactly solvable stand-in: u(t, x) = exp(-decay t) * mean_y a(x, y) with a ~ N(0, 1) per seed."""

    name = "_toy"

    def __init__(self, resolution: int = 8, n_t: int = 3, decay: float = 1.0) -> None:
        if decay <= 0:
            raise ValueError(f"decay must be > 0, got {decay!r}")
        self.n, self.n_t, self.decay = int(resolution), int(n_t), float(decay)

    def params(self) -> dict:
        return {"resolution": self.n, "n_t": self.n_t, "decay": self.decay}

    def solver_info(self) -> dict:
        return {"scheme": "exact"}

    def coords(self) -> dict:
        x = np.arange(self.n) / self.n
        return {"t": np.linspace(0.0, 1.0, self.n_t), "x": x, "y": x}

    def fields(self) -> dict:
        return {"a": FieldSpec(("x", "y"), (self.n, self.n)), "u": FieldSpec(("t", "x"), (self.n_t, self.n))}

    def static_fields(self) -> dict:
        return {"f": (("x", "y"), np.full((self.n, self.n), self.decay))}

    def solve_batch(self, seeds: Sequence[int], device="cpu") -> dict:
        a = torch.stack(
            [torch.randn(self.n, self.n, generator=sample_generator(s), dtype=torch.float64) for s in seeds]
        ).to(device)
        t = torch.linspace(0.0, 1.0, self.n_t, dtype=torch.float64, device=device)
        return {"a": a, "u": a.mean(-1)[:, None, :] * torch.exp(-self.decay * t)[None, :, None]}


if "_toy" not in PDES:
    PDES.register("_toy")(Toy)

TOY_YAML = "name: _toy\ndim: 2\ngenerator:\n  resolution: 8\n  n_t: 3\n  decay: 1.0\n"


def gen(out: Path, n: int = 7, **kw) -> Path:
    kw.setdefault("progress", False)
    return generate_dataset("_toy", kw.pop("params", {"resolution": 8}), n, out, **kw)


def read_all(path: Path) -> dict[str, np.ndarray]:
    return load_fields(path)


def assert_same_data(p: Path, q: Path) -> None:
    a, b = read_all(p), read_all(q)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------------------- seeds and shards
def test_sample_seed_deterministic_and_distinct():
    seeds = {sample_seed(0, s, i) for s in ("train", "val", "test", "ood") for i in range(100)}
    assert len(seeds) == 400
    assert sample_seed(3, "train", 5) == sample_seed(3, "train", 5)
    assert sample_seed(3, "train", 5) != sample_seed(4, "train", 5)
    assert all(0 <= s < 2**63 for s in seeds)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, "train", 0), "seed must be an integer >= 0, got -1"),
        ((0, "", 0), "split must be a non-empty"),
        ((0, "train", -2), "index must be an integer >= 0, got -2"),
        ((1.5, "train", 0), "seed must be.*got 1.5"),
    ],
)
def test_sample_seed_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        sample_seed(*args)


def test_parse_shard_and_ranges():
    assert parse_shard("3/16") == (3, 16)
    assert parse_shard((0, 1)) == (0, 1)
    for bad in ("5/4", "-1/4", "a/b", "4/4", "1/0", "3", (1,)):
        with pytest.raises(ValueError, match="shard must be 'i/n' .*got " + re.escape(repr(bad))):
            parse_shard(bad)
    # shards tile the whole range without gaps or overlaps
    ranges = [shard_range(10, (i, 3)) for i in range(3)]
    assert ranges == [(0, 3), (3, 6), (6, 10)]
    assert shard_path("/d/darcy.h5", 3, 16).name == "darcy.shard-003-of-016.h5"


# ---------------------------------------------------------------------------- generation
def test_generated_file_opens_in_xarray_with_named_dims(tmp_path):
    path = gen(tmp_path / "d.h5", progress=True)
    ds = open_dataset(path)
    try:
        assert ds["u"].dims == ("sample", "t", "x")
        assert ds["a"].dims == ("sample", "x", "y")
        assert ds["f"].dims == ("x", "y")
        assert ds.sizes["sample"] == 7
        np.testing.assert_allclose(ds["t"].values, [0.0, 0.5, 1.0])
        # stored values are the solver's, in float32
        ref = Toy().solve_batch([sample_seed(0, "train", 2)])
        np.testing.assert_allclose(ds["u"].values[2], ref["u"][0].numpy(), rtol=1e-6)
    finally:
        ds.close()
    attrs = read_attrs(path)
    assert attrs["pde"] == "_toy" and attrs["split"] == "train" and attrs["seed"] == 0
    assert attrs["params"] == {"resolution": 8, "n_t": 3, "decay": 1.0}
    assert attrs["config"]["n_samples"] == 7


def test_same_seed_same_data_any_batch_size_and_splits_differ(tmp_path):
    p1 = gen(tmp_path / "a.h5", batch_size=3)
    p2 = gen(tmp_path / "b.h5", batch_size=16)
    assert_same_data(p1, p2)
    val = gen(tmp_path / "v.h5", split="val")
    other_seed = gen(tmp_path / "s.h5", seed=1)
    a = read_all(p1)["a"]
    for q in (val, other_seed):
        b = read_all(q)["a"]
        assert not np.isclose(a, b).any(axis=(1, 2)).any()  # not one sample in common


def test_interrupted_run_leaves_partial_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    ref = gen(tmp_path / "ref.h5", n=10, batch_size=3)
    out = tmp_path / "run.h5"
    calls = []
    original = Toy.solve_batch

    def flaky(self, seeds, device="cpu"):
        calls.append(list(seeds))
        if len(calls) > 2:
            raise RuntimeError("simulated crash")
        return original(self, seeds, device)

    monkeypatch.setattr(Toy, "solve_batch", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        gen(out, n=10, batch_size=3)
    assert not out.exists()
    assert read_attrs(partial_path(out))["n_complete"] == 6

    calls.clear()
    monkeypatch.setattr(
        Toy,
        "solve_batch",
        lambda self, seeds, device="cpu": (calls.append(list(seeds)), original(self, seeds, device))[1],
    )
    path = gen(out, n=10, batch_size=3)
    # only the missing samples were solved
    assert calls == [[sample_seed(0, "train", i) for i in (6, 7, 8)], [sample_seed(0, "train", 9)]]
    assert path == out and not partial_path(out).exists()
    assert_same_data(ref, out)
    ra, rb = read_attrs(ref), read_attrs(out)
    ra.pop("created"), rb.pop("created")
    assert ra == rb


def test_non_finite_solutions_are_refused(tmp_path, monkeypatch):
    original = Toy.solve_batch

    def blow_up(self, seeds, device="cpu"):
        out = original(self, seeds, device)
        if sample_seed(0, "train", 4) in seeds:
            out["u"][list(seeds).index(sample_seed(0, "train", 4)), 1, 2] = float("nan")
        return out

    monkeypatch.setattr(Toy, "solve_batch", blow_up)
    with pytest.raises(FloatingPointError, match=r"non-finite values of 'u' for samples \[4\]"):
        gen(tmp_path / "nan.h5", batch_size=3)
    assert read_attrs(partial_path(tmp_path / "nan.h5"))["n_complete"] == 3
    assert not (tmp_path / "nan.h5").exists()


def test_resume_with_other_parameters_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "r.h5"
    monkeypatch.setattr(Toy, "solve_batch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError):
        gen(out, n=4)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="does not match this run: params is"):
        gen(out, n=4, params={"resolution": 8, "decay": 2.0})
    with pytest.raises(ValueError, match="does not match this run: seed is 0, expected 5"):
        gen(out, n=4, seed=5)
    assert not out.exists()
    gen(out, n=4, seed=5, overwrite=True)  # discards the stale partial file
    assert read_attrs(out)["seed"] == 5


@pytest.mark.parametrize("n_shards", [2, 3])
def test_shards_combine_to_the_unsharded_data(tmp_path, n_shards):
    ref = gen(tmp_path / "ref.h5", n=8, batch_size=2)
    base = tmp_path / "sh.h5"
    paths = [
        gen(shard_path(base, i, n_shards), n=8, batch_size=2, shard=f"{i}/{n_shards}")
        for i in range(n_shards)
    ]
    assert sorted(find_shards(base)) == sorted(paths)
    attrs = read_attrs(paths[1])
    assert (attrs["sample_start"], attrs["n_samples_total"], attrs["shard"]) == (
        8 // n_shards,
        8,
        f"1/{n_shards}",
    )
    out = combine_shards(paths, base)
    assert_same_data(ref, out)
    ds = open_dataset(out)
    try:
        np.testing.assert_array_equal(ds["sample"].values, np.arange(8))
        assert ds["u"].dims == ("sample", "t", "x")
    finally:
        ds.close()


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"pde": "nope"}, ValueError, r"pde must be one of .*_toy.*got 'nope'"),
        ({"n": 0}, ValueError, "n_samples must be an integer >= 1, got 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1, got 0"),
        ({"shard": "5/4"}, ValueError, "shard must be 'i/n' with integers 0 <= i < n, got '5/4'"),
        ({"shard": "-1/4"}, ValueError, "shard must be .*got '-1/4'"),
        ({"shard": "a/b"}, ValueError, "shard must be .*got 'a/b'"),
        ({"shard": "0/9"}, ValueError, "shard count must be <= n_samples = 7"),
        ({"compression": "zstd"}, ValueError, "compression must be .*got 'zstd'"),
        ({"seed": -3}, ValueError, "seed must be an integer >= 0, got -3"),
        ({"params": {"decay": -1.0}}, ValueError, "decay must be > 0, got -1.0"),
    ],
)
def test_bad_arguments_raise_and_leave_no_file(tmp_path, kw, exc, match):
    out = tmp_path / "x.h5"
    pde = kw.pop("pde", "_toy")
    n = kw.pop("n", 7)
    params = kw.pop("params", {})
    with pytest.raises(exc, match=match):
        generate_dataset(pde, params, n, out, progress=False, **kw)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    out = gen(tmp_path / "e.h5", seed=0)
    before = read_all(out)["a"]
    with pytest.raises(FileExistsError, match=r"out '.*e\.h5' already exists; pass overwrite=True"):
        gen(out, seed=1)
    np.testing.assert_array_equal(read_all(out)["a"], before)
    gen(out, seed=1, overwrite=True)
    assert read_attrs(out)["seed"] == 1
    assert not np.array_equal(read_all(out)["a"], before)


def test_bad_output_directory(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"out directory '.*missing' does not exist"):
        gen(tmp_path / "missing" / "x.h5")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        gen(tmp_path / "file" / "x.h5")
    # permission bits do not bind root, so simulate a read-only directory
    monkeypatch.setattr("neurop.data.generate.os.access", lambda *a: False)
    with pytest.raises(PermissionError, match=r"out directory '.*' is not writable"):
        gen(tmp_path / "x.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def toy_config_dir(tmp_path):
    d = tmp_path / "extra_configs"
    (d / "pde").mkdir(parents=True)
    (d / "pde" / "_toy.yaml").write_text(TOY_YAML)
    # hydra.main reconfigures the root logger; restore it so later tests see the usual logging.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield d
    GlobalHydra.instance().clear()
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def compose_generate(config_dir: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "generate", overrides=[f"hydra.searchpath=[file://{config_dir}]", "pde=_toy", *overrides]
        )


def test_cli_end_to_end_with_hydra_main(tmp_path, toy_config_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [
        "generate.py",
        f"hydra.searchpath=[file://{toy_config_dir}]",
        "pde=_toy",
        "n_samples=5",
        "split=val",
        "seed=3",
        "resolution=6",
        "pde.generator.decay=0.5",
        "out=rel/out.h5",
        "progress=false",
        "batch_size=2",
        "compression=gzip:1",
    ]
    (tmp_path / "rel").mkdir()
    monkeypatch.setattr(sys, "argv", argv)
    main()
    out = tmp_path / "rel" / "out.h5"
    assert str(out) in capsys.readouterr().out
    attrs = read_attrs(out)
    assert attrs["params"] == {"resolution": 6, "n_t": 3, "decay": 0.5}
    assert (attrs["split"], attrs["seed"], attrs["n_samples"]) == ("val", 3, 5)
    assert attrs["config"]["pde"]["generator"]["resolution"] == 6 and attrs["config"]["out"] == "rel/out.h5"
    with h5py.File(out) as f:
        assert f["a"].shape == (5, 6, 6) and f["a"].compression == "gzip"
    ref = generate_dataset(
        "_toy", {"resolution": 6, "decay": 0.5}, 5, tmp_path / "ref.h5", split="val", seed=3, progress=False
    )
    assert_same_data(ref, out)
    # Hydra's own files go under outputs/, never into the working directory itself.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra_configs", "outputs", "ref.h5", "rel"]


def test_cli_default_name_shards_and_combine(tmp_path, toy_config_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the composed run directory is claimed relative to the working directory
    from neurop.data.datamodule import dataset_filename

    common = ["n_samples=6", f"paths.data_dir={tmp_path / 'data'}", "progress=false"]
    cfg = compose_generate(toy_config_dir, common)
    single = generate(cfg, tmp_path)
    params = {"resolution": 8, "n_t": 3, "decay": 1.0}
    assert single == tmp_path / "data" / dataset_filename("_toy", params, "train", 6, 0)
    for i in range(3):
        generate(compose_generate(toy_config_dir, [*common, f"shard={i}/3"]), tmp_path)
    assert [p.name for p in find_shards(single)] == [shard_path(single, i, 3).name for i in range(3)]
    with pytest.raises(FileExistsError, match="already exists"):
        generate(compose_generate(toy_config_dir, [*common, "combine=true"]), tmp_path)
    combined = generate(
        compose_generate(toy_config_dir, [*common, "combine=true", "overwrite=true"]), tmp_path
    )
    assert combined == single
    with h5py.File(combined) as f:
        assert f["u"].is_virtual
    ref = generate_dataset("_toy", params, 6, tmp_path / "ref.h5", progress=False)
    assert_same_data(ref, combined)


def test_cli_errors_name_the_key(tmp_path, toy_config_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the composed run directory is claimed relative to the working directory
    with pytest.raises(
        ValueError, match="stride=2 was given but pde '_toy' has no generator parameter 'stride'"
    ):
        generate(compose_generate(toy_config_dir, ["stride=2", f"out={tmp_path}/x.h5"]), tmp_path)
    with pytest.raises(ValueError, match="combine=true joins all shards; unset shard"):
        generate(
            compose_generate(toy_config_dir, ["combine=true", "shard=0/2", f"out={tmp_path}/x.h5"]), tmp_path
        )
    with pytest.raises(FileNotFoundError, match=r"shards \[1\] of 2 .* are not finished"):
        common = ["n_samples=4", f"out={tmp_path}/y.h5", "progress=false"]
        generate(compose_generate(toy_config_dir, [*common, "shard=0/2"]), tmp_path)
        generate(compose_generate(toy_config_dir, [*common, "combine=true"]), tmp_path)


@pytest.mark.slow
@pytest.mark.skipif("darcy" not in PDES, reason="Darcy solver not available")
def test_cli_subprocess_real_pde(tmp_path):
    out = tmp_path / "darcy.h5"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "generate.py"),
        "pde=darcy",
        "n_samples=2",
        "resolution=17",
        "stride=2",
        "batch_size=2",
        f"out={out}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    ]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    subprocess.run(cmd, check=True, cwd=tmp_path, env=env, timeout=300)
    ds = open_dataset(out)
    try:
        assert ds["a"].dims == ("sample", "x", "y") and ds["u"].shape == (2, 9, 9)
    finally:
        ds.close()


# Tiny but real configurations of the registered solvers.
REAL = {
    "darcy": {"resolution": 17, "stride": 2},
    "burgers": {"resolution": 64, "stride": 2, "t_final": 0.05},
    "navier_stokes": {"resolution": 16, "stride": 2, "t_final": 0.2, "snapshot_interval": 0.1},
}


@pytest.mark.parametrize("pde", sorted(REAL))
def test_real_solvers_do_not_depend_on_batching_or_sharding(tmp_path, pde):
    if pde not in PDES:
        pytest.skip(f"{pde} is not registered")
    params = REAL[pde]
    one = generate_dataset(pde, params, 4, tmp_path / "one.h5", batch_size=1, progress=False)
    shards = [
        generate_dataset(pde, params, 4, tmp_path / f"s{i}.h5", batch_size=4, shard=(i, 2), progress=False)
        for i in range(2)
    ]
    combined = combine_shards(shards, tmp_path / "all.h5")
    a, b = read_all(one), read_all(combined)
    for name in PDES.get(pde)(**params).fields():
        assert np.isfinite(a[name]).all()
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6 * np.abs(a[name]).max())
    assert read_attrs(one)["params"] == read_attrs(combined)["params"]
