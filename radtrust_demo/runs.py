"""The validation part of ``manage.py demo``: a nodule model trained on generated radiographs,
its multi-site test set with a datasheet computed from the files, and what the run found.

Reuses what an earlier demo left: the dataset folder, the version and the datasets.
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from core.access import data_use_active
from radtrust_demo.data import BALANCED_POPULATION, PLANTED_EFFECTS, Population, generate_dataset, train_classifier
from radtrust_engine.report import RunReport
from radtrust_engine.stratification import age_band
from registry import services
from registry.choices import DataUsePurpose, Modality, ProvenanceRole, Task
from registry.models import Dataset, FoundationModel, Institution, ModelVersion, Provenance, User

MODEL_NAME = "ChestFM-Nodule"
LABEL = "nodule"
TEST_SET = "Nodule multi-site test set (synthetic)"
TRAINING_SET = "Nodule fine-tuning set (synthetic)"
TEST_IMAGES = 2000
MODEL_TEXTS = {
    "instructions_for_use": (
        "A second reader for adult frontal chest radiographs: read the film first, then look at the flag. "
        "A flag is a prompt to look again, not a finding; an unflagged film is not cleared. "
        "Cases shown as uncertain need a full read without the model."
    ),
    "known_limitations": (
        "Lower sensitivity for patients aged 65 and over (fainter nodules) and on the Vendor B Corvia X1 detector "
        "at site c (noise and intensity offset); not validated for children or lateral views."
    ),
    "explainability_needs": (
        "Radiologists need to see where the model looked: a saliency overlay per flagged film, whose faithfulness "
        "is measured against random maps, and an uncertainty flag for cases to read without the model."
    ),
}
# Later data from the hospital, for drift against the go-live baseline: (name, sites, images, seed).
GO_LIVE_SET = "Nodule go-live set, sites a and b (synthetic)"
FOLLOW_UP_SETS = (
    ("Nodule follow-up, sites a and b (synthetic)", (0.55, 0.45, 0.0), 600, 10),
    ("Nodule follow-up, site c on Vendor B (synthetic)", (0.0, 0.0, 1.0), 600, 11),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def datasheet_from_manifest(path: Path) -> dict:
    """Composition counts of a manifest (scanners, protocols, sex, age bands, ethnicity), for its datasheet."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    scanners = Counter((r["scanner_manufacturer"], r["scanner_model"]) for r in rows if r["scanner_manufacturer"])
    bands = age_band([float(r["age"]) if r["age"] else None for r in rows])
    return {
        "patient_count": len({r["patient_id"] for r in rows}),
        "image_count": len(rows),
        "study_count": len(rows),
        "scanners": [{"manufacturer": m, "model": model, "count": c} for (m, model), c in sorted(scanners.items())],
        "protocols": dict(Counter(r["protocol"] for r in rows if r["protocol"])),
        "demographics": {
            "sex": dict(Counter(r["sex"] for r in rows if r["sex"])),
            "age_band": dict(Counter(str(b) for b in bands)),
            "ethnicity": dict(Counter(r["race_ethnicity"] for r in rows if r["race_ethnicity"])),
        },
    }


def _site_dataset(name: str, sites: tuple[float, ...], images: int, seed: int, *, engineer: User, site: Institution, out) -> Dataset:
    """A generated dataset from the given site mix, documented from its files (reused when it exists)."""
    existing = Dataset.objects.filter(name=name).first()
    if existing:
        return existing
    root = Path(settings.RADTRUST_DATA_ROOTS[0]) / f"demo-nodule-{seed}"
    manifest = root / "manifest.csv"
    if not manifest.exists():
        out(f"Generating {images} DICOM radiographs for {name!r} ...")
        generate_dataset(root, n_images=images, seed=seed, label=LABEL, population=Population(site_weights=sites))
    return services.record_create(
        model=Dataset,
        actor=engineer,
        fields={
            "name": name,
            "institution": site,
            "modality": Modality.DX,
            "body_region": "chest",
            "legal_basis": "research",
            "licence": "CC0 (generated data)",
            "description": f"Generated frontal chest radiographs, site mix {sites} (sites a, b, c).",
            "collection_purpose": "Generated for the RadTrust demo's drift check; no patient data.",
            "label_source": "Known by construction.",
            "deidentification": "Not applicable: synthetic.",
            "location": str(root),
            "manifest_sha256": _sha256(manifest),
            **datasheet_from_manifest(manifest),
        },
        m2m={"source_institutions": [site]},
    )


