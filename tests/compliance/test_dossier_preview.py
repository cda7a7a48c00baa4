"""The draft PDF preview (issue 19, "officers sign blind"): what a dossier's documents will say,
readable before anyone signs, watermarked DRAFT, unsigned, and stored nowhere."""

from __future__ import annotations

import subprocess

import pytest

from compliance.dossiers import dossier_save, dossier_submit
from compliance.models import Document
from core.models import AuditEvent
from tests.factories import dossier_officer_values

pytestmark = pytest.mark.django_db


def pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


@pytest.fixture
def draft(personas, institutions):
    from compliance.dossiers import dossier_open
    from tests.factories import FoundationModelFactory, ModelVersionFactory

    version = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    dossier = dossier_open(actor=personas["officer"], version=version)
    return dossier_save(
        actor=personas["officer"],
        dossier=dossier,
        values={"1b_interactions": "Reads only the PACS worklist export; preview wording 4711."},
        edit_count=dossier.edit_count,
    )


def test_an_officer_reads_the_draft_documents_before_signing_and_nothing_is_stored(draft, personas, client):
    events = AuditEvent.objects.count()
    client.force_login(personas["officer2"])
    page = client.get(f"/dossiers/{draft.pk}/").content.decode()
    assert f"/dossiers/{draft.pk}/preview/?kind=instructions_for_use" in page
    for kind in ("technical_documentation", "instructions_for_use", "declaration_of_conformity"):
        response = client.get(f"/dossiers/{draft.pk}/preview/", {"kind": kind})
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        assert response["Content-Disposition"].startswith(f'inline; filename="DRAFT-{kind}-dossier-{draft.pk}')
        text = pdf_text(response.content)
        assert "DRAFT PREVIEW: not signed and not issued" in text
        if kind == "technical_documentation":
            assert "preview wording 4711" in text
        assert "Signed by" not in text and "PAdES" not in text
        assert b"/ByteRange" not in response.content  # no signature dictionary: nothing a reader could take for a seal
    assert Document.objects.count() == 0 and AuditEvent.objects.count() == events
    draft.refresh_from_db()
    assert draft.snapshot in (None, {}) and draft.status == "draft"


def test_a_dossier_in_review_previews_the_snapshot_the_signer_is_asked_to_sign(run_setup, pin_release_evidence, personas, client):
    from compliance.dossiers import dossier_open
    from validation import services

    version = run_setup["version"]
    run = services.run_create(
        actor=run_setup["engineer"], version=version, dataset=run_setup["dataset"], config={"n_resamples": 30, "min_patients": 5}
    )
    services.run_execute(run_id=run.pk, worker="w")
    pin_release_evidence(version)
    dossier = dossier_open(actor=personas["officer"], version=version)
    values = {
        **dossier_officer_values(),
        "1b_interactions": "Frozen wording at submission, 0815: reads only the worklist export of the hospital PACS.",
    }
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=values, edit_count=dossier.edit_count)
    dossier = dossier_submit(actor=personas["officer"], dossier=dossier)
    # an edit after submission is impossible through the services; the live row changing still must not show
    version.foundation_model.intended_purpose = "Changed after submission: screening of children."
    version.foundation_model.save()
    client.force_login(personas["officer2"])
    text = pdf_text(client.get(f"/dossiers/{dossier.pk}/preview/", {"kind": "technical_documentation"}).content)
    assert "Frozen wording at submission, 0815: reads only the worklist export of the hospital PACS." in text and "screening of children" not in text
    assert "DRAFT PREVIEW" in text


def test_an_unknown_kind_is_a_400_naming_the_choices_and_other_institutions_see_nothing(draft, personas, client):
    client.force_login(personas["officer"])
    refused = client.get(f"/dossiers/{draft.pk}/preview/", {"kind": "model_card_md"})
    assert refused.status_code == 400 and "technical_documentation" in refused.content.decode()
    client.force_login(personas["clinician_north"])
    assert client.get(f"/dossiers/{draft.pk}/preview/").status_code in (403, 404)
