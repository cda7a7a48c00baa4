"""One list of failure reasons: the engine's codes (``radtrust_engine.failures.FailureCode``, no
Django) are all ``FailureReason`` values, every engine exception carries one of them, the model
field offers exactly the list, and the documented table names every code."""

from __future__ import annotations

import pytest

from radtrust_engine.failures import FailureCode
from radtrust_engine.loading import ManifestError
from radtrust_engine.pipeline import InputError, ModelOutputError, UnreadableImages
from radtrust_engine.runner import ArtifactMismatch, OutputError, RunnerError
from validation.choices import FailureReason
from validation.models import ValidationRun

SERVER_SIDE = {"bad_config", "time_limit", "worker_lost", "cancelled", "internal_error", "upload_changed", "schema_changed"}


def test_every_engine_code_is_a_failure_reason_and_the_rest_are_the_servers():
    assert set(FailureCode) <= set(FailureReason.values)
    assert set(FailureReason.values) == {code.value for code in FailureCode} | SERVER_SIDE
    assert all(FailureReason(code) == code for code in FailureCode)  # same strings, either enum


@pytest.mark.parametrize(
    ("exception", "code"),
    [
        (ManifestError, FailureCode.BAD_MANIFEST),
        (InputError, FailureCode.BAD_INPUT),
        (UnreadableImages, FailureCode.UNREADABLE_IMAGES),
        (ModelOutputError, FailureCode.OUTPUT_SCHEMA_MISMATCH),
        (OutputError, FailureCode.NON_FINITE_OUTPUT),
        (ArtifactMismatch, FailureCode.ARTIFACT_MISMATCH),
        (RunnerError, FailureCode.RUNNER_ERROR),
    ],
)
def test_each_engine_exception_carries_its_code(exception, code):
    assert exception.reason is code and exception.reason in FailureReason.values


def test_the_field_offers_the_reasons_and_the_docstring_table_names_each():
    field = ValidationRun._meta.get_field("error_reason")
    assert field.choices == FailureReason.choices and field.blank
    for value, label in FailureReason.choices:
        assert f"``{value}``" in FailureReason.__doc__ and label


def test_an_exception_with_an_unknown_reason_is_stored_as_an_internal_error():
    from validation.services import failure_of

    class Odd(Exception):
        reason = "no such code"

    reason, message = failure_of(1, Odd("[Errno 13] Permission denied: '/srv/worker/secret.env'"))
    assert reason == FailureReason.INTERNAL_ERROR and "unexpected Odd" in message
    assert "/srv/worker" not in message  # the exception's own text stays in the worker's log
    assert failure_of(1, InputError("wrong shape")) == (FailureReason.BAD_INPUT, "wrong shape")
