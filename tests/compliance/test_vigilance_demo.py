"""The demo's vigilance step (``manage.py demo``): the rise in clinician disagreement is triaged as a
trend, not an MDR Art. 87(3) serious incident, and a clinician's flag of a suspected serious incident
is triaged to MDR Art. 87(5) and reported with an initial report."""

from __future__ import annotations

import pytest

from compliance.models import Alert, Incident
from radtrust_demo import dossiers as demo

pytestmark = pytest.mark.django_db


def test_the_demo_handles_a_trend_as_a_trend_and_reports_the_flagged_incident(personas, institutions, deployed, report):
    report("agree")  # the history exists: the demo streams no reports
    rise = Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["south"],
        kind="disagreement_rise",
        severity="warning",
        subject="CUSUM",
        message="Disagreement rose.",
    )
    clinicians = {"st-anna": personas["clinician_north"], "city-general": personas["clinician_south"]}
    sites = {"st-anna": institutions["north"], "city-general": institutions["south"]}
    result = demo.feedback_demo(version=deployed["version"], sites=sites, clinicians=clinicians, officer=personas["officer"], out=lambda *_: None)
    trend = result["incident"]
    assert trend.alert == rise and trend.triage == "trend" and trend.legal_basis == "MDR Art. 88" and trend.deadline is None
    assert "87(3)" not in trend.legal_basis and not trend.reports.exists()
    suspected = result["suspected"]
    assert suspected.feedback.suspected_serious_incident and suspected.feedback.clinician == personas["clinician_south"]
    assert (suspected.triage, suspected.legal_basis) == ("serious", "MDR Art. 87(1)(a), 87(5)")
    assert [r.kind for r in suspected.reports.all()] == ["initial"] and suspected.reported_on is not None
    assert Alert.objects.filter(feedback=suspected.feedback, kind="high_severity_report").exists()
    again = demo.feedback_demo(version=deployed["version"], sites=sites, clinicians=clinicians, officer=personas["officer"], out=lambda *_: None)
    assert (again["incident"], again["suspected"]) == (trend, suspected) and Incident.objects.count() == 2
