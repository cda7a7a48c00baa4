"""Following a run and printing its headline figures: shared by ``manage.py validate`` and ``manage.py demo``."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from validation.models import ValidationRun


def progress_line(run: ValidationRun, width: int = 30) -> str:
    """``[#######.....]  42% inference (attempt 1, worker@host)``"""
    filled = int(round(run.progress * width))
    where = f"attempt {run.attempt}, {run.worker}" if run.worker else "waiting for a worker"
    return f"[{'#' * filled}{'.' * (width - filled)}] {run.progress * 100:3.0f}% {run.get_stage_display()} ({where})"


def follow_run(run_id: int, *, timeout: float, stream: TextIO | None = None, poll: float = 0.5) -> ValidationRun:
    """Redraw a progress bar until the run ends (on a terminal in place, elsewhere one line per change).

    Raises ``TimeoutError`` if the run is still going after ``timeout`` seconds; the run itself goes on.
    """
    stream = stream or sys.stderr
    deadline = time.monotonic() + timeout
    interactive = stream.isatty()
    last = ""
    while True:
        run = ValidationRun.objects.defer("results").get(pk=run_id)
        line = progress_line(run)
        if line != last:
            stream.write(("\r" + line + "\033[K") if interactive else line + "\n")
            stream.flush()
            last = line
        if run.finished:
            if interactive:
                stream.write("\n")
            return ValidationRun.objects.get(pk=run_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run {run_id} still {run.status} after {timeout:.0f} s; it goes on (follow it in the API).")
        time.sleep(poll)


def _ci(estimate: dict | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    if estimate.get("ci_low") is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['ci_low']:.3f}, {estimate['ci_high']:.3f}]"


def summary_lines(summary: dict) -> list[str]:
    """The headline figures of a run as text: overall metrics with 95% CIs, then the largest gaps."""
    lines = [f"  {summary['n_evaluated']} images evaluated, {summary['n_skipped']} skipped"]
    for label, figures in summary["labels"].items():
        overall = figures["overall"]
        shown = ", ".join(f"{name} {_ci(overall.get(name))}" for name in ("auroc", "sensitivity", "specificity", "dice", "iou") if name in overall)
        lines.append(f"  {label}: {shown}")
        for kind, gap in figures["largest_gaps"].items():
            high, low = (", ".join(gap[k] or []) for k in ("group_high", "group_low"))
            pair = f"{high} vs {low}" if high else "no difference between the groups"
            lines.append(f"    largest {kind.replace('_', ' ')}: {_ci(gap)} by {gap['grouping']} ({pair})")
    return lines
