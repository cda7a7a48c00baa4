"""Reads of validation runs, scoped by ``registry.access``."""

from __future__ import annotations

from django.db.models import QuerySet

from registry.access import scope
from validation.models import ValidationRun


def run_list(*, user) -> QuerySet[ValidationRun]:
    """Runs the user may see; the report body is loaded only for a single run (``run_detail``)."""
    return scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by")).defer("results")


def run_detail(*, user) -> QuerySet[ValidationRun]:
    return scope(user, ValidationRun.objects.select_related("version__foundation_model", "dataset", "requested_by"))
