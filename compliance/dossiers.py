"""The dossier workflow: draft -> in review -> changes requested or signed, with four eyes.

1. ``dossier_open`` returns the version's open revision, or starts a new one as a draft,
   copying the officer-written fields of the newest signed revision.
2. ``dossier_save`` merges edited fields. It names the ``edit_count`` it started from; when
   another officer saved in between, the save is refused with the fields that differ (theirs
   and the stored text), so nobody's work is overwritten.
3. ``dossier_submit`` refuses an incomplete dossier (naming the missing required fields),
   then freezes a snapshot: the fields, the evidence read now, the completeness and the
   version's identity, with the sha256 of its canonical JSON. A resubmission keeps the fields
   of the submission that was sent back, so the reviewer sees what changed since.
4. ``dossier_sign`` is for a second compliance officer: never the author nor the submitter.
   The snapshot's hash is checked again and recorded in the signature. A signed revision is
   immutable (the model and its queryset refuse changes); changing it means a new revision.
5. ``dossier_request_changes`` sends it back with a note. Every step is audited.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from compliance.choices import DossierStatus
from compliance.documents import snapshot_attachments
from compliance.dossier_evidence import dossier_evidence
from compliance.dossier_fields import completeness, validate_values
from compliance.models import Dossier, DossierSignature
from core.audit import audit_action
from core.errors import Conflict
from core.second_factor import second_factor_check
from radtrust_engine.hashing import canonical_sha256, sha256_matches
from registry.models import ModelVersion

EDITABLE = {DossierStatus.DRAFT, DossierStatus.CHANGES_REQUESTED}


def snapshot_hash(snapshot: dict) -> str:
    """The hash a snapshot is frozen with: sha256 of its canonical JSON, which survives PostgreSQL's
    jsonb (``-0.0`` read back as ``0.0``, ``1e16`` as ``10000000000000000``) unchanged."""
    return canonical_sha256(snapshot)


def snapshot_verifies(snapshot: dict, digest: str) -> bool:
    """Whether ``snapshot`` still hashes to the stored ``digest``.

    A snapshot frozen before canonical hashing carries the legacy hash (plain ``json.dumps``
    with sorted keys); it is accepted too, and never re-hashed, since a signature names it.
    New snapshots are frozen with ``snapshot_hash`` only (``radtrust_engine.hashing``)."""
    return sha256_matches(snapshot, digest)


def dossier_completeness(dossier: Dossier, evidence: dict | None = None) -> dict:
    """Per section and overall: required fields filled (officer text non-blank, evidence present)."""
    evidence = dossier_evidence(dossier.version) if evidence is None else evidence
    return completeness(dossier.values, {name: bool(data) for name, data in evidence.items()})


def dossier_open(*, actor, version: ModelVersion) -> Dossier:
    """The open revision of ``version``'s dossier, or a new draft (see step 1)."""
    with transaction.atomic():
        ModelVersion.objects.select_for_update().get(pk=version.pk)  # one opener at a time per version
        open_revision = version.dossiers.exclude(status=DossierStatus.SIGNED).first()
        if open_revision is not None:
            return open_revision
        signed = version.dossiers.filter(status=DossierStatus.SIGNED).order_by("-revision").first()
        number = (version.dossiers.aggregate(last=Max("revision"))["last"] or 0) + 1
        return Dossier.objects.create(version=version, revision=number, values=dict(signed.values) if signed else {}, author=actor)


def dossier_save(*, actor, dossier: Dossier, values: dict, edit_count: int) -> Dossier:
    """Merge ``values`` into an editable revision; refused with a diff after a concurrent save (step 2)."""
    errors = validate_values(values)
    if errors:
        raise ValidationError({"values": [f"{key}: {message}" for key, message in sorted(errors.items())]})
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().get(pk=dossier.pk)
        if locked.status not in EDITABLE:
            raise Conflict(
                f"The dossier is {locked.get_status_display().lower()}; it can be edited as a draft or after changes were requested.",
                code="dossier_not_editable",
            )
        if edit_count != locked.edit_count:
            differing = {k: {"yours": v, "saved": locked.values.get(k, "")} for k, v in values.items() if locked.values.get(k, "") != v}
            raise Conflict(
                f"Another officer saved this dossier since you opened it (save {locked.edit_count}, you started from {edit_count}); "
                "compare the fields below and save again.",
                code="edit_conflict",
                details={"differs": differing, "edit_count": locked.edit_count},
            )
        locked.values = {**locked.values, **dict(values.items())}
        locked.edit_count += 1
        with audit_action("edit"):
            locked.save(update_fields=["values", "edit_count", "updated_at"])
    return locked


