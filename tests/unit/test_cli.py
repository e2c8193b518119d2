"""Config resolvers of neurop.cli: run directories that concurrent runs never share."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import neurop.cli as cli
from neurop.cli import CONFIG_DIR, fresh_dir, register_resolvers


@pytest.fixture
def new_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Work in ``tmp_path`` and forget the directories claimed so far, as a new process would."""
    monkeypatch.chdir(tmp_path)

    def _forget() -> None:
        monkeypatch.setattr(cli, "_CLAIMED_DIRS", {})

    _forget()
    return _forget


def test_fresh_dir_claims_a_new_directory_and_remembers_it(tmp_path, new_process):
    first = fresh_dir("outputs/day/12-00-00")
    assert first == "outputs/day/12-00-00"
    assert (tmp_path / first).is_dir()
    assert fresh_dir("outputs/day/12-00-00") == first  # the same answer within one process

    new_process()
    (tmp_path / "outputs/day/12-00-00_1").mkdir()  # taken by a third run
    second = fresh_dir("outputs/day/12-00-00")
    assert second == "outputs/day/12-00-00_2"
    assert (tmp_path / second).is_dir()
    assert sorted(p.name for p in (tmp_path / "outputs/day").iterdir()) == [
        "12-00-00",
        "12-00-00_1",
        "12-00-00_2",
    ]


def test_two_runs_composed_in_the_same_second_get_different_run_directories(tmp_path, new_process):
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    spec = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert spec.startswith("${neurop.fresh_dir:outputs/")
    # Both "processes" resolve the same second (the clock is frozen by substitution).
    frozen = spec.replace("${now:%Y-%m-%d}", "day").replace("${now:%H-%M-%S}", "12-00-00")
    first = OmegaConf.create({"dir": frozen}).dir
    new_process()
    second = OmegaConf.create({"dir": frozen}).dir
    assert first == "outputs/day/12-00-00"
    assert second == "outputs/day/12-00-00_1"
    assert (tmp_path / first).is_dir() and (tmp_path / second).is_dir()
