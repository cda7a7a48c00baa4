"""``manage.py usage_logger_token --deployment ID [--days N]``: a new API token for a deployment's logger, on one line.

The installation sends its usage logs with it (``POST /api/usage-batches/``). The logger's account,
``logger-<id>`` at the deployment's institution, is created the first time and bound to that one
deployment; its tokens write that deployment's logs and read nothing (``compliance.usage_logs``).
Revoke a token it replaces with ``POST /api/tokens/{id}/revoke/``.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from compliance.usage_logs import usage_logger_issue
from core.audit import audit_context
from core.errors import Conflict
from registry.models import Deployment


class Command(BaseCommand):
    help = "Create or reuse the usage logger account of a deployment and print a new API token for it (one line)."

    def add_arguments(self, parser):
        parser.add_argument("--deployment", type=int, required=True, help="The deployment's id.")
        parser.add_argument("--days", type=int, default=None, help="The token's lifetime in days (default and most: RADTRUST_API_TOKEN_MAX_DAYS).")

    def handle(self, *args, deployment: int, days: int | None = None, **options):
        target = Deployment.objects.select_related("institution").filter(pk=deployment).first()
        if target is None:
            raise CommandError(f"No deployment {deployment}.")
        with audit_context(label="manage.py usage_logger_token"):
            try:
                issued = usage_logger_issue(deployment=target, days=days)
            except (ValidationError, Conflict) as exc:
                raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from exc
        self.stdout.write(issued.key)
