"""What every app's API shares: error handling (every refusal is a DRF error body, never a 500
page, under /api/ even where Django answers before any view), JSON fields that take one kind of
value under the parser's nesting bound (``core.parsers``), date-time filters compared in UTC, the
error answers of every operation in the OpenAPI schema, the scoped view set base class, and the renderers of file and Markdown answers."""

from __future__ import annotations

import datetime as dt
import json

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django_filters import fields as filter_fields
from django_filters import filters
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import Conflict
from core.parsers import JSON_MAX_DEPTH, PayloadTooLarge, json_too_deep

_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
_TOO_MANY_PARTS = "The form has more fields or files than the server accepts (DATA_UPLOAD_MAX_NUMBER_FIELDS, DATA_UPLOAD_MAX_NUMBER_FILES)."


def _body_too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes (DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE)."
    )


class JSONValueField(serializers.JSONField):
    """A JSON value of one ``kind`` (``dict``: an object, ``list``: an array; ``None``: any), taken
    from a JSON body or from a text part of a form or multipart upload, where it is parsed here
    under the same nesting bound as a JSON body."""

    default_error_messages = {
        "kind": "Expected a JSON {expected}, not a JSON {given}.",
        "depth": f"JSON nested more than {JSON_MAX_DEPTH} levels deep is refused.",
    }

    def __init__(self, *, kind: type | None = None, **kwargs):
        self.kind = kind
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, (str, bytes)) and (self.binary or getattr(data, "is_json_string", False)):
            try:
                text = data.decode() if isinstance(data, bytes) else data
            except UnicodeDecodeError:
                self.fail("invalid")
            if json_too_deep(text):
                self.fail("depth")
        value = super().to_internal_value(data)
        if self.kind is not None and not isinstance(value, self.kind):
            self.fail("kind", expected=_JSON_TYPE_NAMES[self.kind], given=_JSON_TYPE_NAMES.get(type(value), type(value).__name__))
        return value


class JSONValueFieldSchema(OpenApiSerializerFieldExtension):
    """The schema says which kind of JSON a ``JSONValueField`` takes."""

    target_class = JSONValueField

    def map_serializer_field(self, auto_schema, direction):
        return {dict: {"type": "object", "additionalProperties": {}}, list: {"type": "array", "items": {}}}.get(self.target.kind, {})


class ModelSerializer(serializers.ModelSerializer):
    """DRF's ``ModelSerializer`` whose JSON columns are ``JSONValueField``s (give a column's ``kind`` in ``extra_kwargs``)."""

    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping, models.JSONField: JSONValueField}


class UTCIsoDateTimeField(filter_fields.IsoDateTimeField):
    """An ISO 8601 time in any UTC offset, handed on in UTC: Python takes offsets up to ±23:59, and
    PostgreSQL refused those past ±15:59 with a 500."""

    def to_python(self, value):
        value = super().to_python(value)
        try:
            return None if value is None else value.astimezone(dt.UTC)
        except OverflowError:
            raise DjangoValidationError("The time lies outside the years 1 to 9999 in UTC.", code="invalid") from None


class IsoDateTimeFilter(filters.IsoDateTimeFilter):
    """django-filter's ISO 8601 filter, compared in UTC (``UTCIsoDateTimeField``)."""

    field_class = UTCIsoDateTimeField


