"""Who may see and change what: roles and the institution rule, in one place.

Every API view and page asks this module. ``POLICY`` names the roles that may read
and write each resource; ``scope`` narrows a queryset to what the user's role and
institution allow (objects outside it are not found, never revealed).
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.choices import Role

ML, CO, CL, AU, SA = Role.ML_ENGINEER, Role.COMPLIANCE_OFFICER, Role.CLINICIAN, Role.AUDITOR, Role.SITE_AGENT
DL = Role.DEPLOYMENT_LOGGER
EVERYONE = frozenset(Role)
# The roles of persons. The service accounts read only what their work needs: a site agent its
# site's federated jobs and their studies; the central worker (Celery reads the database, never
# the API) nothing at all, so a leaked worker token opens no patient-derived row.
PEOPLE = frozenset({ML, CO, CL, AU})

# resource -> (roles that may read, roles that may write)
POLICY: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "institution": (PEOPLE, frozenset({CO})),
    "foundation_model": (PEOPLE, frozenset({ML})),
    "model_version": (PEOPLE, frozenset({ML})),
    "model_version.transition": (PEOPLE, frozenset({ML, CO})),
    "model_version.lineage": (frozenset({ML, CO, AU}), frozenset()),  # the lineage page: the people who build and judge adaptations
    "dataset": (frozenset({ML, CO, AU}), frozenset({ML, CO})),
    "provenance": (frozenset({ML, CO, AU}), frozenset({ML, CO})),  # the version's provider's users only (registry.services)
    "data_use_grant": (frozenset({ML, CO, AU}), frozenset({CO})),  # granted and revoked by the dataset's steward's officers
    "deployment": (PEOPLE, frozenset({CO})),
    "audit_event": (frozenset({CO, AU}), frozenset()),
    "validation_run": (frozenset({ML, CO, AU}), frozenset({ML})),
    "run_file": (frozenset({ML, CO, AU}), frozenset()),  # per-case files: the data steward's, unless shared (scope)
    "case_flag": (frozenset({ML, CO, AU}), frozenset()),  # likewise
    "alert": (PEOPLE, frozenset({CO})),
    "alert.revalidate": (PEOPLE, frozenset({CO, ML})),
    "feedback": (frozenset({ML, CO, CL, AU}), frozenset({CL})),
    "monitoring": (frozenset({ML, CO, AU}), frozenset()),
    "incident": (frozenset({ML, CO, AU}), frozenset({CO})),
    "trust_assessment": (PEOPLE, frozenset({ML, CO})),
    "scoring_policy": (frozenset({ML, CO, AU}), frozenset({CO})),
    "trust_exception": (frozenset({ML, CO, AU}), frozenset({CO})),
    "version_approval": (frozenset({ML, CO, AU}), frozenset({CO})),  # proposed and confirmed by two officers of the provider
    "dossier": (frozenset({ML, CO, AU}), frozenset({CO})),
    "risk_file": (frozenset({ML, CO, AU}), frozenset({CO})),  # kept by the provider's officers (compliance.risk_file)
    "qms": (frozenset({CO, AU}), frozenset({CO})),  # each officer's own institution's register (compliance.qms)
    "document": (frozenset({ML, CO, AU}), frozenset({CO})),
    "federated_study": (frozenset({ML, CO, AU, SA}), frozenset({ML, CO})),  # a site agent: its site's studies, its own job (scope)
    "federated_study.outcomes": (frozenset({ML, CO, AU}), frozenset()),  # every site's progress, pooled figures, forest plots, pages
    "federated_job": (frozenset({SA}), frozenset({SA})),  # scope keeps a site agent to its own site's jobs
    "usage_batch": (frozenset(), frozenset({DL})),  # a deployment logger sends its own deployment's batches (compliance.usage_logs)
    "usage_log": (frozenset({ML, CO, AU}), frozenset({CO})),  # read and exported by whoever sees the deployment (scope); retention: officers
    "api_token": (EVERYONE, EVERYONE),  # one's own tokens: scope and may_change keep everyone to theirs
    "api_token.others": (frozenset({CO}), frozenset({CO})),  # officers see and revoke anyone's
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

    - Compliance officers and auditors see everything but other stewards' per-case outputs.
    - ML engineers see the models their institution provides (and everything under them),
      datasets their institution stewards, that feed their models or that another institution
      grants it the use of (while the grant is active: ``data_use_active``), the data-use grants
      their institution gave or holds, and every institution.
    - Clinicians see only their institution, the deployments there and the versions deployed there.
    - A site agent sees its own site's federated jobs and the studies they belong to; the central
      worker sees nothing.
    - Per-case outputs (case tables, saliency overlays, case flags) stay with the data owner: the
      users of the institution that stewards the run's dataset see them, the version provider's
      users only where the steward shared them (``Dataset.case_outputs_shared_with_provider``).
    - An API token is seen by its user, and by officers (``api_token.others``).
    """
    if getattr(user, "is_superuser", False):
        return queryset
    label = queryset.model._meta.label_lower
    if label == "core.apitoken":
        return queryset if may(user, "api_token.others", write=False) else queryset.filter(user_id=user.pk)
    role = role_of(user)
    rule = Q() if role in {CO, AU} else _rules(role, user).get(label)
    if rule is None:
        return queryset.none()
    case_outputs = _case_outputs_rule(label, getattr(user, "institution_id", None))
    if case_outputs is not None:
        rule &= case_outputs
    # DISTINCT only where a rule crosses a one-to-many relation (it would otherwise repeat rows):
    # on a list of a million reports it makes the database de-duplicate all of them before paging.
    return queryset.filter(rule).distinct() if label in _MULTI_VALUED_RULES else queryset.filter(rule)


