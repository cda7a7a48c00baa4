"""The provider's quality management system register (AI Act Art. 17): the standards applied,
with their editions and harmonised status, and the documented procedures with their owners and
review dates, mapped to the points of Art. 17(1).

Which standards are harmonised, and under which act, changes with each implementing decision:
so it is data an officer edits, seeded with what was known when RadTrust shipped
(``qms_standards_seed``). The register is shown in the technical documentation (Annex IV 7) from
``qms_register``, frozen in the dossier snapshot like every other evidence.
"""

from __future__ import annotations

from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from compliance.choices import HarmonisedStatus
from compliance.duties import officer_refusal, refuse
from compliance.models import QmsProcedure, QmsStandard
from core.audit import audit_action
from registry.models import Institution, User

# Art. 17(1)(a)-(m) of Regulation (EU) 2024/1689, in short.
ART_17 = {
    "a": "Strategy for regulatory compliance, conformity assessment and management of modifications",
    "b": "Design, design control and design verification",
    "c": "Development, quality control and quality assurance",
    "d": "Examination, test and validation before, during and after development",
    "e": "Technical specifications and standards applied",
    "f": "Data management (acquisition, labelling, storage, retention)",
    "g": "Risk management system (Art. 9)",
    "h": "Post-market monitoring (Art. 72)",
    "i": "Reporting of serious incidents (Art. 73)",
    "j": "Communication with authorities, notified bodies, operators and customers",
    "k": "Record-keeping of documentation and information",
    "l": "Resource management, including security of supply",
    "m": "Accountability framework: responsibilities of management and staff",
}

# reference -> (title, edition, harmonised status, where it was published). As shipped: an officer
# checks them against the list in force (Implementing Decision (EU) 2021/1182 and its amendments).
SEED_STANDARDS: dict[str, tuple[str, str, str, str]] = {
    "IEC 62304": (
        "Medical device software: software life cycle processes",
        "2006+A1:2015",
        HarmonisedStatus.HARMONISED_MDR,
        "EN 62304:2006/A1:2015, Commission Implementing Decision (EU) 2021/1182 as amended",
    ),
    "IEC 62366-1": (
        "Medical devices: application of usability engineering to medical devices",
        "2015+A1:2020",
        HarmonisedStatus.HARMONISED_MDR,
        "EN 62366-1:2015/A1:2020, Commission Implementing Decision (EU) 2021/1182 as amended",
    ),
    "IEC 81001-5-1": (
        "Health software and health IT systems safety, effectiveness and security: security activities in the product life cycle",
        "2021",
        HarmonisedStatus.HARMONISED_MDR,
        "EN IEC 81001-5-1:2022, Commission Implementing Decision (EU) 2021/1182 as amended",
    ),
    "ISO 14971": (
        "Medical devices: application of risk management to medical devices",
        "2019",
        HarmonisedStatus.HARMONISED_MDR,
        "EN ISO 14971:2019/A11:2021, Commission Implementing Decision (EU) 2021/1182 as amended",
    ),
    "ISO 13485": (
        "Medical devices: quality management systems, requirements for regulatory purposes",
        "2016",
        HarmonisedStatus.HARMONISED_MDR,
        "EN ISO 13485:2016/A11:2021, Commission Implementing Decision (EU) 2021/1182 as amended",
    ),
    "ISO/IEC 42001": (
        "Information technology, artificial intelligence: management system",
        "2023",
        HarmonisedStatus.NOT_HARMONISED,
        "",
    ),
}


def _officer(actor, institution: Institution | None, what: str, instance) -> None:
    if institution is None:  # an administrator without an institution keeps no register
        raise PermissionDenied("A register belongs to an institution; your account belongs to none.")
    refusal = officer_refusal(actor, institution, what)
    if refusal:
        refuse(instance, "qms_refused", refusal)


@transaction.atomic
def qms_standards_seed(*, actor, institution: Institution) -> list[QmsStandard]:
    """Add the standards RadTrust ships with to ``institution``'s register; those listed already are kept as edited."""
    _officer(actor, institution, "change the quality management register", institution)
    have = set(QmsStandard.objects.filter(institution=institution).values_list("reference", flat=True))
    for reference, (title, edition, status, published) in SEED_STANDARDS.items():
        if reference not in have:
            QmsStandard.objects.create(
                institution=institution,
                reference=reference,
                title=title,
                edition=edition,
                harmonised_status=status,
                harmonised_reference=published,
                updated_by=actor,
            )
    return list(QmsStandard.objects.filter(institution=institution))


def qms_standard_save(*, actor, standard: QmsStandard) -> QmsStandard:
    """Store a new or edited standard of the register (its edition, harmonised status, scope)."""
    _officer(actor, standard.institution, "change the quality management register", standard)
    standard.updated_by = actor
    standard.full_clean()
    with transaction.atomic(), audit_action("update" if standard.pk else "create"):
        standard.save()
    return standard


def qms_procedure_save(*, actor, procedure: QmsProcedure) -> QmsProcedure:
    """Store a new or edited procedure: its owner works at the institution, the letters are Art. 17(1)'s."""
    _officer(actor, procedure.institution, "change the quality management register", procedure)
    letters = procedure.articles if isinstance(procedure.articles, list) else []
    unknown = [x for x in letters if x not in ART_17]
    if not letters or unknown:
        raise ValidationError({"articles": f"Name the points of Art. 17(1) it covers, letters a to m{f'; not {unknown}' if unknown else ''}."})
    procedure.articles = sorted(set(letters))
    if procedure.owner.institution_id != procedure.institution_id or not procedure.owner.is_active:
        raise ValidationError({"owner": f"The owner must be an active user of {procedure.institution.name}."})
    procedure.full_clean()
    with transaction.atomic():
        procedure.save()
    return procedure


def qms_register(institution: Institution, *, today: date | None = None) -> dict:
    """The register as the technical documentation shows it: standards, procedures with overdue reviews
    flagged, and the points of Art. 17(1) no procedure covers."""
    today = today or timezone.localdate()
    standards = QmsStandard.objects.filter(institution=institution)
    procedures = QmsProcedure.objects.filter(institution=institution).select_related("owner")
    covered = {letter for p in procedures for letter in p.articles}
    return {
        "standards": [
            {
                "reference": s.reference,
                "edition": s.edition,
                "title": s.title,
                "harmonised": s.get_harmonised_status_display(),
                "published": s.harmonised_reference,
                "scope": s.scope,
            }
            for s in standards
        ],
        "procedures": [
            {
                "reference": p.reference,
                "title": p.title,
                "owner": owner_name(p.owner),
                "articles": [f"17(1)({x}) {ART_17[x]}" for x in p.articles if x in ART_17],
                "reviewed_on": p.reviewed_on.isoformat() if p.reviewed_on else None,
                "next_review": p.next_review.isoformat(),
                "overdue": p.next_review < today,
            }
            for p in procedures
        ],
        "uncovered": [f"17(1)({x}) {label}" for x, label in ART_17.items() if x not in covered],
    }


def owner_name(user: User) -> str:
    return user.get_full_name() or user.username
