"""Reads of core's own records, scoped like every other list."""

from __future__ import annotations

from django.db.models import QuerySet

from core.access import scope
from core.models import ApiToken


def api_token_list(*, user) -> QuerySet[ApiToken]:
    """The user's own tokens; an officer's list holds everyone's (``api_token.others``)."""
    return scope(user, ApiToken.objects.select_related("user"))
