"""Schemathesis against the app's own OpenAPI schema, in process, as every role.

A small world of real records is built first (a registered version with its ONNX artifact, a
succeeded run with its files, deployments, feedback, an alert, an incident, trust scores, a signed
dossier with its documents, two federated studies), and path parameters are drawn mostly from its
ids, so most requests reach real records rather than 404s. Each role signs in with a session (and
sends the CSRF token), as a browser or a script with a session would.

Every answer must be a documented status with a documented media type and body, never a 5xx, and
must not carry a traceback or a server path (the media root, the data roots, the var folder or the
source tree; a dataset's registered ``location`` is data its readers may see, so data roots are
looked for in error answers only). Examples are generated with a fixed seed, so a run is repeatable.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from compliance.alerts import alert_handle
from compliance.document_render import PDF_KINDS
from compliance.documents import Rendered, document_build, document_kinds, document_store, render_source
from compliance.dossiers import dossier_open
from compliance.incidents import incident_escalate
from compliance.models import Alert
from compliance.trust.services import policy_active, trust_assess, trust_exception_grant
from core.choices import Role
from core.models import AuditEvent
from radtrust_engine.federated import site_summary
from registry.services import user_create
from validation.federated import job_claim, report_submit, study_create
from validation.models import CaseFlag

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Examples per operation, role and mode: about 2,700 requests in all, about a minute on two cores.
EXAMPLES = {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 2}
ANONYMOUS_EXAMPLES = 1  # every answer is a refusal; one of each mode shows it is a documented one
CSRF = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"  # a CSRF secret of the right length: the cookie and the header agree
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File \\?"/')  # a frame's file, also inside a JSON string


@pytest.fixture
def api_schema():
    """The schema as the app generates it, called through the app's own WSGI handler.

    Django's test client keeps the test's database connection open across requests by
    disconnecting ``close_old_connections``; a plain WSGI handler needs the same.
    """
    spec = OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
    schema = schemathesis.openapi.from_dict(json.loads(spec))
    schema.app = WSGIHandler()
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schema
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _site_payload(label: str, seed: int) -> dict:
    """What a site's agent sends: aggregates of 300 generated cases."""
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * y - 1)))
    attributes = {
        "sex": rng.choice(["F", "M"], n),
        "age_band": rng.choice(["18-39", "40-64", "65+"], n),
        "scanner_manufacturer": rng.choice(["GE", "Siemens"], n),
    }
    patients = np.array([f"p{i}" for i in rng.integers(0, 220, n)])
    summary = site_summary({label: scores}, {label: y}, patients, attributes, [("sex", "age_band")], min_patients=10, n_resamples=50)
    return summary.to_dict()


@pytest.fixture
def world(personas, institutions, evidenced, deployed, report, sign_dossier, run_setup) -> dict:
    """One or more real records behind every route: their path parameters by route prefix, and the site agent."""
    officer, engineer = personas["officer"], personas["engineer"]
    agent = user_create(username="agent-north", role=Role.SITE_AGENT, institution=institutions["north"])
    version, run = evidenced, evidenced.validation_runs.get()
    if not run.case_flags.exists():
        CaseFlag.objects.create(
            run=run, label="pneumothorax", row=3, image_path="img/3.npy", uncertainty=0.6, probability=0.5, tta_std=0.1, cutoff=0.5
        )
    feedback = report("disagree")
    alert = Alert.objects.create(
        version=deployed["version"], deployment=deployed["north"], kind="input_drift", severity="warning", subject="image_mean", message="drifted"
    )
    handled = Alert.objects.create(version=deployed["version"], kind="prevalence_shift", severity="info", subject="pneumothorax", message="moved")
    alert_handle(actor=officer, alert=handled, status="acknowledged", note="seen")
    incident = incident_escalate(
        actor=officer, feedback=feedback, title="Missed pneumothorax", description="d", incident_type="other", aware_on=timezone.localdate()
    )
    assessment = trust_assess(version=version, trigger="manual")
    exception = trust_exception_grant(actor=officer, version=version, principle="usability", justification="Usability study next quarter.")
    signed = sign_dossier(version)
    documents = [_document(officer, signed, kind) for kind in document_kinds(signed.snapshot)]
    open_dossier = dossier_open(actor=officer, version=deployed["version"])
    spec = {"intersections": [["sex", "age_band"]], "n_resamples": 50}
    deadline = timezone.now() + timedelta(days=7)
    sites = [institutions["north"], institutions["south"]]
    reported = study_create(actor=engineer, version=version, name="Reported", spec=spec, deadline=deadline, institutions=sites)
    job = job_claim(actor=agent, job=reported.jobs.get(institution=institutions["north"]))
    report_submit(actor=agent, job=job, payload=_site_payload("pneumothorax", 1), approved_by="DPO north", approved_at=timezone.now())
    claimed = study_create(actor=engineer, version=version, name="Claimed", spec=spec, deadline=deadline, institutions=sites)
    held = job_claim(actor=agent, job=claimed.jobs.get(institution=institutions["north"]))
    versions = [version, deployed["version"]]
    ids = {
        "institutions": [i.pk for i in institutions.values()],
        "foundation-models": [v.foundation_model_id for v in versions],
        "model-versions": [v.pk for v in versions],
        "datasets": [run_setup["dataset"].pk],
        "provenance": list(version.provenance.values_list("pk", flat=True)),
        "deployments": [deployed["north"].pk, deployed["south"].pk],
        "monitoring": [deployed["north"].pk, deployed["south"].pk],
        "validation-runs": [run.pk],
        "run-files": list(run.files.values_list("pk", flat=True)[:4]),
        "case-flags": list(run.case_flags.values_list("pk", flat=True)[:3]),
        "alerts": [alert.pk, handled.pk],
        "feedback": [feedback.pk],
        "incidents": [incident.pk],
        "trust-assessments": [assessment.pk],
        "scoring-policies": [policy_active().pk],
        "trust-exceptions": [exception.pk],
        "dossiers": [signed.pk, open_dossier.pk],
        "documents": [d.pk for d in documents],
        "federated-studies": [reported.pk, claimed.pk],
        "federated/jobs": list(reported.jobs.values_list("pk", flat=True)) + [held.pk],
    }
    paths = {f"/api/{route}/": [{"id": pk} for pk in pks] for route, pks in ids.items()}
    paths["/api/audit-events/"] = [{"seq": seq} for seq in AuditEvent.objects.order_by("seq").values_list("seq", flat=True)[:3]]
    paths["/api/federated/jobs/"] += [{"id": held.pk, "name": f["name"]} for f in version.artifact_files]
    paths["/api/federated-studies/"] += [{"id": reported.pk, "name": "study-forest-auroc-pneumothorax"}]
    return {"paths": paths, "agent": agent}


