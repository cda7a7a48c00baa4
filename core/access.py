"""Who may see and change what: roles and the institution rule, in one place.

Every API view and page asks this module. ``POLICY`` names the roles that may read
and write each resource; ``scope`` narrows a queryset to what the user's role and
institution allow (objects outside it are not found, never revealed).
"""

from __future__ import annotations

from django.apps import apps
from django.db.models import Q, QuerySet
from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.choices import Role

ML, CO, CL, AU, WK = Role.ML_ENGINEER, Role.COMPLIANCE_OFFICER, Role.CLINICIAN, Role.AUDITOR, Role.WORKER
EVERYONE = frozenset(Role)

# resource -> (roles that may read, roles that may write)
POLICY: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "institution": (EVERYONE, frozenset({CO})),
    "foundation_model": (EVERYONE, frozenset({ML})),
    "model_version": (EVERYONE, frozenset({ML})),
    "model_version.transition": (EVERYONE, frozenset({ML, CO})),
    "dataset": (frozenset({ML, CO, AU, WK}), frozenset({ML, CO})),
    "provenance": (frozenset({ML, CO, AU, WK}), frozenset({ML})),
    "deployment": (EVERYONE, frozenset({CO})),
    "audit_event": (frozenset({CO, AU}), frozenset()),
    "validation_run": (frozenset({ML, CO, AU, WK}), frozenset({ML})),
    "run_file": (frozenset({ML, CO, AU, WK}), frozenset()),
    "case_flag": (frozenset({ML, CO, AU, WK}), frozenset()),
    "alert": (EVERYONE, frozenset({CO})),
    "alert.revalidate": (EVERYONE, frozenset({CO, ML})),
    "feedback": (frozenset({ML, CO, CL, AU}), frozenset({CL})),
    "monitoring": (frozenset({ML, CO, AU}), frozenset()),
    "incident": (frozenset({ML, CO, AU}), frozenset({CO})),
    "trust_assessment": (EVERYONE, frozenset({ML, CO})),
    "scoring_policy": (frozenset({ML, CO, AU}), frozenset({CO})),
    "trust_exception": (frozenset({ML, CO, AU}), frozenset({CO})),
    "dossier": (frozenset({ML, CO, AU}), frozenset({CO})),
    "document": (frozenset({ML, CO, AU}), frozenset({CO})),
    "federated_study": (frozenset({ML, CO, AU}), frozenset({ML, CO})),
    "federated_job": (frozenset({WK}), frozenset({WK})),  # a site's agent; scope keeps it to its own site
}


def role_of(user) -> str | None:
    """The user's role, read once per request object."""
    if not getattr(user, "is_authenticated", False):
        return None
    if not hasattr(user, "_radtrust_role"):
        user._radtrust_role = user.role
    return user._radtrust_role


def may(user, resource: str, *, write: bool) -> bool:
    if getattr(user, "is_superuser", False):
        return True
    readers, writers = POLICY[resource]
    return role_of(user) in (writers if write else readers)


_MULTI_VALUED_RULES = {"registry.dataset", "registry.foundationmodel"}


