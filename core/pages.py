"""What every page shares: the role check of ``core.access``, a window over a long list,
and service errors put on a form."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError

from core.access import may
from core.errors import BadQuery

MAX_PAGE = 10_000


def requires(resource: str, *, write: bool = False):
    """Log in, then the role rule of ``resource`` (the API's rule); a refusal is a 403 page."""

    def decorate(view):
        @wraps(view)
        @login_required
        def wrapped(request, *args, **kwargs):
            if not may(request.user, resource, write=write):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def api_docs_page(view):
    """Swagger UI behind the login page unless ``RADTRUST_PUBLIC_API_DOCS`` (the schema's own rule, ``ApiDocsPermission``)."""
    behind_login = login_required(view)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        return (view if settings.RADTRUST_PUBLIC_API_DOCS else behind_login)(request, *args, **kwargs)

    return wrapped


@dataclass
class Window:
    """One page of a long list without counting it (a COUNT over a million reports costs more than the page)."""

    items: list
    number: int
    has_next: bool
    query: str = ""

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_window(request, rows, size: int = 50, **keep) -> Window:
    """The ``?page=`` window of ``rows``; ``keep`` are the page's filters, carried to the next page.

    A page number that is not a whole number from 1 to ``MAX_PAGE`` is a ``BadQuery`` (a 400 page):
    beyond it the row offset would pass what the database's integers hold (a 500), and no one pages
    that far.
    """
    raw = request.GET.get("page", "1")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(MAX_PAGE)) and 1 <= int(raw) <= MAX_PAGE):
        raise BadQuery("page", f"The page number must be a whole number from 1 to {MAX_PAGE}.")
    number = int(raw)
    chunk = list(rows[(number - 1) * size : number * size + 1])
    kept = {k: v for k, v in keep.items() if v}
    query = f"&{urlencode(kept)}" if kept else ""
    return Window(items=chunk[:size], number=number, has_next=len(chunk) > size, query=query)


def form_errors(form, exc: ValidationError) -> None:
    """Put a service's field errors on the form (unknown fields become form-wide errors)."""
    for name, errors in exc.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)
