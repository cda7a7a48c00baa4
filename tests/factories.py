"""factory_boy factories for the registry; artifacts are real ONNX files built by ``tests.onnx_models``."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from registry.choices import DataUsePurpose, Modality, ProvenanceRole, Task, VersionStatus
from registry.models import Dataset, DataUseGrant, Deployment, FoundationModel, Institution, ModelVersion, Provenance


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


class DataUseGrantFactory(factory.django.DjangoModelFactory):
    """A steward's grant for external validation, active from a month ago for a year; pass dates to test its ends."""

    class Meta:
        model = DataUseGrant

    dataset = factory.SubFactory(DatasetFactory)
    grantee = factory.SubFactory(InstitutionFactory, kind=Institution.Kind.PROVIDER)
    purpose = DataUsePurpose.EXTERNAL_VALIDATION
    agreement_reference = factory.Sequence(lambda n: f"DUA-{n:04d}")
    valid_from = factory.LazyFunction(lambda: timezone.localdate() - timedelta(days=30))
    valid_until = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=365))


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    version = factory.SubFactory(ModelVersionFactory, status=VersionStatus.DEPLOYED)
    institution = factory.SubFactory(InstitutionFactory)
    status = "active"


def within_clinical_investigation(version, institution, officer):
    """Record ``version`` as used at ``institution`` within a clinical investigation, so that it may be
    deployed there before it is placed on the market (``compliance.market``)."""
    from compliance.models import ClinicalInvestigation

    return ClinicalInvestigation.objects.create(
        version=version,
        institution=institution,
        reference="CIV-TEST-1",
        reason="A test deployment before placing on the market.",
        recorded_by=officer,
    )


SIGNING_PASSWORD = "a-signing-password-for-tests-17"  # the officer personas' password (tests/conftest.py signing_password)


def dossier_officer_values() -> dict:
    """Every officer-written dossier field answered: the catalogue's well-formed example where a field has one
    (identifiers, the statement of conformity), else text that names the field (markup included, to show it is
    escaped) and is long enough to count as an answer (``compliance.field_checks``)."""
    from compliance.dossier_fields import FIELDS

    return {
        key: field.example or f"<b>{field.title}</b>: documented for the test. It says what was done and the evidence it rests on."
        for key, field in FIELDS.items()
        if field.source == "officer"
    }
