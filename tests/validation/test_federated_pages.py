"""The federated studies pages: who may see them, and what a pooled study shows.

Studies are built through the services with real site summaries (``site_summary`` on generated
cases with a different prevalence and separation per site) reported by each site's agent account.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from radtrust_engine.federated import site_summary
from registry.services import user_create
from tests.factories import FoundationModelFactory, InstitutionFactory
from validation.federated import job_claim, job_fail, report_submit, study_create, study_pool
from validation.models import FederatedStudy

SITES = {"east": (0.25, 1.2, 500), "north": (0.20, 1.8, 400), "south": (0.30, 2.4, 350)}  # prevalence, separation, cases
SPEC = {"intersections": [["sex", "age_band"]], "n_resamples": 50}
HOSTILE = '<script>alert("east")</script> & Sons'


def _payload(code: str) -> dict:
    """What a site's agent sends. Only East has a rare scanner (about 10 cases of fewer patients): that stratum is suppressed there."""
    prevalence, separation, n = SITES[code]
    rng = np.random.default_rng(sorted(SITES).index(code) + 1)
    pid = np.array([f"{code}-{i:04d}" for i in rng.integers(0, int(n * 0.7), n)])
    vendors = rng.choice(["GE", "Siemens", "Agfa"], n, p=[0.55, 0.43, 0.02]) if code == "east" else rng.choice(["GE", "Siemens"], n)
    attributes = {"sex": rng.choice(["F", "M"], n), "age_band": rng.choice(["18-39", "40-64", "65+"], n), "scanner_manufacturer": vendors}
    y = (rng.random(n) < prevalence).astype(int)
    z = rng.normal(size=n) + separation * y - 1.5
    summary = site_summary(
        {"effusion": 1 / (1 + np.exp(-z))},
        {"effusion": y},
        pid,
        attributes,
        [("sex", "age_band")],
        thresholds=0.5,
        min_patients=10,
        n_resamples=50,
        seed=0,
    )
    return summary.to_dict()


@pytest.fixture
def federated(personas, institutions, register_version):
    """A vendor version, three hospitals (East's name hostile HTML) and ``open_study(codes, report=codes)``."""
    sites = {"north": institutions["north"], "south": institutions["south"], "east": InstitutionFactory(code="east", name=HOSTILE)}
    agents = {code: user_create(username=f"agent-{code}", role="site_agent", institution=site) for code, site in sites.items()}
    version = register_version(
        FoundationModelFactory(provider=institutions["vendor"], name="EffusionNet"),
        output_schema={"class_names": ["effusion"], "thresholds": {"effusion": 0.5}, "activation": "sigmoid"},
    )

    def open_study(codes=("east", "north", "south"), *, report=("east", "north", "south")) -> FederatedStudy:
        study = study_create(
            actor=personas["engineer"],
            version=version,
            name="Effusion across hospitals",
            spec=SPEC,
            deadline=timezone.now() + timedelta(days=7),
            institutions=[sites[c] for c in codes],
        )
        for code in report:
            job = job_claim(actor=agents[code], job=study.jobs.get(institution__code=code))
            report_submit(actor=agents[code], job=job, payload=_payload(code), approved_by=f"DPO {code}", approved_at=timezone.now())
        return study

    return {"open_study": open_study, "agents": agents, "version": version}


def _page(client, user, url: str):
    client.force_login(user)
    return client.get(url)


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


# --- Access --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "who, listed, detail",
    [
        ("engineer", True, 200),
        ("officer", True, 200),
        ("auditor", True, 200),
        ("engineer_south", False, 404),  # another institution's engineer: not the provider of this version
        ("clinician_north", None, 403),
        ("worker", None, 403),
    ],
)
def test_pages_follow_the_apis_role_and_institution_rules(client, personas, federated, who, listed, detail):
    study = federated["open_study"](report=())
    index = _page(client, personas[who], "/federated/")
    assert index.status_code == (403 if listed is None else 200)
    if listed is not None:
        assert (f'href="/federated/{study.pk}/"' in index.content.decode()) is listed
    assert _page(client, personas[who], f"/federated/{study.pk}/").status_code == detail


