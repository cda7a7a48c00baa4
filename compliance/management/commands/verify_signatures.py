"""``manage.py verify_signatures``: re-hash every signed dossier's snapshot against its signature; exit 1 on any mismatch."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compliance.dossiers import signatures_verify


class Command(BaseCommand):
    help = (
        "Re-hash every signed dossier snapshot and compare it with its signature; prints one line per dossier that does not match "
        "(altered snapshot, changed hash, reopened or unsigned) and exits non-zero if there is any."
    )

    def handle(self, *args, **options) -> None:
        checked, problems = signatures_verify()
        for dossier, reason in problems:
            self.stdout.write(f"dossier {dossier.pk} (version {dossier.version_id}, revision {dossier.revision}): {reason}")
        if problems:
            raise CommandError(f"{len(problems)} of {checked} signed dossiers do not match their signature.")
        self.stdout.write(self.style.SUCCESS(f"All {checked} signed dossiers match their signature."))
