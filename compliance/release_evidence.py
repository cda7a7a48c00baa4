"""Release evidence: the validation runs a compliance officer declares as a version's performance,
and the operating point they measured. The documents quote these figures, never "the newest run".

1. ``run_role`` says what a succeeded run is for its version: ``declared`` (pinned), ``test`` (on a
   dataset the version's provenance names as internal-test or external-validation data, not
   pinned) or ``post_market`` (a deployment's revalidation, or data not declared as the version's
   test data, such as a drift check on later data). Post-market runs are monitoring evidence and
   can never be pinned.
2. ``release_evidence_pin``: an officer of the provider pins one or more runs with the population
   they represent. Refused, naming each run and why: another version's, not succeeded, post-market,
   two runs on one dataset (its patients would count twice), or an operating point other than the
   threshold the version ships with (``output_schema.thresholds``) or than the officer stated. The
   record and its runs are written to the audit trail; a refusal by role is too.
3. ``release_evidence_current`` is the pin in force: the newest. A submitted dossier freezes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from django.core.exceptions import ValidationError
from django.db import transaction

from compliance.duties import officer_refusal, refuse
from compliance.models import ReleaseEvidence
from radtrust_engine.report import ReportFormatError, RunReport
from registry.choices import ProvenanceRole
from registry.models import ModelVersion
from validation.choices import RunStatus
from validation.models import ValidationRun

TEST_ROLES = (ProvenanceRole.INTERNAL_TEST, ProvenanceRole.EXTERNAL_VALIDATION)
DECLARED, TEST, POST_MARKET = "declared", "test", "post_market"  # in words: compliance.document_evidence.RUN_ROLES


def test_dataset_ids(version: ModelVersion) -> set[int]:
    """The datasets the version's provenance names as its test data (internal test, external validation)."""
    return set(version.provenance.filter(role__in=TEST_ROLES).values_list("dataset_id", flat=True))


def release_evidence_current(version: ModelVersion) -> ReleaseEvidence | None:
    """The pin in force (step 3)."""
    return version.release_evidence.select_related("pinned_by").order_by("-pinned_at", "-pk").first()


def pinned_runs(pin: ReleaseEvidence) -> list[ValidationRun]:
    return list(pin.runs.select_related("dataset").order_by("finished_at", "pk"))


def run_role(run: ValidationRun, *, pinned: set[int], test_data: set[int]) -> str:
    """Step 1."""
    if run.pk in pinned:
        return DECLARED
    if run.deployment_id is not None or run.dataset_id not in test_data:
        return POST_MARKET
    return TEST


def version_run_role(version: ModelVersion) -> Callable[[ValidationRun], str]:
    """``role(run)`` for the version's runs now (step 1), reading its pin and test data once."""
    pin = release_evidence_current(version)
    pinned = set(pin.runs.values_list("pk", flat=True)) if pin else set()
    test_data = test_dataset_ids(version)
    return lambda run: run_role(run, pinned=pinned, test_data=test_data)


def post_market_reason(run: ValidationRun) -> str:
    if run.deployment_id is not None:
        return f"revalidation of the deployment at {run.deployment.institution.name}"
    return f"{run.dataset.name} is not declared as this version's test data"


def run_operating_points(run: ValidationRun) -> dict[str, float]:
    """Per classification label, the threshold the run measured its sensitivity and specificity at."""
    report = RunReport.from_dict(run.results)
    return {label: result.threshold for label, result in report.results.items() if result.threshold is not None}


def _run_problem(run: ValidationRun, version: ModelVersion, test_data: set[int]) -> str | None:
    if run.version_id != version.pk:
        return f"run {run.pk} evaluated {run.version}, not {version}"
    if run.status != RunStatus.SUCCEEDED:
        return f"run {run.pk} is {run.get_status_display().lower()}, not succeeded"
    if run.deployment_id is not None or run.dataset_id not in test_data:
        return f"run {run.pk} is post-market evidence ({post_market_reason(run)}), not a test of the intended population"
    try:
        run_operating_points(run)
    except ReportFormatError:
        return f"run {run.pk} has no readable report"
    return None


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)


def _operating_point_problems(version: ModelVersion, runs: Sequence[ValidationRun], stated: Mapping[str, float] | None) -> tuple[dict, list[str]]:
    """The operating point the runs measured, and why it cannot be declared (step 2)."""
    shipped = (version.output_schema or {}).get("thresholds") or {}
    points: dict[str, float] = {}
    problems = []
    for run in runs:
        for label, threshold in run_operating_points(run).items():
            if label in points and not _same(points[label], threshold):
                problems.append(f"runs measured {label} at different thresholds ({points[label]:.4g} and {threshold:.4g} in run {run.pk})")
            points.setdefault(label, threshold)
            if label in shipped and not _same(shipped[label], threshold):
                problems.append(
                    f"run {run.pk} measured {label} at threshold {threshold:.4g}, but {version} ships with {float(shipped[label]):.4g}: "
                    "its figures do not describe the version as released"
                )
    for label, threshold in (stated or {}).items():
        if label not in points:
            problems.append(f"no pinned run evaluated a label {label!r}")
        elif not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not _same(points[label], threshold):
            problems.append(f"the stated operating point of {label} ({threshold}) is not the {points[label]:.4g} the runs measured")
    return points, problems


def release_evidence_pin(
    *, actor, version: ModelVersion, runs: Sequence[ValidationRun], population: str, operating_points: Mapping[str, float] | None = None
) -> ReleaseEvidence:
    """Pin the runs on the intended population as the version's declared performance (step 2)."""
    refusal = officer_refusal(actor, version.foundation_model.provider, f"pin the release evidence of {version}")
    if refusal:
        refuse(version, "pin_refused", refusal)
    if not runs:
        raise ValidationError({"runs": ["Pin at least one succeeded run on the version's test data (internal test or external validation)."]})
    if not (population or "").strip():
        raise ValidationError(
            {"population": ["Say which population the runs represent, e.g. 'adults with frontal chest radiographs at three sites'."]}
        )
    test_data = test_dataset_ids(version)
    problems = [p for run in runs if (p := _run_problem(run, version, test_data))]
    datasets = [run.dataset_id for run in runs]
    if not problems and len(set(datasets)) < len(datasets):
        problems.append("two of the runs evaluated the same dataset, so its patients would count twice; pin one run per dataset")
    if problems:
        raise ValidationError({"runs": [f"Cannot declare: {p}." for p in problems]})
    points, problems = _operating_point_problems(version, runs, operating_points)
    if problems:
        raise ValidationError({"operating_points": [f"Cannot declare: {p}." for p in problems]})
    with transaction.atomic():
        pin = ReleaseEvidence.objects.create(version=version, population=population.strip(), operating_points=points, pinned_by=actor)
        pin.runs.set(runs)
    return pin
