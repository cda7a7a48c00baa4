"""``manage.py verify_audit``: walk the audit hash chain and say whether it is intact (exit 1 if not)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.audit import audit_verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero and names the first broken event if it was tampered with."

    def handle(self, *args, **options) -> None:
        verdict = audit_verify_chain()
        if not verdict.ok:
            raise CommandError(f"Audit chain broken at event #{verdict.broken_seq}: {verdict.reason}")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {verdict.checked} events verified."))
