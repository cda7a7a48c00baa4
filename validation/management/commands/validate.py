"""``manage.py validate VERSION DATASET [--wait]``: queue a validation run and follow it."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.access import may
from core.audit import audit_context
from core.errors import Conflict
from registry.management.arguments import dataset_argument, version_argument
from registry.models import User
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun
from validation.reporting import follow_run, summary_lines


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
        if not may(actor, "validation_run", write=True):
            raise CommandError(f"{user} is a {actor.role or 'user without a role'}; only ML engineers start validation runs.")
        try:
            suite = json.loads(config)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not JSON: {exc}") from None
        try:
            with audit_context(user=actor):
                run = services.run_create(
                    actor=actor,
                    version=version_argument(version),
                    dataset=dataset_argument(dataset),
                    manifest=manifest,
                    config=suite,
                    on_site=on_site,
                )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()) if hasattr(exc, "error_dict") else " ".join(exc.messages)
            ) from None
        except (Conflict, PermissionDenied) as exc:  # a refusal: a retired version, data not granted to the provider
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Queued validation run {run.pk} on queue {run.queue}.")
        if not wait:
            return
        try:
            run = follow_run(run.pk, timeout=timeout)
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        self.report(run)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.status}: [{run.error_reason}] {run.error}")

    def report(self, run: ValidationRun) -> None:
        w = self.stdout.write
        w(f"Run {run.pk}: {run.status} on {run.device.get('name', '?')} ({run.device.get('kind', '?')}), worker {run.worker}, attempt {run.attempt}")
        if run.status != RunStatus.SUCCEEDED:
            return
        for line in summary_lines(run.summary):
            w(line)