def _document(actor, dossier, kind: str):
    """A document of the signed revision, stored by the service; a stand-in for each PDF (WeasyPrint
    takes seconds a page, and rendering is tested in tests/compliance/test_documents.py)."""
    stand_in = Rendered(kind, b"%PDF-1.7 stand-in", "pdf", pages=1) if kind in PDF_KINDS else document_build(kind, render_source(dossier))
    return document_store(actor=actor, dossier=dossier, rendered=stand_in)


def _session(user) -> dict[str, str]:
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value, settings.CSRF_COOKIE_NAME: CSRF}


def _server_paths() -> tuple[list[str], list[str]]:
    """Paths no answer may show, and those (the data roots) no error answer may show."""
    always = [str(settings.MEDIA_ROOT), str(settings.VAR_DIR), str(Path(settings.BASE_DIR) / "core"), sys.prefix]
    return always, list(settings.RADTRUST_DATA_ROOTS)


def _text(response) -> str:
    return response.content.decode("utf-8", "replace")


def _leaks(response, always: list[str], in_errors: list[str]) -> str | None:
    """What the answer shows that it should not. Files served as they were stored (a model's ONNX
    bytes, a PDF) are the client's own data and are not searched: an exported model may name
    the paths of the machine that exported it."""
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith(("application/json", "text/", "image/svg+xml")):
        return None
    text = _text(response)
    if TRACEBACK.search(text):
        return "a traceback"
    for path in always + (in_errors if response.status_code >= 400 else []):
        if path in text:
            return f"the server path {path}"
    return None


def _cases(operation, mode: GenerationMode, *, choices: list[dict], **fixed):
    """Cases of ``operation``: mostly with a real record's path parameters, sometimes generated ones."""
    if "{" not in operation.path or not choices:
        return operation.as_strategy(generation_mode=mode, **fixed)
    return st.sampled_from([*choices, None]).flatmap(lambda params: operation.as_strategy(generation_mode=mode, path_parameters=params, **fixed))


def _fuzz(operation, mode: GenerationMode, *, role: str, examples: int, cases, record) -> None:
    """Send ``examples`` generated cases of ``operation``; ``record(role, operation, response, problem)`` hears of each answer."""
    always, in_errors = _server_paths()

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def probe(case):
        response = case.call()
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, schemathesis.errors.FailureGroup) as failure:
            record(role, operation, response, f"{mode.value}: {failure}")
        if leak := _leaks(response, always, in_errors):
            record(role, operation, response, f"{mode.value}: {leak} in {_text(response)[:300]!r}")
        record(role, operation, response, None)

    probe()


def test_every_role_gets_documented_answers_and_no_server_error(api_schema, world, personas):
    roles = {
        "engineer": personas["engineer"],
        "officer": personas["officer"],
        "clinician": personas["clinician_north"],
        "auditor": personas["auditor"],
        "site agent": world["agent"],
        "anonymous": None,
    }
    operations = [result.ok() for result in api_schema.get_all_operations()]
    requests, reached, findings = Counter(), Counter(), {}

    def record(role: str, operation, response, problem: str | None) -> None:
        if problem is None:
            requests[role] += 1
            reached[role] += "{" in operation.path and response.status_code != 404
        else:
            findings.setdefault((operation.label, response.status_code, problem[:80]), f"{role}, {problem}")

    for role, user in roles.items():
        fixed = {"headers": {"X-CSRFToken": CSRF}, "cookies": _session(user) if user else {}}
        for operation in operations:
            choices = world["paths"].get(operation.path.split("{")[0], [])
            for mode, examples in EXAMPLES.items():
                cases = _cases(operation, mode, choices=choices, **fixed)
                _fuzz(operation, mode, role=role, examples=examples if user else ANONYMOUS_EXAMPLES, cases=cases, record=record)
    print("requests per role:", dict(requests), "answers from a record's routes other than 404:", dict(reached))
    assert not findings, "\n\n".join(f"{label} {status}: {text}" for (label, status, _), text in sorted(findings.items(), key=str))
    assert min(requests.values()) >= 2 * len(operations)  # every operation, in both modes, as every role
    assert reached["officer"] >= sum("{" in op.path for op in operations)  # the seeded ids reach records, one a route or more
