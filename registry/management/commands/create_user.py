"""Create a user with one role at one institution; optionally print an API token (shown once: only its hash is kept)."""

from __future__ import annotations

import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.choices import Role
from core.errors import Conflict
from core.tokens import api_token_issue
from registry.models import Institution
from registry.services import user_create


class Command(BaseCommand):
    help = "Create a user with a role (ml_engineer, compliance_officer, clinician, auditor, worker) at an institution."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--institution", required=True, help="Institution code.")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-env", help="Name of an environment variable that holds the password (never pass it on the command line).")
        parser.add_argument("--staff", action="store_true", help="Allow the user into the admin (with their role's permissions).")
        parser.add_argument("--token", action="store_true", help="Create and print an API token (expires after RADTRUST_API_TOKEN_DAYS).")

    def handle(self, *args, username, role, institution, email, password_env, staff, token, **options):
        site = Institution.objects.filter(code=institution).first()
        if site is None:
            known = ", ".join(Institution.objects.values_list("code", flat=True)) or "none yet"
            raise CommandError(f"Unknown institution {institution!r}; known codes: {known}.")
        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"Environment variable {password_env} is empty or unset.")
        try:
            user = user_create(username=username, role=role, institution=site, email=email, password=password)
        except (ValidationError, Conflict) as exc:
            raise CommandError(str(exc)) from exc
        if staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        self.stdout.write(f"Created {role} {username} at {site.code}.")
        if token:
            self.stdout.write(f"API token: {api_token_issue(user=user, name='create_user --token').key}")
