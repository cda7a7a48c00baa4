"""What every page shares: the role check of ``core.access``, a window over a long list,
and service errors put on a form."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError

from core.access import may


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
    try:
        number = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        number = 1
    chunk = list(rows[(number - 1) * size : number * size + 1])
    query = "".join(f"&{k}={v}" for k, v in keep.items() if v)
    return Window(items=chunk[:size], number=number, has_next=len(chunk) > size, query=query)


def form_errors(form, exc: ValidationError) -> None:
    """Put a service's field errors on the form (unknown fields become form-wide errors)."""
    for name, errors in exc.message_dict.items():
        form.add_error(name if name in form.fields else None, errors)
