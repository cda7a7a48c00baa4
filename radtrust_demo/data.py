"""Synthetic chest radiographs with planted weaknesses, and a small CNN trained on them.

Why: the demo and the end-to-end tests need a dataset whose subgroup results
are known in advance, so a validation run has to *find* gaps that were put
there on purpose, on real files (DICOM, PNG or NPY) read by the real loaders.

The population: patients aged 20-90, sex F/M, a few ethnicity categories,
1-3 radiographs each, about 30% with a pulmonary nodule (the label is per
patient, so every image of a positive patient shows a nodule). Three sites,
each with its own scanner: site-a and site-b use Vendor A detectors, site-c a
Vendor B detector. Every scanner has its own gain, offset, noise and DICOM
rescale. An image is a smooth chest-like anatomy (body, two lung fields with
ribs and vessel markings, mediastinum, spine) plus, for positives, a round
lesion of random size at a random place in a lung.

Planted effects (``PLANTED_EFFECTS``, also listed in ``DatasetSummary``):

1. Age: for patients aged 65 or over nodules are drawn at
   ``AGE_CONTRAST_FACTOR`` (0.4) of their contrast, so sensitivity and AUROC
   are lower in the "65+" age band (``stratification.age_band``).
2. Site: site-c (Vendor B) images have 4x site-a's noise and a +400 intensity
   shift, so AUROC at site-c is lower (and, the shift raising every score
   there, the false-positive rate higher).

``train_classifier`` fits its CNN on a population drawn mostly from the
unaffected groups (90% under 65, 5% site-c), as a fine-tune on a curated set
would be, so the effects show up on a generated test set rather than being
learnt away. With the defaults and 1500-2000 test images, AUROC is about
0.85-0.9 overall, about 0.7 in "65+" against 0.95 under 65, and 0.7-0.8 at
site-c against about 0.9 at sites a and b; both gaps have a patient-level
bootstrap interval well clear of 0. Training and dataset writing share
``sample_cases`` and ``synthesize_image``.

Plain Python with NumPy, SciPy and pydicom (no Django); torch is imported
only when training.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from radtrust_engine.loading import ATTRIBUTE_COLUMNS
from radtrust_engine.metrics import auroc

FORMATS = {"dicom": ".dcm", "png": ".png", "npy": ".npy"}
PREVALENCE = 0.3
OLD_AGE = 65
AGE_CONTRAST_FACTOR = 0.4
MISSING_SCANNER_FRACTION = 0.05
ETHNICITIES = ("White", "Black", "Asian", "Hispanic", "Other")
ETHNICITY_WEIGHTS = (0.55, 0.15, 0.15, 0.1, 0.05)
PROTOCOLS = ("CXR PA", "CXR AP")
_FIRST_STUDY = dt.date(2022, 1, 3)
# Independent random streams: cases and images of a written dataset, of a training set.
_DATASET_STREAM, _TRAINING_STREAM = 0, 1


@dataclass(frozen=True)
class Scanner:
    """A site's detector: pixel value = offset + gain * (attenuation + noise)."""

    site: str
    manufacturer: str
    model: str
    gain: float
    offset: float
    noise: float  # standard deviation, in attenuation units
    rescale_slope: float  # DICOM stored value -> pixel value
    rescale_intercept: float


SCANNERS: tuple[Scanner, ...] = (
    Scanner("site-a", "Vendor A", "Aurex DR 500", 2000.0, 200.0, 0.02, 1.0, 0.0),
    Scanner("site-b", "Vendor A", "Aurex DR 700", 2300.0, 120.0, 0.025, 1.0, 0.0),
    Scanner("site-c", "Vendor B", "Corvia X1", 1700.0, 600.0, 0.08, 0.5, -1024.0),
)
_SCANNER_BY_SITE = {s.site: s for s in SCANNERS}


@dataclass(frozen=True)
class Population:
    """Who is sampled: site weights (in ``SCANNERS`` order) and the share aged 65+
    (None: ages uniform over 20-90)."""

    site_weights: tuple[float, ...]
    old_fraction: float | None = None


TEST_POPULATION = Population(site_weights=(0.4, 0.35, 0.25))
TRAINING_POPULATION = Population(site_weights=(0.5, 0.45, 0.05), old_fraction=0.1)
# The fine-tuning set of the demo's version 1.1.0: site c and patients aged 65+ well represented.
BALANCED_POPULATION = Population(site_weights=(0.34, 0.33, 0.33), old_fraction=0.45)


