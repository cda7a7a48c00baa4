"""The admin login in a real browser: an auditor reaches the admin index; a wrong password is refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture
def auditor(personas):
    """The auditor persona with a password, as staff (the admin only lets staff in)."""
    user = personas["auditor"]
    user.set_password(PASSWORD)
    user.is_staff = True
    user.save()
    return user


def test_auditor_logs_into_admin(page, live_server, auditor):
    login(page, live_server.url, "auditor", PASSWORD, path="/admin/login/")

    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    expect(page.locator("#user-tools")).to_contain_text("auditor")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_wrong_password_shows_error(page, live_server, auditor):
    login(page, live_server.url, "auditor", "not-the-password", path="/admin/login/")

    expect(page).to_have_url(f"{live_server.url}/admin/login/")
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password for a staff account")
    expect(page.get_by_role("heading", name="Site administration")).to_have_count(0)
