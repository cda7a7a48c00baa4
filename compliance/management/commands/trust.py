"""``manage.py trust VERSION [--json] [--recompute]``: a version's six trustworthiness scores and their evidence."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from compliance.choices import TrustTrigger
from compliance.trust.services import latest_assessment, trust_assess
from core.audit import audit_context
from registry.management.arguments import version_argument


class Command(BaseCommand):
    help = "Print a version's FUTURE-AI trust assessment: per principle the score, status and criteria with their evidence."

    def add_arguments(self, parser):
        parser.add_argument("version", help="The version's id or MODEL_NAME:VERSION.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="One JSON object with a key per principle.")
        parser.add_argument(
            "--recompute", action="store_true", help="Score the evidence as it is now (a new assessment) instead of showing the newest."
        )

    def handle(self, *args, version, as_json: bool, recompute: bool, **options):
        version = version_argument(version)
        assessment = latest_assessment(version)
        if recompute or assessment is None:
            with audit_context(label="manage.py trust"):
                assessment = trust_assess(version=version, trigger=TrustTrigger.MANUAL)
        if as_json:  # exactly one key per principle; which assessment it is goes to stderr
            self.stderr.write(
                f"trust assessment {assessment.pk} of {version}, policy {assessment.policy.version}, {assessment.computed_at.isoformat()}"
            )
            self.stdout.write(
                json.dumps(
                    {
                        name: {
                            "score": p["score"],
                            "status": p["status"],
                            "strength": p["strength"],
                            "summary": p["summary"],
                            "criteria": p["criteria"],
                        }
                        for name, p in assessment.principles.items()
                    },
                    indent=2,
                )
            )
            return
        w = self.stdout.write
        w(
            f"Trust assessment {assessment.pk} of {version} under policy {assessment.policy.version}, computed {assessment.computed_at:%Y-%m-%d %H:%M} ({assessment.trigger})"
        )
        for line in assessment_lines(assessment.principles):
            w(line)


def assessment_lines(principles: dict) -> list[str]:
    """The breakdown as text: a line per principle, then one per criterion with its value, status and why."""
    lines = []
    for name, p in principles.items():
        score = "insufficient evidence" if p["score"] is None else f"{p['score']:5.1f}"
        lines.append(f"{name:<15} {score:<22} {p['status']}, evidence {p['strength'] or 'n/a'}: {p['summary']}")
        for c in p["criteria"]:
            value = "   --" if c["value"] is None else f"{c['value']:5.2f}"
            lines.append(f"    {value} {c['status']:<12} {'required ' if c['required'] else ''}{c['key']}: {c['explanation']}")
    return lines
