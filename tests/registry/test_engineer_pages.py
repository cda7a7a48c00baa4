"""The engineers' pages: register a model, the upload form (its file goes to the API), start a
validation with analyses from checkboxes (only runnable datasets offered), and lifecycle moves
with the guards' reasons shown."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from registry.choices import VersionStatus
from registry.models import Dataset, FoundationModel
from registry.services import provenance_link
from tests.factories import DatasetFactory
from validation.models import ValidationRun


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_register_a_model_then_upload_page(personas):
    client = _client(personas["engineer"])
    response = client.post(
        reverse("engineer:model-new"),
        {
            "name": "ChestNet",
            "intended_purpose": "Flag pneumothorax on chest films.",
            "modality": "DX",
            "body_region": "chest",
            "task": "binary",
            "risk_class": "high",
            "mdr_class": "IIa",
            "licence": "proprietary",
        },
    )
    model = FoundationModel.objects.get(name="ChestNet")
    assert model.provider == personas["engineer"].institution
    assert response["Location"] == reverse("engineer:version-upload", args=[model.pk])
    page = client.get(response["Location"]).content.decode()
    assert 'action="/api/model-versions/"' in page and 'type="file"' in page and "<progress" in page
    assert "validation/version_upload" in page  # the XHR with the progress bar, as a file (no inline script)


@pytest.mark.django_db
def test_model_form_errors_marked(personas):
    response = _client(personas["engineer"]).post(reverse("engineer:model-new"), {"name": ""})
    assert response.status_code == 400 and "Name (required)" in response.content.decode()


@pytest.mark.django_db
def test_validation_form_offers_runnable_datasets_and_checkbox_analyses(personas, run_setup, settings):
    engineer, version = personas["engineer"], run_setup["version"]
    nowhere = DatasetFactory(institution=engineer.institution, name="Unplaced set", location="")
    client = _client(engineer)
    page = client.get(reverse("engineer:version-manage", args=[version.pk])).content.decode()
    picker = page.split('id="validate"')[1].split("</select>")[0]
    assert "North test set" in picker and "Unplaced set" not in picker  # a dataset without data cannot run
    assert 'type="checkbox" name="analyses" value="robustness"' in page
    response = client.post(
        reverse("engineer:run-start", args=[version.pk]),
        {"dataset": run_setup["dataset"].pk, "analyses": ["calibration", "uncertainty"], "n_resamples": 200},
    )
    assert response.status_code == 302
    run = ValidationRun.objects.get()
    assert run.config["analyses"] == ["calibration", "uncertainty"] and run.config["n_resamples"] == 200
    refused = client.post(reverse("engineer:run-start", args=[version.pk]), {"dataset": nowhere.pk, "n_resamples": 200})
    assert refused.status_code == 302 and ValidationRun.objects.count() == 1


@pytest.mark.django_db
def test_lifecycle_moves_show_the_guards_reasons(personas, run_setup):
    engineer, version = personas["engineer"], run_setup["version"]
    client = _client(engineer)
    page = client.get(reverse("engineer:version-manage", args=[version.pk])).content.decode()
    assert "Move to “In validation”" in page and "Move to “Approved”" not in page  # an officer's move
    # The version has external validation data but no training data linked: the guard says so, before any click.
    why = page.split("Not yet possible:")[1][:600]
    assert "pre-trained or fine-tuned on (provenance)" in why
    response = client.post(reverse("engineer:version-move", args=[version.pk]), {"to_status": "in_validation"}, follow=True)
    assert "Not moved:" in response.content.decode()
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT
    provenance_link(actor=engineer, version=version, dataset=DatasetFactory(institution=engineer.institution), role="fine_tuning")
    page = client.get(reverse("engineer:version-manage", args=[version.pk])).content.decode()
    assert "All checks pass: this move can be made now." in page
    client.post(reverse("engineer:version-move", args=[version.pk]), {"to_status": "in_validation"})
    version.refresh_from_db()
    assert version.status == VersionStatus.IN_VALIDATION


@pytest.mark.django_db
def test_other_providers_engineer_cannot_manage(personas, run_setup):
    client = _client(personas["engineer_south"])
    assert client.get(reverse("engineer:version-manage", args=[run_setup["version"].pk])).status_code == 404
    assert client.get(reverse("engineer:version-upload", args=[run_setup["model"].pk])).status_code == 404


@pytest.mark.django_db
def test_register_a_dataset_and_link_it(personas, run_setup):
    engineer, version = personas["engineer"], run_setup["version"]
    client = _client(engineer)
    response = client.post(
        reverse("engineer:dataset-new"),
        {"name": "Vendor training set", "modality": "DX", "label_source": "Two radiologists, consensus.", "patient_count": 1200},
    )
    assert response.status_code == 302
    dataset = Dataset.objects.get(name="Vendor training set")
    assert dataset.institution == engineer.institution and dataset.patient_count == 1200
    client.post(reverse("engineer:provenance-add", args=[version.pk]), {"dataset": dataset.pk, "role": "pretraining"})
    page = client.get(reverse("engineer:version-manage", args=[version.pk])).content.decode()
    assert "Vendor training set: Pre-training" in page
    assert "All checks pass: this move can be made now." in page  # the training data the guard asked for
