"""Role groups exist after migrate and survive a test-database flush, with the table's permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from registry.roles import ROLE_PERMISSIONS


def _codenames(role: str) -> set[str]:
    return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))


@pytest.mark.django_db(transaction=True)
def test_groups_match_the_role_table_even_after_a_flush():
    """Runs as a transactional test: the previous one's flush must not have removed the groups."""
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLE_PERMISSIONS)
    assert "add_modelversion" in _codenames("ml_engineer")
    assert "view_auditevent" in _codenames("auditor")
    assert not {c for c in _codenames("auditor") if not c.startswith("view_")}
    assert "change_deployment" not in _codenames("clinician")


@pytest.mark.django_db(transaction=True)
def test_second_transactional_test_still_sees_the_groups():
    assert Group.objects.filter(name__in=ROLE_PERMISSIONS).count() == len(ROLE_PERMISSIONS)
