"""Security headers on every answer, no inline script in any page, the trust chart as an image, and
the API docs: served from this server's static files, behind a login unless published."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client

from compliance.trust.services import trust_assess
from tests.factories import ModelVersionFactory

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)


def _scripts_are_files(html: str) -> None:
    assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.search(html).group(0)
    assert not EVENT_HANDLER.search(html), EVENT_HANDLER.search(html).group(0)
    assert not re.search(r"""src=["']https?://""", html)  # nothing from another server (a CDN)


def test_the_policy_forbids_inline_script():
    directives = dict(d.strip().split(" ", 1) for d in settings.RADTRUST_CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'" and directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"


@pytest.mark.django_db
def test_every_answer_carries_the_headers(personas):
    for answer in (Client().get("/accounts/login/"), Client().get("/api/model-versions/"), Client().get("/no-such-page/")):
        assert answer["Content-Security-Policy"] == settings.RADTRUST_CONTENT_SECURITY_POLICY
        assert answer["Permissions-Policy"].startswith("accelerometer=()") and "camera=()" in answer["Permissions-Policy"]
        assert answer["Referrer-Policy"] == "same-origin"
        assert answer["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_rendered_pages_have_no_inline_script(personas, client, settings):
    settings.RADTRUST_PUBLIC_API_DOCS = False
    version = ModelVersionFactory(foundation_model__provider=personas["officer"].institution)
    trust_assess(version=version, trigger="manual")
    _scripts_are_files(client.get("/accounts/login/").content.decode())
    officer = personas["officer"]
    officer.is_staff = officer.is_superuser = True  # the whole admin
    officer.save()
    client.force_login(officer)
    pages = ["/monitoring/", "/alerts/", "/incidents/", "/feedback/", "/dossiers/", f"/versions/{version.pk}/trust/", "/federated/"]
    pages += ["/admin/", "/admin/registry/modelversion/", f"/admin/registry/modelversion/{version.pk}/change/", "/api/docs/"]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, path
        _scripts_are_files(answer.content.decode())
    browsable = client.get("/api/model-versions/", HTTP_ACCEPT="text/html")
    assert browsable["Content-Type"].startswith("text/html")
    _scripts_are_files(browsable.content.decode())


def test_templates_inline_no_script_and_mark_nothing_safe():
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        assert "|safe" not in text, template
        _scripts_are_files(text)


@pytest.mark.django_db
def test_the_trust_chart_is_an_image_with_the_file_policy(personas, client):
    version = ModelVersionFactory(foundation_model__provider=personas["officer"].institution)
    assessment = trust_assess(version=version, trigger="manual")
    client.force_login(personas["officer"])
    page = client.get(f"/versions/{version.pk}/trust/").content.decode()
    assert f'<img src="/trust-assessments/{assessment.pk}/chart.svg"' in page and "<svg" not in page
    chart = client.get(f"/trust-assessments/{assessment.pk}/chart.svg")
    assert chart["Content-Type"] == "image/svg+xml" and chart.content.startswith(b"<?xml") and b"<svg" in chart.content
    assert chart["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    client.force_login(personas["engineer_south"])  # another provider's engineer: not found
    assert client.get(f"/trust-assessments/{assessment.pk}/chart.svg").status_code == 404


@pytest.mark.django_db
def test_api_docs_behind_a_login_unless_published(personas, settings, client):
    settings.RADTRUST_PUBLIC_API_DOCS = False
    docs = client.get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"] == "/accounts/login/?next=/api/docs/"
    assert client.get("/api/schema/").status_code == 403
    assert client.get("/api/docs/?script=").status_code == 302
    client.force_login(personas["clinician_north"])
    assert client.get("/api/schema/").status_code == 200 and client.get("/api/docs/").status_code == 200

    settings.RADTRUST_PUBLIC_API_DOCS = True
    assert Client().get("/api/schema/").status_code == 200 and Client().get("/api/docs/").status_code == 200


@pytest.mark.django_db
def test_swagger_ui_comes_from_this_server(settings):
    settings.RADTRUST_PUBLIC_API_DOCS = True
    page = Client().get("/api/docs/").content.decode()
    sources = re.findall(r'<script src="([^"]+)"', page)
    assert sources[:2] == [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js",
    ]
    for source in sources[:2]:
        assert finders.find(source.removeprefix("/static/")), source  # shipped with the server, no CDN
    start = Client().get(sources[2].replace("&amp;", "&"))
    assert start["Content-Type"].startswith("application/javascript") and b"SwaggerUIBundle" in start.content
