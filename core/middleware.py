"""Query parameters that no view could use answer 400, in one place, before any view or filter runs.

A NUL character reaches PostgreSQL as a 500 ("A string literal cannot contain NUL"), whichever
filter set, search box or page filter passes it on; other control characters and text that was not
valid UTF-8 are no better. Rather than patch each filter, this refuses them on the way in, and turns
a ``BadQuery`` a page raises (a page number beyond ``core.pages.MAX_PAGE``) into the same answer:
JSON with the parameter's name for the API, a 400 page for the rest.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from core.errors import BadQuery

_ALLOWED_CONTROLS = frozenset("\t\n\r")
_REPLACEMENT = "\ufffd"  # what Django decodes bytes that are not UTF-8 to


def query_problem(text: str) -> str | None:
    """Why a query parameter's name or value is not usable text, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    if any(ord(c) < 32 and c not in _ALLOWED_CONTROLS for c in text) or "\x7f" in text:
        return "contains a control character"
    if _REPLACEMENT in text:
        return "is not valid UTF-8 text"
    return None


def bad_request(request: HttpRequest, error: BadQuery) -> HttpResponse:
    """The 400 answer to ``error``: DRF-shaped field errors under /api/, the 400 page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({error.parameter: [str(error)]}, status=400)
    return render(request, "400.html", {"parameter": error.parameter, "reason": str(error)}, status=400)


class QueryGuard:
    """Refuse unusable query parameters (see the module docstring); answer ``BadQuery`` with a 400."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            for text in (name, *values):
                if problem := query_problem(text):
                    shown = name if query_problem(name) is None else "query"
                    return bad_request(request, BadQuery(shown, f"The query parameter {shown!r} {problem}."))
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, BadQuery):
            return bad_request(request, exception)
        return None
