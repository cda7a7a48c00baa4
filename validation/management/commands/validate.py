"""``manage.py validate VERSION DATASET [--wait]``: queue a validation run and follow it."""

from __future__ import annotations

import json
import sys
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from compliance.audit import audit_context
from radtrust.errors import Conflict
from registry.models import Dataset, ModelVersion, User
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun


def _version(text: str) -> ModelVersion:
    """A version by id, or by ``MODEL_NAME:VERSION``."""
    queryset = ModelVersion.objects.select_related("foundation_model")
    if text.isdigit():
        found = queryset.filter(pk=int(text)).first()
    else:
        name, _, number = text.rpartition(":")
        found = queryset.filter(foundation_model__name=name, version=number).first() if name else None
    if found is None:
        raise CommandError(f"No model version {text!r}: give its id or MODEL_NAME:VERSION (for example 'ChestFM-Pneumothorax:1.1.0').")
    return found


def _dataset(text: str) -> Dataset:
    found = Dataset.objects.filter(pk=int(text)).first() if text.isdigit() else Dataset.objects.filter(name=text).first()
    if found is None:
        raise CommandError(f"No dataset {text!r}: give its id or name.")
    return found


def progress_line(run: ValidationRun, width: int = 30) -> str:
    """``[#######.....]  42% inference (attempt 1, worker@host)``"""
    filled = int(round(run.progress * width))
    where = f"attempt {run.attempt}, {run.worker}" if run.worker else "waiting for a worker"
    return f"[{'#' * filled}{'.' * (width - filled)}] {run.progress * 100:3.0f}% {run.get_stage_display()} ({where})"


class Command(BaseCommand):
    help = "Queue a validation run of a model version on a dataset; with --wait, follow it to the end."

    def add_arguments(self, parser):
        parser.add_argument("version", help="Version id, or MODEL_NAME:VERSION")
        parser.add_argument("dataset", help="Dataset id or name")
        parser.add_argument("--user", required=True, help="The ML engineer requesting the run (recorded and audited).")
        parser.add_argument("--manifest", default="manifest.csv", help="Manifest path relative to the dataset location.")
        parser.add_argument("--config", default="{}", help="Suite options as JSON, e.g. '{\"n_resamples\": 200}'.")
        parser.add_argument("--on-site", action="store_true", help="Run on the dataset institution's own workers.")
        parser.add_argument("--wait", action="store_true", help="Follow the run with a progress bar until it ends.")
        parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds to wait with --wait.")

    def handle(self, *args, version, dataset, user, manifest, config, on_site, wait, timeout, **options):
        actor = User.objects.filter(username=user).first()
        if actor is None:
            raise CommandError(f"No user {user!r}.")
        try:
            suite = json.loads(config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from None
        try:
            with audit_context(user=actor):
                run = services.run_create(actor=actor, version=_version(version), dataset=_dataset(dataset), manifest=manifest, config=suite, on_site=on_site)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()) if hasattr(exc, "error_dict") else " ".join(exc.messages)) from None
        except Conflict as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Queued validation run {run.pk} on queue {run.queue}.")
        if not wait:
            return
        run = self.follow(run.pk, timeout)
        self.report(run)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.status}: [{run.error_reason}] {run.error}")

    def follow(self, run_id: int, timeout: float) -> ValidationRun:
        """Redraw the progress bar until the run ends (on a terminal in place, elsewhere one line per change)."""
        deadline = time.monotonic() + timeout
        interactive = sys.stderr.isatty()
        last = ""
        while True:
            run = ValidationRun.objects.defer("results").get(pk=run_id)
            line = progress_line(run)
            if line != last:
                sys.stderr.write(("\r" + line + "\033[K") if interactive else line + "\n")
                sys.stderr.flush()
                last = line
            if run.finished:
                if interactive:
                    sys.stderr.write("\n")
                return ValidationRun.objects.get(pk=run_id)
            if time.monotonic() > deadline:
                raise CommandError(f"Run {run_id} still {run.status} after {timeout:.0f} s; it goes on (follow it in the API).")
            time.sleep(0.5)

    def report(self, run: ValidationRun) -> None:
        w = self.stdout.write
        w(f"Run {run.pk}: {run.status} on {run.device.get('name', '?')} ({run.device.get('kind', '?')}), worker {run.worker}, attempt {run.attempt}")
        if run.status != RunStatus.SUCCEEDED:
            return
        for line in summary_lines(run.summary):
            w(line)


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
            lines.append(f"    largest {kind.replace('_', ' ')}: {_ci(gap)} by {gap['grouping']} ({high} vs {low})")
    return lines
