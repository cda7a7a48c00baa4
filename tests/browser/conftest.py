"""Headless Chromium for page tests: one browser for all of tests/browser, a fresh page per test.

Playwright drives Debian's ``chromium`` (``make system-packages`` installs it):
Playwright's own browser download needs a CDN the machines cannot reach. Test
modules mark themselves ``browser`` and ``django_db(transaction=True)``: the page
is served by pytest-django's ``live_server`` thread, which sees committed rows only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000  # Playwright's 30 s default makes a missing element slow to report


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright, with Django's async-safety check off while it runs.

    The sync API keeps an asyncio loop marked as running in this thread from start
    to stop, so every ORM call in the test process (fixtures, assertions, the
    database flush) would raise ``SynchronousOnlyOperation``; nothing here is
    async, so ``DJANGO_ALLOW_ASYNC_UNSAFE`` is safe. Package scope stops Playwright
    and restores the variable after the last browser test, before other tests run.
    """
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-packages).")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as pw:
            yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Chromium, started once (Chromium refuses its sandbox as root, which CI is)."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, chromium_sandbox=os.geteuid() != 0)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    """A page in a fresh context (no cookies from another test); relative URLs go to the live server."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def login(page: Page, base_url: str, username: str, password: str, path: str = "/accounts/login/") -> None:
    """Log in through the form at ``path`` and return once the answer has loaded.

    The project's login page and the admin's (``path="/admin/login/"``) share
    Django's field ids. A wrong password leaves the page on the form with its error.
    """
    page.goto(f"{base_url}{path}")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    with page.expect_navigation():
        page.locator("form:has(#id_password) [type=submit]").click()
