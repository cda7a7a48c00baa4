"""Monitoring through real feedback: a rising disagreement raises one alert, a stable stream none;
resolving the alert restarts the test; the monitoring reads issue a constant number of queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.alerts import alert_handle
from compliance.choices import AlertKind
from compliance.incidents import incident_escalate
from compliance.models import Alert, DeploymentMonitor
from compliance.monitoring import cusum_arl, design_cusum, in_control_rate, phase_one

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def short_baseline(settings):
    settings.RADTRUST_MONITOR_BASELINE_FEEDBACK = 100


def _stream(report, rates: list[tuple[int, float]], seed: int = 0, where: str = "north") -> None:
    rng = np.random.default_rng(seed)
    who = "clinician_north" if where == "north" else "clinician_south"
    for n, rate in rates:
        for disagree in rng.random(n) < rate:
            report("disagree" if disagree else "agree", who=who, where=where)


def test_rising_disagreement_raises_one_alert_with_its_evidence(report, deployed):
    _stream(report, [(100, 0.1), (300, 0.45)])
    alerts = Alert.objects.filter(kind=AlertKind.DISAGREEMENT_RISE)
    assert alerts.count() == 1
    alert = alerts.get()
    assert alert.deployment == deployed["north"] and alert.version == deployed["version"] and alert.run is None
    evidence = alert.evidence
    assert evidence["test"] == "Bernoulli CUSUM" and evidence["proposed_action"] == "revalidation"
    assert evidence["observed_rate"] > evidence["design"]["p0"] and evidence["ci_low"] < evidence["observed_rate"] < evidence["ci_high"]
    monitor = DeploymentMonitor.objects.get(deployment=deployed["north"])
    assert monitor.state["alarmed"] and monitor.n_feedback == 400
    assert evidence["design"]["p0"] == pytest.approx(in_control_rate(monitor.baseline_sum, 100), abs=1e-4)
    assert evidence["design"]["p0"] == pytest.approx(monitor.baseline_rate, abs=1e-4)  # the estimate itself, not an upper limit
    phase = evidence["design"]["phase_one"]
    assert phase["n"] == 100 and phase["ci_low"] < monitor.baseline_rate < phase["ci_high"]
    assert phase["arl0_if_ci_high"] < evidence["design"]["arl0"] < phase["arl0_if_ci_low"]


def test_a_stable_stream_raises_no_alert(report, deployed):
    for i in range(400):  # exactly one report in ten disagrees, before and after the baseline
        report("disagree" if i % 10 == 9 else "agree")
    assert not Alert.objects.filter(kind=AlertKind.DISAGREEMENT_RISE).exists()
    monitor = DeploymentMonitor.objects.get(deployment=deployed["north"])
    assert monitor.baseline_rate is not None and not monitor.state["alarmed"] and monitor.tested_n == 300


def test_the_other_site_is_monitored_on_its_own(report, deployed):
    _stream(report, [(100, 0.1), (300, 0.45)], where="south")
    _stream(report, [(100, 0.1)], seed=3)
    assert list(Alert.objects.values_list("deployment", flat=True)) == [deployed["south"].pk]


def test_resolving_the_alert_restarts_the_test(report, deployed, personas):
    _stream(report, [(100, 0.1), (300, 0.45)])
    alert = Alert.objects.get(kind=AlertKind.DISAGREEMENT_RISE)
    alert_handle(actor=personas["officer"], alert=alert, status="resolved", note="Site recalibrated the detector; revalidated.")
    monitor = DeploymentMonitor.objects.get(deployment=deployed["north"])
    assert not monitor.state["alarmed"] and monitor.state["statistic"] == 0 and monitor.tested_n == 0
    _stream(report, [(300, 0.45)], seed=5)
    assert Alert.objects.filter(kind=AlertKind.DISAGREEMENT_RISE).count() == 2  # the new alarm is a new alert


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def test_monitoring_reads_issue_the_same_number_of_queries_at_any_volume(report, deployed, personas, api_client, client):
    from registry.models import User

    client.force_login(personas["officer"])

    def api():  # a user object per request, as a real request has (the role is read once per request)
        return api_client(User.objects.get(pk=personas["officer"].pk))

    urls = [
        f"/api/monitoring/{deployed['north'].pk}/",
        "/api/feedback/",
        "/api/alerts/",
        "/api/incidents/",
        f"/monitoring/{deployed['north'].pk}/",
        "/monitoring/",
        "/feedback/",
        "/alerts/",
        "/incidents/",
    ]
    _stream(report, [(5, 0.2)])
    Alert.objects.create(
        version=deployed["version"], deployment=deployed["north"], kind="input_drift", severity="info", subject="image_mean", message="m"
    )
    incident_escalate(
        actor=personas["officer"], feedback=report("disagree"), title="t", description="d", incident_type="other", aware_on=timezone.localdate()
    )
    few = {url: _queries(api() if url.startswith("/api/") else client, url) for url in urls}
    _stream(report, [(95, 0.1), (300, 0.45)], seed=7)
    _stream(report, [(60, 0.2)], seed=8, where="south")
    many = {url: _queries(api() if url.startswith("/api/") else client, url) for url in urls}
    assert few == many


def test_the_phase_one_rule_states_the_false_alarm_interval_at_the_true_rate():
    """Deployments whose true rate is 10%, each with its rate estimated from its first 100 reports
    (the whole binomial distribution of the count, exactly): the ARL at the true rate against the
    ARL the design states. The estimate is the rate itself, so the stated figure is the typical
    one (an upper confidence limit, the earlier rule, made the true ARL five times the stated one
    or more); its spread is what the stated range over the rate's interval is for."""
    truth = 0.1
    ratios, weights, bracketed = [], [], 0.0
    for k in range(3, 23):  # 99.8% of the binomial mass
        weight = math.comb(100, k) * truth**k * (1 - truth) ** (100 - k)
        design = design_cusum(in_control_rate(k, 100))
        phase = phase_one(k, 100, design)
        arl0 = cusum_arl(design, truth)
        ratios.append(arl0 / design.arl0)
        weights.append(weight)
        bracketed += weight * (phase.arl0_if_ci_high <= arl0 <= (phase.arl0_if_ci_low or math.inf))
    order = np.argsort(ratios)
    median = np.asarray(ratios)[order][np.searchsorted(np.cumsum(np.asarray(weights)[order]), 0.5 * sum(weights))]
    assert 0.8 < median < 1.25
    assert bracketed / sum(weights) > 0.9  # the Wilson interval's coverage, carried to the ARL


