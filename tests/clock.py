"""The unit tests' clock: one midday per session, fixed by the controlling process so that every xdist
worker, and every module-level date, agrees on the day (tests/conftest.py travels each unit test to it)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

MIDDAY_ENV = "RADTRUST_TEST_MIDDAY"


def session_midday_fix() -> None:
    """Set the session's midday (today, 12:00 UTC) unless a parent process set it already."""
    os.environ.setdefault(MIDDAY_ENV, datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0).isoformat())


def session_midday() -> datetime:
    return datetime.fromisoformat(os.environ[MIDDAY_ENV])


def session_today() -> date:
    """The session's day in UTC, the settings' time zone, whatever offset an override carries."""
    return session_midday().astimezone(UTC).date()