def _rules(role: str | None, user) -> dict[str, Q]:
    """The rows of each model a role sees at the user's institution (CO and AU see every row)."""
    inst = getattr(user, "institution_id", None)
    if role == ML:
        return {
            "registry.institution": Q(),
            "registry.foundationmodel": Q(provider_id=inst),
            "registry.modelversion": Q(foundation_model__provider_id=inst),
            "registry.dataset": Q(institution_id=inst)
            | Q(provenance__version__foundation_model__provider_id=inst)
            | (Q(use_grants__grantee_id=inst) & data_use_active(prefix="use_grants__")),
            "registry.datausegrant": Q(dataset__institution_id=inst) | Q(grantee_id=inst),
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
            "compliance.versionapproval": Q(version__foundation_model__provider_id=inst),
            "compliance.dossier": Q(version__foundation_model__provider_id=inst),
            "compliance.document": Q(dossier__version__foundation_model__provider_id=inst),
            "validation.federatedstudy": Q(version__foundation_model__provider_id=inst),
            "validation.federatedjob": Q(study__version__foundation_model__provider_id=inst),
        }
    if role == CL:
        # Looked up by label: the policy names every app's records, and core imports none of them.
        deployment = apps.get_model("registry", "Deployment")
        site_versions = deployment.objects.filter(status__in=deployment.OPEN_STATUSES, institution_id=inst).values("version_id")
        return {
            "registry.institution": Q(pk=inst),
            "registry.foundationmodel": Q(versions__in=site_versions),
            "registry.modelversion": Q(pk__in=site_versions),
            "registry.deployment": Q(institution_id=inst),
            "compliance.alert": Q(deployment__institution_id=inst),
            "compliance.feedback": Q(clinician_id=user.pk),
            "compliance.trustassessment": Q(version_id__in=site_versions),
        }
    if role == SA:
        return {
            "validation.federatedjob": Q(institution_id=inst),
            "validation.federatedstudy": Q(jobs__institution_id=inst),  # one job per site and study: no repeated rows
        }
    return {}