def data_use_granted(dataset: Dataset, *, steward: User, grantee: Institution, purpose: str) -> None:
    """The site's steward grants the provider the use of its dataset for a year, unless a grant is active."""
    if not dataset.use_grants.filter(data_use_active(), grantee=grantee, purpose=purpose).exists():
        today = timezone.localdate()
        services.data_use_grant(
            actor=steward,
            dataset=dataset,
            grantee=grantee,
            purpose=purpose,
            agreement_reference=f"DEMO-DUA-{dataset.pk}",
            valid_from=today,
            valid_until=today + timedelta(days=365),
        )


def drift_datasets(*, engineer: User, steward: User, site: Institution, out=print) -> tuple[Dataset, list[Dataset]]:
    """The go-live data (sites a and b) the baseline run is made on, and the later data compared with it:
    the same sites again (no drift expected) and site c's Vendor B detector (drift expected), each granted
    to the provider by the site's steward for performance monitoring."""
    go_live = _site_dataset(GO_LIVE_SET, (0.55, 0.45, 0.0), 600, 8, engineer=engineer, site=site, out=out)
    later = [_site_dataset(*spec, engineer=engineer, site=site, out=out) for spec in FOLLOW_UP_SETS]
    for dataset in (go_live, *later):
        data_use_granted(dataset, steward=steward, grantee=engineer.institution, purpose=DataUsePurpose.PERFORMANCE_MONITORING)
    return go_live, later


def nodule_model_setup(*, engineer: User, steward: User, provider: Institution, site: Institution, out=print) -> tuple[ModelVersion, Dataset]:
    """Generate the test set, train and register the model, document both datasets; return (version, test set)."""
    root = Path(settings.RADTRUST_DATA_ROOTS[0]) / "demo-nodule-test"
    manifest = root / "manifest.csv"
    if not manifest.exists():
        out(f"Generating {TEST_IMAGES} DICOM radiographs at 3 sites under {root} ...")
        generate_dataset(root, n_images=TEST_IMAGES, seed=7, label=LABEL)

    model = FoundationModel.objects.filter(name=MODEL_NAME).first() or services.record_create(
        model=FoundationModel,
        actor=engineer,
        fields={
            "name": MODEL_NAME,
            "provider": provider,
            "description": "The chest radiograph encoder with a pulmonary-nodule detection head (a small CNN trained on generated data for the demo).",
            "intended_purpose": "Flag suspected pulmonary nodules on adult frontal chest radiographs for a radiologist's second look.",
            "intended_users": "Radiologists.",
            "modality": Modality.DX,
            "body_region": "chest",
            "task": Task.BINARY,
            "licence": "Proprietary, per-site licence",
            **MODEL_TEXTS,
        },
    )
    missing = {k: v for k, v in MODEL_TEXTS.items() if not getattr(model, k)}
    if missing:  # a model record from an earlier demo, before these fields existed
        model = services.record_update(instance=model, fields=missing)
    version = ModelVersion.objects.filter(foundation_model=model, version="1.0.0").first()
    trained = None
    if version is None:
        out("Training the nodule CNN on generated radiographs (2 CPU threads) ...")
        with tempfile.TemporaryDirectory() as folder:
            trained = train_classifier(Path(folder), seed=7, label=LABEL)
            with open(trained.onnx_path, "rb") as handle:
                version = services.version_register(
                    actor=engineer,
                    foundation_model=model,
                    version="1.0.0",
                    parent=None,
                    model_file=(trained.onnx_path.name, handle),
                    data_files=[],
                    output_schema=trained.output_schema,
                    preprocessing=trained.preprocessing,
                    release_notes=f"Nodule head trained in {trained.train_seconds:.0f} s on {trained.n_train} generated images (training AUROC {trained.train_auroc:.3f}).",
                )

    common = {"modality": Modality.DX, "body_region": "chest", "legal_basis": "research", "licence": "CC0 (generated data)"}
    effects = "; ".join(f"{e.attribute}={e.group}: {e.change}" for e in PLANTED_EFFECTS)
    test_set = Dataset.objects.filter(name=TEST_SET).first() or services.record_create(
        model=Dataset,
        actor=engineer,
        fields={
            **common,
            "name": TEST_SET,
            "institution": site,
            "description": "Generated frontal chest radiographs from three sites and two detector vendors, for external validation.",
            "collection_purpose": "Generated for the RadTrust demo; no patient data.",
            "label_source": "Known by construction (the generator placed the nodules).",
            "deidentification": "Not applicable: synthetic.",
            "known_limitations": f"Synthetic images with planted weaknesses: {effects}.",
            "location": str(root),
            "manifest_sha256": _sha256(manifest),
            # St. Anna shares the runs' per-case outputs with the provider: the demo's engineer at
            # RadVendor reads the saliency overlays and flagged cases of the validation run.
            "case_outputs_shared_with_provider": True,
            **datasheet_from_manifest(manifest),
        },
        m2m={"source_institutions": [site]},
    )
    training_set = Dataset.objects.filter(name=TRAINING_SET).first() or services.record_create(
        model=Dataset,
        actor=engineer,
        fields={
            **common,
            "name": TRAINING_SET,
            "institution": provider,
            "description": "Generated radiographs drawn mostly from patients under 65 at sites a and b, as a curated fine-tuning set would be.",
            "image_count": trained.n_train if trained else None,
            "label_source": "Known by construction.",
            "known_limitations": "Few patients aged 65+ and few site-c (Vendor B) images: the model is expected to be weaker there.",
            "location": "Generated in memory at training time (radtrust_demo.data.train_classifier, seed 7).",
        },
    )
    data_use_granted(test_set, steward=steward, grantee=provider, purpose=DataUsePurpose.EXTERNAL_VALIDATION)
    for dataset, role in ((training_set, ProvenanceRole.FINE_TUNING), (test_set, ProvenanceRole.EXTERNAL_VALIDATION)):
        if not Provenance.objects.filter(version=version, dataset=dataset, role=role).exists():
            services.provenance_link(actor=engineer, version=version, dataset=dataset, role=role)
    return version, test_set


