"""How management commands name registry records on the command line."""

from __future__ import annotations

from django.core.management.base import CommandError

from registry.models import Dataset, ModelVersion
from registry.selectors import version_by_reference


def version_argument(text: str) -> ModelVersion:
    """A version by id, or by ``MODEL_NAME:VERSION``; a clear error otherwise."""
    found = version_by_reference(text)
    if found is None:
        raise CommandError(f"No model version {text!r}: give its id or MODEL_NAME:VERSION (for example 'ChestFM-Pneumothorax:1.1.0').")
    return found


def dataset_argument(text: str) -> Dataset:
    """A dataset by id or by name; a clear error otherwise."""
    found = Dataset.objects.filter(pk=int(text)).first() if text.isdigit() else Dataset.objects.filter(name=text).first()
    if found is None:
        raise CommandError(f"No dataset {text!r}: give its id or name.")
    return found
