"""The foundation-model part of ``manage.py demo``: a Vision Transformer encoder registered as a
foundation model with its embedding output, two adaptations of it (a linear probe and a
fine-tune) recorded as such, and the data-efficiency evaluation on generated data with a
planted effect.

By default the encoder is the small ViT of ``radtrust_demo.vit`` (a few seconds to build); with
``manage.py demo --vit`` or ``RADTRUST_DEMO_VIT=1`` it is the ViT-B/16-sized one (86 M
parameters, about 340 MB of external data, a minute or two more on a CPU).

The planted effect: a positive patient's films carry a soft round opacity (radius 6-10 pixels
at 64 px, peak 0.6 times the noise level) somewhere in the image, so a probe on any
encoder whose embedding keeps the image's content learns it, faster with more labels.

Reuses what an earlier demo left: the dataset folder, the versions and their records.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from radtrust_demo.vit import EMBEDDING_OUTPUT, VIT_B16, VIT_SMALL, VitShape, export_vit
from radtrust_engine.data_efficiency import fit_logistic
from registry import services
from registry.adaptations import adaptation_record
from registry.choices import AdaptationMethod, Modality, ProvenanceRole, Task
from registry.models import Adaptation, Dataset, FoundationModel, Institution, ModelVersion, Provenance, User

ENCODER_NAME = "ChestFM-ViT"
LABEL = "opacity"
EVALUATION_SET = "ViT opacity evaluation set (synthetic)"
PROBE_SET = "ViT opacity probe-training set (synthetic)"
EVALUATION_IMAGES = 600
PROBE_IMAGES = 400
SIDE = 64  # the generated films' side; the ViT-B/16's preprocessing resizes them to 224
PIXEL_MEAN, PIXEL_STD = 0.0, 1.0
OPACITY = 1.5  # the opacity's peak brightness, in units of the films' noise
SCHEMA = {"class_names": [LABEL], "thresholds": {LABEL: 0.5}, "activation": "sigmoid", "embedding_output": EMBEDDING_OUTPUT}
# The suite of the demo's data-efficiency runs: 7 labelled shares x 5 repeats, target AUROC 0.75.
EFFICIENCY_SUITE = {"analyses": ["data_efficiency"], "target_auroc": 0.75, "attributes": ["sex", "site"], "intersections": []}


@dataclass(frozen=True)
class EncoderDemo:
    """The registered encoder, its two adaptations and the evaluation set."""

    base: ModelVersion
    probe: ModelVersion
    fine_tune: ModelVersion
    dataset: Dataset
    shape: VitShape


def _films(rng: np.random.Generator, positive: np.ndarray) -> np.ndarray:
    """(N, SIDE, SIDE) float32 films: smooth background and noise, the planted opacity on positives."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    films = rng.normal(0.0, 1.0, (positive.size, SIDE, SIDE)).astype(np.float32) + 0.5 * (yy / SIDE)
    for i in np.flatnonzero(positive):
        cy, cx = rng.uniform(12, SIDE - 12, 2)
        radius = rng.uniform(8, 14)
        films[i] += OPACITY * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius / 2) ** 2)))
    return films


