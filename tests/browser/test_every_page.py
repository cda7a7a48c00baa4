"""axe-core on every page of the URL conf, for every role of a person allowed on it, and every
clinician page at a phone's 390 px width without sideways scrolling.

The pages and their roles are the access matrix's (``tests/registry/test_access_matrix.PAGES``,
generated from the URL conf, so a new page is checked here as soon as it has a rule); its world
holds one real record behind every detail page. One browser, one context per role, signed in
by session cookie. Pages that answer a file (PDF, CSV, ZIP, SVG) are checked for their answer
only: axe reads HTML. Pages in their error state (a form with a bad row, a refused submission)
are checked too."""

from __future__ import annotations

from pathlib import Path

import axe_playwright_python
import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser

from core.choices import Role
from tests.browser.conftest import TIMEOUT_MS
from tests.registry.test_access_matrix import PAGE_HIDDEN, PAGES, POST_ONLY, _page_url, accounts, world  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

AXE = Path(axe_playwright_python.__file__).with_name("axe.min.js").read_text()
BLOCKING = {"serious", "critical"}
# One account per role of a person: the provider's engineer, officer and auditor, and North's clinician.
ACCOUNT_OF_ROLE = {Role.ML_ENGINEER: "engineer", Role.COMPLIANCE_OFFICER: "officer", Role.AUDITOR: "auditor", Role.CLINICIAN: "clinician_north"}
PHONE = {"width": 390, "height": 844}
NO_TIME_LIMIT = 0  # Playwright reads 0 as "no limit": a draft PDF may take long on a loaded machine; nothing here is timed


def _pages_for(role: str) -> list[str]:
    """The GET pages ``role`` may open (post-only routes answer 405 and have nothing to show)."""
    return sorted(name for name, (roles, _record) in PAGES.items() if role in roles and name not in POST_ONLY)


def _violations(page) -> list[str]:
    page.add_script_tag(content=AXE)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {'; '.join(' '.join(n['target']) for n in v['nodes'][:3])}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


def _signed_in(browser: Browser, live_server, user, viewport: dict | None = None):
    """A browser context with ``user``'s session (no login form: that has its own tests)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(base_url=live_server.url, bypass_csp=True, viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": live_server.url}])
    return context


def _problems_for(role: str, context, records: dict) -> tuple[int, dict[str, list[str]]]:
    """How many pages were HTML, and each page's serious or critical violations (and sideways scrolling on a phone)."""
    account, phone = ACCOUNT_OF_ROLE[role], role == Role.CLINICIAN
    page, problems, checked = context.new_page(), {}, 0
    for name in _pages_for(role):
        url = _page_url(name, records)
        # First without the page (a file would start a download in it), and without a time limit: a draft PDF takes a while.
        response = context.request.get(url, timeout=NO_TIME_LIMIT)
        expected = 404 if account in PAGE_HIDDEN.get(name, ()) else 200
        if response.status != expected and not (name == "runs:compare" and response.status == 400):  # compare says what to give
            problems[url] = [f"{name}: {response.status}, expected {expected}"]
            continue
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue  # a file: PDF, CSV, ZIP or SVG
        page.goto(url, timeout=60_000)  # some pages read every evidence source: generous on a busy machine
        checked += 1
        found = _violations(page)
        if phone and (width := page.evaluate("document.documentElement.scrollWidth")) > PHONE["width"]:
            found.append(f"scrolls sideways at {PHONE['width']} px: the page is {width} px wide")
        if found:
            problems[f"{url} ({name})"] = found
    return checked, problems


def test_every_page_has_no_serious_violation(browser: Browser, live_server, accounts, world):  # noqa: F811
    """Every role in turn over one world (building it is the slow part), a context each."""
    problems = {}
    for role, account in ACCOUNT_OF_ROLE.items():
        context = _signed_in(browser, live_server, accounts[account], viewport=PHONE if role == Role.CLINICIAN else None)
        try:
            checked, found = _problems_for(role, context, world)
        finally:
            context.close()
        assert checked >= 3, f"only {checked} pages were HTML for {role}"
        problems |= {f"{role.label}: {where}": violations for where, violations in found.items()}
    assert not problems, "\n".join(f"{where}:\n  " + "\n  ".join(found) for where, found in problems.items())


def test_pages_showing_their_errors_have_no_serious_violation(browser: Browser, live_server, accounts, world):  # noqa: F811
    """What a page shows after a refusal: the datasheet's tables with a bad row, a refused dossier submission."""
    problems = {}
    context = _signed_in(browser, live_server, accounts["engineer"])
    page = context.new_page()
    page.goto("/datasets/new/")
    page.get_by_label("Name").fill("Half set")
    page.get_by_label("Manufacturer, scanners row 1").fill("Siemens")
    page.get_by_label("Studies, scanners row 1").fill("-3")
    page.get_by_role("button", name="Register a dataset").click()
    page.get_by_role("row", name="1").get_by_role("alert").first.wait_for()
    problems["dataset form with a bad row"] = _violations(page)
    context.close()

    context = _signed_in(browser, live_server, accounts["officer"])
    page = context.new_page()
    page.goto(f"/dossiers/{world['dossier']}/")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_role("alert").filter(has_text="Not submitted").wait_for()
    problems["refused dossier submission"] = _violations(page)
    context.close()
    problems = {where: found for where, found in problems.items() if found}
    assert not problems, problems
