"""The clinician and officer pages in headless Chromium, as people use them: labels, keyboard,
small screens, the feedback journey, escalation, and the institution rule."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compliance.models import Alert, Feedback, Incident
from tests.browser.conftest import login

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"


@pytest.fixture
def people(personas):
    for name in ("clinician_north", "officer"):
        personas[name].set_password(PASSWORD)
        personas[name].save()
    return personas


def test_a_clinician_logs_in_gives_feedback_and_sees_it_listed(page, live_server, people, deployed):
    login(page, live_server.url, "clinician_north", PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/clinician/")
    card = page.get_by_role("region", name=f"{deployed['version'].foundation_model.name} {deployed['version'].version}", exact=True)
    expect(card).to_contain_text("Read every flagged film yourself.")
    expect(card).to_contain_text("Weaker for patients aged 65 and over.")
    card.get_by_role("link", name="Give feedback").click()

    page.get_by_label("Case reference").fill("CASE-7f3a9c")
    page.get_by_label("Model output").fill("pneumothorax 0.91 (flagged)")
    page.get_by_label("If you disagree: what went wrong?").select_option("false_positive")
    page.get_by_label("Comment (optional").fill("<b>skin fold</b>, not a pneumothorax")
    page.get_by_role("group", name="Do you agree with the model?").get_by_role("button", name="Disagree").click()

    expect(page.get_by_role("listitem").filter(has_text="“disagree” on CASE-7f3a9c saved")).to_be_visible()
    expect(page.get_by_label("Case reference")).to_have_value("")  # a blank form for the next case
    page.get_by_role("link", name="My feedback").click()
    row = page.get_by_role("row").filter(has_text="CASE-7f3a9c")
    expect(row).to_contain_text("Disagree")
    expect(row).to_contain_text("<b>skin fold</b>")  # shown as text, not markup
    assert Feedback.objects.get().clinician == people["clinician_north"]


def test_form_errors_are_announced_next_to_their_fields(page, live_server, people, deployed):
    login(page, live_server.url, "clinician_north", PASSWORD)
    page.goto(f"/deployments/{deployed['north'].pk}/feedback/new/")
    page.get_by_label("Case reference").fill("Jan Jansen")
    page.get_by_label("Model output").fill("0.4")
    page.get_by_role("group", name="Do you agree with the model?").get_by_role("button", name="Agree", exact=True).click()
    expect(page.get_by_role("alert").filter(has_text="without spaces")).to_be_visible()
    assert not Feedback.objects.exists()


def test_keyboard_reaches_every_field_and_the_button(page, live_server, people, deployed):
    login(page, live_server.url, "clinician_north", PASSWORD)
    page.goto(f"/deployments/{deployed['north'].pk}/feedback/new/")
    page.get_by_text("More detail (optional)").click()  # the folded ratings, opened
    reached = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.name || document.activeElement.textContent.trim()"))
    assert {"case_reference", "model_output", "error_type", "severity", "minutes_saved", "comment", "agreement"} <= reached
    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !(e.labels && e.labels.length)).map(e => e.name)""")
    assert unlabelled == []


def test_pages_fit_a_phone_screen(page, live_server, people, deployed):
    page.set_viewport_size({"width": 375, "height": 740})
    login(page, live_server.url, "clinician_north", PASSWORD)
    for path in ("/clinician/", f"/deployments/{deployed['north'].pk}/feedback/new/", "/feedback/"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path


def test_a_clinician_cannot_open_another_institutions_deployment(page, live_server, people, deployed):
    login(page, live_server.url, "clinician_north", PASSWORD)
    response = page.goto(f"/deployments/{deployed['south'].pk}/feedback/new/")
    assert response.status == 404
    response = page.goto("/monitoring/")
    assert response.status == 403


def test_an_officer_sees_the_alert_and_escalates_it(page, live_server, people, deployed):
    alert = Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="disagreement_rise",
        severity="warning",
        subject="disagreement_rate",
        message="Clinician disagreement at north rose above the rate at deployment.",
    )
    login(page, live_server.url, "officer", PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/")  # the officer's home: tasks and every model
    expect(page.get_by_role("heading", name="Alerts to acknowledge")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts", exact=True).click()
    row = page.get_by_role("row").filter(has_text="rose above the rate at deployment")
    row.get_by_role("link", name="Escalate").click()
    page.get_by_label("Incident type").select_option("serious_deterioration")
    page.get_by_label("Description").fill("Two missed findings reported this week.")
    page.get_by_role("button", name="Open the incident").click()
    incident = Incident.objects.get(alert=alert)
    expect(page).to_have_url(f"{live_server.url}/incidents/{incident.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Incident #{incident.pk}")
    expect(page.locator("main")).to_contain_text("MDR Art. 87(1)(a), 87(5)")
    expect(page.locator("main")).to_contain_text(f"{incident.deadline:%-d %B %Y}")
