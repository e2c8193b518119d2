"""Summarise physics-informed runs: every evaluation, the final iterate and the best one, as Markdown.

Reads the ``csv/metrics.csv`` that ``python train.py model=pinn|pig ...`` writes (``val/rel_l2`` and
``val/train_time_s`` at every evaluation).

Usage::

    python scripts/physics_summary.py outputs/2026-12-02/11-31-37/csv/metrics.csv [more.csv ...]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def evaluations(path: Path) -> list[tuple[int, float, float]]:
    """``(step, val/rel_l2, training seconds)`` of every evaluation logged in ``path``."""
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get("val/rel_l2"):
                seconds = float(r["val/train_time_s"]) if r.get("val/train_time_s") else math.nan
                rows.append((int(r["step"]), float(r["val/rel_l2"]), seconds))
    return rows


def summary(path: Path) -> str:
    """Markdown table of the evaluations of one run and a line with its final and best errors."""
    if not path.is_file():
        return f"{path}: no such file (the run wrote no metrics)\n"
    rows = evaluations(path)
    if not rows:
        return f"{path}: no val/rel_l2 logged\n"
    lines = [f"{path}", "", "| step | val rel L2 | training s |", "|---:|---:|---:|"]
    lines += [f"| {s} | {e:.3e} | {t:.0f} |" for s, e, t in rows]
    best = min(rows, key=lambda r: r[1])
    last = rows[-1]
    lines += ["", f"final {last[1]:.3e} at step {last[0]}; best {best[1]:.3e} at step {best[0]}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="csv/metrics.csv of a physics-informed run")
    for path in parser.parse_args().metrics:
        print(summary(path))


if __name__ == "__main__":
    main()
