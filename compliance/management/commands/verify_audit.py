"""``manage.py verify_audit``: check the audit hash chain against its keys, its head and every checkpoint (exit 1 if it fails)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.audit import audit_verify_chain
from core.audit_checkpoints import checkpoint_path


class Command(BaseCommand):
    help = (
        "Verify the audit trail: each event's keyed hash and link, the head, and every signed checkpoint outside the database; "
        "exits non-zero and names the first broken event if it was tampered with."
    )

    def handle(self, *args, **options) -> None:
        verdict = audit_verify_chain()
        if not verdict.ok:
            where = f"Audit chain broken at event #{verdict.broken_seq}" if verdict.broken_seq is not None else "Audit checkpoints unusable"
            raise CommandError(f"{where}: {verdict.reason}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {verdict.checked} events verified against {verdict.checkpoints} checkpoint{'s' if verdict.checkpoints != 1 else ''}."
            )
        )
        if verdict.checked and not verdict.checkpoints:
            self.stderr.write(
                f"No checkpoint in {checkpoint_path()} yet: until one is written (manage.py audit_checkpoint, or the beat), "
                "removing the newest events and rewinding the head cannot be detected."
            )
