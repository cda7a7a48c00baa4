"""Exports: the technical file as one streamed ZIP with a manifest of sha256 hashes (an altered
file marked), and alerts, feedback and incidents as CSV, each scoped like the pages."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import date

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse

from compliance.choices import AlertSeverity
from compliance.models import Alert, Document, Dossier
from validation.choices import RunStatus
from validation.models import RunFile, ValidationRun


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _stored(path: str, data: bytes) -> tuple[str, str]:
    return default_storage.save(path, ContentFile(data)), hashlib.sha256(data).hexdigest()


@pytest.fixture
def technical_file(personas, run_setup):
    version = run_setup["version"]
    dossier = Dossier.objects.create(version=version, revision=1, author=personas["officer"])
    pdf = b"%PDF-1.7 technical documentation"
    name, sha = _stored("documents/td.pdf", pdf)
    Document.objects.create(
        dossier=dossier,
        kind="technical_documentation",
        sha256=sha,
        size=len(pdf),
        content_type="application/pdf",
        storage_name=name,
        snapshot_sha256="ab" * 32,
        retain_until=date(2040, 1, 1),
    )
    run = ValidationRun.objects.create(
        version=version, dataset=run_setup["dataset"], requested_by=personas["engineer"], status=RunStatus.SUCCEEDED, results={}
    )
    chart = b"<svg>roc</svg>"
    name, sha = _stored(f"runs/{run.pk}/charts/roc.svg", chart)
    RunFile.objects.create(run=run, kind="chart", name="charts/roc.svg", storage_name=name, sha256=sha, size=len(chart), content_type="image/svg+xml")
    altered_name, _ = _stored(f"runs/{run.pk}/charts/pr.svg", b"<svg>changed</svg>")
    RunFile.objects.create(
        run=run, kind="chart", name="charts/pr.svg", storage_name=altered_name, sha256="0" * 64, size=5, content_type="image/svg+xml"
    )
    return {"version": version, "run": run, "pdf": pdf, "chart": chart}


@pytest.mark.django_db
def test_technical_file_zip_has_every_file_and_a_manifest(personas, technical_file):
    response = _client(personas["auditor"]).get(reverse("pages:technical-file", args=[technical_file["version"].pk]))
    assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    run = technical_file["run"]
    assert names[0] == "README.txt" and names[-1] == "MANIFEST.csv"
    assert archive.read(f"evidence/run-{run.pk}/charts/roc.svg") == technical_file["chart"]
    [document] = [n for n in names if n.startswith("documents/")]
    assert archive.read(document) == technical_file["pdf"]
    manifest = {row["file"]: row for row in csv.DictReader(io.StringIO(archive.read("MANIFEST.csv").decode()))}
    assert manifest[document]["check"] == "ok"
    assert manifest[document]["sha256 of the file in this archive"] == hashlib.sha256(technical_file["pdf"]).hexdigest()
    assert manifest[f"evidence/run-{run.pk}/charts/pr.svg"]["check"].startswith("ALTERED")


@pytest.mark.django_db
def test_technical_file_refused_to_clinicians_and_other_providers(personas, technical_file):
    url = reverse("pages:technical-file", args=[technical_file["version"].pk])
    assert _client(personas["clinician_north"]).get(url).status_code == 403
    assert _client(personas["engineer_south"]).get(url).status_code == 404


@pytest.mark.django_db
def test_csv_exports_are_scoped_and_readable(personas, deployed, report):
    report("agree", case_reference="CASE-n0001")
    report("disagree", who="clinician_south", where="south", case_reference="CASE-s0001", comment="Über, «quoted», text")
    Alert.objects.create(
        version=deployed["version"], deployment=deployed["north"], kind="disagreement_rise", severity=AlertSeverity.CRITICAL, subject="s", message="m"
    )

    def rows(user, name):
        response = _client(user).get(reverse(name))
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        text = b"".join(response.streaming_content).decode("utf-8-sig")
        return list(csv.DictReader(io.StringIO(text)))

    officer = rows(personas["officer"], "pages:feedback-csv")
    assert {r["case reference"] for r in officer} == {"CASE-n0001", "CASE-s0001"}
    assert {r["agreement"] for r in officer} == {"Agree", "Disagree"}  # the labels people read
    assert "Über, «quoted», text" in {r["comment"] for r in officer}
    north = rows(personas["clinician_north"], "pages:feedback-csv")
    assert [r["case reference"] for r in north] == ["CASE-n0001"]  # a clinician gets their own reports only
    [alert] = rows(personas["officer"], "pages:alerts-csv")
    assert alert["severity"] == "Critical" and alert["hospital"] == "North Hospital"
    assert rows(personas["clinician_south"], "pages:alerts-csv") == []
    assert rows(personas["auditor"], "pages:incidents-csv") == []
    assert _client(personas["clinician_north"]).get(reverse("pages:incidents-csv")).status_code == 403
