"""Trust assessments on real rows: evidence gathered from this version's succeeded runs only,
insufficient evidence shown as such, policies that never rewrite old assessments, the
recomputation triggers, the approval guard and its exceptions, the command, API and page."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.utils import timezone

from compliance.models import ScoringPolicy, TrustAssessment
from compliance.trust.gather import version_evidence
from compliance.trust.policy import DEFAULT_POLICY, PRINCIPLES
from compliance.trust.services import (
    policy_activate,
    policy_create,
    trust_assess,
    trust_exception_confirm,
    trust_exception_grant,
    trust_guard,
    trust_recompute,
)
from validation import services
from validation.choices import RunStatus
from validation.models import ValidationRun

pytestmark = pytest.mark.django_db
CONFIG = {"n_resamples": 50, "min_patients": 5}


def _run(run_setup, **kwargs):
    run = services.run_create(actor=run_setup["engineer"], version=run_setup["version"], dataset=run_setup["dataset"], config=CONFIG, **kwargs)
    assert services.run_execute(run_id=run.pk, worker="w") == RunStatus.SUCCEEDED
    return run


@pytest.fixture
def eager():
    from radtrust.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_only_this_versions_succeeded_runs_are_evidence(run_setup, register_version):
    good = _run(run_setup)
    ValidationRun.objects.create(version=run_setup["version"], dataset=run_setup["dataset"], status=RunStatus.FAILED, error_reason="bad_input")
    other = register_version(run_setup["model"], "1.1.0", output_schema=run_setup["version"].output_schema)
    services.run_create(actor=run_setup["engineer"], version=other, dataset=run_setup["dataset"], config=CONFIG)
    evidence = version_evidence(run_setup["version"])
    assert [r.id for r in evidence.runs] == [good.pk]
    assert evidence.audit_chain_ok and evidence.audit_events_checked > 0


def test_a_version_without_subgroup_analysis_has_insufficient_fairness(run_setup):
    assessment = trust_assess(version=run_setup["version"], trigger="manual")  # no run yet
    assert set(assessment.principles) == set(PRINCIPLES)
    fairness = assessment.principles["fairness"]
    assert fairness["status"] == "insufficient_evidence" and fairness["score"] is None
    assert any(c["value"] is None and c["required"] for c in fairness["criteria"])
    assert "insufficient evidence" in assessment.chart_svg


def test_a_run_makes_fairness_assessable_and_links_it(run_setup):
    run = _run(run_setup)
    fairness = trust_assess(version=run_setup["version"], trigger="manual").principles["fairness"]
    linked_runs = {link["id"] for c in fairness["criteria"] for link in c["links"] if link["type"] == "run"}
    assert run.pk in linked_runs
    gap = next(c for c in fairness["criteria"] if c["value"] is not None and "gap" in c["key"])
    assert gap["inputs"] and gap["explanation"]


def test_a_new_policy_never_rewrites_old_assessments(run_setup, personas):
    first = trust_assess(version=run_setup["version"], trigger="manual")
    definition = json.loads(json.dumps(DEFAULT_POLICY))
    definition["principles"]["fairness"]["minimum"] = 90
    second_policy = policy_create(actor=personas["officer"], name="Stricter fairness", definition=definition)
    assert not second_policy.active  # proposed: in force once a second officer activates it
    second_policy = policy_activate(actor=personas["officer2"], policy=second_policy)
    second = trust_assess(version=run_setup["version"], trigger="manual")
    first_again = TrustAssessment.objects.get(pk=first.pk)
    assert first_again.policy.version == DEFAULT_POLICY["version"] and first_again.principles == first.principles
    assert second.policy == second_policy and second_policy.version == DEFAULT_POLICY["version"] + 1
    assert list(ScoringPolicy.objects.filter(active=True)) == [second_policy]


def test_bad_policies_are_refused_with_the_reason(personas, api_client):
    definition = json.loads(json.dumps(DEFAULT_POLICY))
    definition["principles"]["fairness"]["criteria"][0]["weight"] += 0.3
    with pytest.raises(ValidationError) as caught:
        policy_create(actor=personas["officer"], name="bad", definition=definition)
    assert "weight" in caught.value.message_dict["definition"][0].lower()
    definition = json.loads(json.dumps(DEFAULT_POLICY))
    definition["principles"]["fairness"]["criteria"][0]["rule"] = "astrology"
    response = api_client(personas["officer"]).post("/api/scoring-policies/", {"name": "bad", "definition": definition}, format="json")
    assert response.status_code == 400 and "astrology" in json.dumps(response.json())
    assert not ScoringPolicy.objects.exclude(version=DEFAULT_POLICY["version"]).exists()


def test_recomputation_triggers(run_setup, personas, eager, deployed, report, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the requests are sent when the change commits
        _run(run_setup)
    assert TrustAssessment.objects.filter(version=run_setup["version"], trigger="run_finished").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        report("agree")
    assert TrustAssessment.objects.filter(version=deployed["version"], trigger="feedback").exists()
    dataset = run_setup["dataset"]
    dataset.known_limitations = "No paediatric cases."
    with django_capture_on_commit_callbacks(execute=True):
        dataset.save()
    assert TrustAssessment.objects.filter(version=run_setup["version"], trigger="datasheet_changed").exists()

    from django.core.cache import cache

    from compliance.dossiers import dossier_open, dossier_save

    cache.clear()  # the datasheet's request opened a debounce window; eager tasks ran it already
    dossier = dossier_open(actor=personas["officer"], version=run_setup["version"])
    with django_capture_on_commit_callbacks(execute=True):
        dossier_save(
            actor=personas["officer"],
            dossier=dossier,
            values={"1a_purpose_statement": "Triage of adult chest films for suspected pneumothorax, as a second reader."},
            edit_count=0,
        )
    assessment = TrustAssessment.objects.filter(version=run_setup["version"], trigger="dossier_changed").latest("pk")
    criterion = next(c for c in assessment.principles["traceability"]["criteria"] if c["key"] == "dossier_completeness")
    assert criterion["status"] == "partly" and 0 < criterion["value"] < 1 and criterion["inputs"]["id"] == dossier.pk


def test_a_request_covered_by_a_newer_assessment_is_skipped(run_setup):
    requested = timezone.now().isoformat()
    newer = trust_assess(version=run_setup["version"], trigger="manual")
    assert trust_recompute(version_id=run_setup["version"].pk, trigger="feedback", requested_at=requested) is None
    later = (timezone.now() + timedelta(seconds=1)).isoformat()
    assert trust_recompute(version_id=run_setup["version"].pk, trigger="feedback", requested_at=later) not in (None, newer.pk)


def test_overdue_revalidation_asks_for_a_rescore(deployed, eager, django_capture_on_commit_callbacks):
    from compliance.trust.services import trust_overdue_requests

    trust_assess(version=deployed["version"], trigger="manual")
    TrustAssessment.objects.update(computed_at=timezone.now() - timedelta(days=400))
    north = deployed["north"]
    north.since = timezone.localdate() - timedelta(days=200)
    north.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert trust_overdue_requests() == [deployed["version"].pk]
    assert TrustAssessment.objects.filter(trigger="revalidation_overdue").count() == 1


def test_the_approval_guard_reads_the_assessment_and_honours_exceptions(run_setup, personas):
    version = run_setup["version"]
    assert "No trust assessment" in trust_guard(version)
    assessment = trust_assess(version=version, trigger="manual")
    reason = trust_guard(version)
    blocked = [n for n, p in assessment.principles.items() if p["status"] == "insufficient_evidence" or p.get("below_minimum")]
    assert blocked and all(name in reason for name in blocked)
    for name in blocked:
        exception = trust_exception_grant(
            actor=personas["officer"], version=version, principle=name, justification="Pilot at one site under close supervision; evidence follows."
        )
        assert "waits for a second officer" in trust_guard(version)
        trust_exception_confirm(actor=personas["officer2"], exception=exception)
    assert trust_guard(version) is None
    with pytest.raises(ValidationError):
        trust_exception_grant(actor=personas["officer"], version=version, principle="charisma", justification="x" * 30)


def test_trust_command_prints_one_key_per_principle(run_setup):
    _run(run_setup)
    out = StringIO()
    call_command("trust", str(run_setup["version"].pk), "--json", stdout=out, stderr=StringIO())
    result = json.loads(out.getvalue())
    assert set(result) == set(PRINCIPLES)
    for principle in result.values():
        assert {"score", "status", "criteria"} <= set(principle)
        assert principle["score"] is None or 0 <= principle["score"] <= 100
    text = StringIO()
    call_command("trust", str(run_setup["version"].pk), stdout=text)
    assert "fairness" in text.getvalue() and "criteria" not in text.getvalue().splitlines()[0]


def test_api_lists_assessments_and_diffs_two(run_setup, personas, api_client):
    client = api_client(personas["engineer"])
    first = client.post("/api/trust-assessments/", {"version": run_setup["version"].pk}, format="json")
    assert first.status_code == 201 and set(first.json()["principles"]) == set(PRINCIPLES)
    _run(run_setup)
    second = client.post("/api/trust-assessments/", {"version": run_setup["version"].pk}, format="json").json()
    diff = client.get(f"/api/trust-assessments/{second['id']}/diff/").json()
    assert diff["before"] == first.json()["id"] and diff["changes"]
    assert api_client(personas["engineer_south"]).get(f"/api/trust-assessments/{second['id']}/").status_code == 404
    assert (
        api_client(personas["clinician_north"]).post("/api/trust-assessments/", {"version": run_setup["version"].pk}, format="json").status_code
        == 403
    )


def test_trust_page_for_the_provider_and_the_site_only(client, personas, deployed):
    trust_assess(version=deployed["version"], trigger="manual")
    client.force_login(personas["officer"])
    page = client.get(f"/versions/{deployed['version'].pk}/trust/").content.decode()
    assessment = TrustAssessment.objects.get(version=deployed["version"])
    chart_url = f"/trust-assessments/{assessment.pk}/chart.svg"
    # The chart is an image served on its own (it cannot run script), never SVG inlined into the page.
    assert f'<img src="{chart_url}"' in page and "<svg" not in page and "Fairness" in page and "insufficient evidence" in page
    chart = client.get(chart_url)
    assert chart["Content-Type"] == "image/svg+xml" and b"<svg" in chart.content
    assert chart["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    client.force_login(personas["clinician_north"])
    assert client.get(f"/versions/{deployed['version'].pk}/trust/").status_code == 200
    assert client.get(chart_url).status_code == 200
    home = client.get("/clinician/").content.decode()
    assert "What these scores rest on" in home
    client.force_login(personas["engineer_south"])
    assert client.get(f"/versions/{deployed['version'].pk}/trust/").status_code == 404
    assert client.get(chart_url).status_code == 404


def test_trust_page_shows_statuses_and_triggers_in_words(client, personas, deployed):
    trust_assess(version=deployed["version"], trigger="manual")
    trust_assess(version=deployed["version"], trigger="run_finished")
    client.force_login(personas["clinician_north"])
    page = client.get(f"/versions/{deployed['version'].pk}/trust/").content.decode()
    stored = TrustAssessment.objects.filter(version=deployed["version"]).first().principles
    statuses = {c["status"] for p in stored.values() for c in p["criteria"]}
    assert "no_evidence" in statuses and "<td>No evidence</td>" in page
    for code in {s for s in statuses if "_" in s} | {"run_finished", "insufficient_evidence"}:  # "met" is in <meta>
        assert code not in page, code
    assert "(a validation run finished)" in page and "<td>Asked for by a user</td>" in page
    weights = {c["weight"] for p in stored.values() for c in p["criteria"]}
    assert all(f'<td class="num">{w:.2f}</td>' in page for w in weights)  # weights rounded, never 0.3333333


def test_trust_page_explains_a_principle_accepted_by_exception(client, personas, run_setup):
    """A principle under its minimum that two officers accepted says so, with their reason, beside its badge."""
    from compliance.trust.services import trust_exception_confirm, trust_exception_grant

    version = run_setup["version"]
    assessment = trust_assess(version=version, trigger="manual")
    blocked = next(n for n, p in assessment.principles.items() if p["status"] == "insufficient_evidence" or p.get("below_minimum"))
    reason = "Usability study of the reading workflow runs in the first quarter; approval for a supervised pilot only."
    exception = trust_exception_grant(actor=personas["officer"], version=version, principle=blocked, justification=reason)
    client.force_login(personas["officer"])
    assert "Accepted by exception" not in client.get(f"/versions/{version.pk}/trust/").content.decode()  # one officer is not enough
    trust_exception_confirm(actor=personas["officer2"], exception=exception)
    page = client.get(f"/versions/{version.pk}/trust/").content.decode()
    assert page.count("Accepted by exception") == 1 and reason in page and "confirmed by" in page


def test_a_burst_of_feedback_sends_one_debounced_request(deployed, report, settings, django_capture_on_commit_callbacks):
    """Within the debounce window only the first report puts a recomputation request on the
    (embedded, file-system) broker's queue."""
    from pathlib import Path

    queue = Path(settings.CELERY_BROKER_DIR) / "queue"

    def trust_messages() -> set[str]:
        return {p.name for p in queue.glob("*") if "compliance.tasks.trust_recompute" in p.read_text(errors="ignore")} if queue.exists() else set()

    before = trust_messages()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            report("agree")
    assert len(trust_messages() - before) == 1


