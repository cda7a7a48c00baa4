"""Feedback in seconds: the worklist link, one-click agree, disagree with an optional comment, the
folded details, "next case" and the plain-words panel on how the model is doing at the hospital."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from compliance.choices import AlertSeverity, AlertStatus, ErrorType, Severity
from compliance.models import Alert, Feedback, TrustException
from registry.choices import DeploymentStatus

QUICK = reverse("pages:feedback-quick")


@pytest.fixture
def clinician(personas):
    client = Client()
    client.force_login(personas["clinician_north"])
    return client


def _key(html: str) -> str:
    return re.search(r'name="submission_key" value="([0-9a-f-]+)"', html).group(1)


@pytest.mark.django_db
def test_worklist_link_prefills_case_and_output(clinician, deployed):
    page = clinician.get(QUICK, {"case": "CASE-7f3a9c", "output": "nodule 0.82 (flagged)", "version": deployed["version"].version})
    html = page.content.decode()
    assert page.status_code == 200
    assert 'value="CASE-7f3a9c"' in html and 'value="nodule 0.82 (flagged)"' in html
    assert "Model output (required)" in html and "Case reference (required)" in html
    # The detailed ratings are folded away, after the quick fields.
    assert html.index("<details") < html.index('name="explanation_helped"') < html.index("</details>")


@pytest.mark.django_db
def test_agree_is_one_click_and_leads_to_the_next_case(clinician, deployed):
    url = f"{QUICK}?case=CASE-7f3a9c&output=nodule&version={deployed['version'].pk}"
    html = clinician.get(url).content.decode()
    # The one click: the prefilled fields as the form holds them, and the "Agree" button's value.
    response = clinician.post(url, {"submission_key": _key(html), "case_reference": "CASE-7f3a9c", "model_output": "nodule", "agreement": "agree"})
    assert response.status_code == 302
    assert response["Location"] == f"{QUICK}?version={deployed['version'].pk}"  # a blank form for the next case
    feedback = Feedback.objects.get()
    assert (feedback.agreement, feedback.error_type, feedback.severity) == ("agree", "", Severity.NONE)
    assert feedback.deployment == deployed["north"]


@pytest.mark.django_db
def test_disagree_with_only_a_comment_is_accepted(clinician, deployed):
    url = f"{QUICK}?version={deployed['version'].pk}"
    response = clinician.post(
        url,
        {
            "submission_key": str(uuid.uuid4()),
            "case_reference": "CASE-1b2c3d",
            "model_output": "no finding",
            "agreement": "disagree",
            "comment": "Missed nodule.",
        },
    )
    assert response.status_code == 302
    feedback = Feedback.objects.get()
    assert (feedback.agreement, feedback.error_type, feedback.comment) == ("disagree", ErrorType.OTHER, "Missed nodule.")


@pytest.mark.django_db
def test_error_type_picked_before_agree_is_dropped(clinician, deployed):
    url = f"{QUICK}?version={deployed['version'].pk}"
    data = {
        "submission_key": str(uuid.uuid4()),
        "case_reference": "CASE-1b2c3d",
        "model_output": "x",
        "agreement": "agree",
        "error_type": "false_positive",
    }
    assert clinician.post(url, data).status_code == 302
    assert Feedback.objects.get().error_type == ""


@pytest.mark.django_db
def test_missing_output_is_refused_with_the_field_marked(clinician, deployed):
    url = f"{QUICK}?version={deployed['version'].pk}"
    response = clinician.post(url, {"submission_key": str(uuid.uuid4()), "case_reference": "CASE-1b2c3d", "model_output": "", "agreement": "agree"})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not Feedback.objects.exists()


@pytest.mark.django_db
def test_returns_to_an_allowed_worklist_only(clinician, deployed, settings):
    settings.RADTRUST_FEEDBACK_RETURN_HOSTS = ["pacs.north.example"]
    url = f"{QUICK}?version={deployed['version'].pk}"
    base = {"case_reference": "CASE-1b2c3d", "model_output": "x", "agreement": "agree"}
    ok = clinician.post(url, base | {"submission_key": str(uuid.uuid4()), "next": "https://pacs.north.example/worklist?i=4"})
    assert ok["Location"] == "https://pacs.north.example/worklist?i=4"
    evil = clinician.post(url, base | {"submission_key": str(uuid.uuid4()), "next": "https://evil.example/"})
    assert evil["Location"].startswith(QUICK)


@pytest.mark.django_db
def test_link_naming_nothing_in_use_explains_a_suspension(clinician, deployed):
    deployed["north"].status = DeploymentStatus.SUSPENDED
    deployed["north"].save(update_fields=["status"])
    html = clinician.get(QUICK, {"version": deployed["version"].version}).content.decode()
    assert "No model in use at North Hospital matches this link" in html
    assert "It is suspended: do not rely on its output until the compliance officers resume it." in html


@pytest.mark.django_db
def test_plain_words_panel(clinician, deployed, report, personas):
    for i in range(12):
        report("agree" if i < 10 else "disagree", case_reference=f"CASE-a{i:03d}")
    Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="disagreement_rise",
        severity=AlertSeverity.CRITICAL,
        subject="Disagreement",
        message="Radiologists disagree more often than at deployment.",
        status=AlertStatus.OPEN,
    )
    TrustException.objects.create(
        version=deployed["version"],
        principle="fairness",
        justification="Older patients are covered by a post-market study.",
        granted_by=personas["officer"],
        confirmed_by=personas["officer2"],
    )
    html = clinician.get(reverse("pages:clinician-home")).content.decode()
    assert "agreed with it in 83% of 12 reported cases (95% interval" in html
    assert "1 open alert, 1 critical" in html
    assert "two compliance officers accepted this because: Older patients are covered" in html
    assert "under 50" not in html


@pytest.mark.django_db
def test_other_hospital_cannot_report_on_north(personas, deployed):
    client = Client()
    client.force_login(personas["clinician_south"])
    url = f"{QUICK}?version={deployed['version'].pk}"
    client.post(url, {"submission_key": str(uuid.uuid4()), "case_reference": "CASE-1b2c3d", "model_output": "x", "agreement": "agree"})
    assert Feedback.objects.get().deployment == deployed["south"]  # the link resolves at the clinician's own hospital