@dataclass(frozen=True)
class PlantedEffect:
    """A weakness built into the data: the attribute and group it hits, and how."""

    attribute: str
    group: str
    change: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


_SITE_C = _SCANNER_BY_SITE["site-c"]
PLANTED_EFFECTS: tuple[PlantedEffect, ...] = (
    PlantedEffect(
        "age",
        f"{OLD_AGE}+",
        f"nodule contrast x{AGE_CONTRAST_FACTOR} for patients aged {OLD_AGE} or over",
    ),
    PlantedEffect(
        "site",
        _SITE_C.site,
        f"{_SITE_C.manufacturer} {_SITE_C.model}: noise {_SITE_C.noise / SCANNERS[0].noise:.1f}x site-a's, "
        f"intensity offset {_SITE_C.offset:+.0f} (site-a {SCANNERS[0].offset:+.0f})",
    ),
)


@dataclass(frozen=True)
class Case:
    """One image to synthesise: who, where, when, and whether it shows a nodule."""

    patient_id: str
    index: int  # 1-based image number within the patient
    age: int
    sex: str
    ethnicity: str
    site: str
    protocol: str
    study_date: dt.date
    positive: bool

    @property
    def scanner(self) -> Scanner:
        return _SCANNER_BY_SITE[self.site]


def sample_cases(rng: np.random.Generator, n_images: int, population: Population = TEST_POPULATION, *, id_prefix: str = "") -> list[Case]:
    """Patients with 1-3 images each, drawn until ``n_images`` images exist
    (the last patient may have fewer). A patient keeps their site, label and
    age; later images are follow-ups 1-12 months apart. Ids are ``id_prefix``
    plus ``P00001``, ``P00002``, ... in the order drawn."""
    weights = np.asarray(population.site_weights, dtype=float)
    weights /= weights.sum()
    cases: list[Case] = []
    number = 0
    while len(cases) < n_images:
        number += 1
        if population.old_fraction is None:
            age = int(rng.integers(20, 91))
        elif rng.random() < population.old_fraction:
            age = int(rng.integers(OLD_AGE, 91))
        else:
            age = int(rng.integers(20, OLD_AGE))
        site = SCANNERS[int(rng.choice(len(SCANNERS), p=weights))].site
        sex = "F" if rng.random() < 0.5 else "M"
        ethnicity = ETHNICITIES[int(rng.choice(len(ETHNICITIES), p=ETHNICITY_WEIGHTS))]
        positive = bool(rng.random() < PREVALENCE)
        date = _FIRST_STUDY + dt.timedelta(days=int(rng.integers(0, 730)))
        for k in range(1, min(int(rng.integers(1, 4)), n_images - len(cases)) + 1):
            if k > 1:
                date += dt.timedelta(days=int(rng.integers(30, 366)))
            protocol = PROTOCOLS[int(rng.random() < 0.2)]
            cases.append(Case(f"{id_prefix}P{number:05d}", k, age, sex, ethnicity, site, protocol, date, positive))
    return cases


# ---------------------------------------------------------------------------
# Image synthesis
# ---------------------------------------------------------------------------


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise low-pass filtered at ``sigma`` pixels, scaled to unit std."""
    field_ = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="reflect")
    return field_ / (field_.std() + 1e-12)


def _anatomy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Attenuation (about 0-0.8) of a frontal chest and the mask of its lung fields."""
    scale = size / 64
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    jitter = rng.uniform(-0.05, 0.05, size=6)
    body = _ellipse(yy, xx, 0.1, 0.0, 1.05, 0.9 + jitter[0])
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= _ellipse(yy, xx, -0.05 + jitter[1], side * (0.42 + jitter[2]), 0.62 + jitter[3], 0.3 + jitter[4] / 2)
    mediastinum = _ellipse(yy, xx, 0.3, 0.08 + jitter[5], 0.38, 0.3) | (np.abs(xx) < 0.09)
    lungs &= ~mediastinum

    image = np.where(body, 0.5, 0.04)
    image = np.where(lungs, 0.2, image)
    image = np.where(mediastinum & body, 0.68, image)
    ribs = np.maximum(0.0, np.sin(2 * np.pi * (yy * 4.5 + 0.35 * xx**2 + rng.uniform()))) ** 2
    image = image + lungs * (0.06 * ribs + 0.025 * _smooth_noise(rng, size, 0.9 * scale))
    image = image + 0.03 * _smooth_noise(rng, size, 8 * scale)
    return ndimage.gaussian_filter(image, 0.8 * scale), lungs


