"""``manage.py audit_checkpoint``: append the audit chain's head to the signed checkpoint file now (the beat does it periodically)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.audit import audit_checkpoint_write
from core.audit_checkpoints import checkpoint_path
from core.errors import Conflict


class Command(BaseCommand):
    help = "Append the audit chain's head (sequence number and hash, signed with the audit key) to the checkpoint file outside the database."

    def handle(self, *args, **options) -> None:
        try:
            checkpoint = audit_checkpoint_write()
        except Conflict as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"The checkpoint file {checkpoint_path()} cannot be written: {exc.strerror or exc}") from None
        if checkpoint is None:
            self.stdout.write("No checkpoint written: the audit chain is empty, or its head is the newest checkpoint's already.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Checkpoint of event #{checkpoint.seq} ({checkpoint.hash}) signed with key {checkpoint.key_id} appended to {checkpoint_path()}."
            )
        )
