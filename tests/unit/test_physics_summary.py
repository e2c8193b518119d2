"""scripts/physics_summary.py: the final and the best evaluation of a physics-informed run's metrics.csv."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "physics_summary.py"


def _module():
    spec = importlib.util.spec_from_file_location("physics_summary", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_names_the_final_and_the_best_evaluation(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.csv"
    metrics.write_text(
        "epoch,step,train/loss,val/rel_l2,val/train_time_s\n"
        "0,9,0.5,,\n"  # a training row without an evaluation
        "0,99,,3.0e-3,12.5\n"
        "0,199,,1.0e-4,25.0\n"
        "0,299,,2.5e-4,37.5\n"
    )
    ps = _module()
    assert ps.evaluations(metrics) == [(99, 3.0e-3, 12.5), (199, 1.0e-4, 25.0), (299, 2.5e-4, 37.5)]
    text = ps.summary(metrics)
    assert "| 199 | 1.000e-04 | 25 |" in text
    assert "final 2.500e-04 at step 299; best 1.000e-04 at step 199" in text


def test_summary_says_when_there_is_nothing_to_summarise(tmp_path: Path) -> None:
    ps = _module()
    assert "no such file" in ps.summary(tmp_path / "missing.csv")
    empty = tmp_path / "metrics.csv"
    empty.write_text("epoch,step,train/loss\n0,9,0.5\n")
    assert "no val/rel_l2 logged" in ps.summary(empty)