def found_effects_lines(summary: dict, report: RunReport) -> list[str]:
    """The planted effects next to what the run measured for them."""
    label = report.results[LABEL]
    lines = []
    for effect in PLANTED_EFFECTS:
        grouping = "age_band" if effect.attribute in {"age", "age_band"} else effect.attribute
        gap = next((g for g in label.gaps if g.kind == "auroc_gap" and g.attributes == (grouping,)), None)
        if gap is None or gap.value is None:
            lines.append(f"  planted {effect.attribute}={effect.group}: no AUROC gap could be computed by {grouping}")
            continue
        found = effect.group in (gap.group_low or ())
        verdict = "found" if found and gap.ci_low > 0 else "NOT found"
        lines.append(
            f"  planted {effect.attribute}={effect.group} ({effect.change}): {verdict}, lowest AUROC group by {grouping} is "
            f"{', '.join(gap.group_low or ['none (all groups tie)'])}, gap {gap.value:.3f} [{gap.ci_low:.3f}, {gap.ci_high:.3f}]"
        )
    return lines


def suite_lines(report: RunReport) -> list[str]:
    """Calibration, the robustness worst case and the uncertainty referral of the demo label, as printed by the demo."""
    label = report.results[LABEL]
    lines = []
    calibration = label.calibration or {}
    if "ece" in calibration:
        ece, brier = calibration["ece"], calibration["brier"]
        lines.append(
            f"  calibration: ECE {ece['value']:.3f} [{ece['ci_low']:.3f}, {ece['ci_high']:.3f}] ({calibration['n_bins']} {calibration['strategy']} bins), "
            f"Brier {brier['value']:.3f}"
        )
    generalisation = (label.generalisation or {}).get("groupings", {})
    for grouping, found in generalisation.items():
        worst = min((g for g in found["groups"] if g["difference_from_pooled"] is not None), key=lambda g: g["difference_from_pooled"], default=None)
        if worst is not None:
            spread = found["leave_one_out_spread"]
            lines.append(
                f"  generalisation by {grouping}: lowest is {worst['group']}, AUROC {worst['auroc']['value']:.3f} "
                f"({worst['difference_from_pooled']:+.3f} from pooled); leave-one-out spread " + ("n/a" if spread is None else f"{spread:.3f}")
            )
    robustness = label.robustness or {}
    worst = robustness.get("worst_case")
    if worst:
        auroc = worst["metrics"]["auroc"]
        lines.append(
            f"  robustness on {robustness['n_cases']} cases x {len(robustness['conditions'])} conditions: worst is "
            f"{worst['perturbation']} at severity {worst['severity']} ({worst['parameter']} {worst['setting']:g}), "
            f"AUROC {auroc['value']:.3f}, change {auroc['change']:+.3f} [{auroc['ci_low']:+.3f}, {auroc['ci_high']:+.3f}]"
        )
    uncertainty = label.uncertainty or {}
    if "referral" in uncertainty:
        referral = uncertainty["referral"]
        lines.append(
            f"  uncertainty ({len(uncertainty['augmentations'])} test-time augmentations, {uncertainty['n_cases']} cases): "
            f"{referral['message']}; {uncertainty['n_flagged']} cases flagged for a human read"
        )
    explainability = label.explainability or {}
    random = explainability.get("random_baseline") or {}
    for method, found in (explainability.get("methods") or {}).items():
        lines.append(
            f"  explainability ({method}, {explainability['n_cases']} cases): deletion AUC {found['deletion_auc']:.3f} vs random "
            f"{random['deletion_auc']:.3f}, insertion AUC {found['insertion_auc']:.3f} vs random {random['insertion_auc']:.3f}: {found['verdict']}"
        )
    return lines


