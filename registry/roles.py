"""The role groups and their model permissions.

The API's rules are in ``core.access``; these Django permissions give the admin
the same shape: who may view, add and change each kind of record. ``roles_sync`` is
run by the data migration and again after every ``migrate`` (and every test-database
flush), so the groups always match this table.
"""

from __future__ import annotations

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
REGISTRY = ["institution", "foundationmodel", "modelversion", "dataset", "provenance", "datausegrant", "deployment"]

ROLE_PERMISSIONS = {
    "ml_engineer": {
        "registry": {
            "institution": [VIEW],
            "foundationmodel": [VIEW, ADD, CHANGE],
            "modelversion": [VIEW, ADD, CHANGE],
            "dataset": [VIEW, ADD, CHANGE],
            "provenance": [VIEW, ADD, DELETE],
            "datausegrant": [VIEW],
            "deployment": [VIEW],
        },
        "validation": {"validationrun": [VIEW]},
    },
    "compliance_officer": {
        "registry": {
            "institution": [VIEW, ADD, CHANGE],
            "foundationmodel": [VIEW],
            "modelversion": [VIEW, CHANGE],
            "dataset": [VIEW, ADD, CHANGE],
            "provenance": [VIEW],
            "datausegrant": [VIEW],  # granted and revoked through the API and pages (registry.services), not the admin
            "deployment": [VIEW, ADD, CHANGE],
        },
        "core": {"auditevent": [VIEW]},
        "validation": {"validationrun": [VIEW]},
    },
    "clinician": {
        "registry": {"institution": [VIEW], "foundationmodel": [VIEW], "modelversion": [VIEW], "deployment": [VIEW]},
    },
    "auditor": {
        "registry": {name: [VIEW] for name in REGISTRY},
        "core": {"auditevent": [VIEW]},
        "validation": {"validationrun": [VIEW]},
    },
    # The service accounts hold no model permission: Celery workers read the database directly and
    # a site agent speaks only the federated job API, so neither has anything to do in the admin.
    "worker": {},
    "site_agent": {},
    "deployment_logger": {},
}


def roles_sync(group_model, permission_model) -> None:
    """Create each role's group and set exactly its permissions (models passed in: works in migrations).

    Permissions of models whose tables a migration has not created yet are left out;
    the ``post_migrate`` run after every migrate completes the groups.
    """
    for role, apps_perms in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = [(app_label, f"{verb}_{model}") for app_label, models in apps_perms.items() for model, verbs in models.items() for verb in verbs]
        available = {
            (p.content_type.app_label, p.codename): p
            for p in permission_model.objects.filter(codename__in={c for _, c in wanted}).select_related("content_type")
        }
        group.permissions.set([available[key] for key in wanted if key in available])