def _nodule(rng: np.random.Generator, lungs: np.ndarray, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """A round lesion with a soft edge, radius 1.5-3.5 px at 64 px, centred in a
    lung: its attenuation and its mask (the disc within the radius)."""
    size = lungs.shape[0]
    scale = size / 64
    radius = rng.uniform(1.5, 3.5) * scale
    inner = ndimage.binary_erosion(lungs, iterations=max(1, int(radius)))
    candidates = np.argwhere(inner if inner.any() else lungs)
    cy, cx = candidates[int(rng.integers(len(candidates)))] + rng.uniform(-0.5, 0.5, size=2)
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.hypot(yy - cy, xx - cx)
    return contrast / (1.0 + np.exp((distance - radius) / (0.6 * scale))), distance <= radius


def synthesize_image(rng: np.random.Generator, case: Case, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size) float32 radiograph of ``case`` in pixel values (stored value
    after DICOM rescale), with the planted age and site effects applied, and
    the boolean mask of its nodule (all False for a negative case): the
    annotation a training set would carry."""
    attenuation, lungs = _anatomy(rng, size)
    lesion = np.zeros_like(lungs)
    if case.positive:
        contrast = rng.uniform(0.15, 0.35)
        if case.age >= OLD_AGE:
            contrast *= AGE_CONTRAST_FACTOR
        nodule, lesion = _nodule(rng, lungs, contrast)
        attenuation = attenuation + nodule
    scanner = case.scanner
    noisy = attenuation + scanner.noise * rng.standard_normal(attenuation.shape)
    pixels = np.clip(scanner.offset + scanner.gain * noisy, 0.0, None)  # a detector counts no less than zero
    return pixels.astype(np.float32), lesion


# ---------------------------------------------------------------------------
# Writing a dataset
# ---------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    """What ``generate_dataset`` wrote, and the effects planted in it."""

    root: Path
    manifest: Path
    format: str
    label: str
    seed: int
    n_images: int
    n_patients: int
    n_positive: int
    prevalence: float
    sites: list[str]
    vendors: list[str]
    missing_scanner_cells: int  # DICOM rows whose scanner columns are left for the headers
    planted_effects: list[PlantedEffect] = field(default_factory=lambda: list(PLANTED_EFFECTS))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"], d["manifest"] = str(self.root), str(self.manifest)
        d["planted_effects"] = [e.to_dict() for e in self.planted_effects]
        return d


MANIFEST_COLUMNS = ("image_path", "patient_id", "study_date", *ATTRIBUTE_COLUMNS)


def _stored_values(pixels: np.ndarray, scanner: Scanner) -> np.ndarray:
    """Pixel values as the detector stores them: uint16 before DICOM rescale."""
    stored = np.rint((pixels - scanner.rescale_intercept) / scanner.rescale_slope)
    return np.clip(stored, 0, np.iinfo(np.uint16).max).astype("<u2")


def _write_dicom(path: Path, pixels: np.ndarray, case: Case, seed: int) -> None:
    """An uncompressed 16-bit MONOCHROME2 digital radiograph (DX) with its
    demographic and scanner headers; UIDs derived from the seed and the case."""

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[f"radtrust-demo-{seed}", case.patient_id, str(case.index), kind])

    scanner = case.scanner
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid("instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = case.protocol.split()[-1]
    ds.PatientID = case.patient_id
    ds.PatientSex = case.sex
    ds.PatientAge = f"{case.age:03d}Y"
    ds.StudyDate = case.study_date.strftime("%Y%m%d")
    ds.InstitutionName = case.site
    ds.Manufacturer = scanner.manufacturer
    ds.ManufacturerModelName = scanner.model
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{scanner.rescale_slope:g}"
    ds.RescaleIntercept = f"{scanner.rescale_intercept:g}"
    ds.PixelData = _stored_values(pixels, scanner).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _write_image(path: Path, pixels: np.ndarray, case: Case, fmt: str, seed: int) -> None:
    if fmt == "dicom":
        _write_dicom(path, pixels, case, seed)
    elif fmt == "png":
        # PNG has no rescale: the pixel values themselves, as 16-bit grey.
        values = np.clip(np.rint(pixels), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        Image.fromarray(values).save(path)
    else:
        np.save(path, pixels)


def generate_dataset(
    root: Path,
    *,
    n_images: int = 2000,
    seed: int = 0,
    image_size: int = 64,
    label: str = "nodule",
    fmt: str = "dicom",
    population: Population = TEST_POPULATION,
) -> DatasetSummary:
    """Write ``n_images`` synthetic radiographs under ``root/images/<site>/`` and
    ``root/manifest.csv`` (readable by ``read_manifest`` with ``label_columns=[label]``).

    For about 5% of DICOM rows the scanner manufacturer and model cells are
    left empty; the headers carry them (``fill_attributes_from_headers``).
    The same arguments write byte-identical files.

    Patient ids start with the seed (``D8-P00001``): each seed draws new
    patients (their own ages, sexes and labels; a patient's follow-up images
    are within one dataset), and the baseline comparison pairs runs' patients
    by id (``radtrust_engine.baseline``), so ids shared across datasets would
    pair strangers. The demo gives each dataset its own seed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if label in MANIFEST_COLUMNS:
        raise ValueError(f"label {label!r} clashes with a manifest column")
    if n_images < 1:
        raise ValueError("n_images must be at least 1")
    root = Path(root)
    case_rng = np.random.default_rng((_DATASET_STREAM, seed, 0))
    image_rng = np.random.default_rng((_DATASET_STREAM, seed, 1))
    cases = sample_cases(case_rng, n_images, population, id_prefix=f"D{seed}-")
    rows: list[dict[str, Any]] = []
    missing = 0
    for case in cases:
        relative = Path("images", case.site, f"{case.patient_id}_{case.index}{FORMATS[fmt]}")
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        pixels, _ = synthesize_image(image_rng, case, image_size)
        _write_image(root / relative, pixels, case, fmt, seed)
        hide_scanner = fmt == "dicom" and case_rng.random() < MISSING_SCANNER_FRACTION
        missing += hide_scanner
        rows.append(
            {
                "image_path": relative.as_posix(),
                "patient_id": case.patient_id,
                "study_date": case.study_date.isoformat(),
                "age": case.age,
                "sex": case.sex,
                "race_ethnicity": case.ethnicity,
                "site": case.site,
                "scanner_manufacturer": "" if hide_scanner else case.scanner.manufacturer,
                "scanner_model": "" if hide_scanner else case.scanner.model,
                "protocol": case.protocol,
                label: int(case.positive),
            }
        )
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*MANIFEST_COLUMNS, label], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    n_positive = sum(case.positive for case in cases)
    return DatasetSummary(
        root=root,
        manifest=manifest,
        format=fmt,
        label=label,
        seed=seed,
        n_images=len(cases),
        n_patients=len({case.patient_id for case in cases}),
        n_positive=n_positive,
        prevalence=n_positive / len(cases),
        sites=sorted({case.site for case in cases}),
        vendors=sorted({case.scanner.manufacturer for case in cases}),
        missing_scanner_cells=missing,
    )


