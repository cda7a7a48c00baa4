"""factory_boy factories for the registry; artifacts are real ONNX files built by ``tests.onnx_models``."""

from __future__ import annotations

import factory

from registry.choices import Modality, ProvenanceRole, Task, VersionStatus
from registry.models import Dataset, Deployment, FoundationModel, Institution, ModelVersion, Provenance


class InstitutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Institution

    code = factory.Sequence(lambda n: f"site-{n}")
    name = factory.Sequence(lambda n: f"Hospital {n}")
    country = "DE"


class FoundationModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FoundationModel

    name = factory.Sequence(lambda n: f"ChestFM-{n}")
    provider = factory.SubFactory(InstitutionFactory, kind=Institution.Kind.PROVIDER)
    intended_purpose = "Triage of adult chest radiographs for pneumothorax."
    modality = Modality.DX
    body_region = "chest"
    task = Task.BINARY
    licence = "proprietary"


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A version row with plausible artifact metadata; use ``version_register`` when the file matters."""

    class Meta:
        model = ModelVersion

    foundation_model = factory.SubFactory(FoundationModelFactory)
    version = factory.Sequence(lambda n: f"1.{n}.0")
    status = VersionStatus.DRAFT
    output_schema = {"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.5}}
    artifact_sha256 = factory.Sequence(lambda n: f"{n:064x}")
    artifact_files = factory.LazyAttribute(lambda o: [{"name": "model.onnx", "sha256": o.artifact_sha256, "size": 100, "role": "model"}])
    artifact_size = 100
    opset = 18
    ir_version = 8
    inputs = [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 64, 64]}]
    outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", 1]}]
    parameter_count = 1000


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"Chest X-ray set {n}")
    institution = factory.SubFactory(InstitutionFactory)
    modality = Modality.DX


class ProvenanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provenance

    version = factory.SubFactory(ModelVersionFactory)
    dataset = factory.SubFactory(DatasetFactory)
    role = ProvenanceRole.FINE_TUNING


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    version = factory.SubFactory(ModelVersionFactory, status=VersionStatus.DEPLOYED)
    institution = factory.SubFactory(InstitutionFactory)
    status = "active"


def dossier_officer_values() -> dict:
    """Every officer-written dossier field filled with text that names it (markup included, to show it is escaped)."""
    from compliance.dossier_fields import FIELDS

    return {key: f"<b>{field.title}</b>: documented for the test." for key, field in FIELDS.items() if field.source == "officer"}
