"""Signed dossiers, signatures and stored documents are immutable below the ORM too: raw SQL
is refused by database triggers (UPDATE on every backend; DELETE on PostgreSQL, where the
models' own refusal is backed by the database)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from compliance.models import Document, DossierSignature
from core.errors import ImmutableRecord

pytestmark = pytest.mark.django_db


def _refused(sql: str, params: list) -> str:
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(caught.value)


def _document(dossier, *, retain_until: date) -> Document:
    return Document.objects.create(
        dossier=dossier,
        kind="model_card_json",
        sha256="a" * 64,
        size=2,
        content_type="application/json",
        storage_name=f"documents/aa/{'a' * 64}.json",
        snapshot_sha256=dossier.snapshot_sha256,
        retain_until=retain_until,
    )


def test_raw_sql_cannot_change_a_signed_dossier_or_its_signature(sign_dossier, evidenced):
    dossier = sign_dossier(evidenced)
    assert "signed dossier" in _refused(
        'UPDATE compliance_dossier SET "values" = %s WHERE id = %s', ['{"1a_purpose_statement": "rewritten"}', dossier.pk]
    )
    signature = DossierSignature.objects.get(dossier=dossier)
    assert "signature" in _refused("UPDATE compliance_dossiersignature SET meaning = %s WHERE id = %s", ["forged", signature.pk]).lower()
    dossier.refresh_from_db()
    assert dossier.values["1a_purpose_statement"] != "rewritten"
    if connection.vendor == "postgresql":
        assert "signed dossier" in _refused("DELETE FROM compliance_dossier WHERE id = %s", [dossier.pk])
        assert "signature" in _refused("DELETE FROM compliance_dossiersignature WHERE id = %s", [signature.pk]).lower()


def test_an_open_revision_stays_editable_in_sql(personas, deployed):
    from compliance.dossiers import dossier_open

    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_dossier SET review_note = %s WHERE id = %s", ["note", dossier.pk])
    dossier.refresh_from_db()
    assert dossier.review_note == "note"


def test_a_document_is_never_edited_and_kept_until_its_retention_date(sign_dossier, evidenced):
    dossier = sign_dossier(evidenced)
    kept = _document(dossier, retain_until=date.today() + timedelta(days=3650))
    assert "never edited" in _refused("UPDATE compliance_document SET sha256 = %s WHERE id = %s", ["b" * 64, kept.pk])
    with pytest.raises(ImmutableRecord):
        kept.delete()
    if connection.vendor == "postgresql":
        assert "cannot be deleted" in _refused("DELETE FROM compliance_document WHERE id = %s", [kept.pk])
    assert Document.objects.filter(pk=kept.pk).exists()
