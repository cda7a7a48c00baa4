"""Site agents get a role of their own (issue 14).

Each ``agent-<code>`` account that ``manage.py agent_token`` made as a worker of institution
``<code>`` moves from the ``worker`` group to ``site_agent``, so an agent installed before keeps
its jobs and loses what the worker role used to read. Other worker accounts stay workers.
The group's permissions are set by ``roles_sync`` after migrate.
"""

from django.db import migrations


def _move(apps, source: str, target: str) -> None:
    group = apps.get_model("auth", "Group")
    user = apps.get_model("registry", "User")
    old, _ = group.objects.get_or_create(name=source)
    new, _ = group.objects.get_or_create(name=target)
    for account in user.objects.filter(groups=old, username__startswith="agent-").select_related("institution"):
        if account.institution is not None and account.username == f"agent-{account.institution.code}":
            account.groups.remove(old)
            account.groups.add(new)


def agents_to_site_agents(apps, schema_editor):
    _move(apps, "worker", "site_agent")


def site_agents_to_workers(apps, schema_editor):
    _move(apps, "site_agent", "worker")


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0010_dataset_case_outputs_shared_with_provider"),
    ]

    operations = [migrations.RunPython(agents_to_site_agents, site_agents_to_workers)]
