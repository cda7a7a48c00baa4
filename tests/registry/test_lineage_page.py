"""The lineage page (issue 20: the tree of a foundation model "visible in API and pages"): every
adaptation the user may see with its method and labelled data, and the weaknesses it inherits."""

from __future__ import annotations

import pytest

from registry.adaptations import adaptation_record
from registry.choices import AdaptationMethod, ProvenanceRole
from registry.models import FoundationModel
from tests.factories import DatasetFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory

pytestmark = pytest.mark.django_db


def test_an_engineer_reads_the_tree_the_adaptations_and_the_inherited_weaknesses(personas, client):
    vendor = personas["engineer"].institution
    base = ModelVersionFactory(foundation_model=FoundationModelFactory(name="CXR encoder", provider=vendor, known_limitations="Unknown on children."))
    ProvenanceFactory(
        version=base, dataset=DatasetFactory(name="Public films", known_limitations="Two vendors only."), role=ProvenanceRole.PRETRAINING
    )
    task = FoundationModelFactory(name="Pneumothorax triage", provider=vendor)
    probe = ModelVersionFactory(foundation_model=task, version="1.0.0", parent=base)
    tuned = ModelVersionFactory(foundation_model=task, version="2.0.0", parent=base)
    adaptation_record(
        actor=personas["engineer"], version=probe, method=AdaptationMethod.LINEAR_PROBE, task="pneumothorax", labels=["pneumothorax"],
        labelled_cases=500, labelled_patients=400, frozen_parts="the whole encoder",
    )  # fmt: skip
    client.force_login(personas["engineer"])
    assert f'href="/versions/{probe.pk}/lineage/"' in client.get(f"/versions/{probe.pk}/manage/").content.decode()
    page = client.get(f"/versions/{probe.pk}/lineage/").content.decode()
    assert "Pneumothorax triage 1.0.0 (this version)" in page
    assert (
        "Adapted by linear probe (base frozen, a new linear head) for pneumothorax, with 500 labelled cases from 400 patients; frozen: the whole encoder."
        in page
    )
    assert f'href="/versions/{tuned.pk}/lineage/"' in page and f'href="/versions/{base.pk}/lineage/"' in page
    assert "Unknown on children." in page and "Two vendors only." in page


def test_a_base_of_another_provider_and_its_weaknesses_stay_hidden_and_clinicians_are_refused(personas, client):
    base = ModelVersionFactory(foundation_model=FoundationModelFactory(name="Their encoder", known_limitations="Secret weakness."))
    mine = ModelVersionFactory(foundation_model=FoundationModelFactory(name="Our probe", provider=personas["engineer"].institution), parent=base)
    client.force_login(personas["engineer"])
    page = client.get(f"/versions/{mine.pk}/lineage/").content.decode()
    assert "Our probe" in page and "Their encoder" not in page and "Secret weakness." not in page
    assert client.get(f"/versions/{base.pk}/lineage/").status_code == 404
    assert FoundationModel.objects.filter(name="Their encoder").exists()
    client.force_login(personas["clinician_north"])
    assert client.get(f"/versions/{mine.pk}/lineage/").status_code == 403
