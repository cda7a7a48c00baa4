"""Writes to the registry. Views, admin actions, tasks and commands call these; none holds rules itself.

Each service validates, writes in one transaction and returns the instance; the
audit trail is written by ``core.audit`` receivers in that same transaction.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DataError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.access import data_use_active, may_grant_data_use, may_write_provenance, role_of
from core.audit import audit_action, audit_record
from core.choices import Role
from core.errors import Conflict
from radtrust_engine import artifacts
from radtrust_engine.segmentation import ACTIVATIONS
from radtrust_engine.task_spec import SCHEMA_KEYS, TaskSpec
from registry.choices import PURPOSE_PROVENANCE_ROLES, PURPOSE_RUNS, DataUsePurpose, DeploymentStatus, MirrorState, ProvenanceRole, VersionStatus
from registry.guards import deployment_refusal, roles_for, transition_refusals
from registry.models import Dataset, DataUseGrant, Deployment, FoundationModel, Institution, ModelVersion, Provenance, User

log = logging.getLogger(__name__)


def artifact_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "artifacts"


def validated_save(instance, *, update_fields: list[str] | None = None):
    """Validate every field and constraint, then save; integrity races become a 409.

    The database's own message (constraint and table names, the offending values) goes to the log,
    not to the user.
    """
    instance.full_clean()
    try:
        with transaction.atomic():
            instance.save(update_fields=update_fields)
    except IntegrityError as exc:
        log.warning("%s refused by the database: %s", type(instance).__name__, exc)
        raise Conflict("This clashes with an existing record (saved at the same moment?); reload and try again.", code="integrity") from exc
    except DataError as exc:  # a value the database refuses that validation did not foresee
        log.warning("%s refused by the database: %s", type(instance).__name__, exc)
        raise ValidationError(
            {"non_field_errors": ["The database refused a value (too long or out of range); check the values and try again."]}
        ) from exc
    return instance


def record_create(*, model, actor, fields: dict, m2m: dict | None = None):
    """Create a plain registry record (institution, foundation model, dataset): validate, save, audit."""
    instance = model(**fields)
    if hasattr(instance, "created_by_id") and actor is not None and actor.is_authenticated:
        instance.created_by = actor
    with transaction.atomic():
        validated_save(instance)
        for name, values in (m2m or {}).items():
            getattr(instance, name).set(values)
    return instance


def record_update(*, instance, fields: dict, m2m: dict | None = None, immutable: tuple[str, ...] = ()):
    """Update the given fields of a plain registry record; fields in ``immutable`` are refused."""
    refused = sorted(set(fields) & set(immutable))
    if refused:
        raise ValidationError(dict.fromkeys(refused, "This field cannot be changed after creation."))
    for name, value in fields.items():
        setattr(instance, name, value)
    with transaction.atomic():
        validated_save(instance)
        for name, values in (m2m or {}).items():
            getattr(instance, name).set(values)
    return instance


# --- Versions ----------------------------------------------------------------------


def version_register(
    *,
    actor,
    foundation_model: FoundationModel,
    version: str,
    model_file: tuple[str, BinaryIO],
    data_files: list[tuple[str, BinaryIO]] = (),
    parent: ModelVersion | None = None,
    output_schema: dict | None = None,
    preprocessing: dict | None = None,
    release_notes: str = "",
) -> ModelVersion:
    """Register a version with its ONNX artifact, verified and stored before the row is written.

    The artifact is checked (never executed), hashed as a set with its external data
    and moved to its content address; then the row is saved and, after commit, the
    MLflow mirror is queued. A refused upload leaves no file and no row behind: the
    row's own fields are validated before any file is written.
    """
    if parent is not None and parent.foundation_model_id != foundation_model.pk:
        raise ValidationError({"parent": f"The parent {parent} belongs to another model; a parent must be a version of {foundation_model.name}."})
    if ModelVersion.objects.filter(foundation_model=foundation_model, version=version).exists():
        raise Conflict(f"{foundation_model.name} already has version {version}; choose a new version number.", code="duplicate_version")
    for name, value in (("output_schema", output_schema), ("preprocessing", preprocessing)):
        if value is not None and not isinstance(value, dict):
            raise ValidationError({name: f"Give {name} as a JSON object ({{...}}), not {type(value).__name__}."})
    _validate_output_schema(output_schema or {}, foundation_model)
    row = ModelVersion(
        foundation_model=foundation_model,
        version=version,
        parent=parent,
        output_schema=output_schema or {},
        preprocessing=preprocessing or {},
        release_notes=release_notes,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    artifact_fields = [
        "artifact_sha256",
        "artifact_files",
        "artifact_size",
        "opset",
        "ir_version",
        "producer",
        "inputs",
        "outputs",
        "parameter_count",
    ]
    row.full_clean(exclude=artifact_fields)  # refuse a bad row before any file is written; the artifact fills the rest

    try:
        model_name = artifacts.check_name(model_file[0], field="artifact")
        if not model_name.lower().endswith(".onnx"):
            raise artifacts.ArtifactError("Upload the model as an ONNX file (.onnx).")
        for name, _ in data_files:
            artifacts.check_name(name, field="external_data")
        info = artifacts.ingest(artifact_root(), [model_file, *data_files], max_bytes=settings.RADTRUST_MAX_ARTIFACT_BYTES)
    except artifacts.ArtifactError as exc:
        raise ValidationError({exc.field: str(exc)}) from exc

    row.artifact_sha256 = info.sha256
    row.artifact_files = [f.__dict__ for f in info.files]
    row.artifact_size = info.size
    row.opset = info.opset
    row.ir_version = info.ir_version
    row.producer = info.producer[: ModelVersion._meta.get_field("producer").max_length]
    row.inputs = info.inputs
    row.outputs = info.outputs
    row.parameter_count = info.parameter_count
    with transaction.atomic():
        validated_save(row)
        # robust: a broker that is down must not fail the request; the sweeper re-queues later.
        transaction.on_commit(lambda: _queue_mirror(row.pk), robust=True)
    return row


def version_update(*, version: ModelVersion, release_notes: str) -> ModelVersion:
    """Edit release notes while the version is still being prepared; a version under review or released is frozen."""
    if version.status not in {VersionStatus.DRAFT, VersionStatus.IN_VALIDATION}:
        raise Conflict(
            f"The release notes of a {version.get_status_display().lower()} version are frozen; register a new version.", code="version_frozen"
        )
    return record_update(instance=version, fields={"release_notes": release_notes})


def _queue_mirror(version_id: int) -> None:
    from registry.tasks import version_mirror  # the tasks module imports this one

    version_mirror.delay(version_id)


def _validate_output_schema(schema: dict, foundation_model: FoundationModel) -> None:
    if not schema:
        return
    names = schema.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ValidationError({"output_schema": 'Give "class_names" as a non-empty list of names.'})
    if len(set(names)) != len(names):
        raise ValidationError({"output_schema": "Class names must be unique."})
    thresholds = schema.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise ValidationError({"output_schema": '"thresholds" maps each class name to a number between 0 and 1.'})
    for name, value in thresholds.items():
        if name not in names:
            raise ValidationError({"output_schema": f"Threshold for unknown class {name!r}."})
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValidationError({"output_schema": f"Threshold for {name!r} must be a number between 0 and 1."})
    if schema.get("activation", "none") not in ACTIVATIONS:
        raise ValidationError(
            {"output_schema": f'"activation" is one of {", ".join(ACTIVATIONS)}: what turns the model\'s raw output into probabilities.'}
        )
    embedding = schema.get("embedding_output")
    if embedding is not None and not (isinstance(embedding, str) and embedding.strip()):
        raise ValidationError(
            {
                "output_schema": '"embedding_output" names the (batch, dimensions) output of the ONNX graph that holds the embeddings, e.g. "embedding".'
            }
        )
    unknown = set(schema) - {"class_names", "thresholds", "activation", "embedding_output", *SCHEMA_KEYS}
    if unknown:
        raise ValidationError({"output_schema": f"Unknown keys: {', '.join(sorted(unknown))}."})
    try:
        TaskSpec.from_schema(schema, foundation_model.task)
    except ValueError as exc:
        raise ValidationError({"output_schema": str(exc)}) from None


def version_transition(*, actor, version: ModelVersion, to_status: str) -> ModelVersion:
    """Move a version through its lifecycle, if the actor's role and every guard allow it. A move
    the guards refuse changes nothing and is written to the audit trail with its reasons."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if not actor.is_superuser and role_of(actor) not in roles_for(locked.status, to_status):
            raise PermissionDenied(f"Your role may not move a version from {locked.status!r} to {to_status!r}.")
        refusals = transition_refusals(locked, to_status)
        if not refusals:
            locked.status = to_status
            with audit_action("transition"):
                validated_save(locked, update_fields=["status", "updated_at"])
            return locked
    audit_record(action="transition_refused", instance=locked, changes={"status": [locked.status, to_status], "refused": refusals})
    raise Conflict(" ".join(refusals), code="transition_refused")


