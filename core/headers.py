"""Security headers Django does not send itself: Content-Security-Policy and Permissions-Policy.

(Referrer-Policy, X-Content-Type-Options and Cross-Origin-Opener-Policy come from Django's
``SecurityMiddleware``.) The policy allows no inline script, so an injected ``<script>`` or
event handler never runs. A view that serves a file sets its own, stricter policy, which this
middleware leaves alone.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse

# For a file served on its own (an SVG chart, a run's output): it may style itself, and load or run nothing.
FILE_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.RADTRUST_CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", settings.RADTRUST_PERMISSIONS_POLICY)
        return response


def svg_response(svg: str | bytes) -> HttpResponse:
    """An SVG served as an image (``<img src>``), never inlined into a page: scripts in it cannot run."""
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    return response
