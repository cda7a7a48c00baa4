"""A stored run report as a reader who is not its data's steward may see it.

The report keeps, per label, the cases its uncertainty analysis flagged and the images the run
skipped or explained, each named by its image path: single patients' data, which stay with the
hospital that holds them (``core.access.may_see_case_outputs``). For everyone else every
``image_path`` is dropped and each list of flagged cases becomes its count; the aggregates stay,
except the counts of a suppressed subgroup or group, which a report an older engine stored may
still hold (current engines never write them: ``radtrust_engine.disclosure``).
"""

from __future__ import annotations

from typing import Any

# A suppressed group's counts, and its leave-one-out figures (all cases but it: its counts by subtraction).
_HIDDEN_WHEN_SUPPRESSED = frozenset({"n_cases", "n_patients", "n_positive", "leave_one_out"})


def report_without_cases(value: Any) -> Any:
    """A copy of a report (or any part of one) without image paths, flagged-case lists or the counts
    of suppressed subgroups."""
    if isinstance(value, dict):
        redacted = {}
        for key, item in value.items():
            if key == "image_path":
                continue
            if key in _HIDDEN_WHEN_SUPPRESSED and value.get("suppressed") is True:
                redacted[key] = None
                continue
            if key == "flagged_cases" and isinstance(item, list):
                redacted["n_flagged_cases"] = len(item)
                continue
            redacted[key] = report_without_cases(item)
        return redacted
    if isinstance(value, list):
        return [report_without_cases(item) for item in value]
    return value
