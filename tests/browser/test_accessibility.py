"""axe-core (npm's, from the ``axe-playwright-python`` wheel: no npm at test time) on the run,
alert, audit and error pages and the home page, with no serious or critical violation; a visible
focus ring at 3:1 or more; wide tables reachable by keyboard."""

from __future__ import annotations

import re
from pathlib import Path

import axe_playwright_python
import pytest
from playwright.sync_api import Browser, Page

from compliance.models import Alert
from tests.browser.conftest import TIMEOUT_MS, login
from validation import services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

AXE = Path(axe_playwright_python.__file__).with_name("axe.min.js")
PASSWORD = "Correct-horse-battery-9"
BLOCKING = {"serious", "critical"}


@pytest.fixture
def axe_page(browser: Browser, live_server) -> Page:
    """A page whose context lets the test inject axe-core past the site's CSP (script-src 'self')."""
    context = browser.new_context(base_url=live_server.url, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def _violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert result["testEngine"]["name"] == "axe-core" and result["url"] == page.url  # axe ran on this page
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(n['target'][0] for n in v['nodes'][:3])}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.fixture
def world(personas, run_setup, deployed):
    for name in ("officer", "auditor", "clinician_north"):
        personas[name].set_password(PASSWORD)
        personas[name].save()
    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        config={"n_resamples": 30, "min_patients": 5, "attributes": ["sex", "site"], "intersections": [["sex", "site"]]},
    )
    services.run_execute(run_id=run.pk, worker="w")
    queued = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config={})
    Alert.objects.create(
        version=deployed["version"], deployment=deployed["north"], run=run, kind="input_drift", severity="critical", subject="x", message="drifted"
    )
    return {"run": run.pk, "queued": queued.pk}


def test_officer_and_auditor_pages_have_no_serious_violation(axe_page, live_server, world):
    problems = {}
    login(axe_page, live_server.url, "officer", PASSWORD)
    for path in (
        "/",
        "/runs/",
        f"/runs/{world['run']}/",
        f"/runs/{world['queued']}/",
        f"/runs/compare/?a={world['run']}&b={world['queued']}",
        "/alerts/",
        "/audit/",
        "/audit/verify/",
        "/no-such-page/",
    ):
        axe_page.goto(path)
        found = _violations(axe_page)
        if found:
            problems[path] = found
    axe_page.goto("/audit/verify/")
    axe_page.get_by_role("button", name="Verify now").click()
    axe_page.get_by_text("The chain is intact").wait_for()
    if found := _violations(axe_page):
        problems["/audit/verify/ (verdict)"] = found
    assert not problems, problems


def test_clinician_pages_have_no_serious_violation(axe_page, live_server, world):
    login(axe_page, live_server.url, "clinician_north", PASSWORD)
    problems = {}
    for path in ("/", "/clinician/", "/alerts/", "/audit/"):  # the last: the styled 403 page
        axe_page.goto(path)
        if found := _violations(axe_page):
            problems[path] = found
    assert not problems, problems


def _luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_focus_ring_is_visible_at_three_to_one_and_tables_take_the_keyboard(axe_page, live_server, world):
    login(axe_page, live_server.url, "officer", PASSWORD)
    axe_page.goto(f"/runs/{world['run']}/")
    regions = axe_page.locator(".table-wrap[tabindex='0'][role='region']")
    assert regions.count() >= 3
    for _ in range(60):  # Tab until a wide table's scroll container has the focus
        axe_page.keyboard.press("Tab")
        if axe_page.evaluate("document.activeElement.classList.contains('table-wrap')"):
            break
    else:
        pytest.fail("Tab never reached a table's scroll container")
    assert axe_page.evaluate("document.activeElement.getAttribute('aria-label')")
    style = axe_page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth, s.outlineColor]; })()"
    )
    assert style[0] == "solid" and float(style[1].removesuffix("px")) >= 2
    assert _contrast(style[2], "rgb(255, 255, 255)") >= 3
    axe_page.goto(f"/runs/{world['run']}/")
    axe_page.keyboard.press("Tab")  # the skip link
    axe_page.keyboard.press("Tab")  # the first link of the navy header
    assert axe_page.evaluate("!!document.activeElement.closest('header')")
    assert _contrast(axe_page.evaluate("getComputedStyle(document.activeElement).outlineColor"), "rgb(11, 37, 69)") >= 3
