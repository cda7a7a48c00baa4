"""The evidence a trust assessment rests on, as plain frozen dataclasses.

``compliance.trust.gather`` fills them from the database (a test or a notebook may build them
by hand); the scoring rules read nothing else, so an assessment can be recomputed, tested and
explained from this object alone. Only succeeded runs of the assessed version are ever placed
in ``VersionEvidence.runs``. No Django import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from radtrust_engine.report import RunReport


@dataclass(frozen=True)
class Link:
    """Where a user can open a piece of evidence."""

    type: str  # run | dataset | feedback | audit | deployment | version | model | dossier | federated_study
    id: int | str | None
    label: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetEvidence:
    """A dataset linked to the version by provenance, with its datasheet facts."""

    id: int
    name: str
    roles: tuple[str, ...]  # pretraining, fine_tuning, calibration, internal_test, external_validation
    institution: str  # the steward's code
    completeness: float  # share of required datasheet items filled
    missing_items: tuple[str, ...]
    demographics: dict = field(default_factory=dict)  # {"sex": {"F": 10}, "age_band": {...}, "ethnicity": {...}}
    scanners: tuple[dict, ...] = ()  # {"manufacturer", "model", "count"}
    protocols: dict = field(default_factory=dict)  # {"PA chest": 800}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunEvidence:
    """A succeeded validation run of the assessed version and its report."""

    id: int
    dataset_id: int
    dataset_name: str
    roles: tuple[str, ...]
    institution: str
    finished_at: str
    artifact_sha256: str  # what the run verified before loading the model
    report: RunReport  # what radtrust_engine.pipeline.evaluate found
    outputs_uploaded: bool = False  # the outputs came from elsewhere: RadTrust did not run the model

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, with the report in its stored form (``RunReport.to_dict``)."""
        return {**asdict(replace(self, report=None)), "report": self.report.to_dict()}


@dataclass(frozen=True)
class DeploymentEvidence:
    """A deployment that has not ended, and what is known about its local validation and use."""

    id: int
    institution: str
    status: str  # planned | active | suspended
    since: str | None
    local_run_id: int | None
    local_run_before_go_live: bool
    revalidation_overdue: bool
    recent_feedback: int  # feedback reports in the last 90 days
    clinicians: int = 0  # active clinician accounts at the institution: the persons assigned to oversee it (Art. 26(2))
    overrides: int = 0  # reports where a clinician read the case differently from the output (disagree or partly)
    usage_logger: bool = False  # an installation logs its use with the deployment's logger token (compliance.usage_logs)
    usage_days_since: int | None = None  # days from the newest logged inference to the assessment; None: nothing logged
    usage_retention_days: int | None = None  # how long the usage logs keep their personal fields; None: not configured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RatingEvidence:
    """Count, mean and mean of squares of a rating, enough for a normal-approximation CI."""

    n: int
    mean: float | None
    mean_sq: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _no_rating() -> RatingEvidence:
    return RatingEvidence(n=0, mean=None, mean_sq=None)


@dataclass(frozen=True)
class DossierEvidence:
    """The newest dossier revision. Once submitted, its completeness is the one frozen in the
    snapshot (evidence fields included); while a draft, only the officer-written required
    fields can be counted, and ``frozen`` says which it is."""

    id: int
    revision: int
    status: str
    ratio: float
    missing: tuple[str, ...]
    frozen: bool
    answered: tuple[str, ...] = ()  # the officer-written fields with an answer (compliance.field_checks), required or not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedbackEvidence:
    """Clinicians' feedback on the version: agreement counts and 1-5 ratings (none by default)."""

    n: int = 0
    n_agree: int = 0
    n_partly: int = 0
    n_disagree: int = 0
    ratings: dict[str, RatingEvidence] = field(default_factory=dict)  # explanation_helped, uncertainty_helped, fitted_workflow
    minutes_saved: RatingEvidence = field(default_factory=_no_rating)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FederatedStudyEvidence:
    """A federated study of the version that sites have reported to, pooled as the reports stand:
    the reporting sites with their patients, and per label the AUROC random-effects
    meta-analysis across them (``MetaAnalysis.to_dict``: k, estimate, ci_*, prediction_*, i2,
    tau2, refused_reason when fewer than two sites have an estimate)."""

    id: int
    name: str
    pooling_id: int
    site_patients: dict[str, int]  # institution code of each reporting site -> its patients (overall)
    auroc: dict[str, dict]  # label -> meta-analysis

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionEvidence:
    """Everything the rules may use about one model version, read at one moment."""

    version_id: int
    label: str
    artifact_sha256: str
    artifact_format: str
    model: dict  # intended_purpose, intended_users, instructions_for_use, known_limitations, explainability_needs, provider (code), ...
    lineage: tuple[dict, ...]  # {"version_id", "label", "training_provenance"} from this version to the root
    audit_chain_ok: bool
    audit_events_checked: int
    audit_broken_reason: str
    datasets: tuple[DatasetEvidence, ...]
    runs: tuple[RunEvidence, ...]  # succeeded runs of this version only, newest first
    deployments: tuple[DeploymentEvidence, ...]
    feedback: FeedbackEvidence
    baseline_run_id: int | None
    today: str
    dossier: DossierEvidence | None = None
    federated: tuple[FederatedStudyEvidence, ...] = ()  # newest study first
    tasks: tuple[dict, ...] | None = None  # an adaptation's change on each task of its parent and base (change log items); None: not one

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (tuples as they are), each run's report in its stored form."""
        return {**asdict(replace(self, runs=())), "runs": tuple(run.to_dict() for run in self.runs)}
