"""Data from known processes, for the statistics benchmark (``radtrust_demo.bench.statistics``).

Each generator is a plain function of a ``numpy`` generator and a design, so a figure is
reproducible from its seed and its truth is known in closed form:

- ``clustered_cases``: patients with 1 to ``max_images`` images. The label is the patient's
  (a patient has the finding or not), and an image's latent score is
  ``-1 + separation * label + patient_sd * u_patient + image_sd * e_image``, so a patient's
  images are correlated (intra-class correlation ``patient_sd^2 / (patient_sd^2 + image_sd^2)``,
  0.64 by default): the reason evaluation resamples patients, not images. The score a model
  returns is the logistic of the latent score. Each patient belongs to one group (a subgroup,
  a site, a vendor), whose separation sets its AUROC, and may carry further categorical
  attributes drawn with given shares. Per-image statistics (``image_mean`` and the others the
  drift checks read) are drawn with the same patient correlation.
- ``disagreement_streams``: clinician feedback as independent Bernoulli streams at a rate.

A no-change follow-up is ``clustered_cases`` again with the same design and a new generator:
the same process, new patients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

PATIENT_SD = 0.8
IMAGE_SD = 0.6
INTERCEPT = -1.0
# Per-image statistics: (mean, patient-level sd, image-level sd), in the units of a 12-bit radiograph.
IMAGE_FEATURES: dict[str, tuple[float, float, float]] = {
    "image_mean": (1800.0, 120.0, 60.0),
    "image_std": (600.0, 40.0, 25.0),
    "image_p01": (150.0, 30.0, 15.0),
    "image_p99": (3700.0, 150.0, 80.0),
}


@dataclass(frozen=True)
class Group:
    """Patients of one group (a subgroup, a site): how many, how often positive, how well separated."""

    name: str
    n_patients: int
    prevalence: float
    separation: float

    @property
    def auroc(self) -> float:
        """The group's true AUROC: ``Phi(separation / sqrt(2 (patient_sd^2 + image_sd^2)))``, the
        probability that an image of a positive patient outscores one of another, negative, patient."""
        return float(norm.cdf(self.separation / math.sqrt(2 * (PATIENT_SD**2 + IMAGE_SD**2))))


def separation_for(auroc: float) -> float:
    """The separation that gives a group this true AUROC (the inverse of ``Group.auroc``)."""
    return float(norm.ppf(auroc) * math.sqrt(2 * (PATIENT_SD**2 + IMAGE_SD**2)))


def overall_auroc(groups: Sequence[Group]) -> float:
    """The true AUROC of all groups together: every (positive image, negative image) pair of the
    population, weighted by the expected share of positive and negative images each group holds
    (image counts do not depend on the label, so the shares are the patients')."""
    sd = math.sqrt(2 * (PATIENT_SD**2 + IMAGE_SD**2))
    pos = np.array([g.n_patients * g.prevalence for g in groups])
    neg = np.array([g.n_patients * (1 - g.prevalence) for g in groups])
    beats = np.array([[norm.cdf(g.separation / sd) for _ in groups] for g in groups])  # same intercept everywhere
    return float(pos @ beats @ neg / (pos.sum() * neg.sum()))


@dataclass(frozen=True)
class ClusteredCases:
    """One image per row: its patient's label and index, its score, attributes and image statistics."""

    y: np.ndarray
    scores: np.ndarray
    patient: np.ndarray  # patient index, 0 .. patients - 1
    attributes: dict[str, np.ndarray]
    image_stats: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_patients(self) -> int:
        return int(self.patient.max()) + 1 if self.patient.size else 0

    def patient_ids(self, prefix: str = "P") -> np.ndarray:
        return np.char.add(prefix, self.patient.astype(str))


def clustered_cases(
    rng: np.random.Generator,
    groups: Sequence[Group],
    *,
    group_attribute: str = "group",
    attributes: Mapping[str, Mapping[str, float]] | None = None,
    max_images: int = 4,
) -> ClusteredCases:
    """Patients of each group with 1 to ``max_images`` images each (see the module docstring);
    ``attributes`` maps further attribute names to the shares of their values, drawn per patient."""
    n = sum(g.n_patients for g in groups)
    group_of = np.repeat(np.arange(len(groups)), [g.n_patients for g in groups])
    prevalence = np.array([g.prevalence for g in groups])[group_of]
    separation = np.array([g.separation for g in groups])[group_of]
    label = rng.random(n) < prevalence
    latent = INTERCEPT + separation * label + PATIENT_SD * rng.standard_normal(n)
    columns = {group_attribute: np.array([g.name for g in groups])[group_of]}
    for name, shares in (attributes or {}).items():
        columns[name] = rng.choice(np.array(list(shares)), n, p=np.array(list(shares.values())) / sum(shares.values()))
    patient_effects = {f: rng.standard_normal(n) for f in IMAGE_FEATURES}

    patient = np.repeat(np.arange(n), rng.integers(1, max_images + 1, n))
    images = patient.size
    scores = 1.0 / (1.0 + np.exp(-(latent[patient] + IMAGE_SD * rng.standard_normal(images))))
    stats = {f: mean + sd_p * patient_effects[f][patient] + sd_i * rng.standard_normal(images) for f, (mean, sd_p, sd_i) in IMAGE_FEATURES.items()}
    return ClusteredCases(
        y=label[patient].astype(np.int8),
        scores=scores,
        patient=patient,
        attributes={name: values[patient] for name, values in columns.items()},
        image_stats=stats,
    )


def disagreement_streams(rng: np.random.Generator, rate: float, n_streams: int, length: int) -> np.ndarray:
    """Clinician feedback coded 0 (agree) or 1 (disagree), each independently 1 with ``rate``:
    shape ``(n_streams, length)``."""
    return (rng.random((n_streams, length)) < rate).astype(np.float64)


def odds_ratio_rate(p0: float, odds_ratio: float) -> float:
    """The rate whose odds are ``odds_ratio`` times those of ``p0``."""
    return odds_ratio * p0 / (1.0 - p0 + odds_ratio * p0)