def version_mirror_claim(*, version_id: int, lease_seconds: int) -> bool:
    """Take the mirror of a version for ``lease_seconds``; False if it needs none or another worker holds it.

    One conditional UPDATE, so two workers (a redelivered task, the sweeper) never mirror
    the same version at once. Not audited: a lease is operational state, not a record.
    """
    now = timezone.now()
    return bool(
        ModelVersion.objects.filter(pk=version_id, mirror_state__in=[MirrorState.PENDING, MirrorState.FAILED])
        .filter(Q(mirror_lease_until__isnull=True) | Q(mirror_lease_until__lt=now))
        .update(mirror_lease_until=now + timedelta(seconds=lease_seconds))
    )


def version_mirror_state_set(*, version_id: int, state: str, error: str = "", **fields) -> None:
    """Record the mirror outcome and release the lease, without touching the rest of the row."""
    updates = {"mirror_state": state, "mirror_error": error[:2000], "mirror_lease_until": None, "updated_at": timezone.now(), **fields}
    if state == MirrorState.MIRRORED:
        updates["mirrored_at"] = timezone.now()
    version = ModelVersion.objects.get(pk=version_id)
    for name, value in updates.items():
        setattr(version, name, value)
    with transaction.atomic(), audit_action("mirror"):
        version.save(update_fields=list(updates))


