"""The Content-Security-Policy in a real browser: the pages, the admin and Swagger UI (from this
server's static files) work under it and the browser reports no violation; a locked-out login
shows why."""

from __future__ import annotations

import pytest
from django.conf import settings
from playwright.sync_api import expect

from compliance.trust.services import trust_assess
from tests.browser.conftest import login
from tests.factories import ModelVersionFactory

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture
def officer(personas):
    user = personas["officer"]
    user.set_password(PASSWORD)
    user.is_staff = True
    user.save()
    return user


def test_pages_admin_and_swagger_ui_run_under_the_policy(page, live_server, officer):
    version = ModelVersionFactory(foundation_model__provider=officer.institution)
    trust_assess(version=version, trigger="manual")
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))

    login(page, live_server.url, "officer", PASSWORD)
    page.goto(f"/versions/{version.pk}/trust/")
    chart = page.get_by_role("img", name="Six-axis radar chart of the principle scores listed below.")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 0  # the SVG loaded as an image
    page.goto("/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    page.goto("/api/docs/")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("RadTrust API")  # rendered by the local bundle
    expect(page.locator("#swagger-ui .opblock-tag").first).to_be_visible()
    assert violations == [] and failed == []


def test_a_locked_out_login_says_why(page, live_server, officer):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(page, live_server.url, "officer", "not-the-password")
        expect(page.get_by_role("alert")).to_contain_text("Please enter a correct")
    login(page, live_server.url, "officer", "not-the-password")
    expect(page.get_by_role("heading", name="Login refused")).to_be_visible()
    login(page, live_server.url, "officer", PASSWORD)  # the right password, too late
    expect(page.get_by_role("alert")).to_contain_text("Too many failed logins for this user name from your address")
    expect(page.get_by_role("heading", name="Login refused")).to_be_visible()
