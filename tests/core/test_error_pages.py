"""Styled error pages in production (DEBUG off), and API docs served from this server's own files."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import include, path

from core.pages import requires


def _crash(request):
    raise RuntimeError("boom")


@requires("dossier", write=True)
def _officers_only(request):  # pragma: no cover - never reached by the clinician below
    raise AssertionError


urlpatterns = [path("crash/", _crash), path("officers/", _officers_only), path("", include("radtrust.urls"))]
handler500 = "core.api.server_error"


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__


@pytest.mark.django_db
def test_403_404_500_are_styled_pages(production, personas):
    client = Client(raise_request_exception=False)
    client.force_login(personas["clinician_north"])
    for url, status, heading in (
        ("/officers/", 403, "You may not open this page"),
        ("/nowhere/", 404, "Page not found"),
        ("/crash/", 500, "Something went wrong on our side"),
    ):
        response = client.get(url)
        body = response.content.decode()
        assert response.status_code == status
        assert f"<h1>{heading}</h1>" in body
        assert 'class="skip"' in body and "<header>" in body  # the base template
        assert "boom" not in body and "Traceback" not in body


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_api_docs_load_nothing_from_another_site(url, personas):
    client = Client()
    client.force_login(personas["engineer"])
    response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert re.findall(r"(?:src|href)=\"([^\"]+)\"", body), "the page loads its files"
    assert not re.findall(r"https?://", body), "every file from this server"
    assert "/static/drf_spectacular_sidecar/" in body
