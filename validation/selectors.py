"""Reads of validation runs, scoped by ``core.access``."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from core.access import scope
from registry.models import ModelVersion
from validation.choices import RunStatus
from validation.models import CaseFlag, RunFile, RunShard, ValidationRun


def _with_shards(runs: QuerySet[ValidationRun]) -> QuerySet[ValidationRun]:
    """``shards_total`` and ``shards_done`` of each run (0 for a run scored whole), one subquery each."""
    shards = RunShard.objects.filter(run=OuterRef("pk")).order_by().values("run")

    def counted(condition: Q) -> Coalesce:
        return Coalesce(Subquery(shards.annotate(n=Count("pk", filter=condition)).values("n")), 0, output_field=IntegerField())

    return runs.annotate(shards_total=counted(Q()), shards_done=counted(Q(status=RunStatus.SUCCEEDED)))


def run_list(*, user) -> QuerySet[ValidationRun]:
    """Runs the user may see; the report body is loaded only for a single run (``run_detail``)."""
    return _with_shards(scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by")).defer("results"))


def run_detail(*, user) -> QuerySet[ValidationRun]:
    return _with_shards(scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by")))


def run_file_list(*, user) -> QuerySet[RunFile]:
    return scope(user, RunFile.objects.select_related("run"))


def case_flag_list(*, user) -> QuerySet[CaseFlag]:
    return scope(user, CaseFlag.objects.all())


def run_summary_list(*, user) -> QuerySet[ValidationRun]:
    """Runs whose headline figures a clinician reads: those of the versions in use at their institution
    (``scope`` of the versions); no per-case outputs, no subgroup tables."""
    return ValidationRun.objects.select_related("version__foundation_model", "dataset").filter(version__in=scope(user, ModelVersion.objects.all()))
