"""The role x endpoint matrix, generated from the URL conf: a new endpoint without a rule here fails."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import URLPattern, URLResolver, get_resolver

from registry.choices import DeploymentStatus, VersionStatus
from registry.models import User
from tests.factories import DatasetFactory, DeploymentFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory

ROLES = {"ml_engineer": "engineer", "compliance_officer": "officer", "clinician": "clinician_north", "auditor": "auditor", "worker": "worker"}
ALL = frozenset(ROLES)
ML, CO, CL, AU, WK = "ml_engineer", "compliance_officer", "clinician", "auditor", "worker"

# (route basename, action) -> roles allowed. Everyone else must get 403.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("institution", "list"): ALL,
    ("institution", "retrieve"): ALL,
    ("institution", "create"): frozenset({CO}),
    ("institution", "update"): frozenset({CO}),
    ("institution", "partial_update"): frozenset({CO}),
    ("foundation-model", "list"): ALL,
    ("foundation-model", "retrieve"): ALL,
    ("foundation-model", "create"): frozenset({ML}),
    ("foundation-model", "update"): frozenset({ML}),
    ("foundation-model", "partial_update"): frozenset({ML}),
    ("model-version", "list"): ALL,
    ("model-version", "retrieve"): ALL,
    ("model-version", "lineage"): ALL,
    ("model-version", "change_log"): frozenset({ML, CO, AU}),  # it quotes dossier text and run results: the dossier's readers
    ("model-version", "create"): frozenset({ML}),
    ("model-version", "update"): frozenset({ML}),  # PUT is not offered (405): only release notes change, by PATCH
    ("model-version", "partial_update"): frozenset({ML}),
    ("model-version", "transition"): frozenset({ML, CO}),
    ("dataset", "list"): frozenset({ML, CO, AU, WK}),
    ("dataset", "retrieve"): frozenset({ML, CO, AU, WK}),
    ("dataset", "create"): frozenset({ML, CO}),
    ("dataset", "update"): frozenset({ML, CO}),
    ("dataset", "partial_update"): frozenset({ML, CO}),
    ("provenance", "list"): frozenset({ML, CO, AU, WK}),
    ("provenance", "retrieve"): frozenset({ML, CO, AU, WK}),
    ("provenance", "create"): frozenset({ML}),
    ("provenance", "destroy"): frozenset({ML}),
    ("deployment", "list"): ALL,
    ("deployment", "retrieve"): ALL,
    ("deployment", "create"): frozenset({CO}),
    ("deployment", "update"): frozenset({CO}),
    ("deployment", "partial_update"): frozenset({CO}),
    ("audit-event", "list"): frozenset({CO, AU}),
    ("audit-event", "retrieve"): frozenset({CO, AU}),
    ("validation-run", "list"): frozenset({ML, CO, AU, WK}),
    ("validation-run", "retrieve"): frozenset({ML, CO, AU, WK}),
    ("validation-run", "create"): frozenset({ML}),
    ("validation-run", "cancel"): frozenset({ML}),
    ("validation-run", "set_baseline"): frozenset({ML}),
    ("run-file", "list"): frozenset({ML, CO, AU, WK}),
    ("run-file", "retrieve"): frozenset({ML, CO, AU, WK}),
    ("run-file", "content"): frozenset({ML, CO, AU, WK}),
    ("case-flag", "list"): frozenset({ML, CO, AU, WK}),
    ("case-flag", "retrieve"): frozenset({ML, CO, AU, WK}),
    ("alert", "list"): ALL,
    ("alert", "retrieve"): ALL,
    ("alert", "acknowledge"): frozenset({CO}),
    ("alert", "resolve"): frozenset({CO}),
    ("alert", "revalidate"): frozenset({CO, ML}),
    ("feedback", "list"): frozenset({ML, CO, CL, AU}),
    ("feedback", "retrieve"): frozenset({ML, CO, CL, AU}),
    ("feedback", "create"): frozenset({CL}),
    ("feedback", "update"): frozenset({CL}),
    ("feedback", "partial_update"): frozenset({CL}),
    ("monitoring", "retrieve"): frozenset({ML, CO, AU}),
    ("incident", "list"): frozenset({ML, CO, AU}),
    ("incident", "retrieve"): frozenset({ML, CO, AU}),
    ("incident", "export"): frozenset({ML, CO, AU}),
    ("incident", "report_pdf"): frozenset({ML, CO, AU}),
    ("incident", "create"): frozenset({CO}),
    ("incident", "transition"): frozenset({CO}),
    ("incident", "corrective_actions"): frozenset({CO}),
    ("trust-assessment", "list"): ALL,
    ("trust-assessment", "retrieve"): ALL,
    ("trust-assessment", "diff"): ALL,
    ("trust-assessment", "create"): frozenset({ML, CO}),
    ("scoring-policy", "list"): frozenset({ML, CO, AU}),
    ("scoring-policy", "retrieve"): frozenset({ML, CO, AU}),
    ("scoring-policy", "create"): frozenset({CO}),
    ("trust-exception", "list"): frozenset({ML, CO, AU}),
    ("trust-exception", "retrieve"): frozenset({ML, CO, AU}),
    ("trust-exception", "create"): frozenset({CO}),
    ("dossier", "list"): frozenset({ML, CO, AU}),
    ("dossier", "retrieve"): frozenset({ML, CO, AU}),
    ("dossier", "completeness"): frozenset({ML, CO, AU}),
    ("dossier", "create"): frozenset({CO}),
    ("dossier", "save_fields"): frozenset({CO}),
    ("dossier", "submit"): frozenset({CO}),
    ("dossier", "request_changes"): frozenset({CO}),
    ("dossier", "sign"): frozenset({CO}),
    ("dossier", "render_documents"): frozenset({CO}),
    ("document", "list"): frozenset({ML, CO, AU}),
    ("document", "retrieve"): frozenset({ML, CO, AU}),
    ("document", "download"): frozenset({ML, CO, AU}),
    ("federated-study", "list"): frozenset({ML, CO, AU}),
    ("federated-study", "retrieve"): frozenset({ML, CO, AU}),
    ("federated-study", "pooled"): frozenset({ML, CO, AU}),
    ("federated-study", "charts"): frozenset({ML, CO, AU}),
    ("federated-study", "create"): frozenset({ML, CO}),
    ("federated-study", "close"): frozenset({ML, CO}),
    ("federated-job", "list"): frozenset({WK}),
    ("federated-job", "retrieve"): frozenset({WK}),
    ("federated-job", "claim"): frozenset({WK}),
    ("federated-job", "artifact"): frozenset({WK}),
    ("federated-job", "report"): frozenset({WK}),
    ("federated-job", "fail"): frozenset({WK}),
}


def _viewset_routes():
    """(basename, action, method, regex) for every DRF viewset route in the URL conf."""
    found = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and hasattr(p.callback, "actions"):
                basename = p.callback.initkwargs.get("basename")
                for method, action in p.callback.actions.items():
                    found.append((basename, action, method, prefix + str(p.pattern)))

    walk(get_resolver().url_patterns, "")
    return sorted(set(found))


ROUTES = _viewset_routes()


def test_every_endpoint_has_a_rule():
    missing = sorted({(b, a) for b, a, _, _ in ROUTES} - set(EXPECTED))
    assert not missing, f"Endpoints without an access rule in EXPECTED: {missing}"
    assert {(b, a) for b, a, _, _ in ROUTES} == set(EXPECTED), "EXPECTED names endpoints that no longer exist"


@pytest.fixture
def world(institutions, personas):
    """One of each record, owned by the vendor, with the version deployed at the north hospital."""
    model = FoundationModelFactory(provider=institutions["vendor"])
    version = ModelVersionFactory(foundation_model=model, status=VersionStatus.DEPLOYED)
    DeploymentFactory(version=version, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
    dataset = DatasetFactory(institution=institutions["vendor"])
    provenance = ProvenanceFactory(version=ModelVersionFactory(foundation_model=model), dataset=dataset)
    from compliance.models import Alert, TrustAssessment
    from core.models import AuditEvent
    from validation.models import CaseFlag, RunFile, ValidationRun

    run = ValidationRun.objects.create(
        version=version, dataset=dataset, requested_by=User.objects.create(username="requester", institution=institutions["vendor"])
    )
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    stored = default_storage.save(f"runs/{run.pk}/attempt-1/charts/x.svg", ContentFile(svg))
    run_file = RunFile.objects.create(
        run=run,
        kind="chart",
        name="charts/x.svg",
        storage_name=stored,
        sha256=hashlib.sha256(svg).hexdigest(),
        size=len(svg),
        content_type="image/svg+xml",
    )
    flag = CaseFlag.objects.create(run=run, label="nodule", row=3, image_path="a.dcm", uncertainty=0.6, probability=0.5, tta_std=0.1, cutoff=0.5)
    alert = Alert.objects.create(
        version=version,
        deployment=version.deployments.get(),
        run=run,
        kind="input_drift",
        severity="warning",
        subject="image_mean",
        message="drifted",
    )
    from django.utils import timezone

    from compliance.feedback import feedback_submit
    from compliance.incidents import incident_escalate

    feedback, _ = feedback_submit(
        actor=User.objects.get(username="clinician_north"),
        deployment=version.deployments.get(),
        case_reference="CASE-1a2b",
        model_output="positive",
        agreement="disagree",
        error_type="false_positive",
    )
    incident = incident_escalate(
        actor=User.objects.get(username="officer"),
        feedback=feedback,
        title="t",
        description="d",
        incident_type="other",
        aware_on=timezone.localdate(),
    )
    from compliance.trust.services import trust_assess, trust_exception_grant

    first = trust_assess(version=version, trigger="manual")
    assessment = TrustAssessment.objects.create(  # a second, identical one, so that diff has something to compare (cheaper than rescoring)
        version=version,
        policy=first.policy,
        trigger="manual",
        principles=first.principles,
        evidence_digest=first.evidence_digest,
    )
    exception = trust_exception_grant(
        actor=User.objects.get(username="officer"),
        version=version,
        principle="usability",
        justification="Usability study runs in the first quarter of use.",
    )
    from compliance.dossiers import dossier_open

    dossier = dossier_open(actor=User.objects.get(username="officer"), version=version)
    from compliance.models import Document

    pdf = b"%PDF-1.7 matrix"
    document = Document.objects.create(  # rows only: rendering is tested in tests/compliance/test_documents.py
        dossier=dossier,
        kind="technical_documentation",
        sha256=hashlib.sha256(pdf).hexdigest(),
        size=len(pdf),
        content_type="application/pdf",
        storage_name=default_storage.save("documents/matrix.pdf", ContentFile(pdf)),
        snapshot_sha256="0" * 64,
        retain_until=timezone.localdate(),
    )
    from datetime import timedelta

    from radtrust_engine.artifacts import artifact_dir
    from registry.services import artifact_root
    from validation.models import FederatedJob, FederatedStudy, StudyPooling

    study = FederatedStudy.objects.create(
        version=version, name="matrix", spec={}, deadline=timezone.now() + timedelta(days=1), created_by=User.objects.get(username="engineer")
    )
    job = FederatedJob.objects.create(study=study, institution=institutions["vendor"], status="claimed")  # the worker persona's site, holding its job
    folder = artifact_dir(artifact_root(), version.artifact_sha256)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    StudyPooling.objects.create(study=study, reports_digest="0" * 64, result={}, charts={"study-forest-auroc-x": svg.decode()})
    return {
        "institution": institutions["north"].pk,
        "foundation-model": model.pk,
        "model-version": version.pk,
        "dataset": dataset.pk,
        "provenance": provenance.pk,
        "deployment": version.deployments.get().pk,
        "audit-event": AuditEvent.objects.order_by("seq").first().seq,
        "validation-run": run.pk,
        "run-file": run_file.pk,
        "case-flag": flag.pk,
        "alert": alert.pk,
        "feedback": feedback.pk,
        "monitoring": version.deployments.get().pk,
        "incident": incident.pk,
        "trust-assessment": assessment.pk,
        "scoring-policy": assessment.policy_id,
        "trust-exception": exception.pk,
        "dossier": dossier.pk,
        "document": document.pk,
        "federated-study": {"pk": study.pk, "name": "study-forest-auroc-x"},
        "federated-job": {"pk": job.pk, "name": "model.onnx"},
    }


def _url(regex: str, ids) -> str:
    """The route with its groups filled: ``ids`` is a pk, or a dict of group values with the pk under "pk"."""
    ids = ids if isinstance(ids, dict) else {"pk": ids}
    path = regex.replace("^", "").replace("$", "").replace("\\.", ".")
    path = re.sub(r"\(\?P<([a-z_]+)>[^)]*\)", lambda m: str(ids.get(m.group(1), ids["pk"])), path)
    return "/" + path


@pytest.mark.django_db
@pytest.mark.parametrize("basename,action,method,regex", [r for r in ROUTES if "format" not in r[3]], ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_matrix(role, basename, action, method, regex, world, personas, api_client):
    client = api_client(personas[ROLES[role]])
    url = _url(regex, world[basename])
    response = getattr(client, method)(url, {}, format="json") if method != "get" else client.get(url)
    if role in EXPECTED[(basename, action)]:
        assert response.status_code not in (401, 403), (
            f"{role} should be allowed {method.upper()} {url}: {response.status_code} {response.content[:200]}"
        )
        assert response.status_code < 500
        if method == "get":
            assert response.status_code == 200, f"{role} GET {url}: {response.status_code}"
    else:
        assert response.status_code == 403, f"{role} should be refused {method.upper()} {url}: {response.status_code}"


@pytest.mark.django_db
@pytest.mark.parametrize("basename,action,method,regex", [r for r in ROUTES if "format" not in r[3]], ids=lambda v: str(v)[:40])
def test_anonymous_is_refused_everywhere(basename, action, method, regex, world, api_client):
    response = getattr(api_client(), method)(_url(regex, world[basename]), {}, format="json")
    assert response.status_code in (401, 403)


@pytest.mark.django_db
def test_user_without_role_is_refused(world, institutions, api_client):
    nobody = User.objects.create(username="norole", institution=institutions["north"])
    assert api_client(nobody).get("/api/institutions/").status_code == 403
