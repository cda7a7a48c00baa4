from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from registry.models import User


@pytest.mark.django_db
def test_creates_a_user_with_role_institution_and_token(institutions, capsys, monkeypatch):
    monkeypatch.setenv("NEW_PW", "a-long-enough-password-42")
    call_command("create_user", "--username", "dr-who", "--role", "clinician", "--institution", "north", "--password-env", "NEW_PW", "--token")
    user = User.objects.get(username="dr-who")
    assert (user.role, user.institution.code) == ("clinician", "north")
    assert user.check_password("a-long-enough-password-42")
    assert "API token: " in capsys.readouterr().out


@pytest.mark.django_db
def test_unknown_institution_names_the_known_codes(institutions):
    with pytest.raises(CommandError, match="known codes: north, south, vendor"):
        call_command("create_user", "--username", "x", "--role", "auditor", "--institution", "nowhere")


@pytest.mark.django_db
def test_weak_password_is_refused(institutions, monkeypatch):
    monkeypatch.setenv("NEW_PW", "123")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_user", "--username", "x", "--role", "auditor", "--institution", "north", "--password-env", "NEW_PW")
    assert not User.objects.filter(username="x").exists()
