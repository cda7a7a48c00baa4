"""Lesion detection as a registry task: the model's task decides its versions' kind, a version's
output schema must agree with it (a 400 on ``output_schema`` otherwise), and pages, API and
documents say "Lesion detection"."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from radtrust_demo import lesions
from registry.models import FoundationModel, ModelVersion
from tests.factories import FoundationModelFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def detector_file(tmp_path) -> bytes:
    return lesions.detector_onnx(tmp_path / "detector.onnx").read_bytes()


@pytest.fixture
def models(institutions) -> dict[str, FoundationModel]:
    return {task: FoundationModelFactory(provider=institutions["vendor"], task=task, modality="CT") for task in ("detection", "binary")}


def _upload(client, model: FoundationModel, onnx: bytes, schema: dict):
    data = {
        "foundation_model": model.pk,
        "version": "1.0.0",
        "artifact": SimpleUploadedFile("detector.onnx", onnx),
        "output_schema": json.dumps(schema),
    }
    return client.post("/api/model-versions/", data, format="multipart")


def test_a_detection_model_is_registered_with_its_task_and_label(api_client, personas, institutions):
    fields = {"name": "Nodule finder", "intended_purpose": "Finds nodules.", "modality": "CT", "body_region": "chest", "licence": "MIT"}
    response = api_client(personas["engineer"]).post(
        "/api/foundation-models/", {**fields, "provider": institutions["vendor"].pk, "task": "detection"}
    )
    assert response.status_code == 201, response.content
    assert (response.json()["task"], response.json()["task_label"]) == ("detection", "Lesion detection")


def test_a_detection_version_needs_no_task_in_its_schema_and_runs_as_a_detector(api_client, personas, models, detector_file):
    response = _upload(api_client(personas["engineer"]), models["detection"], detector_file, lesions.DETECTOR_SCHEMA)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["task"], body["task_label"]) == ("detection", "Lesion detection")
    spec = ModelVersion.objects.get(pk=body["id"]).task_spec
    assert spec.task == "detection" and spec.detection.match_by == "distance" and spec.detection.max_distance == 8.0


@pytest.mark.parametrize(
    ("model", "schema", "message"),
    [
        ("detection", {"detection": {"match_by": "overlap"}}, "match_by must be 'iou' or 'distance'"),
        ("detection", {"detection": {"nms": 0.5}}, "unknown key(s) nms"),
        ("detection", {"task": "volume_segmentation", "volume": {"spacing": [1, 1, 1], "patch": [8, 8, 8]}}, "whose task is segmentation"),
        ("binary", {"task": "detection"}, '"task": "detection" needs a foundation model whose task is detection'),
        ("binary", {"detection": {"match_by": "iou"}}, '"detection" applies to a detection model'),
    ],
)
def test_a_schema_that_disagrees_with_the_detection_contract_is_a_400_on_output_schema(
    api_client, personas, models, detector_file, model, schema, message
):
    response = _upload(api_client(personas["engineer"]), models[model], detector_file, {"class_names": ["nodule"], **schema})
    assert response.status_code == 400, response.content
    body = response.json()
    assert list(body) == ["output_schema"] and message in body["output_schema"][0]
    assert not ModelVersion.objects.exists()


def test_the_task_of_a_registered_model_cannot_be_changed(api_client, personas, models):
    response = api_client(personas["engineer"]).patch(f"/api/foundation-models/{models['detection'].pk}/", {"task": "segmentation"})
    assert response.status_code == 400 and "task" in response.json()
    models["detection"].refresh_from_db()
    assert models["detection"].task == "detection"


def test_pages_offer_and_show_lesion_detection(personas, models, detector_file, tmp_path):
    client = Client()
    client.force_login(personas["engineer"])
    form = client.get(reverse("engineer:model-new")).content.decode()
    assert '<option value="detection">Lesion detection</option>' in form
    upload = client.get(reverse("engineer:version-upload", args=[models["detection"].pk])).content.decode()
    assert "Task: Lesion detection." in upload and "Each lesion class" in upload
    path = tmp_path / "d.onnx"
    path.write_bytes(detector_file)
    from registry.services import version_register

    with open(path, "rb") as handle:
        version = version_register(
            actor=personas["engineer"],
            foundation_model=models["detection"],
            version="1.0.0",
            model_file=("d.onnx", handle),
            output_schema=lesions.DETECTOR_SCHEMA,
        )
    page = client.get(reverse("engineer:version-manage", args=[version.pk])).content.decode()
    assert "· Lesion detection ·" in page


def test_documents_say_lesion_detection(personas, models):
    from compliance.document_cards import model_card, model_card_markdown
    from compliance.document_evidence import Attachments, evidence_elements
    from compliance.dossier_evidence import dossier_evidence

    version = ModelVersionFactory(foundation_model=models["detection"])
    description = dossier_evidence(version, {"model_description"})["model_description"]
    (pairs,) = evidence_elements("model_description", description, Attachments())
    assert ("Task", "Lesion detection") in pairs.rows
    snapshot = {"evidence": {"model_description": description}, "version": {"label": str(version)}}
    card = model_card(snapshot, {"snapshot_sha256": "0" * 64, "signer": "officer", "signed_at": "2026-01-01T00:00:00Z"})
    assert card["metadata"]["pipeline_tag"] == "object-detection"
    assert "- Task: Lesion detection; modality CT" in model_card_markdown(card)


def test_the_migration_makes_a_family_of_detector_versions_a_detection_model():
    """Before the task existed a detector was a model of another task whose versions said "task": "detection"."""
    migration = importlib.import_module("registry.migrations.0015_detection_task")
    legacy, classifier, plain = (FoundationModelFactory(task=task) for task in ("segmentation", "binary", "segmentation"))
    for model, schema in ((legacy, {"task": "detection"}), (classifier, {"task": "detection"}), (plain, {})):
        ModelVersionFactory(foundation_model=model, output_schema={"class_names": ["nodule"], **schema})
    migration.detectors_forward(apps, None)
    assert [FoundationModel.objects.get(pk=m.pk).task for m in (legacy, classifier, plain)] == ["detection", "detection", "segmentation"]
    migration.detectors_backward(apps, None)
    assert FoundationModel.objects.get(pk=legacy.pk).task == "segmentation"
    assert legacy.versions.get().output_schema["task"] == "detection"


def test_the_migration_stops_at_a_model_whose_versions_are_of_two_tasks():
    """Given one task, a mixed family would hold versions the new rule cannot read (pages, runs): it is named instead."""
    migration = importlib.import_module("registry.migrations.0015_detection_task")
    mixed = FoundationModelFactory(task="segmentation", name="Nodule finder")
    for number, schema in enumerate([{"task": "detection"}, {}]):
        ModelVersionFactory(foundation_model=mixed, version=f"1.{number}.0", output_schema={"class_names": ["nodule"], **schema})

    with pytest.raises(RuntimeError, match=rf"Nodule finder \(id {mixed.pk}\)"):
        migration.detectors_forward(apps, None)
    assert FoundationModel.objects.get(pk=mixed.pk).task == "segmentation"


def test_outputs_uploaded_for_a_detector_are_refused_on_version(run_setup, models):
    from django.core.exceptions import ValidationError

    from validation.uploaded_outputs import run_from_predictions

    version = ModelVersionFactory(foundation_model=models["detection"], output_schema=lesions.DETECTOR_SCHEMA)
    with pytest.raises(ValidationError) as caught:
        run_from_predictions(
            actor=run_setup["engineer"],
            version=version,
            dataset=run_setup["dataset"],
            predictions=b"case_id,nodule\n",
            filename="p.csv",
            artifact_sha256=version.artifact_sha256,
        )
    assert "classifiers only; this is a lesion detection model" in caught.value.message_dict["version"][0]


def test_a_pacs_dataset_validates_classifiers_not_detectors(models):
    from django.core.exceptions import ValidationError

    from validation.services import dicomweb_task_check

    dicomweb_task_check(ModelVersionFactory(foundation_model=models["binary"]))  # a classifier passes
    with pytest.raises(ValidationError) as caught:
        dicomweb_task_check(ModelVersionFactory(foundation_model=models["detection"]))
    assert "validates classifiers, not masks or boxes" in caught.value.message_dict["dataset"][0]
