"""``manage.py agent_token --institution CODE``: the API token of a site's agent, on one line.

The agent's account is a worker named ``agent-<code>`` at that institution, created the first
time and reused after; the federated job API shows it only its own site's jobs.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from core.audit import audit_context
from core.choices import Role
from registry.models import Institution, User
from registry.services import user_create


class Command(BaseCommand):
    help = "Create or reuse the worker account agent-<code> of an institution and print its API token (one line)."

    def add_arguments(self, parser):
        parser.add_argument("--institution", required=True, help="The institution's site code.")

    def handle(self, *args, institution: str, **options):
        site = Institution.objects.filter(code=institution).first()
        if site is None:
            raise CommandError(f"No institution with code {institution!r}; create it first.")
        username = f"agent-{site.code}"
        with audit_context(label="manage.py agent_token"):
            user = User.objects.filter(username=username).first() or user_create(username=username, role=Role.WORKER, institution=site)
            if user.institution_id != site.pk or user.role != Role.WORKER:
                raise CommandError(f"{username!r} exists but is not a worker at {site.code}; refusing to hand out its token.")
            token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