def test_the_phase_one_rule_needs_enough_reports_and_keeps_the_design_rate_in_range():
    with pytest.raises(ValueError, match="at least 50 reports"):
        in_control_rate(3, 20)
    assert in_control_rate(0, 100) == 0.02 and in_control_rate(80, 100) == 0.5 and in_control_rate(12.5, 100) == 0.125
    phase = phase_one(0, 100, design_cusum(0.02))
    assert phase.ci_low == 0 and phase.arl0_if_ci_low is None and phase.arl0_if_ci_high < design_cusum(0.02).arl0


def test_officer_sees_the_false_alarm_interval_and_the_detection_delay_in_words(client, personas, report, deployed):
    for i in range(100):
        report("disagree" if i % 10 == 9 else "agree")
    client.force_login(personas["officer"])
    page = client.get(f"/monitoring/{deployed['north'].pk}/").content.decode()
    design = DeploymentMonitor.objects.get(deployment=deployed["north"]).design
    assert "Rate at deployment: 10.0% (95% CI 5.5% to 17.4%) from the first 100 reports" in page
    assert f"a false alarm about once every {round(design['arl0'], -2):,.0f} reports" in page
    assert f"typically flagged after about {design['median_delay']} reports (median" in page


def test_weekly_summaries_equal_the_stored_reports_after_edits_and_a_rebuild(report, deployed, personas):
    from compliance.feedback import feedback_update, weeks_rebuild
    from compliance.models import DeploymentWeek, Feedback
    from compliance.selectors import deployment_monitoring

    first = report("disagree", error_type="false_negative", severity="high", explanation_helped=2, minutes_saved=-5)
    report("partly", error_type="wrong_localisation", explanation_helped=4, minutes_saved=3)
    report("agree", explanation_helped=5)
    feedback_update(
        actor=personas["clinician_north"],
        feedback=first,
        fields={"agreement": "agree", "error_type": "", "severity": "none", "explanation_helped": 3},
    )
    live = deployment_monitoring(deployed["north"]).to_dict()
    rows = Feedback.objects.filter(deployment=deployed["north"])
    assert live["weeks"][0]["n"] == 3 and live["weeks"][0]["disagree"] == 0 and live["weeks"][0]["partly"] == 1
    assert {e["error_type"]: e["n"] for e in live["error_types"] if e["n"]} == {"wrong_localisation": 1}
    assert {s["severity"]: s["n"] for s in live["severities"] if s["n"]} == {"none": 3}
    rating = next(r for r in live["ratings"] if r["question"] == "explanation_helped")
    assert rating["n"] == 3 and rating["mean"] == pytest.approx(np.mean([r.explanation_helped for r in rows]))
    assert live["minutes_saved"]["mean"] == pytest.approx(-1.0)
    DeploymentWeek.objects.all().delete()
    weeks_rebuild()
    assert deployment_monitoring(deployed["north"]).to_dict() == live
