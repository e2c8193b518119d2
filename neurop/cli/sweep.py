"""Hydra callback that records every multirun job and keeps a summary table of the sweep up to date.

Each job of ``python train.py -m ...`` (any launcher: basic, submitit local or SLURM) writes
``<job dir>/job.json`` (overrides, status, error, final metrics) when it ends, then rewrites
``<sweep dir>/summary.md`` and ``summary.csv`` from all ``job.json`` files found so far. Rewriting from
the files, rather than appending, makes the table correct whatever order jobs finish in and on whichever
node they run; both files are written under a temporary name and renamed. A failed job is listed with
status ``FAILED`` and its error message, and does not stop the others (Hydra runs the whole batch and
raises at the end).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
"""Written by :func:`neurop.cli.train.run` into the run directory: the final metrics of a job."""

JOB_FILE = "job.json"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_metrics(output_dir: str | Path, metrics: dict[str, float]) -> Path:
    """Save a job's final metrics as ``<output_dir>/metrics.json`` (non-finite values become null)."""
    clean = {k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())}
    path = Path(output_dir) / METRICS_FILE
    _atomic_write(path, json.dumps(clean, indent=2) + "\n")
    return path


def _format_error(value: Any) -> str:
    if isinstance(value, BaseException):
        last = traceback.format_exception_only(type(value), value)[-1].strip()
        return last.replace("\n", " ")
    return ""


def job_record(job_return: JobReturn, output_dir: Path, job_num: int) -> dict[str, Any]:
    """The ``job.json`` content of one finished (or failed) job."""
    metrics_path = output_dir / METRICS_FILE
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    status = job_return.status
    failed = status == JobStatus.FAILED
    return {
        "job": job_num,
        "overrides": list(job_return.overrides or []),
        "status": "FAILED" if failed else ("COMPLETED" if status == JobStatus.COMPLETED else str(status)),
        "error": _format_error(job_return._return_value) if failed else "",
        "output_dir": str(output_dir),
        "metrics": metrics,
    }


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """All ``job.json`` records under ``sweep_dir``, ordered by job number."""
    records = []
    for path in sweep_dir.glob(f"*/{JOB_FILE}"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            log.warning("skipping unreadable %s", path)
    return sorted(records, key=lambda r: r.get("job", 0))


def _metric_columns(records: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in records for k in r.get("metrics", {})})
    # Test and validation errors first: they are what a sweep is read for.
    return sorted(keys, key=lambda k: (not k.startswith("test/"), not k.startswith("val/"), k))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def summary_tables(records: list[dict[str, Any]]) -> tuple[str, str]:
    """Markdown and CSV tables of a sweep: one row per job, its overrides, status and metrics."""
    columns = _metric_columns(records)
    # Overrides shared by every job go above the table; rows show what the sweep varied.
    override_sets = [r.get("overrides", []) for r in records]
    common = set.intersection(*map(set, override_sets)) if len(records) > 1 else set()
    header = ["job", "overrides", "status", *columns, "error"]
    rows = [
        [
            str(r.get("job", "")),
            " ".join(o for o in r.get("overrides", []) if o not in common),
            r.get("status", ""),
            *[_cell(r.get("metrics", {}).get(c)) for c in columns],
            r.get("error", ""),
        ]
        for r in records
    ]
    n_failed = sum(r.get("status") == "FAILED" for r in records)
    md = [
        f"# Sweep summary: {len(records)} jobs, {n_failed} failed",
        "",
        *(
            [f"Common overrides: `{' '.join(o for o in override_sets[0] if o in common)}`", ""]
            if common
            else []
        ),
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return "\n".join(md) + "\n", buf.getvalue()


def write_summary(sweep_dir: str | Path) -> Path:
    """(Re)write ``summary.md`` and ``summary.csv`` of ``sweep_dir``; return the Markdown path."""
    sweep_dir = Path(sweep_dir)
    md, table = summary_tables(collect_jobs(sweep_dir))
    _atomic_write(sweep_dir / "summary.csv", table)
    path = sweep_dir / "summary.md"
    _atomic_write(path, md)
    return path


class SweepSummary(Callback):
    """Record each multirun job in ``job.json`` and refresh the sweep's summary tables.

    Registered in ``configs/hydra/default.yaml`` under ``hydra.callbacks``; does nothing in single runs.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        output_dir = Path(hydra_cfg.runtime.output_dir)
        record = job_record(job_return, output_dir, int(hydra_cfg.job.num))
        _atomic_write(output_dir / JOB_FILE, json.dumps(record, indent=2) + "\n")
        path = write_summary(hydra_cfg.sweep.dir)
        if record["status"] == "FAILED":
            log.error(
                "job %d failed (%s); the sweep goes on. Summary: %s", record["job"], record["error"], path
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            path = write_summary(sweep_dir)
            log.info("sweep summary: %s", path)


__all__ = ["SweepSummary", "collect_jobs", "summary_tables", "write_metrics", "write_summary"]
