"""Create the role groups with their model permissions (DESIGN.md §1).

The API's rules are in ``registry.access``; these Django permissions give the admin
the same shape: who may view, add and change each kind of record.
"""

from django.db import migrations

VIEW, ADD, CHANGE, DELETE = "view", "add", "change", "delete"
REGISTRY = ["institution", "foundationmodel", "modelversion", "dataset", "provenance", "deployment"]

ROLE_PERMISSIONS = {
    "ml_engineer": {
        "registry": {
            "institution": [VIEW],
            "foundationmodel": [VIEW, ADD, CHANGE],
            "modelversion": [VIEW, ADD, CHANGE],
            "dataset": [VIEW, ADD, CHANGE],
            "provenance": [VIEW, ADD, DELETE],
            "deployment": [VIEW],
        },
    },
    "compliance_officer": {
        "registry": {
            "institution": [VIEW, ADD, CHANGE],
            "foundationmodel": [VIEW],
            "modelversion": [VIEW, CHANGE],
            "dataset": [VIEW, ADD, CHANGE],
            "provenance": [VIEW],
            "deployment": [VIEW, ADD, CHANGE],
        },
        "compliance": {"auditevent": [VIEW]},
    },
    "clinician": {
        "registry": {"institution": [VIEW], "foundationmodel": [VIEW], "modelversion": [VIEW], "deployment": [VIEW]},
    },
    "auditor": {
        "registry": {name: [VIEW] for name in REGISTRY},
        "compliance": {"auditevent": [VIEW]},
    },
    "worker": {
        "registry": {"foundationmodel": [VIEW], "modelversion": [VIEW], "dataset": [VIEW], "deployment": [VIEW], "institution": [VIEW]},
    },
}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, apps_perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [
            (app_label, f"{verb}_{model}")
            for app_label, models in apps_perms.items()
            for model, verbs in models.items()
            for verb in verbs
        ]
        perms = [Permission.objects.get(content_type__app_label=a, codename=c) for a, c in codenames]
        group.permissions.set(perms)


def drop_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
        ("compliance", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, drop_roles)]
