"""The stable codes the engine's exceptions carry as ``reason``: why a run it was given failed.

The server stores the code on the run (``ValidationRun.error_reason``) and a site agent sends it
to the server in place of a message that could quote site data, so each code is a contract.
``validation.choices.FailureReason`` lists these values and the server's own (cancelled, time
limit, ...) with a label for each; a test checks that every code here is one of them.
``ImageProblem`` names why one image was skipped (a run goes on past it while the suite's share
allows). Plain Python: the engine imports no Django.
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


class ImageProblem(StrEnum):
    """Why one image was left out of a run (``SkippedImage.kind``): the run goes on while the skipped
    share stays within the suite's ``max_unreadable_share``. The reason beside it says the details."""

    NOT_FOUND = "not_found"  # no file at the manifest's path
    UNSUPPORTED_TYPE = "unsupported_type"  # not DICOM, PNG, NPY or NIfTI
    UNREADABLE = "unreadable"  # a corrupt or truncated file, or one a library refuses
    NO_DECODER = "no_decoder"  # a DICOM transfer syntax no installed decoder reads
    NO_PIXELS = "no_pixels"  # a DICOM object without an image (a structured report, a plan)
    PHOTOMETRIC = "photometric"  # a photometric interpretation the engine does not convert
    MULTI_FRAME = "multi_frame"  # several frames (or a 4D NIfTI) that the spec's frames rule refuses
    NO_SUCH_FRAME = "no_such_frame"  # the frame the rule names is beyond the image's frames
    SHAPE = "shape"  # after the frames rule, not the 2D image or volume the spec takes
    NO_VOI = "no_voi"  # the spec takes the window from the header, which has none that applies
    EMPTY = "empty"  # no pixels at all
    NON_FINITE = "non_finite"  # NaN or infinite values
