"""The registry a database bench runs against: hospitals, one deployed version of each of five models,
and deployments spread over the hospitals, written with ``bulk_create`` (no audit events: the benches
measure their own writes, not the registry's)."""

from __future__ import annotations

from datetime import date

from registry.choices import DeploymentStatus, VersionStatus
from registry.models import Deployment, FoundationModel, Institution, ModelVersion

MODELS = ("ChestNet", "MammoScan", "NeuroCT", "BoneAge", "LungNodule")


def bench_deployments(deployments: int, since: date, *, code_prefix: str, name_prefix: str = "") -> tuple[list[Institution], list[Deployment]]:
    """``deployments`` active deployments, ``len(MODELS)`` to a hospital coded ``<code_prefix><nnn>``."""
    sites = -(-deployments // len(MODELS))
    institutions = Institution.objects.bulk_create(
        [Institution(code=f"{code_prefix}{i:03d}", name=f"Bench hospital {i}", country="DE") for i in range(sites)]
    )
    models = FoundationModel.objects.bulk_create(
        [
            FoundationModel(
                name=f"{name_prefix}{name}",
                provider=institutions[0],
                intended_purpose="Synthetic bench model.",
                modality="CR",
                body_region="chest",
                task="binary",
                licence="proprietary",
            )
            for name in MODELS
        ]
    )
    versions = ModelVersion.objects.bulk_create(
        [
            ModelVersion(
                foundation_model=m,
                version="1.0.0",
                status=VersionStatus.DEPLOYED,
                output_schema={"class_names": ["finding"]},
                artifact_sha256=f"{i:064x}",
                artifact_files=[],
                artifact_size=1,
                opset=17,
                ir_version=8,
                parameter_count=1,
            )
            for i, m in enumerate(models)
        ]
    )
    placed = Deployment.objects.bulk_create(
        [
            Deployment(version=versions[i % len(MODELS)], institution=institutions[i // len(MODELS)], status=DeploymentStatus.ACTIVE, since=since)
            for i in range(deployments)
        ]
    )
    return institutions, placed
