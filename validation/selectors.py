"""Reads of validation runs, scoped by ``registry.access``."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.access import scope
from validation.models import Alert, CaseFlag, RunFile, ScoringPolicy, TrustAssessment, TrustException, ValidationRun


def run_list(*, user) -> QuerySet[ValidationRun]:
    """Runs the user may see; the report body is loaded only for a single run (``run_detail``)."""
    return scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by")).defer("results")


def run_detail(*, user) -> QuerySet[ValidationRun]:
    return scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by"))


def run_file_list(*, user) -> QuerySet[RunFile]:
    return scope(user, RunFile.objects.select_related("run"))


def case_flag_list(*, user) -> QuerySet[CaseFlag]:
    return scope(user, CaseFlag.objects.all())


def alert_list(*, user) -> QuerySet[Alert]:
    return scope(user, Alert.objects.select_related("version__foundation_model", "deployment__institution", "handled_by"))


def trust_assessment_list(*, user) -> QuerySet[TrustAssessment]:
    """Assessments the user may see (clinicians: versions deployed at their site); the chart is loaded for one only."""
    return scope(user, TrustAssessment.objects.select_related("version__foundation_model", "policy")).defer("chart_svg")


def scoring_policy_list(*, user) -> QuerySet[ScoringPolicy]:
    return scope(user, ScoringPolicy.objects.all())


def trust_exception_list(*, user) -> QuerySet[TrustException]:
    return scope(user, TrustException.objects.select_related("version__foundation_model", "granted_by"))
