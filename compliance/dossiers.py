"""The dossier workflow: draft -> in review -> changes requested or signed, with four eyes.

1. ``dossier_open`` returns the version's open revision, or starts a new one as a draft,
   copying the officer-written fields of the newest signed revision.
2. ``dossier_save`` merges edited fields. It names the ``edit_count`` it started from; when
   another officer saved in between, the save is refused with the fields that differ (theirs
   and the stored text), so nobody's work is overwritten.
3. ``dossier_submit`` refuses a dossier that is not ready (``compliance.dossier_checks``: a field
   not yet answered, no pinned release evidence, a declaration item missing, AI Act and MDR
   classes that disagree, a claim the declared performance contradicts), then freezes a snapshot: the fields, the evidence read now, the completeness and the
   version's identity and the model's change plan in force, with the sha256 of its canonical JSON. A resubmission keeps the fields
   of the submission that was sent back, so the reviewer sees what changed since.
4. ``dossier_sign`` is for a second compliance officer of the institution whose document it is
   (``signing_institution``: the provider, for every document RadTrust renders): never the
   author, the submitter nor anyone who saved a field of the revision. The signer gives their
   password again (and their authenticator's code where they have one), names the snapshot hash
   they reviewed (a revision resubmitted since is refused), and the meaning of the signature. The
   signature records their printed name, the time, the meaning, the institution, how they
   re-authenticated, the snapshot hash and the audit chain's head. A signed revision is immutable
   (the model and its queryset refuse changes); changing it means a new revision.
5. ``dossier_request_changes`` sends it back with a note, by the same kind of second officer.
   Every step is audited, and so is every refusal to review or sign.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from compliance.change_rules import change_plan_pin
from compliance.choices import DossierStatus
from compliance.documents import snapshot_attachments
from compliance.dossier_checks import submission_problems
from compliance.dossier_evidence import dossier_evidence
from compliance.dossier_fields import completeness, validate_values
from compliance.duties import officer_refusal, refuse, signing_institution, who_may_act
from compliance.models import Dossier, DossierSignature
from core.audit import audit_action
from core.errors import Conflict
from core.models import AuditHead
from core.reauthentication import reauthenticate
from radtrust_engine.hashing import canonical_sha256, sha256_matches
from registry.models import ModelVersion

EDITABLE = {DossierStatus.DRAFT, DossierStatus.CHANGES_REQUESTED}
DEFAULT_MEANING = "Approved as the technical documentation of this version"


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
    """Per section and overall: required fields answered (``dossier_fields.completeness``) and evidence present."""
    evidence = dossier_evidence(dossier.version) if evidence is None else evidence
    present = {name: bool(data) for name, data in evidence.items()}
    return completeness(dossier.values, present, medical_device=bool(dossier.version.foundation_model.mdr_class))


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
        locked.editors = sorted({*locked.editors, actor.pk})  # none of them may sign this revision
        with audit_action("edit"):
            locked.save(update_fields=["values", "edit_count", "editors", "updated_at"])
    return locked


def dossier_snapshot(dossier: Dossier, *, actor, evidence: dict, completeness: dict) -> dict:
    """What a submission freezes, and what a draft preview renders: the fields, the evidence read now,
    the change plan in force and the attachments the documents draw on."""
    return {
        "version": {"id": dossier.version_id, "label": str(dossier.version), "artifact_sha256": dossier.version.artifact_sha256},
        "revision": dossier.revision,
        "values": dossier.values,
        "evidence": evidence,
        "completeness": completeness,
        "change_plan": change_plan_pin(dossier.version.foundation_model),  # judges the versions derived from this one later
        "submitted_by": actor.username,
        "submitted_at": timezone.now().isoformat(),
        **snapshot_attachments(dossier.version, evidence),  # charts, trust radar, revision history for the documents
    }


def dossier_submit(*, actor, dossier: Dossier) -> Dossier:
    """Freeze the fields with the evidence read now and send the revision for review (step 3)."""
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().select_related("version__foundation_model").get(pk=dossier.pk)
        if locked.status not in EDITABLE:
            raise Conflict(f"The dossier is {locked.get_status_display().lower()} already.", code="dossier_not_editable")
        evidence = dossier_evidence(locked.version)
        done = dossier_completeness(locked, evidence)
        problems = submission_problems(locked.values, evidence, done)  # fields, declared performance, declaration, classes, claims
        if problems:
            raise ValidationError({"values": [str(p) for p in problems]})
        snapshot = dossier_snapshot(locked, actor=actor, evidence=evidence, completeness=done)
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


def _second_officer_refusal(actor, dossier: Dossier, what: str) -> str | None:
    """Why ``actor`` may not review or sign ``dossier``, or None; the refusal names who may."""
    institution = signing_institution(dossier)
    wrote = {dossier.author_id, dossier.submitted_by_id, *dossier.editors}
    refusal = officer_refusal(actor, institution, f"{what} its technical documentation", excluding=wrote)
    if refusal is None and actor.pk in wrote:
        roles = [
            role
            for role, done in (
                ("opened", actor.pk == dossier.author_id),
                ("edited", actor.pk in dossier.editors),
                ("submitted", actor.pk == dossier.submitted_by_id),
            )
            if done
        ]
        refusal = (
            f"Four eyes: you {' and '.join(roles)} revision {dossier.revision}, so you may not {what} it; a compliance officer of "
            f"{institution.name} who did none of that does; who may: {who_may_act(institution, excluding=wrote)}."
        )
    return refusal


def dossier_request_changes(*, actor, dossier: Dossier, note: str) -> Dossier:
    if not note.strip():
        raise ValidationError({"note": "Say what must change."})
    with transaction.atomic():
        locked = Dossier.objects.select_for_update().select_related("version__foundation_model__provider").get(pk=dossier.pk)
        if locked.status != DossierStatus.IN_REVIEW:
            raise Conflict("Only a dossier in review can be sent back.", code="dossier_not_in_review")
        refusal = _second_officer_refusal(actor, locked, "review")
        if refusal is None:
            locked.status, locked.review_note = DossierStatus.CHANGES_REQUESTED, note.strip()[:4000]
            with audit_action("request_changes"):
                locked.save(update_fields=["status", "review_note", "updated_at"])
    if refusal:
        refuse(locked, "request_changes_refused", refusal)
    return locked


def _sign_refusal(actor, dossier: Dossier, reviewed_sha256: str) -> tuple[str, type[Exception], dict] | None:
    """Why ``actor`` may not sign ``dossier`` now, with the error to raise, or None."""
    if dossier.status != DossierStatus.IN_REVIEW:
        message = f"Only a dossier in review can be signed; revision {dossier.revision} is {dossier.get_status_display().lower()}."
        return message, Conflict, {"code": "dossier_not_in_review"}
    refusal = _second_officer_refusal(actor, dossier, "sign")
    if refusal:
        return refusal, PermissionDenied, {}
    if reviewed_sha256 != dossier.snapshot_sha256:
        message = (
            f"Revision {dossier.revision} is not the snapshot you reviewed: it was resubmitted by {dossier.submitted_by.username} on "
            f"{dossier.submitted_at:%Y-%m-%d %H:%M} UTC. Review it again, then sign the snapshot shown now."
            if reviewed_sha256
            else "Name the snapshot you reviewed (its sha256, shown on the review page): a signature applies to what the signer saw."
        )
        return message, Conflict, {"code": "snapshot_changed_since_review", "details": {"snapshot_sha256": dossier.snapshot_sha256}}
    if not snapshot_verifies(dossier.snapshot, dossier.snapshot_sha256):
        return "The frozen snapshot no longer matches its hash; it was altered after submission.", Conflict, {"code": "snapshot_altered"}
    return None


def dossier_sign(
    *, actor, dossier: Dossier, password: str, snapshot_sha256: str, meaning: str = DEFAULT_MEANING, otp_code: str = ""
) -> DossierSignature:
    """A second officer signs the snapshot they reviewed (step 4), giving their password again, and
    their authenticator's current code where they enrolled one or ``RADTRUST_REQUIRE_OTP_FOR_SIGNING``
    is on. Nothing changes on a refusal; each refusal is audited."""
    from compliance.tasks import dossier_documents_render_task  # the tasks module imports this one

    meaning = meaning.strip()[:200]
    if not meaning:
        raise ValidationError({"meaning": "Say what your signature means, e.g. 'Approved as the technical documentation of this version'."})
    # Before the transaction: a failed attempt's audit event and throttle count must stay.
    authentication = reauthenticate(user=actor, password=password, otp_code=otp_code, purpose=f"sign dossier {dossier.pk}")
    with transaction.atomic():
        locked = (
            Dossier.objects.select_for_update(of=("self",)).select_related("version__foundation_model__provider", "submitted_by").get(pk=dossier.pk)
        )
        refused = _sign_refusal(actor, locked, snapshot_sha256.strip().lower())
        if refused is None:
            head = AuditHead.objects.filter(pk=1).first()
            signature = DossierSignature(
                dossier=locked,
                signer=actor,
                signer_name=actor.get_full_name() or actor.get_username(),
                institution=signing_institution(locked),
                meaning=meaning,
                authentication=authentication,
                snapshot_sha256=locked.snapshot_sha256,
                audit_seq=head.seq if head else 0,
                audit_hash=head.hash if head else "",
            )
            with audit_action("sign"):
                signature.save()
                locked.status = DossierStatus.SIGNED
                locked.save(update_fields=["status", "updated_at"])
            transaction.on_commit(lambda: dossier_documents_render_task.delay(locked.pk))  # documents render in the background
    if refused:
        message, error, details = refused
        refuse(locked, "sign_refused", message, error, **details)
    return signature


def signed_dossier(version: ModelVersion) -> str | None:
    """The approval guard's ``dossier`` evidence: a signed revision exists, or why not."""
    if version.dossiers.filter(status=DossierStatus.SIGNED).exists():
        return None
    open_revision = version.dossiers.exclude(status=DossierStatus.SIGNED).first()
    provider = version.foundation_model.provider.name
    if open_revision is None:
        return f"No dossier exists for this version; open one, fill it in and have a second compliance officer of {provider} sign it."
    return (
        f"Dossier revision {open_revision.revision} is {open_revision.get_status_display().lower()}; "
        f"a second compliance officer of {provider} must sign it."
    )


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
