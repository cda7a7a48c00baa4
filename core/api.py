"""What every app's API shares: error handling (every refusal is a DRF error body, never a 500
page), the scoped view set base class, and the Markdown renderer."""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status, viewsets
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import Conflict


def exception_handler(exc, context):
    """Map domain errors raised by services to HTTP: 400 field errors, 403, 409."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Conflict):
        return Response({"detail": str(exc), "code": exc.code, **exc.details}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)


class ScopedViewSet(viewsets.GenericViewSet):
    """Rows come from a selector, so every list and detail is scoped by role and institution."""

    selector = None
    lookup_value_regex = r"[0-9]+"  # a non-numeric id is a 404, not a database error

    def get_queryset(self):
        return type(self).selector(user=self.request.user)


class MarkdownRenderer(BaseRenderer):
    """``?format=md`` (or ``Accept: text/markdown``) for actions that offer a Markdown document."""

    media_type, format, charset = "text/markdown", "md", "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return (data if isinstance(data, str) else json.dumps(data, default=str)).encode()
