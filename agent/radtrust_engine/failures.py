"""The stable codes the engine's exceptions carry as ``reason``: why a run it was given failed.

The server stores the code on the run (``ValidationRun.error_reason``) and a site agent sends it
to the server in place of a message that could quote site data, so each code is a contract.
``validation.choices.FailureReason`` lists these values and the server's own (cancelled, time
limit, ...) with a label for each; a test checks that every code here is one of them. Plain
Python: the engine imports no Django.
"""

from __future__ import annotations

from enum import StrEnum


class FailureCode(StrEnum):
    """Why the engine stopped a run; a member is its code as a string (``"bad_manifest"``)."""

    BAD_MANIFEST = "bad_manifest"  # loading.ManifestError
    BAD_INPUT = "bad_input"  # pipeline.InputError
    UNREADABLE_IMAGES = "unreadable_images"  # pipeline.UnreadableImages
    OUTPUT_SCHEMA_MISMATCH = "output_schema_mismatch"  # pipeline.ModelOutputError
    NON_FINITE_OUTPUT = "non_finite_output"  # runner.OutputError
    ARTIFACT_MISMATCH = "artifact_mismatch"  # runner.ArtifactMismatch
    RUNNER_ERROR = "runner_error"  # runner.RunnerError, the base of the others