def drift_lines(run) -> list[str]:
    """What a run's comparison with the baseline found, and the alerts it raised."""
    drift = RunReport.from_dict(run.results).drift
    if drift is None or drift.comparison is None:
        return [f"  drift: not computed: {drift.error if drift else 'not asked for'}"]
    comparison = drift.comparison
    head = f"  drift vs baseline run {drift.baseline['run']} ({comparison.n_baseline_cases} -> {comparison.n_cases} cases): "
    inputs = comparison.inputs.get("image_mean", {})
    lines = [
        head
        + (
            f"image_mean PSI {inputs['psi']:.2f}, KS {inputs['ks_statistic']:.2f} ({'drifted, ' + inputs['level'] if inputs['drifted'] else 'no drift'})"
            if "psi" in inputs
            else "image statistics not compared"
        )
    ]
    auroc = next(d for d in comparison.performance[LABEL]["metrics"] if d["metric"] == "auroc")
    lines.append(
        f"    AUROC {auroc['baseline']:.3f} -> {auroc['current']:.3f} (change {auroc['delta']:+.3f} "
        f"[{auroc['ci_low']:+.3f}, {auroc['ci_high']:+.3f}], p={auroc['p_value']:.3g})"
    )
    rank = {"critical": 0, "warning": 1, "info": 2}
    alerts = sorted(run.alerts.all(), key=lambda a: (rank[a.severity], a.kind, a.subject))
    lines.append(f"    alerts raised: {len(alerts)}" + "".join(f"\n      [{a.severity}] {a.message}" for a in alerts[:6]))
    return lines


FINE_TUNING_SET = "Nodule balanced fine-tuning set (synthetic)"


def fine_tuned_setup(*, engineer: User, parent: ModelVersion, test_set: Dataset, out=print) -> ModelVersion:
    """Version 1.1.0: the nodule head fine-tuned on a set where site c and patients aged 65+ are well
    represented (``BALANCED_POPULATION``), registered with its lineage and provenance."""
    version = ModelVersion.objects.filter(foundation_model=parent.foundation_model, version="1.1.0").first()
    trained = None
    if version is None:
        out("Fine-tuning the nodule CNN on a balanced set (site c and patients aged 65+) for version 1.1.0 ...")
        with tempfile.TemporaryDirectory() as folder:
            trained = train_classifier(Path(folder), seed=8, label=LABEL, population=BALANCED_POPULATION)
            with open(trained.onnx_path, "rb") as handle:
                version = services.version_register(
                    actor=engineer,
                    foundation_model=parent.foundation_model,
                    version="1.1.0",
                    parent=parent,
                    model_file=(trained.onnx_path.name, handle),
                    data_files=[],
                    output_schema=trained.output_schema,
                    preprocessing=trained.preprocessing,
                    release_notes=f"Fine-tuned on {trained.n_train} generated images with site c and patients aged 65+ represented.",
                )
    fine_tuning = Dataset.objects.filter(name=FINE_TUNING_SET).first() or services.record_create(
        model=Dataset,
        actor=engineer,
        fields={
            "name": FINE_TUNING_SET,
            "institution": parent.foundation_model.provider,
            "modality": Modality.DX,
            "body_region": "chest",
            "legal_basis": "research",
            "licence": "CC0 (generated data)",
            "description": "Generated radiographs with the three sites in equal shares and 45% of patients aged 65+.",
            "image_count": trained.n_train if trained else None,
            "label_source": "Known by construction.",
            "known_limitations": "Synthetic; the faint-nodule effect for patients aged 65+ is in the images themselves.",
            "location": "Generated in memory at training time (radtrust_demo.data.train_classifier, seed 8).",
        },
    )
    for dataset, role in ((fine_tuning, ProvenanceRole.FINE_TUNING), (test_set, ProvenanceRole.EXTERNAL_VALIDATION)):
        if not Provenance.objects.filter(version=version, dataset=dataset, role=role).exists():
            services.provenance_link(actor=engineer, version=version, dataset=dataset, role=role)
    return version


def trust_lines(assessments: list) -> list[str]:
    """Two or more versions' assessments side by side, then why each principle scored as it did."""
    names = list(assessments[0].principles)
    width = max(len(str(a.version)) for a in assessments) + 2
    lines = ["  " + "principle".ljust(16) + "".join(str(a.version).rjust(width) for a in assessments)]
    for name in names:
        cells = []
        for a in assessments:
            score = a.principles[name]["score"]
            cells.append(("insufficient" if score is None else f"{score:.1f}").rjust(width))
        lines.append("  " + name.ljust(16) + "".join(cells))
    for a in assessments:
        lines.append(f"  Why, for {a.version} (assessment {a.pk}):")
        for name in names:
            lines.append(f"    {name}: {a.principles[name]['summary']}")
    return lines
