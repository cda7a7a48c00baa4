"""A stored run report as a reader who is not its data's steward may see it.

The report keeps, per label, the cases its uncertainty analysis flagged and the images the run
skipped or explained, each named by its image path: single patients' data, which stay with the
hospital that holds them (``core.access.may_see_case_outputs``). For everyone else every
``image_path`` is dropped and each list of flagged cases becomes its count; the aggregates stay.
"""

from __future__ import annotations

from typing import Any


def report_without_cases(value: Any) -> Any:
    """A copy of a report (or any part of one) without image paths or flagged-case lists."""
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            if key == "image_path":
                continue
            if key == "flagged_cases" and isinstance(item, list):
                redacted["n_flagged_cases"] = len(item)
                continue
            redacted[key] = report_without_cases(item)
        return redacted
    if isinstance(value, list):
        return [report_without_cases(item) for item in value]
    return value
