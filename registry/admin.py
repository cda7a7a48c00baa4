"""Admin for the registry. Artifacts and lifecycle state are read-only here: they change through services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError

from core.access import may_change, may_share_case_outputs, scope
from core.errors import Conflict
from registry import services
from registry.choices import VersionStatus
from registry.datasheets import datasheet_completeness
from registry.models import Dataset, DataUseGrant, Deployment, FoundationModel, Institution, ModelVersion, Provenance, User


class ScopedAdmin(admin.ModelAdmin):
    """The admin obeys the same institution rules as the API (``core.access``).

    For everyone but superusers it reads and edits: records are created and removed
    through the API, whose services hold the rules (upload checks, provenance freeze,
    deployment guards). Fields that name an owner cannot be changed.
    """

    owner_fields: tuple[str, ...] = ()

    def get_queryset(self, request):
        return scope(request.user, super().get_queryset(request))

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or may_change(request.user, obj))

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *(self.owner_fields if obj else ())]


@admin.register(Institution)
class InstitutionAdmin(ScopedAdmin):
    list_display = ["code", "name", "kind", "country"]
    list_filter = ["kind", "country"]
    search_fields = ["code", "name"]
    owner_fields = ("code",)

    def has_add_permission(self, request, *args) -> bool:
        return admin.ModelAdmin.has_add_permission(self, request)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "email", "institution", "role_name", "is_active", "is_staff"]
    list_filter = ["institution", "groups", "is_active", "is_staff"]
    fieldsets = BaseUserAdmin.fieldsets + (("Institution", {"fields": ["institution"]}),)
    add_fieldsets = BaseUserAdmin.add_fieldsets + (("Institution", {"fields": ["institution"]}),)

    @admin.display(description="Role")
    def role_name(self, obj: User) -> str:
        return obj.role or "-"


class ProvenanceInline(admin.TabularInline):
    model = Provenance
    extra = 0
    fields = ["dataset", "role", "notes", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class VersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ["version", "status", "parent", "artifact_sha256", "mirror_state"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FoundationModel)
class FoundationModelAdmin(ScopedAdmin):
    list_display = ["name", "provider", "modality", "body_region", "task", "risk_class", "mdr_class"]
    list_filter = ["modality", "task", "risk_class", "provider"]
    search_fields = ["name", "body_region", "intended_purpose"]
    owner_fields = ("provider", "task")
    inlines = [VersionInline]


def _transition_action(target: str):
    def run(modeladmin, request, queryset):
        for version in queryset:
            try:
                services.version_transition(actor=request.user, version=version, to_status=target)
            except (Conflict, PermissionDenied, ValidationError) as exc:
                modeladmin.message_user(request, f"{version}: {exc}", messages.ERROR)
            else:
                modeladmin.message_user(request, f"{version} is now {target}.", messages.SUCCESS)

    run.__name__ = f"move_to_{target}"
    run.short_description = f"Move to {VersionStatus(target).label.lower()}"
    return run


@admin.register(ModelVersion)
class ModelVersionAdmin(ScopedAdmin):
    """Versions are registered through the API (the upload is verified there); here they are read and moved."""

    list_display = ["__str__", "status", "parent", "opset", "parameter_count", "mirror_state", "created_at"]
    list_filter = ["status", "mirror_state", "foundation_model"]
    search_fields = ["version", "foundation_model__name", "artifact_sha256"]
    list_select_related = ["foundation_model", "parent__foundation_model"]
    inlines = [ProvenanceInline]
    actions = [_transition_action(s) for s in VersionStatus.values]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]  # release notes change through the API

    def has_add_permission(self, request, *args) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(ScopedAdmin):
    list_display = ["name", "institution", "modality", "patient_count", "case_outputs_shared_with_provider", "completeness"]
    list_filter = ["modality", "institution", "legal_basis", "case_outputs_shared_with_provider"]
    search_fields = ["name", "description"]
    filter_horizontal = ["source_institutions"]
    owner_fields = ("institution",)

    @admin.display(description="Datasheet complete")
    def completeness(self, obj: Dataset) -> str:
        return f"{datasheet_completeness(obj).ratio:.0%}"

    def get_readonly_fields(self, request, obj=None):
        """The sharing of per-case outputs is shown to all, changed only by the data steward's users."""
        readonly = super().get_readonly_fields(request, obj)
        if obj is not None and not may_share_case_outputs(request.user, steward_id=obj.institution_id):
            return [*readonly, "case_outputs_shared_with_provider"]
        return readonly


@admin.register(Provenance)
class ProvenanceAdmin(ScopedAdmin):
    list_display = ["version", "dataset", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["version__foundation_model", "dataset"]
    readonly_fields = ["version", "dataset", "role", "notes", "created_by", "created_at"]


@admin.register(DataUseGrant)
class DataUseGrantAdmin(ScopedAdmin):
    """Read-only: the steward grants and revokes through the API or the dataset pages (``registry.services``)."""

    list_display = ["agreement_reference", "dataset", "grantee", "purpose", "valid_from", "valid_until", "revoked_at"]
    list_filter = ["purpose", "grantee"]
    list_select_related = ["dataset", "grantee"]
    readonly_fields = [f.name for f in DataUseGrant._meta.fields]

    def has_add_permission(self, request, *args) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(ScopedAdmin):
    list_display = [
        "version",
        "institution",
        "status",
        "since",
        "revalidation_cadence_days",
        "revalidation_by",
        "revalidation_state",
        "revalidated_at",
    ]
    list_filter = ["status", "institution", "revalidation_by", "revalidation_state"]
    list_editable = ["revalidation_cadence_days", "revalidation_by"]
    list_select_related = ["version__foundation_model", "institution"]
    owner_fields = ("version", "institution")
    readonly_fields = [
        "revalidation_state",
        "revalidation_note",
        "revalidated_at",
        "agent_due_on",
    ]  # written by the dispatcher, the run and the site's report
