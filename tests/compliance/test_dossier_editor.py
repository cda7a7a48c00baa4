"""The dossier editor's autosave (JSON for the editor's script) and what the page loads for it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from compliance.dossier_fields import FIELDS
from compliance.dossiers import dossier_open

EDITABLE = [f for f in FIELDS.values() if f.editable]


@pytest.fixture
def officer_client(personas):
    client = Client()
    client.force_login(personas["officer"])
    return client


@pytest.mark.django_db
def test_autosave_saves_and_answers_the_new_count_and_completeness(officer_client, personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    page = officer_client.get(reverse("pages:dossier-section", args=[dossier.pk, "annex_iv_1"])).content.decode()
    assert f'data-autosave="{reverse("pages:dossier-autosave", args=[dossier.pk])}"' in page
    assert "compliance/dossier_editor" in page and 'id="autosave-status"' in page
    field = EDITABLE[0]
    url = reverse("pages:dossier-autosave", args=[dossier.pk])
    text = "A chest radiograph triage aid for adults, read by a radiologist in every case, at the hospitals named in its deployments."
    response = officer_client.post(url, {"edit_count": dossier.edit_count, field.key: text})
    body = response.json()
    assert response.status_code == 200 and body["saved"] == 1 and body["edit_count"] == dossier.edit_count + 1
    assert set(body["sections"]) and {"filled", "required"} <= set(next(iter(body["sections"].values())))
    dossier.refresh_from_db()
    assert dossier.values[field.key] == text
    # A second tab that started from the old count, with other text: refused, never overwritten.
    stale = officer_client.post(url, {"edit_count": 0, field.key: text + " Changed elsewhere."})
    assert stale.status_code == 409 and stale.json()["reload"] == reverse("pages:dossier-detail", args=[dossier.pk])
    dossier.refresh_from_db()
    assert dossier.values[field.key] == text


@pytest.mark.django_db
def test_autosave_refused_to_a_reader(personas, deployed):
    dossier = dossier_open(actor=personas["officer"], version=deployed["version"])
    client = Client()
    client.force_login(personas["auditor"])
    assert client.post(reverse("pages:dossier-autosave", args=[dossier.pk]), {"edit_count": 0}).status_code == 403
