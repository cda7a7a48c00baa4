"""Signed records a reviewer can check outside RadTrust (issue 17): each PDF carries a PAdES
signature of the institution the dossier was signed for, which pyHanko's validator (as any PDF
tool) verifies against the issuing CA; the institution's key lives in files, never in the
database; and a signature row cannot be deleted, through the ORM or by SQL on SQLite as well."""

from __future__ import annotations

import importlib
import io
import shutil

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, transaction
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from compliance.choices import DocumentKind
from compliance.document_render import document_html, html_to_pdf, render_pdf
from compliance.documents import document_build, render_source
from compliance.models import DossierSignature
from compliance.pdf_signing import Seal, institution_credentials, pdf_seal
from core.errors import ImmutableRecord

pytestmark = pytest.mark.django_db
KIND = DocumentKind.DECLARATION_OF_CONFORMITY  # the shortest PDF


@pytest.fixture
def signing_dir(settings, tmp_path):
    settings.RADTRUST_SIGNING_DIR = tmp_path / "signing"
    return settings.RADTRUST_SIGNING_DIR


@pytest.fixture
def signed(evidenced, sign_dossier, signing_dir):
    return sign_dossier(evidenced)


def _check(data: bytes, trust_roots: list):
    (embedded,) = PdfFileReader(io.BytesIO(data)).embedded_signatures
    return embedded, validate_pdf_signature(embedded, ValidationContext(trust_roots=trust_roots))


def test_a_pdf_carries_a_pades_signature_that_verifies_against_the_institutions_ca(signed, signing_dir):
    source = render_source(signed)
    data = document_build(KIND, source).data
    root = load_cert_from_pemder(str(signing_dir / "ca.cert.pem"))
    embedded, status = _check(data, [root])
    assert status.bottom_line and status.intact and status.valid and status.trusted
    assert status.coverage.name == "ENTIRE_FILE"
    assert embedded.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert status.signing_cert.subject.native["organization_name"] == "RadVendor GmbH"
    signature = signed.signature
    assert (embedded.sig_object["/Name"], embedded.sig_object["/Reason"], embedded.sig_object["/Location"]) == (
        signature.signer_name,
        signature.meaning,
        "RadVendor GmbH",
    )
    assert data.startswith(render_pdf(KIND, source).data)  # the bytes rendered from the snapshot, unchanged, then the signature
    html = document_html(KIND, source)
    assert f"event #{signature.audit_seq}" in html and signature.audit_hash in html  # the audit chain's head at signing

    untrusted = _check(data, [])[1]
    assert untrusted.intact and not untrusted.trusted and not untrusted.bottom_line
    middle = len(data) // 4
    altered = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
    assert not _check(altered, [root])[1].intact


def _seal() -> Seal:
    return Seal(institution_code="vendor", institution_name="RadVendor GmbH", country="DE", signer_name="Olga Second", meaning="Approved")


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return html_to_pdf("<p>A page to sign.</p>", created="2025-01-01T00:00:00+00:00").data


def test_keys_are_owner_only_files_encrypted_with_the_passphrase(signing_dir, settings, pdf):
    settings.RADTRUST_SIGNING_KEY_PASSPHRASE = "a passphrase from a secret file"
    credentials = institution_credentials(code="vendor", name="RadVendor GmbH", country="DE")
    for key in (credentials.key, signing_dir / "ca.key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert pdf_seal(pdf, _seal()).startswith(pdf)
    settings.RADTRUST_SIGNING_KEY_PASSPHRASE = "the wrong one"
    with pytest.raises(ImproperlyConfigured, match="institution vendor"):
        pdf_seal(pdf, _seal())


def test_a_certificate_brought_in_files_is_used_and_none_is_made_without_the_local_ca(signing_dir, settings, tmp_path, pdf):
    issued = institution_credentials(code="vendor", name="RadVendor GmbH", country="DE")
    brought = tmp_path / "brought"
    brought.mkdir()
    for path in (issued.key, issued.cert, *issued.chain):
        shutil.copy(path, brought / path.name)
    settings.RADTRUST_SIGNING_DIR, settings.RADTRUST_SIGNING_LOCAL_CA = brought, False
    embedded, status = _check(pdf_seal(pdf, _seal()), [load_cert_from_pemder(str(signing_dir / "ca.cert.pem"))])
    assert status.bottom_line and status.signing_cert.dump() == load_cert_from_pemder(str(issued.cert)).dump()
    assert not (brought / "ca.key.pem").exists()  # no local CA was made
    with pytest.raises(ImproperlyConfigured, match="north.key.pem and north.cert.pem"):
        institution_credentials(code="north", name="North Hospital", country="DE")


def test_a_signature_cannot_be_deleted_or_changed_through_the_orm(signed):
    signature = DossierSignature.objects.get(dossier=signed)
    with pytest.raises(ImmutableRecord):
        signature.delete()
    with pytest.raises(ImmutableRecord):
        DossierSignature.objects.filter(pk=signature.pk).delete()
    with pytest.raises(ImmutableRecord):
        DossierSignature.objects.filter(pk=signature.pk).update(meaning="Changed")
    assert DossierSignature.objects.filter(pk=signature.pk, meaning=signature.meaning).exists()


def test_the_database_refuses_deleting_a_signature_by_sql(signed):
    signature = DossierSignature.objects.get(dossier=signed)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # the test database runs without it (tests/conftest.py); installed as migration 0010 does
            migration = importlib.import_module("compliance.migrations.0010_signatures_and_second_officer")
            cursor.execute(migration.SQLITE_SIGNATURE_UNDELETABLE)
        with pytest.raises(DatabaseError, match="cannot be"), transaction.atomic():
            cursor.execute("DELETE FROM compliance_dossiersignature WHERE id = %s", [signature.pk])
    assert DossierSignature.objects.filter(pk=signature.pk).exists()
