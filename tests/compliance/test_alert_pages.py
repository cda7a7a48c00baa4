"""The alert pages say what the test behind a drift or degradation alert found, in words: the
p-value of the test alone, the p-value after allowing for the run's other tests, and what the
limit promises; an alert without a recorded test (the feedback monitor's) shows no such line."""

from __future__ import annotations

import pytest

from compliance.models import Alert

pytestmark = pytest.mark.django_db

TEST = {
    "kind": "input_drift",
    "subject": "image_mean",
    "alternative": "change",
    "p_value": 0.0004,
    "p_adjusted": 0.0036,
    "family_size": 9,
    "alpha": 0.05,
    "method": "holm",
    "rejected": True,
}


def test_the_alert_list_shows_raw_and_adjusted_p_values_in_words(client, personas, deployed):
    Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="input_drift",
        severity="warning",
        subject="image_mean",
        message="image_mean drifted: mean 1800 -> 1950",
        evidence={"psi": 0.4, "test": TEST},
    )
    Alert.objects.create(
        version=deployed["version"],
        deployment=deployed["north"],
        kind="performance_degradation",
        severity="critical",
        subject="nodule:auroc",
        message="nodule auroc fell from 0.900 to 0.700",
        evidence={"test": {**TEST, "subject": "nodule:auroc", "alternative": "drop", "p_value": 3e-9, "p_adjusted": 2.7e-8}},
    )
    Alert.objects.create(
        version=deployed["version"], kind="disagreement_rise", severity="warning", subject="north", message="disagreement rose", evidence={}
    )
    client.force_login(personas["officer"])
    page = " ".join(client.get("/alerts/").content.decode().split())
    assert "Chance alone: p = 0.0004 for this test; 0.0036 after allowing for the 9 tests this run made (Holm's method)." in page
    assert "Chance alone: p below 0.0001 for this test; below 0.0001 after allowing for the 9 tests" in page
    assert page.count("a run where nothing changed raises one at most 5% of the time") == 2  # not on the monitor's alert
    monitoring = " ".join(client.get(f"/monitoring/{deployed['north'].pk}/").content.decode().split())
    assert "0.0036 after allowing for the 9 tests this run made" in monitoring