def dossier_submit(*, actor, dossier: Dossier) -> Dossier:
    """Freeze the fields with the evidence read now and send the revision for review (step 3)."""
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().select_related("version__foundation_model").get(pk=dossier.pk)
        if locked.status not in EDITABLE:
            raise Conflict(f"The dossier is {locked.get_status_display().lower()} already.", code="dossier_not_editable")
        evidence = dossier_evidence(locked.version)
        done = dossier_completeness(locked, evidence)
        missing = [key for section in done["sections"].values() for key in section["missing"]]
        if missing:
            raise ValidationError({"values": [f"Required fields are not filled yet: {', '.join(missing)}."]})
        snapshot = {
            "version": {"id": locked.version_id, "label": str(locked.version), "artifact_sha256": locked.version.artifact_sha256},
            "revision": locked.revision,
            "values": locked.values,
            "evidence": evidence,
            "completeness": done,
            "submitted_by": actor.username,
            "submitted_at": timezone.now().isoformat(),
            **snapshot_attachments(locked.version, evidence),  # charts, trust radar, revision history for the documents
        }
        if locked.snapshot:  # a resubmission after changes were requested: the reviewer compares with what they sent back
            snapshot["previous_submission"] = {
                "values": locked.snapshot["values"],
                "submitted_by": locked.snapshot["submitted_by"],
                "submitted_at": locked.snapshot["submitted_at"],
                "snapshot_sha256": locked.snapshot_sha256,
                "review_note": locked.review_note,
            }
        snapshot = json.loads(json.dumps(snapshot, default=str))
        locked.snapshot, locked.snapshot_sha256 = snapshot, snapshot_hash(snapshot)
        locked.status, locked.submitted_by, locked.submitted_at, locked.review_note = DossierStatus.IN_REVIEW, actor, timezone.now(), ""
        with audit_action("submit"):
            locked.save(update_fields=["snapshot", "snapshot_sha256", "status", "submitted_by", "submitted_at", "review_note", "updated_at"])
    return locked


def _second_officer(actor, dossier: Dossier, what: str) -> None:
    if actor.pk in {dossier.author_id, dossier.submitted_by_id}:
        raise PermissionDenied(f"Four eyes: a dossier is {what} by a second compliance officer, never by its author or submitter.")


def dossier_request_changes(*, actor, dossier: Dossier, note: str) -> Dossier:
    if not note.strip():
        raise ValidationError({"note": "Say what must change."})
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().get(pk=dossier.pk)
        if locked.status != DossierStatus.IN_REVIEW:
            raise Conflict("Only a dossier in review can be sent back.", code="dossier_not_in_review")
        _second_officer(actor, locked, "reviewed")
        locked.status, locked.review_note = DossierStatus.CHANGES_REQUESTED, note.strip()[:4000]
        with audit_action("request_changes"):
            locked.save(update_fields=["status", "review_note", "updated_at"])
    return locked


def dossier_sign(
    *, actor, dossier: Dossier, meaning: str = "Approved as the technical documentation of this version", otp_code: str = ""
) -> DossierSignature:
    """A second officer signs the snapshot in review (step 4), with their authenticator's current
    code when ``RADTRUST_REQUIRE_OTP_FOR_SIGNING`` is on."""
    from compliance.tasks import dossier_documents_render_task  # the tasks module imports this one

    second_factor_check(user=actor, code=otp_code)  # before the transaction: a wrong code's throttle count must stay
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().get(pk=dossier.pk)
        if locked.status != DossierStatus.IN_REVIEW:
            raise Conflict(
                f"Only a dossier in review can be signed; this one is {locked.get_status_display().lower()}.", code="dossier_not_in_review"
            )
        _second_officer(actor, locked, "signed")
        if not snapshot_verifies(locked.snapshot, locked.snapshot_sha256):
            raise Conflict("The frozen snapshot no longer matches its hash; it was altered after submission.", code="snapshot_altered")
        signature = DossierSignature(dossier=locked, signer=actor, meaning=meaning.strip()[:200], snapshot_sha256=locked.snapshot_sha256)
        with audit_action("sign"):
            signature.save()
            locked.status = DossierStatus.SIGNED
            locked.save(update_fields=["status", "updated_at"])
        transaction.on_commit(lambda: dossier_documents_render_task.delay(locked.pk))  # documents render in the background
    return signature


def signed_dossier(version: ModelVersion) -> str | None:
    """The approval guard's ``dossier`` evidence: a signed revision exists, or why not."""
    if version.dossiers.filter(status=DossierStatus.SIGNED).exists():
        return None
    open_revision = version.dossiers.exclude(status=DossierStatus.SIGNED).first()
    if open_revision is None:
        return "No dossier exists for this version; open one, fill it in and have a second compliance officer sign it."
    return f"Dossier revision {open_revision.revision} is {open_revision.get_status_display().lower()}; a second compliance officer must sign it."


def signatures_verify() -> tuple[int, list[tuple[Dossier, str]]]:
    """Every signature checked against the dossier it signed, and every signed dossier against its
    signature: how many were checked, and each dossier that fails, with the reason.

    The triggers that keep a signed snapshot immutable can be disabled by the table's owner; this
    re-hashes what is stored now, so an edit made meanwhile is found however it was made.
    """
    problems, checked = [], 0
    signatures = DossierSignature.objects.select_related("dossier").order_by("dossier_id")
    for signature in signatures.iterator(chunk_size=200):
        dossier, checked = signature.dossier, checked + 1
        if dossier.status != DossierStatus.SIGNED:
            problems.append((dossier, f"it carries signature {signature.pk} but its status is {dossier.status}: it was reopened after signing"))
        elif dossier.snapshot_sha256 != signature.snapshot_sha256:
            problems.append((dossier, f"its snapshot hash {dossier.snapshot_sha256} is not the signed {signature.snapshot_sha256}"))
        elif not snapshot_verifies(dossier.snapshot, signature.snapshot_sha256):
            problems.append((dossier, f"its snapshot no longer hashes to the signed {signature.snapshot_sha256}: it was altered after signing"))
    for dossier in Dossier.objects.filter(status=DossierStatus.SIGNED, signature__isnull=True).order_by("pk"):
        checked += 1
        problems.append((dossier, "it is marked signed but has no signature"))
    return checked, sorted(problems, key=lambda p: p[0].pk)