# ---------------------------------------------------------------------------
# Training a small classifier
# ---------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """An exported classifier and what a model version needs to run it."""

    onnx_path: Path
    preprocessing: dict[str, Any]  # for ``Preprocessing.from_spec``
    output_schema: dict[str, Any]
    threshold: float
    train_auroc: float
    train_seconds: float
    n_train: int
    epochs: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["onnx_path"] = str(self.onnx_path)
        return d


def _youden_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score cut-off that maximises sensitivity + specificity - 1 (``score >= t`` is positive)."""
    order = np.argsort(-scores, kind="stable")
    s, positive = scores[order], y[order].astype(bool)
    tp = np.cumsum(positive)
    fp = np.cumsum(~positive)
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    j = tp / max(positive.sum(), 1) - fp / max((~positive).sum(), 1)
    j = np.where(last_of_tie, j, -np.inf)
    return float(s[int(np.argmax(j))])


def train_classifier(
    out_dir: Path,
    *,
    seed: int = 0,
    n_train: int = 3000,
    image_size: int = 64,
    epochs: int = 5,
    label: str = "nodule",
    population: Population = TRAINING_POPULATION,
) -> TrainedModel:
    """Train a small CNN on ``n_train`` synthetic images (mostly unaffected
    groups, ``TRAINING_POPULATION``) and export it to ``out_dir/model.onnx``.

    1. Synthesise the training set in memory from a stream separate from
       ``generate_dataset``'s, so no test image is seen in training.
    2. Normalise with the training pixels' mean and std (the spec stores them).
    3. Fit a fully convolutional net whose image score is the maximum of its
       1/4-resolution lesion map. The loss adds the nodule masks (a per-cell
       term, positives weighted up) to the image label: with that dense
       signal a few epochs suffice, where the image label alone often stalls.
       Adam on one CPU thread, seeded: the same seed gives the same weights.
    4. Export with torch's dynamo exporter, sigmoid inside the graph: input
       "image" (batch, 1, H, W) float32, output "probability" (batch, 1).
    5. Pick the threshold on the training scores (Youden's J).
    """
    import torch  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    import torch.nn.functional as F  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it
    from torch import nn  # torch is heavy (about 2.5 s to import); only the demo and benchmarks use it

    class NoduleClassifier(nn.Module):
        """Probability of a nodule: the sigmoid of the lesion map's maximum."""

        def __init__(self) -> None:
            super().__init__()
            self.lesion_map = nn.Sequential(
                nn.Conv2d(1, 8, 5, stride=2, padding=2),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.Conv2d(16, 1, 1),
            )

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.lesion_map(image).amax(dim=(2, 3)))

    started = time.perf_counter()
    threads = torch.get_num_threads()
    # One thread: these small convolutions run as fast on one core as on two, and a
    # second thread waits on every operation (up to 15x slower) when the CPU is shared.
    torch.set_num_threads(1)
    try:
        case_rng = np.random.default_rng((_TRAINING_STREAM, seed, 0))
        image_rng = np.random.default_rng((_TRAINING_STREAM, seed, 1))
        cases = sample_cases(case_rng, n_train, population)
        images, masks = zip(*(synthesize_image(image_rng, case, image_size) for case in cases))
        pixels = np.stack(images)
        y = np.array([case.positive for case in cases], dtype=np.float32)
        mean, std = round(float(pixels.mean()), 3), round(float(pixels.std()), 3)
        x = torch.from_numpy((pixels[:, None] - np.float32(mean)) / np.float32(std))
        targets = torch.from_numpy(y)[:, None]
        map_size = (image_size + 1) // 2 // 2  # the stride-2 convolution, then the 2x2 pooling
        cell_targets = F.adaptive_max_pool2d(torch.from_numpy(np.stack(masks)[:, None]).float(), map_size)

        torch.manual_seed(seed)
        model = NoduleClassifier()
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        cell_weight = torch.tensor(20.0)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(x), generator=generator).split(32):
                optimiser.zero_grad()
                cells = model.lesion_map(x[batch])
                loss = F.binary_cross_entropy_with_logits(cells.amax(dim=(2, 3)), targets[batch])
                loss = loss + F.binary_cross_entropy_with_logits(cells, cell_targets[batch], pos_weight=cell_weight)
                loss.backward()
                optimiser.step()

        model.eval()
        with torch.no_grad():
            scores = torch.cat([model(chunk) for chunk in x.split(512)]).numpy()[:, 0]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.onnx"
        program = torch.onnx.export(
            model,
            (x[:2],),
            dynamo=True,
            input_names=["image"],
            output_names=["probability"],
            dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=1024)}},
            verbose=False,
        )
        program.save(str(path))
    finally:
        torch.set_num_threads(threads)

    threshold = _youden_threshold(y, scores)
    return TrainedModel(
        onnx_path=path,
        preprocessing={
            "resize": [image_size, image_size],
            "normalise": {"mean": mean, "std": std},
            "channels": "1xHxW",
        },
        output_schema={"class_names": [label], "thresholds": {label: threshold}},
        threshold=threshold,
        train_auroc=float(auroc(y, scores)),
        train_seconds=round(time.perf_counter() - started, 2),
        n_train=len(cases),
        epochs=epochs,
        seed=seed,
    )
