"""One-click feedback on a phone: the worklist link opens the form prefilled, "Agree" is the one
click, the 1-5 scales lie in a row once unfolded, and nothing scrolls sideways at 390 px."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from compliance.models import Feedback
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"


def test_agree_in_one_click_on_a_phone(page, live_server, personas, deployed):
    personas["clinician_north"].set_password(PASSWORD)
    personas["clinician_north"].save()
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, live_server.url, "clinician_north", PASSWORD)
    query = urlencode({"case": "CASE-7f3a9c", "output": "nodule 0.82 (flagged)", "version": deployed["version"].version})
    page.goto(f"/feedback/quick/?{query}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    agree = page.get_by_role("group", name="Do you agree with the model?").get_by_role("button", name="Agree", exact=True)
    box = agree.bounding_box()
    assert box["y"] + box["height"] <= 844, "Agree must be on the first screen"

    page.get_by_text("More detail (optional)").click()
    options = page.locator("#id_explanation_helped label")
    tops = {round(options.nth(i).bounding_box()["y"]) for i in range(options.count())}
    assert len(tops) <= 2, "the 1-5 scale lies in a row (wrapping once at most), not stacked"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_text("More detail (optional)").click()

    agree.click()  # the one click
    expect(page.get_by_role("listitem").filter(has_text="“agree” on CASE-7f3a9c saved")).to_be_visible()
    feedback = Feedback.objects.get()
    assert (feedback.agreement, feedback.model_output, feedback.deployment_id) == ("agree", "nodule 0.82 (flagged)", deployed["north"].pk)
    expect(page.get_by_label("Case reference")).to_have_value("")  # the next case
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
