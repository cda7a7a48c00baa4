"""``manage.py agent_token --institution CODE [--days N]``: a new API token for a site's agent, on one line.

Each call issues a new token (only its hash is stored, so an old one cannot be shown again);
it lasts ``RADTRUST_API_TOKEN_MAX_DAYS`` unless ``--days`` says less. Revoke the one it
replaces with ``POST /api/tokens/{id}/revoke/``.

The agent's account is a site agent (role ``site_agent``) named ``agent-<code>`` at that
institution, created the first time and reused after. The role reads its own site's federated
jobs, their studies and the models they run, nothing else (``core.access``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.audit import audit_context
from core.choices import Role
from core.tokens import api_token_issue
from registry.models import Institution, User
from registry.services import user_create


class Command(BaseCommand):
    help = "Create or reuse the site agent account agent-<code> of an institution and print a new API token for it (one line)."

    def add_arguments(self, parser):
        parser.add_argument("--institution", required=True, help="The institution's site code.")
        parser.add_argument("--days", type=int, default=None, help="The token's lifetime in days (default and most: RADTRUST_API_TOKEN_MAX_DAYS).")

    def handle(self, *args, institution: str, days: int | None = None, **options):
        site = Institution.objects.filter(code=institution).first()
        if site is None:
            raise CommandError(f"No institution with code {institution!r}; create it first.")
        username = f"agent-{site.code}"
        with audit_context(label="manage.py agent_token"):
            user = User.objects.filter(username=username).first() or user_create(username=username, role=Role.SITE_AGENT, institution=site)
            if user.institution_id != site.pk or user.role != Role.SITE_AGENT:
                raise CommandError(f"{username!r} exists but is not the site agent of {site.code}; refusing to hand out its token.")
            try:
                issued = api_token_issue(user=user, name="site agent", days=days or settings.RADTRUST_API_TOKEN_MAX_DAYS)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        self.stdout.write(issued.key)