# --- Provenance and deployments -------------------------------------------------


def provenance_link(*, actor, version: ModelVersion, dataset: Dataset, role: str, notes: str = "") -> Provenance:
    """Record that ``dataset`` played ``role`` for ``version``; frozen once the version leaves draft.

    The version's provider links data to its versions; another institution's dataset only under
    an active data-use grant whose purpose covers ``role`` (``data_use_check``).
    """
    provider_id = version.foundation_model.provider_id
    if not may_write_provenance(actor, provider_id=provider_id):
        raise PermissionDenied(f"Only the users of {version.foundation_model.provider.name}, the version's provider, link datasets to it.")
    data_use_check(dataset=dataset, grantee_id=provider_id, role=role)
    if version.status not in {VersionStatus.DRAFT, VersionStatus.IN_VALIDATION}:
        raise Conflict("Training and test data of a version under review or released cannot change; register a new version.", code="version_frozen")
    if Provenance.objects.filter(version=version, dataset=dataset, role=role).exists():
        raise Conflict(f"{dataset} is already linked to {version} as {role}.", code="duplicate_provenance")
    return record_create(model=Provenance, actor=actor, fields={"version": version, "dataset": dataset, "role": role, "notes": notes})


def provenance_unlink(*, provenance: Provenance) -> None:
    if provenance.version.status != VersionStatus.DRAFT:
        raise Conflict("Provenance can be removed only while the version is a draft.", code="version_frozen")
    with transaction.atomic():
        provenance.delete()