def test_a_pooled_federated_study_feeds_universality(run_setup, personas, institutions, client):
    """Three hospitals report to a federated study of the version through the service; the pooled
    meta-analysis reaches the evidence, the heterogeneity criterion and the page's link."""
    import numpy as np

    from radtrust_engine.federated import site_summary
    from radtrust_engine.federated_payload import SiteSummary
    from radtrust_engine.federated_pooling import site_meta_analysis
    from registry.services import user_create
    from tests.factories import InstitutionFactory
    from validation.federated import job_claim, report_submit, study_create

    version = run_setup["version"]
    sites = {"north": institutions["north"], "south": institutions["south"], "east": InstitutionFactory(code="east")}
    study = study_create(
        actor=personas["engineer"],
        version=version,
        name="Pneumothorax at three hospitals",
        spec={"n_resamples": 50},
        deadline=timezone.now() + timedelta(days=7),
        institutions=list(sites.values()),
    )
    summaries = {}
    for i, (code, separation) in enumerate((("east", 0.8), ("north", 1.6), ("south", 2.6))):
        rng = np.random.default_rng(i)
        n = 300
        y = (rng.random(n) < 0.3).astype(int)
        scores = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * y - 1)))
        attributes = {a: rng.choice(["a", "b"], n) for a in study.spec["attributes"]}
        summary = site_summary(
            {"pneumothorax": scores},
            {"pneumothorax": y},
            np.array([f"{code}-{k}" for k in range(n)]),
            attributes,
            (),
            thresholds=study.spec["thresholds"],
            n_resamples=50,
        )
        payload = json.loads(json.dumps(summary.to_dict()))
        summaries[code] = SiteSummary.from_dict(payload)
        agent = user_create(username=f"agent-{code}", role="site_agent", institution=sites[code])
        job = job_claim(actor=agent, job=study.jobs.get(institution=sites[code]))
        report_submit(actor=agent, job=job, payload=payload, approved_by="Data owner", approved_at=timezone.now(), agent={})

    [federated] = version_evidence(version).federated
    expected = site_meta_analysis(summaries, label="pneumothorax", metric="auroc")
    assert federated.id == study.pk and federated.site_patients == {"east": 300, "north": 300, "south": 300}
    assert federated.auroc["pneumothorax"]["k"] == 3 and federated.auroc["pneumothorax"]["i2"] == pytest.approx(expected.i2)

    universality = trust_assess(version=version, trigger="manual").principles["universality"]["criteria"]
    heterogeneity = next(c for c in universality if c["key"] == "site_heterogeneity")
    assert heterogeneity["status"] == "not_met" and expected.i2 > 0.5  # the planted spread between the hospitals
    assert heterogeneity["inputs"]["i2"] == pytest.approx(expected.i2, abs=1e-4)
    assert heterogeneity["inputs"]["prediction_low"] == pytest.approx(expected.prediction_low, abs=1e-4)
    assert heterogeneity["links"] == [{"type": "federated_study", "id": study.pk, "label": f"Federated study {study.name}"}]
    external = next(c for c in universality if c["key"] == "external_sites")
    assert external["inputs"]["federated_sites"] == ["east", "north", "south"] and external["inputs"]["sites"] == 3
    client.force_login(personas["officer"])
    assert f'href="/federated/{study.pk}/"' in client.get(f"/versions/{version.pk}/trust/").content.decode()
