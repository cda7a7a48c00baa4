"""The QMS register (AI Act Art. 17): seeded standards an officer can edit, procedures mapped to
Art. 17(1)(a)-(m) with overdue reviews flagged, and the register in the technical documentation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from compliance.choices import HarmonisedStatus
from compliance.document_evidence import Attachments, Table, Text, evidence_elements
from compliance.models import QmsProcedure, QmsStandard
from compliance.qms import ART_17, SEED_STANDARDS, qms_procedure_save, qms_register, qms_standard_save, qms_standards_seed
from core.models import AuditEvent

pytestmark = pytest.mark.django_db
TODAY = date(2026, 12, 7)


def _procedure(institutions, owner, reference="SOP-04", articles=("g",), next_review=TODAY + timedelta(days=30)):
    return QmsProcedure(
        institution=institutions["vendor"],
        reference=reference,
        title="Risk management",
        owner=owner,
        articles=list(articles),
        next_review=next_review,
    )


def test_seeding_lists_the_shipped_standards_once_and_keeps_edits(institutions, personas):
    officer = personas["officer"]
    seeded = qms_standards_seed(actor=officer, institution=institutions["vendor"])
    assert sorted(s.reference for s in seeded) == sorted(SEED_STANDARDS)
    iso = QmsStandard.objects.get(reference="ISO 14971")
    assert (iso.edition, iso.harmonised_status) == ("2019", HarmonisedStatus.HARMONISED_MDR)
    iso.harmonised_status = HarmonisedStatus.NOT_HARMONISED
    qms_standard_save(actor=officer, standard=iso)
    qms_standards_seed(actor=officer, institution=institutions["vendor"])
    assert QmsStandard.objects.count() == len(SEED_STANDARDS)
    assert QmsStandard.objects.get(reference="ISO 14971").harmonised_status == HarmonisedStatus.NOT_HARMONISED
    assert AuditEvent.objects.filter(object_type="compliance.qmsstandard", action="update").exists()


def test_only_the_providers_officers_change_the_register(institutions, personas):
    with pytest.raises(PermissionDenied, match="Only a compliance officer of RadVendor"):
        qms_standards_seed(actor=personas["engineer"], institution=institutions["vendor"])


def test_a_procedure_names_letters_of_art_17_and_an_owner_of_the_provider(institutions, personas):
    officer = personas["officer"]
    with pytest.raises(ValidationError, match="letters a to m"):
        qms_procedure_save(actor=officer, procedure=_procedure(institutions, officer, articles=("z",)))
    with pytest.raises(ValidationError, match="active user of RadVendor"):
        qms_procedure_save(actor=officer, procedure=_procedure(institutions, personas["clinician_north"]))
    saved = qms_procedure_save(actor=officer, procedure=_procedure(institutions, officer, articles=("h", "g", "g")))
    assert saved.articles == ["g", "h"]


def test_the_register_flags_overdue_reviews_and_uncovered_points(institutions, personas):
    officer = personas["officer"]
    qms_procedure_save(actor=officer, procedure=_procedure(institutions, officer, articles=("g",), next_review=TODAY - timedelta(days=1)))
    qms_procedure_save(actor=officer, procedure=_procedure(institutions, officer, reference="SOP-07", articles=("h", "i")))
    register = qms_register(institutions["vendor"], today=TODAY)
    assert [p["overdue"] for p in register["procedures"]] == [True, False]
    assert register["procedures"][0]["articles"] == [f"17(1)(g) {ART_17['g']}"]
    assert len(register["uncovered"]) == len(ART_17) - 3 and not any("(g)" in u for u in register["uncovered"])
    elements = evidence_elements("qms_register", register, Attachments())
    procedures = next(e for e in elements if isinstance(e, Table))
    assert procedures.rows[0][-1].endswith("(overdue)")
    assert any(isinstance(e, Text) and "17(1)(a)" in e.text for e in elements)
