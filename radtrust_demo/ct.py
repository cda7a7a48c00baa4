"""The demo's 3D part: a generated chest CT set with planted nodules and two readers, a nodule
detector and a nodule segmenter registered as versions, validated through the real run path, and
the lines the demo prints about them (``radtrust_demo.lesions`` makes the data and the models)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from compliance.document_evidence import Attachments, evidence_elements
from compliance.dossier_evidence import dossier_evidence
from radtrust_demo import lesions
from radtrust_demo.runs import _sha256, data_use_granted
from registry import services
from registry.choices import DataUsePurpose, Modality, ProvenanceRole, Task
from registry.models import Dataset, FoundationModel, Institution, ModelVersion, Provenance, User

CT_SET = "Chest CT nodule test set (generated)"
MODELS = {
    "detector": (
        "Lung CT nodule detector",
        Task.DETECTION,
        lesions.detector_onnx,
        lesions.DETECTOR_SCHEMA,
        "Finds pulmonary nodules on chest CT as scored boxes.",
    ),
    "segmenter": (
        "Lung CT nodule segmenter",
        Task.SEGMENTATION,  # its version's output schema says it segments volumes (3D)
        lesions.segmenter_onnx,
        lesions.SEGMENTER_SCHEMA,
        "Outlines pulmonary nodules on chest CT, voxel by voxel.",
    ),
}
CT_SUITE = {"n_resamples": 500, "min_patients": 3, "attributes": ["sex"], "intersections": [], "analyses": ["calibration"]}


@dataclass(frozen=True)
class CtSetup:
    detector: ModelVersion
    segmenter: ModelVersion
    dataset: Dataset
    data: lesions.NoduleDataset


def ct_setup(*, engineer: User, steward: User, provider: Institution, site: Institution, out: Callable[[str], None] = print) -> CtSetup:
    """Generate the CT set (once), register both models (once), document the dataset and link it as their external test data."""
    root = Path(settings.RADTRUST_DATA_ROOTS[0]) / "demo-ct-nodules"
    out(f"Generating 12 chest CT volumes with planted nodules and two readers under {root} ...")
    data = lesions.write_nodule_volumes(root)  # deterministic: the same files on every demo
    versions = {}
    for key, (name, task, build, schema, purpose) in MODELS.items():
        model = FoundationModel.objects.filter(name=name).first() or services.record_create(
            model=FoundationModel,
            actor=engineer,
            fields={
                "name": name,
                "provider": provider,
                "description": f"{purpose} A tiny ONNX graph built for the demo (no training).",
                "intended_purpose": f"{purpose} For a radiologist's second look on adult chest CT.",
                "intended_users": "Radiologists.",
                "modality": Modality.CT,
                "body_region": "chest",
                "task": task,
                "licence": "Proprietary, per-site licence",
            },
        )
        version = ModelVersion.objects.filter(foundation_model=model, version="1.0.0").first()
        if version is None:
            with tempfile.TemporaryDirectory() as folder:
                path = build(Path(folder) / f"{key}.onnx")
                with open(path, "rb") as handle:
                    version = services.version_register(
                        actor=engineer,
                        foundation_model=model,
                        version="1.0.0",
                        model_file=(path.name, handle),
                        output_schema=schema,
                        preprocessing=lesions.PREPROCESSING,
                        release_notes="First version.",
                    )
        versions[key] = version
    dataset = Dataset.objects.filter(name=CT_SET).first() or services.record_create(
        model=Dataset,
        actor=engineer,
        fields={
            "name": CT_SET,
            "institution": site,
            "modality": Modality.CT,
            "body_region": "chest",
            "legal_basis": "research",
            "licence": "CC0 (generated data)",
            "description": "Generated chest CT crops (NIfTI, 2 x 1 x 1 mm) with 0 to 2 nodules each, the nodules' centres and radii, "
            "label volumes, and two readers: reader b flips the nodule call on a known share of the volumes and outlines each nodule one voxel smaller.",
            "collection_purpose": "Generated for the RadTrust demo; no patient data.",
            "label_source": "Known by construction (the generator placed the nodules); two readers' calls and outlines beside it.",
            "deidentification": "Not applicable: synthetic.",
            "location": str(root),
            "manifest_sha256": _sha256(data.manifest),
            "image_count": data.n_volumes,
            "patient_count": data.n_volumes,
        },
        m2m={"source_institutions": [site]},
    )
    data_use_granted(dataset, steward=steward, grantee=provider, purpose=DataUsePurpose.EXTERNAL_VALIDATION)
    for version in versions.values():
        if not Provenance.objects.filter(version=version, dataset=dataset, role=ProvenanceRole.EXTERNAL_VALIDATION).exists():
            services.provenance_link(actor=engineer, version=version, dataset=dataset, role=ProvenanceRole.EXTERNAL_VALIDATION)
    return CtSetup(detector=versions["detector"], segmenter=versions["segmenter"], dataset=dataset, data=data)


def ct_lines(setup: CtSetup, runs: list) -> list[str]:
    """What the 3D runs found, against what was planted, and where to read them."""
    detection, volumes = runs
    overall = detection.results["detection"]["overall"]
    cpm = overall["cpm"]
    readers = detection.results["readers"]["nodule"]
    dice = volumes.results["volumes"]["structures"]["nodule"]["dice"]
    ceiling = volumes.results["readers"]["mask"]["dice_ceiling"]["nodule"]
    setup.dataset.refresh_from_db()
    lines = [
        f"  Planted      {setup.data.n_nodules} nodules in {setup.data.n_volumes} volumes; reader b disagrees on {setup.data.reader_flips} volumes",
        f"  Detection    run {detection.pk}: {overall['n_lesions']} lesions, sensitivity at 1 FP per volume {overall['sensitivity'][3]:.2f}, "
        f"CPM {cpm['value']:.2f} (95% CI {cpm['low']:.2f} to {cpm['high']:.2f})",
        f"  Readers      {readers['statistic']} {readers['kappa']['value']:.2f} (95% CI {readers['kappa']['low']:.2f} to {readers['kappa']['high']:.2f}); "
        f"the model is {readers['model_position_label']}; datasheet now says: {setup.dataset.rater_agreement}",
        f"  Volumes      run {volumes.pk}: Dice {dice['mean']:.2f} (95% CI {dice['low']:.2f} to {dice['high']:.2f}) against an inter-reader Dice of {ceiling:.2f}",
        f"  Pages        /runs/{detection.pk}/ (FROC chart, strata, readers) and /runs/{volumes.pk}/ (per structure and per volume)",
    ]
    evidence = dossier_evidence(setup.detector, {"detection_volumes"})["detection_volumes"]
    captions = [e.caption for e in evidence_elements("detection_volumes", evidence, Attachments()) if hasattr(e, "caption")]
    lines.append(
        f"  Documents    the technical documentation of {setup.detector} cites run {evidence['run']} in 'Lesion detection and 3D segmentation results' "
        f"(Annex IV 2(g)): {'; '.join(captions)}"
    )
    return lines