def _patients(rng: np.random.Generator, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Two films per patient; a third of the patients positive."""
    patients = np.arange(n_images) // 2
    positive = (rng.random(patients.max() + 1) < 1 / 3)[patients]
    return patients, positive


def write_evaluation_set(root: Path, *, n_images: int = EVALUATION_IMAGES, seed: int = 21) -> Path:
    """The films as NPY files under ``root/img`` and ``root/manifest.csv``; the same seed writes the same files."""
    rng = np.random.default_rng(seed)
    patients, positive = _patients(rng, n_images)
    films = _films(rng, positive)
    (root / "img").mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_path", "patient_id", "study_date", "age", "sex", "site", LABEL])
        for i, film in enumerate(films):
            np.save(root / "img" / f"{i:04d}.npy", film)
            p = int(patients[i])
            writer.writerow(
                [f"img/{i:04d}.npy", f"V{seed}-P{p:04d}", "2024-03-01", 30 + (p * 7) % 60, "FM"[p % 2], "ab"[(p // 2) % 2], int(positive[i])]
            )
    return manifest


def _register(model: FoundationModel, engineer: User, number: str, parent: ModelVersion | None, files: list[Path], shape: VitShape, notes: str):
    handles = [open(p, "rb") for p in files]
    try:
        return services.version_register(
            actor=engineer,
            foundation_model=model,
            version=number,
            parent=parent,
            model_file=(files[0].name, handles[0]),
            data_files=[(p.name, h) for p, h in zip(files[1:], handles[1:])],
            output_schema=SCHEMA,
            preprocessing={"resize": [shape.image, shape.image], "normalise": {"mean": PIXEL_MEAN, "std": PIXEL_STD}, "channels": "1xHxW"},
            release_notes=notes,
        )
    finally:
        for handle in handles:
            handle.close()


def _probe_head(base_files: list[Path], shape: VitShape) -> tuple[np.ndarray, np.ndarray, float]:
    """A logistic head fitted on the base encoder's embeddings of the probe-training films (in memory)."""
    import onnxruntime as ort  # heavy; loaded when the demo builds the probe

    from radtrust_engine.metrics import auroc
    from radtrust_engine.preprocessing import Preprocessing

    rng = np.random.default_rng(22)
    _, positive = _patients(rng, PROBE_IMAGES)
    spec = Preprocessing.from_spec({"resize": [shape.image, shape.image], "normalise": {"mean": PIXEL_MEAN, "std": PIXEL_STD}, "channels": "1xHxW"})
    tensors = np.stack([spec.apply(film) for film in _films(rng, positive)]).astype(np.float32)
    session = ort.InferenceSession(str(base_files[0]))
    embeddings = np.concatenate(
        [session.run([EMBEDDING_OUTPUT], {"image": chunk})[0] for chunk in np.array_split(tensors, max(1, len(tensors) // 32))]
    )
    w, b = fit_logistic(embeddings, positive.astype(np.int8))
    return w[None, :], np.asarray([b]), auroc(positive.astype(np.int8), embeddings @ w + b)


def _dataset(name: str, fields: dict, engineer: User, provider: Institution) -> Dataset:
    common = {"institution": provider, "modality": Modality.DX, "body_region": "chest", "legal_basis": "research", "licence": "CC0 (generated data)"}
    return Dataset.objects.filter(name=name).first() or services.record_create(
        model=Dataset, actor=engineer, fields={**common, "name": name, **fields}
    )


def encoder_setup(*, engineer: User, provider: Institution, full: bool = False, out=print) -> EncoderDemo:
    """Register the encoder (1.0.0), its linear probe (1.1.0) and its fine-tune (1.2.0) with their
    adaptation records and provenance; generate the evaluation set. ``full``: the ViT-B/16 size."""
    shape = VIT_B16 if full else VIT_SMALL
    name = f"{ENCODER_NAME}-B16" if full else ENCODER_NAME
    root = Path(settings.RADTRUST_DATA_ROOTS[0]) / "demo-vit-opacity"
    if not (root / "manifest.csv").exists():
        out(f"Generating {EVALUATION_IMAGES} films with a planted opacity under {root} ...")
        write_evaluation_set(root)
    evaluation = _dataset(
        EVALUATION_SET,
        {
            "description": "Generated films; a positive patient's films carry a soft round opacity (the planted effect).",
            "collection_purpose": "Generated for the RadTrust demo's data-efficiency evaluation; no patient data.",
            "label_source": "Known by construction (the generator placed the opacities).",
            "deidentification": "Not applicable: synthetic.",
            "location": str(root),
            "image_count": EVALUATION_IMAGES,
            "patient_count": EVALUATION_IMAGES // 2,
        },
        engineer,
        provider,
    )
    probe_set = _dataset(
        PROBE_SET,
        {
            "description": "Generated films like the evaluation set's, from another seed, on which the linear probe was fitted.",
            "label_source": "Known by construction.",
            "image_count": PROBE_IMAGES,
            "patient_count": PROBE_IMAGES // 2,
            "location": "Generated in memory when the probe was fitted (radtrust_demo.encoder_demo, seed 22).",
        },
        engineer,
        provider,
    )
    model = FoundationModel.objects.filter(name=name).first() or services.record_create(
        model=FoundationModel,
        actor=engineer,
        fields={
            "name": name,
            "provider": provider,
            "description": f"A Vision Transformer image encoder ({shape.parameters:,} parameters, patch 16, {shape.image}x{shape.image} input) "
            "with an embedding output, adapted to findings by probes and fine-tunes. Random weights: it stands in for a pre-trained encoder.",
            "intended_purpose": "Research use: an image encoder whose adaptations flag opacities on adult frontal chest radiographs.",
            "intended_users": "Radiologists, through an adaptation.",
            "modality": Modality.DX,
            "body_region": "chest",
            "task": Task.BINARY,
            "licence": "Proprietary, per-site licence",
            "known_limitations": "Random weights (not pre-trained); evaluated on synthetic films only.",
        },
    )
    versions = {v.version: v for v in ModelVersion.objects.filter(foundation_model=model, version__in=["1.0.0", "1.1.0", "1.2.0"])}
    with tempfile.TemporaryDirectory() as folder:
        base_files = export_vit(Path(folder) / "base", shape, seed=0) if len(versions) < 3 else []
        if "1.0.0" not in versions:
            out(f"Registering the {name} encoder ({shape.parameters:,} parameters, external data) ...")
            versions["1.0.0"] = _register(
                model, engineer, "1.0.0", None, base_files, shape, "The encoder with a random linear head: embeddings only."
            )
        if "1.1.0" not in versions:
            w, b, train_auroc = _probe_head(base_files, shape)
            files = export_vit(Path(folder) / "probe", shape, seed=0, head=(w, b))
            versions["1.1.0"] = _register(
                model, engineer, "1.1.0", versions["1.0.0"], files, shape, f"Linear probe on the frozen encoder (training AUROC {train_auroc:.3f})."
            )
        if "1.2.0" not in versions:
            files = export_vit(Path(folder) / "fine-tune", shape, seed=1)
            versions["1.2.0"] = _register(
                model,
                engineer,
                "1.2.0",
                versions["1.0.0"],
                files,
                shape,
                "Full fine-tune: every weight changed (re-drawn here: the demo does not train the encoder).",
            )
    for number, method, frozen in (
        ("1.1.0", AdaptationMethod.LINEAR_PROBE, f"the whole encoder ({shape.depth} blocks); only the linear head was fitted"),
        ("1.2.0", AdaptationMethod.FULL_FINE_TUNE, ""),
    ):
        if not Adaptation.objects.filter(version=versions[number]).exists():
            adaptation_record(
                actor=engineer,
                version=versions[number],
                method=method,
                task="Opacity on adult frontal chest films",
                labels=[LABEL],
                labelled_dataset=probe_set,
                labelled_cases=PROBE_IMAGES,
                labelled_patients=PROBE_IMAGES // 2,
                frozen_parts=frozen,
            )
    for version in versions.values():
        links = [(evaluation, ProvenanceRole.EXTERNAL_VALIDATION)] + ([(probe_set, ProvenanceRole.FINE_TUNING)] if version.parent_id else [])
        for dataset, role in links:
            if not Provenance.objects.filter(version=version, dataset=dataset, role=role).exists():
                services.provenance_link(actor=engineer, version=version, dataset=dataset, role=role)
    return EncoderDemo(versions["1.0.0"], versions["1.1.0"], versions["1.2.0"], evaluation, shape)


def efficiency_lines(run) -> list[str]:
    """What a data-efficiency run found, for the demo's summary."""
    section = (run.results or {}).get("data_efficiency") or {}
    if "error" in section:
        return [f"  Not computed: {section['error']}"]
    lines = [f"  Embeddings   {section.get('dimensions')} dimensions of {section.get('n_cases')} films, {section.get('n_patients')} patients"]
    for label, curves in (section.get("labels") or {}).items():
        logistic = curves.get("logistic") or {}
        points = ", ".join(f"{p['fraction']:.0%} {p['auroc']:.2f}" for p in logistic.get("curve") or [] if p.get("auroc") is not None)
        lines.append(f"  {label:<12} logistic-probe AUROC by labelled share: {points}")
        reached = logistic.get("labelled_to_target")
        target = logistic.get("target_auroc")
        lines.append(f"  {'':<12} AUROC {target} reached at {'about ' + str(round(reached)) if reached is not None else 'no'} labelled cases")
        if logistic.get("difference"):
            full = logistic["difference"][-1]
            lines.append(
                f"  {'':<12} against the comparator at 100%: {full['auroc']:+.3f} ({full['ci_low']:+.3f} to {full['ci_high']:+.3f})"
                if full.get("ci_low") is not None
                else f"  {'':<12} against the comparator at 100%: {full.get('auroc')}"
            )
    lines.append(f"  Page         /runs/{run.pk}/ (section 'Data efficiency of the embeddings')")
    return lines