# --- Data-use grants ---------------------------------------------------------------------


def data_use_grant(
    *,
    actor,
    dataset: Dataset,
    grantee: Institution,
    purpose: str,
    agreement_reference: str,
    valid_from: date,
    valid_until: date,
    purpose_detail: str = "",
) -> DataUseGrant:
    """Record the data steward's grant of ``dataset`` to ``grantee`` for ``purpose`` over a period.

    Only a compliance officer of the dataset's institution grants (``core.access.may_grant_data_use``);
    the grant is the record of a signed agreement, so it names one and is never edited afterwards.
    """
    steward = dataset.institution
    if not may_grant_data_use(actor, steward_id=steward.pk):
        raise PermissionDenied(f"Only a compliance officer of {steward.name}, the dataset's steward, grants the use of its data.")
    if grantee.pk == steward.pk:
        raise ValidationError({"grantee": f"{steward.name} uses its own data without a grant; name another institution."})
    if valid_until < timezone.localdate():
        raise ValidationError({"valid_until": "This period has ended already; a grant records a use under way or still to come."})
    fields = {
        "dataset": dataset,
        "grantee": grantee,
        "purpose": purpose,
        "purpose_detail": purpose_detail,
        "agreement_reference": agreement_reference.strip(),
        "valid_from": valid_from,
        "valid_until": valid_until,
        "granted_by": actor if getattr(actor, "is_authenticated", False) else None,
    }
    return record_create(model=DataUseGrant, actor=actor, fields=fields)


def data_use_revoke(*, actor, grant: DataUseGrant, reason: str) -> DataUseGrant:
    """End a grant now, for a stated reason: the grantee loses sight of the data and starts no new run
    on it; runs already under way finish and keep their results."""
    if not may_grant_data_use(actor, steward_id=grant.dataset.institution_id):
        raise PermissionDenied(f"Only a compliance officer of {grant.dataset.institution.name}, the dataset's steward, revokes its grants.")
    reason = (reason or "").strip()
    with transaction.atomic():
        locked = DataUseGrant.objects.select_for_update().get(pk=grant.pk)
        if locked.revoked_at is not None:
            revoked_on = timezone.localdate(locked.revoked_at)
            raise Conflict(f"Grant {locked.agreement_reference} was revoked on {revoked_on:%Y-%m-%d} already.", code="grant_revoked")
        if not reason:
            raise ValidationError({"reason": "Say why the use is revoked; the grantee reads it."})
        locked.revoked_at, locked.revoked_by, locked.revocation_reason = timezone.now(), actor, reason
        with audit_action("revoke"):
            validated_save(locked, update_fields=sorted(DataUseGrant.REVOCATION_FIELDS))
    return locked


