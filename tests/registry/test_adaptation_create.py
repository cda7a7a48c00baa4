"""Recording an adaptation through the API and the engineers' page (``registry.adaptations``), and
the risks and weaknesses of the base that its dossier must answer before submission
(``compliance.inherited_items``, ``compliance.dossier_checks``)."""

from __future__ import annotations

import json

import pytest

from compliance.document_evidence import FORMATTERS
from compliance.dossier_checks import inherited_problems
from compliance.inherited_items import ANSWER_FIELD, inherited_items
from compliance.risk_file import hazard_add, risk_file_open
from core.models import AuditEvent
from registry.choices import ProvenanceRole
from registry.models import Adaptation, ModelVersion
from tests.factories import DatasetFactory, FoundationModelFactory, InstitutionFactory, ModelVersionFactory, ProvenanceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lineage(personas):
    vendor = personas["engineer"].institution
    base = ModelVersionFactory(foundation_model=FoundationModelFactory(name="CXR encoder", provider=vendor, known_limitations="Unknown on children."))
    pretraining = DatasetFactory(name="Public films", institution=vendor, known_limitations="Two vendors only.")
    ProvenanceFactory(version=base, dataset=pretraining, role=ProvenanceRole.PRETRAINING)
    probe = ModelVersionFactory(foundation_model=FoundationModelFactory(name="Pneumothorax probe", provider=vendor), parent=base)
    labelled = DatasetFactory(name="Vendor labelled films", institution=vendor)
    return {"base": base, "probe": probe, "labelled": labelled}


def _body(**extra):
    return {
        "method": "linear_probe",
        "task": "pneumothorax on adult chest films",
        "labels": ["pneumothorax"],
        "labelled_cases": 500,
        "labelled_patients": 400,
        **extra,
    }


def _errors(response) -> str:
    return json.dumps(response.json())


def test_an_engineer_of_the_provider_records_an_adaptation_and_it_is_audited(personas, lineage, api_client):
    url = f"/api/model-versions/{lineage['probe'].pk}/adaptations/"
    response = api_client(personas["engineer"]).post(url, _body(labelled_dataset=lineage["labelled"].pk, frozen_parts="the encoder"), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["method_label"].startswith("Linear probe") and body["labelled_dataset"] == lineage["labelled"].pk and body["created_by"] == "engineer"
    adaptation = Adaptation.objects.get(version=lineage["probe"])
    assert AuditEvent.objects.filter(object_type="registry.adaptation", object_id=str(adaptation.pk), action="create").exists()
    again = api_client(personas["engineer"]).post(url, _body(), format="json")
    assert again.status_code == 409
    tree = api_client(personas["engineer"]).get(url).json()["tree"]
    assert tree["children"][0]["method"] == "linear_probe"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"method": "distillation"}, "method", "distillation"),
        ({"labelled_cases": 10, "labelled_patients": 11}, "labelled_patients", "more labelled patients than labelled cases"),
        ({"labels": []}, "labels", ""),
    ],
)
def test_bad_fields_are_400_with_the_field_to_fix(personas, lineage, api_client, change, field, words):
    response = api_client(personas["engineer"]).post(f"/api/model-versions/{lineage['probe'].pk}/adaptations/", _body(**change), format="json")
    assert response.status_code == 400 and field in _errors(response) and words in _errors(response)
    assert not Adaptation.objects.exists()


def test_a_dataset_the_engineer_cannot_see_is_refused(personas, lineage, api_client):
    hidden = DatasetFactory(name="South private films", institution=personas["clinician_south"].institution)
    response = api_client(personas["engineer"]).post(
        f"/api/model-versions/{lineage['probe'].pk}/adaptations/", _body(labelled_dataset=hidden.pk), format="json"
    )
    assert response.status_code == 400 and "labelled_dataset" in _errors(response)
    assert "South private films" not in _errors(response) and not Adaptation.objects.exists()


