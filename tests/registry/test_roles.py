"""Role groups exist after migrate and survive a test-database flush, with the table's permissions."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group

from core.choices import Role
from registry.models import User
from registry.roles import ROLE_PERMISSIONS
from registry.services import user_create


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


@pytest.mark.django_db
def test_every_role_has_its_group_and_the_service_accounts_hold_no_model_permission():
    assert set(Role.values) == set(ROLE_PERMISSIONS)
    assert _codenames("worker") == set() and _codenames("site_agent") == set()


@pytest.mark.django_db
def test_the_migration_moves_agent_accounts_from_worker_to_site_agent(institutions):
    """Agents installed before keep their jobs under the narrower role; other workers stay workers."""
    agent = user_create(username="agent-north", role="worker", institution=institutions["north"])
    misnamed = user_create(username="agent-south", role="worker", institution=institutions["north"])  # not South's account
    central = user_create(username="celery", role="worker", institution=institutions["vendor"])
    migration = importlib.import_module("registry.migrations.0011_agent_accounts_become_site_agents")
    migration.agents_to_site_agents(django_apps, None)
    assert [User.objects.get(pk=u.pk).role for u in (agent, misnamed, central)] == ["site_agent", "worker", "worker"]
    migration.site_agents_to_workers(django_apps, None)
    assert User.objects.get(pk=agent.pk).role == "worker"