def scope(user, queryset: QuerySet) -> QuerySet:
    """Narrow ``queryset`` to the rows this user's role and institution may see.

    - Compliance officers, auditors and workers see everything.
    - ML engineers see the models their institution provides (and everything under them),
      datasets their institution stewards or that feed their models, and every institution.
    - Clinicians see only their institution, the deployments there and the versions deployed there.
    - A federated job is seen only by its own institution's accounts (the site's agent), whatever the role.
    """
    if getattr(user, "is_superuser", False):
        return queryset
    if queryset.model._meta.label_lower == "validation.federatedjob":  # a site's agent sees its own site's jobs only
        return queryset.filter(institution_id=getattr(user, "institution_id", None))
    role = role_of(user)
    if role in {CO, AU, WK}:
        return queryset
    if role not in {ML, CL}:
        return queryset.none()
    inst = user.institution_id
    label = queryset.model._meta.label_lower
    # Looked up by label: the policy names every app's records, and core imports none of them.
    deployment = apps.get_model("registry", "Deployment")
    site_versions = deployment.objects.filter(status__in=deployment.OPEN_STATUSES, institution_id=inst).values("version_id")
    rules: dict[str, dict[str, Q]] = {
        ML: {
            "registry.institution": Q(),
            "registry.foundationmodel": Q(provider_id=inst),
            "registry.modelversion": Q(foundation_model__provider_id=inst),
            "registry.dataset": Q(institution_id=inst) | Q(provenance__version__foundation_model__provider_id=inst),
            "registry.provenance": Q(version__foundation_model__provider_id=inst),
            "registry.deployment": Q(version__foundation_model__provider_id=inst) | Q(institution_id=inst),
            "validation.validationrun": Q(version__foundation_model__provider_id=inst) | Q(dataset__institution_id=inst),
            "validation.runfile": Q(run__version__foundation_model__provider_id=inst) | Q(run__dataset__institution_id=inst),
            "validation.caseflag": Q(run__version__foundation_model__provider_id=inst) | Q(run__dataset__institution_id=inst),
            "compliance.alert": Q(version__foundation_model__provider_id=inst) | Q(deployment__institution_id=inst),
            "compliance.feedback": Q(version__foundation_model__provider_id=inst),
            "compliance.incident": Q(version__foundation_model__provider_id=inst),
            "compliance.trustassessment": Q(version__foundation_model__provider_id=inst),
            "compliance.scoringpolicy": Q(),
            "compliance.trustexception": Q(version__foundation_model__provider_id=inst),
            "compliance.dossier": Q(version__foundation_model__provider_id=inst),
            "compliance.document": Q(dossier__version__foundation_model__provider_id=inst),
            "validation.federatedstudy": Q(version__foundation_model__provider_id=inst),
        },
        CL: {
            "registry.institution": Q(pk=inst),
            "registry.foundationmodel": Q(versions__in=site_versions),
            "registry.modelversion": Q(pk__in=site_versions),
            "registry.deployment": Q(institution_id=inst),
            "compliance.alert": Q(deployment__institution_id=inst),
            "compliance.feedback": Q(clinician_id=user.pk),
            "compliance.trustassessment": Q(version_id__in=site_versions),
        },
    }
    rule = rules.get(role, {}).get(label)
    if rule is None:
        return queryset.none()
    # DISTINCT only where a rule crosses a one-to-many relation (it would otherwise repeat rows):
    # on a list of a million reports it makes the database de-duplicate all of them before paging.
    return queryset.filter(rule).distinct() if label in _MULTI_VALUED_RULES else queryset.filter(rule)


def owner_institution_id(obj) -> int | None:
    """The institution that owns a registry object, for the write rule below."""
    label = obj._meta.label_lower
    if label == "registry.foundationmodel":
        return obj.provider_id
    if label == "registry.modelversion":
        return obj.foundation_model.provider_id
    if label == "registry.dataset":
        return obj.institution_id
    if label in {
        "registry.provenance",
        "validation.validationrun",
        "compliance.alert",
        "compliance.trustassessment",
        "compliance.trustexception",
        "validation.federatedstudy",
    }:
        return obj.version.foundation_model.provider_id
    return None


def may_change(user, obj) -> bool:
    """ML engineers change only what their institution owns; officers act for the provider on everything."""
    if getattr(user, "is_superuser", False) or role_of(user) != ML:
        return True
    return owner_institution_id(obj) == user.institution_id


def writable_institutions(user, queryset: QuerySet) -> QuerySet:
    """Institutions a user may name as owner (provider, data steward) of a new record."""
    if getattr(user, "is_superuser", False) or role_of(user) != ML:
        return queryset
    return queryset.filter(pk=user.institution_id)


class RolePermission(BasePermission):
    """DRF permission: the view names its ``access_resource``; reads and writes are checked by role.

    A view action may name its own resource with ``access_resources = {"transition": ...}``.
    Object-level institution rules are applied by ``scope`` in ``get_queryset``.
    """

    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        resource = getattr(view, "access_resources", {}).get(getattr(view, "action", None)) or getattr(view, "access_resource", None)
        if resource is None:
            return False
        return may(request.user, resource, write=request.method not in SAFE_METHODS)

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if not may_change(request.user, obj):
            self.message = "This record belongs to another institution; you may only change your institution's records."
            return False
        return True