def test_a_base_of_another_provider_and_a_looping_lineage_are_refused(personas, lineage, api_client):
    client = api_client(personas["engineer"])
    theirs = ModelVersionFactory(foundation_model=FoundationModelFactory(name="Their encoder", provider=InstitutionFactory(kind="provider")))
    ModelVersion.objects.filter(pk=lineage["probe"].pk).update(parent=theirs)
    response = client.post(f"/api/model-versions/{lineage['probe'].pk}/adaptations/", _body(), format="json")
    assert response.status_code == 400 and "only its provider's ML engineers" in _errors(response) and '"version"' in _errors(response)
    ModelVersion.objects.filter(pk=lineage["probe"].pk).update(parent=lineage["base"])
    ModelVersion.objects.filter(pk=lineage["base"].pk).update(parent=lineage["probe"])  # a loop written past the services
    response = client.post(f"/api/model-versions/{lineage['probe'].pk}/adaptations/", _body(), format="json")
    assert response.status_code == 400 and "loops back on itself" in _errors(response)
    assert not Adaptation.objects.exists()


def test_other_roles_may_not_record(personas, lineage, api_client):
    url = f"/api/model-versions/{lineage['probe'].pk}/adaptations/"
    assert api_client(personas["officer"]).post(url, _body(), format="json").status_code == 403
    assert api_client(personas["engineer_south"]).post(url, _body(), format="json").status_code in (403, 404)
    assert not Adaptation.objects.exists()


def test_the_page_form_records_and_names_the_field_to_fix(personas, lineage, client):
    client.force_login(personas["engineer"])
    url = f"/versions/{lineage['probe'].pk}/adaptation/"
    form = client.get(url)
    assert form.status_code == 200 and "Unknown on children." in form.content.decode()
    assert url in client.get(f"/versions/{lineage['probe'].pk}/lineage/").content.decode()
    assert url in client.get(f"/versions/{lineage['probe'].pk}/manage/").content.decode()
    bad = client.post(url, {**_body(labelled_cases=3, labelled_patients=5), "labels": "pneumothorax"})
    assert bad.status_code == 400 and "more labelled patients than labelled cases" in bad.content.decode()
    done = client.post(url, {**_body(frozen_parts="blocks 1-10"), "labels": "pneumothorax, effusion"})
    assert done.status_code == 302 and done["Location"].endswith(f"/versions/{lineage['probe'].pk}/lineage/")
    assert Adaptation.objects.get(version=lineage["probe"]).labels == ["pneumothorax", "effusion"]
    client.force_login(personas["auditor"])
    assert client.get(url).status_code == 403


def test_the_dossier_must_answer_every_risk_and_weakness_inherited_from_the_base(personas, lineage, api_client):
    risk_file = risk_file_open(actor=personas["officer"], version=lineage["base"])
    hazard_add(actor=personas["officer"], risk_file=risk_file, hazard="A small pneumothorax is missed.", situation="Read last.", harm="Delay.")
    assert inherited_items(lineage["probe"]) is None  # not yet a recorded adaptation
    api_client(personas["engineer"]).post(f"/api/model-versions/{lineage['probe'].pk}/adaptations/", _body(), format="json")
    items = inherited_items(lineage["probe"])
    assert [i["number"] for i in items] == [1, 2, 3]
    assert [i["item"] for i in items[:2]] == ["Unknown on children.", "Two vendors only."]
    assert items[2]["source"].endswith("hazard H1") and "small pneumothorax" in items[2]["item"]
    evidence = {"inherited_items": items}
    (refusal,) = inherited_problems({}, evidence)
    assert "does not answer yet" in refusal and "1. Base model CXR encoder" in refusal and "Inherited risks addressed" in refusal
    partly = {ANSWER_FIELD: "1. Children are outside the intended purpose (adults only).\n3. ok"}
    (refusal,) = inherited_problems(partly, evidence)
    assert "2. " in refusal and "3. " in refusal and "1. Base model" not in refusal  # a bare "ok" is not an answer
    answered = {
        ANSWER_FIELD: "1. Children are outside the intended purpose (adults only).\n"
        "2) The labelled data came from four vendors; per-vendor results are in section 3.\n"
        "Item 3: sensitivity for small pneumothoraces is reported and a second read is required."
    }
    assert inherited_problems(answered, evidence) == []
    (table,) = FORMATTERS["inherited_items"](items, None)  # the technical documentation prints the same numbered items
    assert table.rows[2][0] == "3" and "small pneumothorax" in table.rows[2][2]
