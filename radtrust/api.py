"""API-wide error handling: every refusal is a DRF error body, never a 500 page."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from radtrust.errors import Conflict


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