def data_use_active(*, prefix: str = "") -> Q:
    """The one definition of an active data-use grant: not revoked, and today within its period,
    both ends included. ``prefix`` reaches the grant through a relation (``use_grants__``)."""
    today = timezone.localdate()
    return Q(**{f"{prefix}revoked_at__isnull": True, f"{prefix}valid_from__lte": today, f"{prefix}valid_until__gte": today})


def may_grant_data_use(user, *, steward_id: int | None) -> bool:
    """Only the data steward grants and revokes the use of its datasets: a compliance officer of the
    institution that stewards the dataset (a superuser may act for it)."""
    if getattr(user, "is_superuser", False):
        return True
    return steward_id is not None and role_of(user) == CO and getattr(user, "institution_id", None) == steward_id


def _case_outputs_rule(label: str, inst: int | None) -> Q | None:
    """Which of a model's rows a user at ``inst`` may see as per-case outputs; None for a model that holds none.

    A run's per-case outputs are derived from one hospital's patient images: they are its data
    steward's, and reach the version's provider only where the steward said so in the datasheet.
    """
    owner = Q(run__dataset__institution_id=inst) | Q(
        run__dataset__case_outputs_shared_with_provider=True, run__version__foundation_model__provider_id=inst
    )
    if label == "validation.caseflag":  # every flag names one case's image
        return owner
    if label == "validation.runfile":  # charts are aggregates, seen by whoever sees the run
        return ~Q(kind__in=apps.get_model("validation", "RunFile").PER_CASE_KINDS) | owner
    return None


def may_see_case_outputs(user, run) -> bool:
    """``_case_outputs_rule`` for one run: whether ``user`` may see the per-case parts of its report."""
    if getattr(user, "is_superuser", False):
        return True
    inst = getattr(user, "institution_id", None)
    dataset = run.dataset
    shared = dataset.case_outputs_shared_with_provider and run.version.foundation_model.provider_id == inst
    return inst is not None and (dataset.institution_id == inst or shared)


def may_share_case_outputs(user, *, steward_id: int | None) -> bool:
    """Only the data steward's users decide whether the provider sees a dataset's per-case outputs."""
    return getattr(user, "is_superuser", False) or (steward_id is not None and getattr(user, "institution_id", None) == steward_id)


def owner_institution_id(obj) -> int | None:
    """The institution that owns a registry object, for the write rule below."""
    label = obj._meta.label_lower
    if label == "registry.foundationmodel":
        return obj.provider_id
    if label == "registry.modelversion":
        return obj.foundation_model.provider_id
    if label == "registry.dataset":
        return obj.institution_id
    if label == "registry.datausegrant":
        return obj.dataset.institution_id
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


def may_write_provenance(user, *, provider_id: int | None) -> bool:
    """Provenance is a provider's record of the data behind its versions: only the provider's own users
    (engineers and officers) write it, so no other institution's officer links or unlinks data there."""
    return getattr(user, "is_superuser", False) or (provider_id is not None and getattr(user, "institution_id", None) == provider_id)


def may_change(user, obj) -> bool:
    """ML engineers change only what their institution owns; officers act for the provider on everything
    but provenance (``may_write_provenance``).

    An API token is changed (revoked) by its user, or by an officer (``api_token.others``).
    """
    if obj._meta.label_lower == "core.apitoken":
        return obj.user_id == user.pk or may(user, "api_token.others", write=True)
    if obj._meta.label_lower == "registry.provenance":
        return may_write_provenance(user, provider_id=owner_institution_id(obj))
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


class ApiDocsPermission(BasePermission):
    """The OpenAPI schema and Swagger UI: anyone when ``RADTRUST_PUBLIC_API_DOCS``, else a logged-in user.

    The schema names every endpoint and field, which is a map for an attacker; production keeps it
    behind a login unless the operator publishes it.
    """

    def has_permission(self, request, view) -> bool:
        return settings.RADTRUST_PUBLIC_API_DOCS or bool(request.user and request.user.is_authenticated)
