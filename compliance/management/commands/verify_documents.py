"""``manage.py verify_documents [--json]``: re-hash every stored document; exit 1 when any file is missing or altered."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from compliance.documents import documents_verify
from compliance.models import Document


class Command(BaseCommand):
    help = (
        "Re-hash every stored document against its recorded sha256; prints one line per missing or altered file and exits non-zero if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object instead of lines.")

    def handle(self, *args, as_json: bool, **options) -> None:
        checked = Document.objects.count()
        problems = documents_verify()
        if as_json:
            self.stdout.write(
                json.dumps(
                    {
                        "checked": checked,
                        "ok": not problems,
                        "problems": [
                            {
                                "document": d.pk,
                                "dossier": d.dossier_id,
                                "revision": d.dossier.revision,
                                "kind": d.kind,
                                "storage_name": d.storage_name,
                                "sha256": d.sha256,
                                "reason": reason,
                            }
                            for d, reason in problems
                        ],
                    }
                )
            )
        else:
            for document, reason in problems:
                self.stdout.write(
                    f"document {document.pk} ({document.kind} of dossier {document.dossier_id}, revision {document.dossier.revision}): {reason}"
                )
        if problems:
            raise CommandError(f"{len(problems)} of {checked} stored documents are missing or altered.")
        if not as_json:
            self.stdout.write(self.style.SUCCESS(f"All {checked} stored documents match their sha256."))