def exception_handler(exc, context):
    """Map what services and Django raise to HTTP: 400 field errors, 403, 409, 413."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Conflict):
        return Response({"detail": str(exc), "code": exc.code, **exc.details}, status=status.HTTP_409_CONFLICT)
    elif isinstance(exc, RequestDataTooBig):
        exc = _body_too_large()
    elif isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        exc = exceptions.ParseError(_TOO_MANY_PARTS)
    return drf_exception_handler(exc, context)


# --- Django's own error answers under /api/ (a URL no route matches, a bad Host header, a crash) ---


def _api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: JSON under /api/ that says no more than this (a refused ``Host`` header, a
    file name escaping storage); Django's page elsewhere. Bodies over the limits are refused inside
    the API's views (``exception_handler``: 413, 400)."""
    if not _api(request):
        return defaults.bad_request(request, exception)
    return JsonResponse({"detail": "Bad request."}, status=status.HTTP_400_BAD_REQUEST)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler404``: JSON under /api/ without echoing the path; Django's page elsewhere."""
    if not _api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: JSON under /api/, with nothing of the error in it (it is logged); Django's page elsewhere."""
    if not _api(request):
        return defaults.server_error(request)
    return JsonResponse({"detail": "Server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


# --- The schema: every operation documents the errors it can answer ------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "description": "Why the request was refused; a conflict (409) may add fields that say more (a diff, the clashing record).",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail"],
}
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Messages by field or query parameter name (lists of text, or nested by item); "
    '"non_field_errors" for the body as a whole, "detail" for a body that could not be read.',
    "additionalProperties": {},
}


class ErrorsAutoSchema(AutoSchema):
    """drf-spectacular's schema plus the error answers each operation can give, with their bodies:

    - 400 everywhere: field errors of a body, or a query parameter that is refused (``core.middleware``);
    - 401 and 403 where the view authenticates or checks permissions (bad credentials; role or CSRF);
    - 404 on routes with a path parameter (not there, or not yours) and on paginated lists (no such page);
    - 409 on writes (the services' ``Conflict``: a clash with the current state), and on reads that
      declare it (``extend_schema(responses={409: OpenApiResponse(description=...)})``: the body is added here);
    - 413 and 415 on operations that take a body; 429 where the view throttles.
    """

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        write = self.method not in SAFE_METHODS
        errors = {"400": "The body or a query parameter is invalid." if write else "A query parameter is invalid."}
        if self.view.get_authenticators():
            errors["401"] = "The credentials sent are invalid or expired."
        if self.view.get_authenticators() or not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            errors["403"] = "Not signed in, or the role does not allow this."
        if "{" in path or (self._is_list_view() and self._get_paginator() is not None):
            errors["404"] = "No such record that you may see, or no such page."
        if write:
            errors["409"] = "The request clashes with the record's current state."
        if "requestBody" in operation:
            errors["413"] = "The body is larger than the server accepts."
            errors["415"] = "The body's media type is not accepted here."
        if self.view.get_throttles():
            errors["429"] = "Too many requests; wait and try again."
        for code, description in errors.items():
            operation["responses"].setdefault(code, {"description": description})
        for code, response in operation["responses"].items():
            if code >= "400" and "content" not in response:  # ours, or declared by the view with a description only
                response["content"] = {"application/json": {"schema": self._error_component("FieldErrors" if code == "400" else "Error").ref}}
        return operation

    def _error_component(self, name: str) -> ResolvedComponent:
        component = ResolvedComponent(
            name=name, type=ResolvedComponent.SCHEMA, object=name, schema=ERROR_SCHEMA if name == "Error" else FIELD_ERRORS_SCHEMA
        )
        self.registry.register_on_missing(component)
        return component


class ScopedViewSet(viewsets.GenericViewSet):
    """Rows come from a selector, so every list and detail is scoped by role and institution."""

    selector = None
    lookup_value_regex = r"[0-9]+"  # a non-numeric id is a 404, not a database error

    def get_queryset(self):
        return type(self).selector(user=self.request.user)


class DocumentRenderer(BaseRenderer):
    """For actions whose answer is a document or a file rather than JSON: text and bytes go out as
    they are, and an error (a dict) goes out as what it is, JSON, labelled so."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return json.dumps(data, default=str).encode()


class MarkdownRenderer(DocumentRenderer):
    """``?format=md`` (or ``Accept: text/markdown``) for actions that offer a Markdown document."""

    media_type, format, charset = "text/markdown", "md", "utf-8"


class OctetStreamRenderer(DocumentRenderer):
    """Accepts a client's ``Accept: application/octet-stream`` where the answer is a file (streamed by the view)."""

    media_type, format, charset = "application/octet-stream", "bin", None