@pytest.mark.django_db
def test_pages_ask_anonymous_visitors_to_log_in_and_the_nav_links_them_for_engineers(client, personas, federated):
    study = federated["open_study"](report=())
    for url in ("/federated/", f"/federated/{study.pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert 'href="/federated/"' in _page(client, personas["engineer"], "/dossiers/").content.decode()
    assert 'href="/federated/"' not in _page(client, personas["clinician_north"], "/clinician/").content.decode()


# --- Content ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_version_sites_counts_deadline_and_status(client, personas, federated):
    study = federated["open_study"](report=("north",))
    text = _text(_page(client, personas["officer"], "/federated/"))
    assert "Effusion across hospitals EffusionNet 1.0.0 east, north, south 1 of 3 2" in text
    assert study.deadline.strftime("%Y") in text and "Open (sites may report)" in text


@pytest.mark.django_db
def test_pooled_page_shows_pooled_figures_meta_analysis_site_rows_and_the_stored_forest_plots(client, personas, federated):
    study = federated["open_study"]()
    pooled = study_pool(study)
    response = _page(client, personas["officer"], f"/federated/{study.pk}/")
    assert response.status_code == 200
    page, text = response.content.decode(), _text(response)

    overall = pooled["pooled"]["strata"][0]["labels"]["effusion"]["auroc"]
    assert f"Overall {pooled['pooled']['strata'][0]['n_patients']} " in text
    assert f"{overall['value']:.3f} ({overall['ci_low']:.3f} to {overall['ci_high']:.3f})" in text
    meta = pooled["meta_analysis"]["effusion"]["auroc"]
    assert meta["k"] == 3 and meta["refused_reason"] is None
    assert (
        f"AUROC 3 {meta['estimate']:.3f} ({meta['ci_low']:.3f} to {meta['ci_high']:.3f}) {meta['tau2']:.4f} "
        f"{100 * meta['i2']:.1f}% {meta['q']:.2f} (2)"
    ) in text
    assert f"{meta['prediction_low']:.3f} to {meta['prediction_high']:.3f}" in text

    south = next(r for r in pooled["site_results"] if r["site"] == "south")
    assert f"South Hospital (south) {south['n_patients']} {south['n_cases']} {south['auroc']['value']:.3f}" in text
    east = next(r for r in pooled["site_results"] if r["site"] == "east")
    east_row = text.split(f"{HOSTILE} (east) {east['n_patients']} {east['n_cases']} {east['auroc']['value']:.3f}")[1].split(" North Hospital")[0]
    assert "Scanner manufacturer Agfa" in east_row and "Sex " not in east_row  # the rare scanner's cell, suppressed at East only
    assert f"{south['specificity']['ci_high']:.3f}) none Forest plots" in text
    assert "Scanner manufacturer Agfa 0 0 — — — — east (incomplete)" in text
    assert "Sex female, age band 18-39" in text and "Sex by age band" in text and "effusion (threshold 0.500)" in text  # in words, rounded
    assert "=F" not in text and "age_band" not in text and "scanner_manufacturer" not in text

    assert len(pooled["charts"]) == 3
    for chart in pooled["charts"]:
        src = f"/api/federated-studies/{study.pk}/charts/{chart['name']}.svg/"
        assert f'<img src="{src}" alt="{html.escape(chart["alt"])}"' in page
        served = client.get(src)
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == chart["sha256"]
    assert study.poolings.count() == 1  # the page and the charts reuse the one pooling


@pytest.mark.django_db
def test_one_site_study_shows_the_refusal_reason_and_still_the_pooled_figures(client, personas, federated):
    study = federated["open_study"](("north",), report=("north",))
    pooled = study_pool(study)
    text = _text(_page(client, personas["engineer"], f"/federated/{study.pk}/"))
    reason = pooled["meta_analysis"]["effusion"]["auroc"]["refused_reason"]
    assert "at least 2 sites" in reason
    assert f"AUROC 1 Meta-analysis refused: {reason} The pooled figures above still hold." in text
    overall = pooled["pooled"]["strata"][0]["labels"]["effusion"]["auroc"]
    assert overall["value"] is not None and f"{overall['value']:.3f} ({overall['ci_low']:.3f}" in text


@pytest.mark.django_db
def test_sites_not_reported_failed_or_past_the_deadline_are_listed_with_the_agents_error(client, personas, federated):
    study = federated["open_study"](report=("north",))
    south = federated["agents"]["south"]
    job = job_claim(actor=south, job=study.jobs.get(institution__code="south"))
    job_fail(actor=south, job=job, reason="artifact_mismatch: the downloaded model does not match the registry's sha256")
    text = _text(_page(client, personas["auditor"], f"/federated/{study.pk}/"))
    assert "Not reported yet: east, south" in text and "Failed at the site: south" in text
    assert "South Hospital (south) not reported failed 1 — — artifact_mismatch: the downloaded model does not match" in text
    assert "1 of 3 sites reported" in text

    FederatedStudy.objects.filter(pk=study.pk).update(deadline=timezone.now() - timedelta(minutes=1))
    text = _text(_page(client, personas["auditor"], f"/federated/{study.pk}/"))
    assert "Missed the deadline: east, south" in text and f"{HOSTILE} (east) missed the deadline pending 0" in text


@pytest.mark.django_db
def test_site_names_are_escaped(client, personas, federated):
    study = federated["open_study"]()
    page = _page(client, personas["officer"], f"/federated/{study.pk}/").content.decode()
    assert "<script>" not in page
    assert html.escape(HOSTILE) in page