def data_use_check(*, dataset: Dataset, grantee_id: int, role: str | None = None) -> None:
    """Refuse (``PermissionDenied``, saying why) a use of another institution's dataset that no active
    grant covers: linking it to a version as ``role``, or validating on it when ``role`` is None.

    The dataset's own institution needs no grant.
    """
    if dataset.institution_id == grantee_id:
        return
    if role is None:
        purposes, use = PURPOSE_RUNS, "for validation runs"
    else:
        purposes = frozenset(p for p, roles in PURPOSE_PROVENANCE_ROLES.items() if role in roles)
        use = f"as {ProvenanceRole(role).label.lower()} data" if role in ProvenanceRole.values else f"as {role} data"
    grants = dataset.use_grants.filter(grantee_id=grantee_id)
    fitting = grants.filter(purpose__in=purposes)
    if fitting.filter(data_use_active()).exists():
        return
    grantee = Institution.objects.get(pk=grantee_id)
    subject = f"{dataset.institution.name} grants {grantee.name} no use of {dataset.name} {use} today"
    latest = fitting.order_by("-valid_until", "-pk").first()
    if latest is not None and latest.revoked_at is not None:
        revoked_on = timezone.localdate(latest.revoked_at)
        why = f"grant {latest.agreement_reference} was revoked on {revoked_on:%Y-%m-%d}. The steward's reason: {latest.revocation_reason}"
    elif latest is not None and latest.valid_until < timezone.localdate():
        why = f"grant {latest.agreement_reference} ended on {latest.valid_until:%Y-%m-%d}."
    elif latest is not None:
        why = f"grant {latest.agreement_reference} starts on {latest.valid_from:%Y-%m-%d}."
    elif grants.exists():
        covered = sorted({DataUsePurpose(p).label.lower() for p in grants.values_list("purpose", flat=True)})
        why = f"its grants cover {'; '.join(covered)} only."
    else:
        why = f"ask its data steward (a compliance officer of {dataset.institution.name}) to record a data-use grant."
    raise PermissionDenied(f"{subject}: {why}")


def deployment_create(*, actor, version: ModelVersion, institution: Institution, **fields) -> Deployment:
    """Plan a deployment of an approved (or already deployed) version at an institution."""
    if version.status not in {VersionStatus.APPROVED, VersionStatus.DEPLOYED, VersionStatus.SUSPENDED}:
        raise Conflict(f"Only an approved version can be deployed; {version} is {version.get_status_display().lower()}.", code="not_approved")
    if fields.get("status", DeploymentStatus.PLANNED) not in {DeploymentStatus.PLANNED, DeploymentStatus.ACTIVE}:
        raise ValidationError({"status": "A new deployment starts as planned or active."})
    if Deployment.objects.filter(version=version, institution=institution).exclude(status=DeploymentStatus.ENDED).exists():
        raise Conflict(f"{version} already has an open deployment at {institution.code}.", code="duplicate_deployment")
    _refuse_unless_deployable(version, institution, fields.get("status", DeploymentStatus.PLANNED))
    return record_create(model=Deployment, actor=actor, fields={"version": version, "institution": institution, **fields})


def deployment_update(*, deployment: Deployment, fields: dict) -> Deployment:
    """Change a deployment; making it active again asks the market rule as a new deployment does."""
    if fields.get("status") == DeploymentStatus.ACTIVE and deployment.status != DeploymentStatus.ACTIVE:
        _refuse_unless_deployable(deployment.version, deployment.institution, DeploymentStatus.ACTIVE)
    return record_update(instance=deployment, fields=fields, immutable=("version", "institution"))


def _refuse_unless_deployable(version: ModelVersion, institution: Institution, status: str) -> None:
    """A version is deployed only once placed on the market and not withdrawn, or within a clinical
    investigation at the institution (``registry.guards.deployment_refusal``); a refusal changes
    nothing and is written to the audit trail."""
    refusal = deployment_refusal(version, institution)
    if refusal:
        audit_record(action="deployment_refused", instance=version, changes={"institution": institution.code, "status": status, "refused": refusal})
        raise Conflict(refusal, code="not_on_market")


# --- Users ----------------------------------------------------------------------------


def user_create(*, username: str, role: str, institution: Institution, email: str = "", password: str | None = None) -> User:
    """Create a user in one role at one institution (the ``create_user`` command uses it)."""
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role {role!r}; use one of {', '.join(Role.values)}."})
    if User.objects.filter(username=username).exists():
        raise Conflict(f"A user named {username!r} exists already.", code="duplicate_user")
    user = User(username=username, email=email, institution=institution)
    if password:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    with transaction.atomic():
        validated_save(user)
        user.groups.add(Group.objects.get(name=role))
    return user
