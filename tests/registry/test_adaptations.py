"""Adaptations as records (``registry.adaptations``): how a version was made from its base, the
lineage tree of a foundation model, and the base's weaknesses carried into each adaptation."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent
from registry.adaptations import adaptation_record, inherited_risks, lineage_root, lineage_tree
from registry.choices import AdaptationMethod, ProvenanceRole
from tests.factories import DatasetFactory, FoundationModelFactory, InstitutionFactory, ModelVersionFactory, ProvenanceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def family(personas):
    """A general-purpose base, a linear probe and a fine-tune of it, and an adapter of the fine-tune,
    all of the engineer's institution (the provider records what was made of its base)."""
    vendor = personas["engineer"].institution
    base_model = FoundationModelFactory(name="CXR encoder", provider=vendor, known_limitations="Unknown performance on children.")
    base = ModelVersionFactory(foundation_model=base_model, version="1.0.0")
    pretraining = DatasetFactory(name="Public chest films", known_limitations="Few portable films; two vendors only.")
    ProvenanceFactory(version=base, dataset=pretraining, role=ProvenanceRole.PRETRAINING)
    task_model = FoundationModelFactory(name="Pneumothorax triage", provider=vendor)
    probe = ModelVersionFactory(foundation_model=task_model, version="1.0.0", parent=base)
    tuned = ModelVersionFactory(foundation_model=task_model, version="2.0.0", parent=base)
    adapter = ModelVersionFactory(foundation_model=task_model, version="2.1.0", parent=tuned)
    labelled = DatasetFactory(name="North labelled films")
    return {"base": base, "probe": probe, "tuned": tuned, "adapter": adapter, "labelled": labelled, "pretraining": pretraining}


def _record(personas, version, method, **extra):
    fields = {"task": "pneumothorax on adult chest films", "labels": ["pneumothorax"], "labelled_cases": 500, "labelled_patients": 400}
    return adaptation_record(actor=personas["engineer"], version=version, method=method, **{**fields, **extra})


def test_an_adaptation_records_method_task_labelled_data_and_frozen_parts(personas, family):
    adaptation = _record(
        personas, family["probe"], AdaptationMethod.LINEAR_PROBE, labelled_dataset=family["labelled"], frozen_parts="the whole encoder"
    )
    assert adaptation.get_method_display().startswith("Linear probe")
    assert (adaptation.labelled_cases, adaptation.labelled_patients, adaptation.labelled_dataset) == (500, 400, family["labelled"])
    assert AuditEvent.objects.filter(object_type="registry.adaptation", object_id=str(adaptation.pk), action="create").exists()
    with pytest.raises(ImmutableRecord):
        adaptation.frozen_parts = "nothing"
        adaptation.save()


def test_a_base_is_not_an_adaptation_and_one_version_has_one(personas, family):
    with pytest.raises(ValidationError, match="no parent"):
        _record(personas, family["base"], AdaptationMethod.FULL_FINE_TUNE)
    _record(personas, family["tuned"], AdaptationMethod.FULL_FINE_TUNE)
    with pytest.raises(Conflict):
        _record(personas, family["tuned"], AdaptationMethod.ADAPTER)


def test_more_labelled_patients_than_cases_is_refused(personas, family):
    with pytest.raises(ValidationError, match="more labelled patients than labelled cases"):
        _record(personas, family["probe"], AdaptationMethod.LINEAR_PROBE, labelled_cases=10, labelled_patients=11)


def test_the_lineage_tree_holds_every_adaptation_from_any_member(personas, family):
    _record(personas, family["probe"], AdaptationMethod.LINEAR_PROBE)
    _record(personas, family["tuned"], AdaptationMethod.FULL_FINE_TUNE, labelled_cases=5000, labelled_patients=3000)
    _record(personas, family["adapter"], AdaptationMethod.ADAPTER, frozen_parts="every weight of 2.0.0")
    assert lineage_root(family["adapter"]) == family["base"]
    tree = lineage_tree(family["adapter"])
    assert tree.id == family["base"].pk and tree.method is None
    assert [(c.id, c.method) for c in tree.children] == [(family["probe"].pk, "linear_probe"), (family["tuned"].pk, "full_fine_tune")]
    (grandchild,) = tree.children[1].children
    assert grandchild.id == family["adapter"].pk and grandchild.frozen_parts == "every weight of 2.0.0"
    assert tree.to_dict()["children"][1]["labelled_cases"] == 5000


def test_the_base_weaknesses_are_carried_into_every_adaptation(family):
    risks = inherited_risks(family["adapter"])
    assert [r.item for r in risks] == ["Unknown performance on children.", "Few portable films; two vendors only."]
    assert risks[0].source == "Base model CXR encoder 1.0.0"
    assert "Pre-training data of CXR encoder 1.0.0: Public chest films" == risks[1].source
    assert inherited_risks(family["base"]) == []


def test_the_api_shows_the_tree_and_inherited_risks_the_caller_may_see(personas, family, api_client):
    from registry.models import FoundationModel

    vendor = personas["engineer"].institution
    _record(personas, family["probe"], AdaptationMethod.LINEAR_PROBE)
    FoundationModel.objects.filter(pk=family["base"].foundation_model_id).update(provider=InstitutionFactory(kind="provider"))
    client = api_client(personas["engineer"])
    hidden_base = client.get(f"/api/model-versions/{family['probe'].pk}/adaptations/").json()
    # the base belongs to another provider: the tree starts at what the engineer may see, no base risk leaks
    assert hidden_base["tree"]["id"] == family["probe"].pk and hidden_base["inherited_risks"] == []
    FoundationModel.objects.filter(pk=family["base"].foundation_model_id).update(provider=vendor)
    seen = client.get(f"/api/model-versions/{family['probe'].pk}/adaptations/").json()
    assert seen["tree"]["id"] == family["base"].pk
    assert {c["id"]: c["method"] for c in seen["tree"]["children"]} == {family["probe"].pk: "linear_probe", family["tuned"].pk: None}
    assert seen["inherited_risks"][0]["item"] == "Unknown performance on children."
