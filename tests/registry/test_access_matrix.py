"""Who may do what, generated from the URL conf: every API route and every page, for every role
at the provider, at the hospital that owns the data (North) and at another hospital (South), for
the central worker, for each hospital's site agent and for a superuser; and the admin's
changelists. A route without a rule here fails, and so does a rule for a route that is gone.

The records are the provider's (RadVendor) version deployed at North, validated on a dataset
North stewards (its run's saliency overlay and case flag are North's per-case outputs, not
shared), with a federated job at North. Each request runs in a savepoint that is rolled back,
so one account's writes never change what the next request finds.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from compliance.dossiers import dossier_open
from compliance.feedback import feedback_submit
from compliance.incidents import incident_escalate
from compliance.models import Alert, Document, QmsProcedure, TrustAssessment, VersionApproval
from compliance.qms import qms_procedure_save, qms_standards_seed
from compliance.risk_file import risk_file_open
from compliance.trust.services import trust_assess, trust_exception_grant
from core.access import RolePermission, scope
from core.choices import Role
from core.models import AuditEvent
from core.tokens import api_token_issue
from radtrust_engine.artifacts import artifact_dir
from registry.admin import ScopedAdmin
from registry.choices import DeploymentStatus, VersionStatus
from registry.models import DicomwebSource, User
from registry.services import artifact_root, user_create
from tests.factories import DatasetFactory, DataUseGrantFactory, DeploymentFactory, FoundationModelFactory, ModelVersionFactory, ProvenanceFactory
from validation.federated import study_spec_clean
from validation.models import CaseFlag, FederatedJob, FederatedStudy, RunFile, StudyPooling, ValidationRun

ML, CO, CL, AU, WK, SA = Role.ML_ENGINEER, Role.COMPLIANCE_OFFICER, Role.CLINICIAN, Role.AUDITOR, Role.WORKER, Role.SITE_AGENT
ALL = frozenset(Role)
PEOPLE = frozenset({ML, CO, CL, AU})
SUPERUSER = None

# account -> (role, institution); the superuser has neither.
ACCOUNTS: dict[str, tuple[str | None, str | None]] = {
    "engineer": (ML, "vendor"),
    "engineer_north": (ML, "north"),
    "engineer_south": (ML, "south"),
    "officer": (CO, "vendor"),
    "officer_north": (CO, "north"),
    "officer_south": (CO, "south"),
    "clinician_north": (CL, "north"),
    "clinician_south": (CL, "south"),
    "auditor": (AU, "vendor"),
    "worker": (WK, "vendor"),
    "agent_north": (SA, "north"),
    "agent_south": (SA, "south"),
    "admin": (SUPERUSER, None),
}
SERVICE_ACCOUNTS = ("worker", "agent_north", "agent_south")

# (route basename, action) -> roles allowed; every other role gets 403 (a superuser is allowed everywhere).
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("institution", "list"): PEOPLE,
    ("institution", "retrieve"): PEOPLE,
    ("institution", "create"): frozenset({CO}),
    ("institution", "update"): frozenset({CO}),
    ("institution", "partial_update"): frozenset({CO}),
    ("foundation-model", "list"): PEOPLE,
    ("foundation-model", "retrieve"): PEOPLE,
    ("foundation-model", "create"): frozenset({ML}),
    ("foundation-model", "update"): frozenset({ML}),
    ("foundation-model", "partial_update"): frozenset({ML}),
    ("model-version", "list"): PEOPLE,
    ("model-version", "retrieve"): PEOPLE,
    ("model-version", "lineage"): PEOPLE,
    ("model-version", "adaptations"): PEOPLE,
    ("model-version", "adaptation_record"): frozenset({ML}),  # the base's provider's engineers (registry.adaptations)
    ("model-version", "change_log"): frozenset({ML, CO, AU}),  # it quotes dossier text and run results: the dossier's readers
    ("model-version", "conformity_assessments"): frozenset({CO}),  # the provider's officers (compliance.change_control)
    ("model-version", "release_evidence"): frozenset({ML, CO, AU}),  # the dossier's readers
    ("model-version", "release_evidence_pin"): frozenset({CO}),  # the provider's officers (compliance.release_evidence)
    ("model-version", "market"): frozenset({ML, CO, AU}),  # the dossier's readers
    ("model-version", "market_place"): frozenset({CO}),  # a second officer of the provider (compliance.market)
    ("model-version", "market_withdrawal"): frozenset({CO}),  # the provider's officers (compliance.market)
    ("model-version", "clinical_investigations"): frozenset({CO}),  # the provider's officers (compliance.market)
    ("model-version", "create"): frozenset({ML}),
    ("model-version", "update"): frozenset({ML}),  # PUT is not offered (405): only release notes change, by PATCH
    ("model-version", "partial_update"): frozenset({ML}),
    ("model-version", "transition"): frozenset({ML, CO}),
    ("dataset", "list"): frozenset({ML, CO, AU}),
    ("dataset", "retrieve"): frozenset({ML, CO, AU}),
    ("dataset", "create"): frozenset({ML, CO}),
    ("dataset", "update"): frozenset({ML, CO}),
    ("dataset", "partial_update"): frozenset({ML, CO}),
    ("dataset", "dicomweb"): frozenset({ML, CO, AU}),
    ("dataset", "dicomweb_set"): frozenset({ML, CO}),
    ("provenance", "list"): frozenset({ML, CO, AU}),
    ("provenance", "retrieve"): frozenset({ML, CO, AU}),
    ("provenance", "create"): frozenset({ML, CO}),  # the version's provider's engineers and officers (may_write_provenance)
    ("provenance", "destroy"): frozenset({ML, CO}),
    ("data-use-grant", "list"): frozenset({ML, CO, AU}),
    ("data-use-grant", "retrieve"): frozenset({ML, CO, AU}),
    ("data-use-grant", "create"): frozenset({CO}),  # the dataset's steward's officers (may_grant_data_use)
    ("data-use-grant", "revoke"): frozenset({CO}),
    ("deployment", "list"): PEOPLE,
    ("deployment", "retrieve"): PEOPLE,
    ("deployment", "create"): frozenset({CO}),
    ("deployment", "update"): frozenset({CO}),
    ("deployment", "partial_update"): frozenset({CO}),
    ("audit-event", "list"): frozenset({CO, AU}),
    ("audit-event", "retrieve"): frozenset({CO, AU}),
    ("validation-run", "list"): frozenset({ML, CO, AU}),
    ("validation-run", "retrieve"): frozenset({ML, CO, AU}),
    ("validation-run", "create"): frozenset({ML}),
    ("validation-run", "cancel"): frozenset({ML}),
    ("validation-run", "set_baseline"): frozenset({ML}),
    ("validation-run", "from_predictions"): frozenset({ML}),
    ("validation-run", "from_reports"): frozenset({ML}),
    ("validation-run", "forgetting"): frozenset({ML}),
    ("run-file", "list"): frozenset({ML, CO, AU}),
    ("run-file", "retrieve"): frozenset({ML, CO, AU}),
    ("run-file", "content"): frozenset({ML, CO, AU}),
    ("case-flag", "list"): frozenset({ML, CO, AU}),
    ("case-flag", "retrieve"): frozenset({ML, CO, AU}),
    ("alert", "list"): PEOPLE,
    ("alert", "retrieve"): PEOPLE,
    ("alert", "acknowledge"): frozenset({CO}),
    ("alert", "resolve"): frozenset({CO}),
    ("alert", "revalidate"): frozenset({CO, ML}),
    ("feedback", "list"): PEOPLE,
    ("feedback", "retrieve"): PEOPLE,
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
    ("incident", "intake"): frozenset({CO}),  # vigilance (compliance.vigilance): officers write, the incident's readers read
    ("incident", "triage"): frozenset({CO}),
    ("incident", "awareness"): frozenset({CO}),
    ("incident", "reports"): frozenset({CO}),
    ("incident", "decisions"): frozenset({CO}),
    ("incident", "confirm_decision"): frozenset({CO}),
    ("incident", "field_safety_actions"): frozenset({CO}),
    ("incident", "mir"): frozenset({ML, CO, AU}),
    ("incident", "mir_pdf"): frozenset({ML, CO, AU}),
    ("trust-assessment", "list"): PEOPLE,
    ("trust-assessment", "retrieve"): PEOPLE,
    ("trust-assessment", "diff"): PEOPLE,
    ("trust-assessment", "create"): frozenset({ML, CO}),
    ("scoring-policy", "list"): frozenset({ML, CO, AU}),
    ("scoring-policy", "retrieve"): frozenset({ML, CO, AU}),
    ("scoring-policy", "create"): frozenset({CO}),
    ("scoring-policy", "activate"): frozenset({CO}),  # a second officer of the proposer's institution (compliance.trust.services)
    ("trust-exception", "list"): frozenset({ML, CO, AU}),
    ("trust-exception", "retrieve"): frozenset({ML, CO, AU}),
    ("trust-exception", "create"): frozenset({CO}),
    ("trust-exception", "confirm"): frozenset({CO}),  # a second officer of the provider
    ("trust-exception", "decline"): frozenset({CO}),
    ("version-approval", "list"): frozenset({ML, CO, AU}),
    ("version-approval", "retrieve"): frozenset({ML, CO, AU}),
    ("version-approval", "create"): frozenset({CO}),  # the provider's officers (compliance.approvals)
    ("version-approval", "confirm"): frozenset({CO}),  # a second officer of the provider
    ("version-approval", "decline"): frozenset({CO}),
    # The risk file (compliance.risk_file): the dossier's readers read it, the provider's officers keep it.
    ("risk-file", "retrieve"): frozenset({ML, CO, AU}),
    **{("risk-file", a): frozenset({CO}) for a in ("open", "conclusion", "hazards", "estimates", "controls", "verifications", "signals")},
    **{("risk-file", a): frozenset({CO}) for a in ("acceptances", "confirm_acceptance", "approve")},
    # The QMS register (compliance.qms): officers keep their institution's, auditors read.
    **{(r, a): frozenset({CO, AU}) for r in ("qms-standard", "qms-procedure") for a in ("list", "retrieve")},
    **{(r, a): frozenset({CO}) for r in ("qms-standard", "qms-procedure") for a in ("create", "update", "partial_update")},
    ("qms-standard", "seed"): frozenset({CO}),
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
    ("federated-study", "list"): frozenset({ML, CO, AU, SA}),  # a site agent: the studies its site takes part in
    ("federated-study", "retrieve"): frozenset({ML, CO, AU, SA}),
    ("federated-study", "pooled"): frozenset({ML, CO, AU}),  # other sites' results: the provider's
    ("federated-study", "charts"): frozenset({ML, CO, AU}),
    ("federated-study", "create"): frozenset({ML, CO}),
    ("federated-study", "close"): frozenset({ML, CO}),
    ("federated-job", "list"): frozenset({SA}),
    ("federated-job", "retrieve"): frozenset({SA}),
    ("federated-job", "claim"): frozenset({SA}),
    ("federated-job", "artifact"): frozenset({SA}),
    ("federated-job", "report"): frozenset({SA}),
    ("federated-job", "fail"): frozenset({SA}),
    ("usage-batch", "create"): frozenset({Role.DEPLOYMENT_LOGGER}),  # a deployment's logger, for that deployment only (compliance.usage_logs)
    ("usage-log", "retrieve"): frozenset({ML, CO, AU}),
    ("usage-log", "export"): frozenset({ML, CO, AU}),
    ("usage-log", "retention"): frozenset({CO}),
    ("api-token", "list"): ALL,  # one's own tokens (an officer's list: everyone's)
    ("api-token", "retrieve"): ALL,
    ("api-token", "create"): ALL,
    ("api-token", "revoke"): ALL,
}

# basename -> the accounts, among those whose role may use the route, for whom the world's record is
# out of scope: their detail is a 404 and their list leaves it out. The rest see it.
HIDDEN: dict[str, frozenset[str]] = {
    "institution": frozenset({"clinician_south"}),  # North's record: a clinician sees only their own institution
    "foundation-model": frozenset({"engineer_north", "engineer_south", "clinician_south"}),
    "model-version": frozenset({"engineer_north", "engineer_south", "clinician_south"}),
    "dataset": frozenset({"engineer_north", "engineer_south"}),  # the provider's own dataset
    "provenance": frozenset({"engineer_north", "engineer_south"}),
    "data-use-grant": frozenset({"engineer_south"}),  # North's grant to the provider: North's and the provider's engineers see it
    "deployment": frozenset({"engineer_south", "clinician_south"}),
    # The deployment's scope; of the officers, the deployer's (North) and the provider's only (case pseudonyms, notes).
    "usage-log": frozenset({"engineer_south", "officer_south"}),
    "validation-run": frozenset({"engineer_south"}),  # the provider's version on North's data: both see the run
    # North's per-case outputs, not shared: North's users only, not the provider's, not South's.
    "run-file": frozenset({"engineer", "engineer_south", "officer", "officer_south", "auditor"}),
    "case-flag": frozenset({"engineer", "engineer_south", "officer", "officer_south", "auditor"}),
    "alert": frozenset({"engineer_south", "clinician_south"}),
    "feedback": frozenset({"engineer_north", "engineer_south", "clinician_south"}),
    "monitoring": frozenset({"engineer_south"}),
    "incident": frozenset({"engineer_north", "engineer_south"}),
    "trust-assessment": frozenset({"engineer_north", "engineer_south", "clinician_south"}),
    "trust-exception": frozenset({"engineer_north", "engineer_south"}),
    "version-approval": frozenset({"engineer_north", "engineer_south"}),
    "risk-file": frozenset({"engineer_north", "engineer_south"}),  # the provider's version
    "dossier": frozenset({"engineer_north", "engineer_south"}),
    "document": frozenset({"engineer_north", "engineer_south"}),
    "federated-study": frozenset({"engineer_north", "engineer_south", "agent_south"}),
    "federated-job": frozenset({"agent_south"}),
    # The officer's token: its user and the officers (api_token.others).
    "api-token": frozenset(a for a, (role, _) in ACCOUNTS.items() if role not in {CO, SUPERUSER}),
}

# Allowed by role, refused by the service whatever the scope, and why.
SERVICE_REFUSALS: dict[tuple[str, str], frozenset[str]] = {
    ("data-use-grant", "revoke"): frozenset({"officer", "officer_south"}),  # only the steward's (North's) officers revoke
    ("provenance", "destroy"): frozenset({"officer_north", "officer_south"}),  # the provider's record: its own users only
    ("usage-batch", "create"): frozenset({"admin"}),  # only a deployment's logger account logs (compliance.usage_logs)
    ("federated-job", "artifact"): frozenset({"admin"}),  # only the job's own site agent fetches the model (validation.federated)
    # The world's exception and approval were proposed by "officer": the proposer never confirms, nor does another institution's officer.
    ("trust-exception", "confirm"): frozenset({"officer", "officer_north", "officer_south", "admin"}),
    ("version-approval", "confirm"): frozenset({"officer", "officer_north", "officer_south", "admin"}),
}

# page (namespace:name) -> (roles allowed, the world record it is about or None). Pages are for people:
# the service accounts have none but the home page, which sends them on to the admin's login.
PAGES: dict[str, tuple[frozenset[str], str | None]] = {
    "pages:home": (ALL, None),
    "pages:clinician-home": (frozenset({CL}), None),
    "pages:feedback-new": (frozenset({CL}), "deployment"),
    "pages:feedback-quick": (frozenset({CL}), None),
    "pages:feedback-list": (PEOPLE, None),
    "pages:feedback-edit": (frozenset({CL}), "feedback"),
    "pages:monitoring-list": (frozenset({ML, CO, AU}), None),
    "pages:monitoring-detail": (frozenset({ML, CO, AU}), "monitoring"),
    "pages:usage-log-list": (frozenset({ML, CO, AU}), None),
    "pages:alert-list": (PEOPLE, None),
    "pages:alert-handle": (frozenset({CO}), "alert"),
    "pages:incident-list": (frozenset({ML, CO, AU}), None),
    "pages:incident-new": (frozenset({CO}), "alert"),
    "pages:incident-detail": (frozenset({ML, CO, AU}), "incident"),
    "pages:incident-transition": (frozenset({CO}), "incident"),
    "pages:incident-action": (frozenset({CO}), "incident"),
    "pages:incident-pdf": (frozenset({ML, CO, AU}), "incident"),
    "pages:incident-intake": (frozenset({CO}), None),
    "pages:incident-triage": (frozenset({CO}), "incident"),
    "pages:incident-awareness": (frozenset({CO}), "incident"),
    "pages:incident-report-add": (frozenset({CO}), "incident"),
    "pages:incident-decision": (frozenset({CO}), "incident"),
    "pages:incident-decision-confirm": (frozenset({CO}), "incident"),
    "pages:incident-field-safety": (frozenset({CO}), "incident"),
    "pages:incident-mir-pdf": (frozenset({ML, CO, AU}), "incident"),
    "pages:dossier-list": (frozenset({ML, CO, AU}), None),
    "pages:dossier-start": (frozenset({CO}), "model-version"),
    "pages:dossier-detail": (frozenset({ML, CO, AU}), "dossier"),
    "pages:dossier-section": (frozenset({ML, CO, AU}), "dossier"),
    "pages:dossier-preview": (frozenset({ML, CO, AU}), "dossier"),
    "pages:dossier-save": (frozenset({CO}), "dossier"),
    "pages:dossier-review": (frozenset({ML, CO, AU}), "dossier"),
    "pages:dossier-request-changes": (frozenset({CO}), "dossier"),
    "pages:dossier-sign": (frozenset({CO}), "dossier"),
    "pages:release-evidence-pin": (frozenset({CO}), "dossier"),
    "pages:dossier-documents": (frozenset({ML, CO, AU}), "dossier"),
    "pages:dossier-documents-render": (frozenset({CO}), "dossier"),
    "pages:version-documents": (frozenset({ML, CO, AU}), "model-version"),
    "pages:document-download": (frozenset({ML, CO, AU}), "document"),
    "pages:change-log": (frozenset({ML, CO, AU}), "model-version"),
    "pages:version-market": (frozenset({ML, CO, AU}), "model-version"),
    "pages:version-trust": (PEOPLE, "model-version"),
    "pages:version-risk-file": (frozenset({ML, CO, AU}), "model-version"),
    "pages:qms-register": (frozenset({CO, AU}), None),
    "pages:trust-chart": (PEOPLE, "trust-assessment"),
    # A clinician reads the headline figures of a run of a version in use at their hospital (validation.pages).
    "runs:detail": (PEOPLE, "validation-run"),
    "runs:progress": (PEOPLE, "validation-run"),
    "runs:list": (frozenset({ML, CO, AU}), None),
    "runs:compare": (frozenset({ML, CO, AU}), None),  # without ?a=&b= a 400 that says what to give
    "federated:list": (frozenset({ML, CO, AU}), None),
    "federated:detail": (frozenset({ML, CO, AU}), "federated-study"),
    "registry:data-use-list": (frozenset({ML, CO, AU}), None),
    "registry:data-use-revoke": (frozenset({CO}), "data-use-grant"),
    "registry:version-lineage": (frozenset({ML, CO, AU}), "model-version"),
    "registry:dataset-detail": (frozenset({ML, CO, AU}), "dataset"),
    "registry:dataset-pacs": (frozenset({ML, CO}), "dataset"),
    "registry:adaptation-new": (frozenset({ML}), "model-version"),
    "audit-list": (frozenset({CO, AU}), None),
    "audit-export": (frozenset({CO, AU}), None),
    "audit-verify": (frozenset({CO, AU}), None),
    "account-two-factor": (frozenset({CO}), None),  # an officer enrols the authenticator they sign with
    "notifications": (ALL, None),  # one's own notifications: every account has a list
    "engineer:model-new": (frozenset({ML}), None),
    "engineer:dataset-new": (frozenset({ML, CO}), None),
    "engineer:provenance-add": (frozenset({ML, CO}), "model-version"),
    "pages:technical-file": (frozenset({ML, CO, AU}), "model-version"),
    "pages:dossier-autosave": (frozenset({CO}), "dossier"),
    "pages:alerts-csv": (PEOPLE, None),
    "pages:feedback-csv": (PEOPLE, None),
    "pages:incidents-csv": (frozenset({ML, CO, AU}), None),
    "engineer:version-upload": (frozenset({ML}), "foundation-model"),
    "engineer:version-manage": (frozenset({ML, CO, AU}), "model-version"),
    "engineer:version-move": (frozenset({ML, CO}), "model-version"),
    "engineer:run-start": (frozenset({ML}), "model-version"),
    "notifications-read": (ALL, None),
}
# Pages that take only a POST: a GET is a 405 before any record is looked up.
POST_ONLY = {"pages:incident-transition", "pages:incident-action", "pages:dossier-start", "pages:dossier-save"}
POST_ONLY |= {"pages:dossier-request-changes", "pages:dossier-documents-render", "pages:release-evidence-pin"}
POST_ONLY |= {"registry:data-use-revoke"}
POST_ONLY |= {"pages:incident-triage", "pages:incident-awareness", "pages:incident-report-add", "pages:incident-decision"}
POST_ONLY |= {"pages:incident-decision-confirm", "pages:incident-field-safety"}
POST_ONLY |= {"pages:alert-handle"}
POST_ONLY |= {"notifications-read", "engineer:version-move", "engineer:run-start", "engineer:provenance-add", "pages:dossier-autosave"}
# Pages that do not find their record for an account that may otherwise see it, and why.
PAGE_HIDDEN = {"pages:feedback-edit": frozenset({"admin"})}  # a report is edited only by the clinician who wrote it
PAGE_HIDDEN |= {name: frozenset({"clinician_south"}) for name in ("runs:detail", "runs:progress")}  # not in use at South
# Pages whose URL is not just the record's pk.
PAGE_KWARGS = {
    "pages:feedback-new": lambda world: {"deployment_id": world["deployment"]},
    "pages:incident-new": lambda world: {"source": "alert", "pk": world["alert"]},
    "pages:trust-chart": lambda world: {"pk": world["trust-chart"]},
    "pages:dossier-section": lambda world: {"pk": world["dossier"], "section": "annex_iv_2"},
    "audit-export": lambda world: {"fmt": "csv"},
}

# Routes open without a role, each for a reason; the admin is covered by the admin tests below.
OPEN = {
    "login": "the login page",
    "logout": "signing out",
    "password_change": "a logged-in user's own password (Django's auth views)",
    "password_change_done": "likewise",
    "password_reset": "Django's password reset by e-mail",
    "password_reset_done": "likewise",
    "password_reset_confirm": "likewise, with the e-mailed token",
    "password_reset_complete": "likewise",
    "api-token": "POST a user name and password for a token; DELETE signs out (core.token_api)",
    "schema": "the OpenAPI schema (core.access.ApiDocsPermission)",
    "api-docs": "Swagger UI (core.pages.api_docs_page)",
    "api-redoc": "ReDoc, likewise",
}

# The project's registered admins that are not a ScopedAdmin, and why they need no institution scope.
# (The third-party admins, such as groups, Celery schedules and login attempts, hold no role permission.)
PROJECT_APPS = {"core", "registry", "validation", "compliance"}
UNSCOPED_ADMINS = {
    "core.auditevent": "the append-only trail, read whole by officers and auditors (their role's permission)",
    "registry.user": "accounts: only superusers hold the permissions",
    "compliance.changeplan": "change plans of every provider, read by the dossier's readers (no patient-derived data)",
    "compliance.conformityassessment": "conformity assessments of every provider, read by the dossier's readers (no patient-derived data)",
}


def _routes():
    """(basename, action, method, regex) of every DRF viewset route, and the names of every other route outside the admin."""
    viewsets, others = [], []

    def walk(patterns, prefix, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.app_name != "admin":
                    walk(p.url_patterns, prefix + str(p.pattern), p.namespace or namespace)
            elif hasattr(p.callback, "actions"):
                if "format" not in str(p.pattern):
                    viewsets.extend([(p.callback.initkwargs.get("basename"), a, m, prefix + str(p.pattern)) for m, a in p.callback.actions.items()])
            else:
                others.append(f"{namespace}:{p.name}" if namespace else p.name)

    walk(get_resolver().url_patterns, "", "")
    return sorted(set(viewsets)), sorted(set(others))


API_ROUTES, OTHER_ROUTES = _routes()


def test_every_route_has_a_rule():
    routes = {(b, a) for b, a, _, _ in API_ROUTES}
    assert not routes - set(EXPECTED), f"API routes without an access rule in EXPECTED: {sorted(routes - set(EXPECTED))}"
    assert not set(EXPECTED) - routes, f"EXPECTED names routes that no longer exist: {sorted(set(EXPECTED) - routes)}"
    assert set(HIDDEN) <= {b for b, _ in EXPECTED}
    unruled = set(OTHER_ROUTES) - set(PAGES) - set(OPEN)
    assert not unruled, f"Pages without an access rule in PAGES (or a reason in OPEN): {sorted(unruled)}"
    assert not (set(PAGES) | set(OPEN)) - set(OTHER_ROUTES), "PAGES or OPEN name routes that no longer exist"


@pytest.fixture
def accounts(personas, institutions):
    """The personas, plus the engineer and officer of each hospital, each hospital's site agent and a superuser."""
    made = {name: personas[name] for name in ACCOUNTS if name in personas}
    for name, (role, site) in ACCOUNTS.items():
        if name not in made:
            made[name] = (
                User.objects.create_superuser(name, "", None)
                if role is SUPERUSER
                else user_create(username=name, role=role, institution=institutions[site])
            )
    return made


@pytest.fixture
def world(institutions, accounts):
    """One record behind every route (see the module's docstring); route basename -> its URL's values."""
    vendor, north = institutions["vendor"], institutions["north"]
    officer, engineer, clinician = accounts["officer"], accounts["engineer"], accounts["clinician_north"]
    model = FoundationModelFactory(provider=vendor)
    version = ModelVersionFactory(foundation_model=model, status=VersionStatus.DEPLOYED)
    deployment = DeploymentFactory(version=version, institution=north, status=DeploymentStatus.ACTIVE)
    dataset = DatasetFactory(institution=vendor)
    DicomwebSource.objects.create(
        dataset=dataset,
        base_url="https://pacs.example.org/dicom-web",
        labels={"key": "StudyInstanceUID", "label_names": ["x"], "rows": {}},
        labels_sha256="0" * 64,
    )
    provenance = ProvenanceFactory(version=ModelVersionFactory(foundation_model=model), dataset=dataset)

    north_data = DatasetFactory(institution=north)
    grant = DataUseGrantFactory(dataset=north_data, grantee=vendor)
    run = ValidationRun.objects.create(version=version, dataset=north_data, requested_by=engineer)
    png = b"\x89PNG\r\n\x1a\n overlay"
    overlay = RunFile.objects.create(
        run=run,
        kind="saliency",
        name="saliency/case-1.png",
        storage_name=default_storage.save(f"runs/{run.pk}/attempt-1/saliency/case-1.png", ContentFile(png)),
        sha256=hashlib.sha256(png).hexdigest(),
        size=len(png),
        content_type="image/png",
    )
    flag = CaseFlag.objects.create(run=run, label="nodule", row=3, image_path="a.dcm", uncertainty=0.6, probability=0.5, tta_std=0.1, cutoff=0.5)
    alert = Alert.objects.create(
        version=version, deployment=deployment, run=run, kind="input_drift", severity="warning", subject="image_mean", message="drifted"
    )
    feedback, _ = feedback_submit(
        actor=clinician,
        deployment=deployment,
        case_reference="CASE-1a2b",
        model_output="positive",
        agreement="disagree",
        error_type="false_positive",
    )
    incident = incident_escalate(actor=officer, feedback=feedback, title="t", description="d", incident_type="other", aware_on=timezone.localdate())
    first = trust_assess(version=version, trigger="manual")
    assessment = TrustAssessment.objects.create(  # a second, identical one, so that diff has something to compare (cheaper than rescoring)
        version=version, policy=first.policy, trigger="manual", principles=first.principles, evidence_digest=first.evidence_digest
    )
    exception = trust_exception_grant(
        actor=officer, version=version, principle="usability", justification="Usability study runs in the first quarter of use."
    )
    approval = VersionApproval.objects.create(version=version, proposed_by=officer)  # a row: the workflow is tested in tests/compliance
    dossier = dossier_open(actor=officer, version=version)
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
    study = FederatedStudy.objects.create(
        version=version,
        name="matrix",
        spec=study_spec_clean({}, version=version),
        deadline=timezone.now() + timedelta(days=1),
        created_by=engineer,
    )
    job = FederatedJob.objects.create(study=study, institution=north, status="claimed")  # North's agent holds its job
    folder = artifact_dir(artifact_root(), version.artifact_sha256)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    StudyPooling.objects.create(
        study=study, reports_digest="0" * 64, result={}, charts={"study-forest-auroc-x": "<svg xmlns='http://www.w3.org/2000/svg'/>"}
    )
    token = api_token_issue(user=officer, name="matrix").token
    risk_file_open(actor=officer, version=version)
    standard = qms_standards_seed(actor=officer, institution=model.provider)[0]
    procedure = qms_procedure_save(
        actor=officer,
        procedure=QmsProcedure(
            institution=model.provider, reference="SOP-04", title="Risk", owner=officer, articles=["g"], next_review=timezone.localdate()
        ),
    )
    return {
        "institution": north.pk,
        "foundation-model": model.pk,
        "model-version": version.pk,
        "dataset": dataset.pk,
        "provenance": provenance.pk,
        "data-use-grant": grant.pk,
        "deployment": deployment.pk,
        "audit-event": AuditEvent.objects.order_by("seq").first().seq,
        "validation-run": run.pk,
        "run-file": overlay.pk,
        "case-flag": flag.pk,
        "alert": alert.pk,
        "feedback": feedback.pk,
        "monitoring": deployment.pk,
        "incident": incident.pk,
        "trust-assessment": assessment.pk,
        "trust-chart": first.pk,  # the assessment trust_assess drew a chart for
        "scoring-policy": assessment.policy_id,
        "trust-exception": exception.pk,
        "version-approval": approval.pk,
        "dossier": dossier.pk,
        "document": document.pk,
        "federated-study": {"pk": study.pk, "name": "study-forest-auroc-x"},
        "federated-job": {"pk": job.pk, "name": "model.onnx"},
        "api-token": token.pk,
        "risk-file": version.pk,
        "qms-standard": standard.pk,
        "qms-procedure": procedure.pk,
        "usage-batch": deployment.pk,
        "usage-log": deployment.pk,
    }


def _url(regex: str, ids) -> str:
    """The route with its groups filled: ``ids`` is a pk, or a dict of group values with the pk under "pk"."""
    ids = ids if isinstance(ids, dict) else {"pk": ids}
    path = regex.replace("^", "").replace("$", "").replace("\\.", ".")
    path = re.sub(r"\(\?P<([a-z_]+)>[^)]*\)", lambda m: str(ids.get(m.group(1), ids["pk"])), path)
    return "/" + path


def _pk(world: dict, record: str) -> int:
    return world[record]["pk"] if isinstance(world[record], dict) else world[record]


def _page_url(name: str, world: dict) -> str:
    record = PAGES[name][1]
    kwargs = PAGE_KWARGS[name](world) if name in PAGE_KWARGS else ({"pk": _pk(world, record)} if record else {})
    return reverse(name, kwargs=kwargs)


def _rolled_back(client, method: str, url: str):
    """The response to an empty request, whose writes are undone before the next request."""
    with transaction.atomic():
        response = client.get(url) if method == "get" else getattr(client, method)(url, {}, format="json")
        transaction.set_rollback(True)
    return response


def _listed(client, url: str) -> set:
    """The ids on every page of a list (page-number, cursor or plain)."""
    ids, pages = set(), 0
    while url and pages < 50:
        body = client.get(url).json()
        rows = body["results"] if isinstance(body, dict) else body
        ids |= {row.get("id", row.get("seq")) for row in rows}
        url, pages = (body.get("next") if isinstance(body, dict) else None), pages + 1
    return ids


def _detail(response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except (ValueError, AttributeError):
        return ""


def _api_problem(account: str, route: tuple[str, str, str, str], url: str, response, world, client) -> str | None:
    """What is wrong with ``response`` to ``route`` (basename, action, method, regex) for this account, or None."""
    basename, action, method, regex = route
    role, status = ACCOUNTS[account][0], response.status_code
    if role is not SUPERUSER and role not in EXPECTED[(basename, action)]:
        return None if status == 403 else f"should be refused by role (403), got {status}"
    if account in SERVICE_REFUSALS.get((basename, action), ()):
        return None if status == 403 else f"should be refused by the service (403), got {status}"
    if status >= 500 or status == 401 or (status == 403 and _detail(response) == RolePermission.message):
        return f"should be allowed, got {status} {_detail(response)}"
    hidden = role is not SUPERUSER and account in HIDDEN.get(basename, ())
    if action == "list":
        if status != 200:
            return f"list got {status}"
        return None if (_pk(world, basename) in _listed(client, url)) != hidden else f"list {'shows' if hidden else 'leaves out'} the record"
    if "(?P<" not in regex:
        return None  # a create: no record in the URL
    if hidden:
        return None if status == 404 or (status == 405 and method != "get") else f"should not find the record (404), got {status}"
    if method == "get" and status != 200:
        return f"should read the record (200), got {status}"
    return None


@pytest.mark.django_db
@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_api_matrix(account, accounts, world, api_client):
    """Every API route for one account: refused by role (403), out of scope (404, left out of lists),
    or served (200 for a read; for a write, anything but a role refusal or a server error)."""
    client = api_client(accounts[account])
    problems = []
    for route in API_ROUTES:
        basename, action, method, regex = route
        url = _url(regex, world[basename])
        problem = _api_problem(account, route, url, _rolled_back(client, method, url), world, client)
        if problem:
            problems.append(f"{method.upper()} {url} ({basename} {action}): {problem}")
    assert not problems, f"{account}:\n" + "\n".join(problems)


@pytest.mark.django_db
@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_page_matrix(account, accounts, world):
    """Every page for one account: 403 where the role may not, 404 for a record out of scope."""
    client = Client()
    client.force_login(accounts[account])
    role = ACCOUNTS[account][0]
    problems = []
    for name, (roles, record) in PAGES.items():
        url = _page_url(name, world)
        status = _rolled_back(client, "get", url).status_code
        if role is not SUPERUSER and role not in roles:
            expected = "403" if status != 403 else None
        elif name in POST_ONLY:
            expected = "405" if status != 405 else None
        elif account in PAGE_HIDDEN.get(name, ()) or (record and role is not SUPERUSER and account in HIDDEN.get(record, ())):
            expected = "404 (out of scope)" if status != 404 else None
        else:
            expected = "the page (not 403, 404 or 5xx)" if status in (403, 404) or status >= 500 else None
        if expected:
            problems.append(f"GET {url} ({name}): {status}, expected {expected}")
    assert not problems, f"{account}:\n" + "\n".join(problems)


@pytest.mark.django_db
def test_anonymous_is_refused_everywhere(world, api_client):
    """The API answers 401/403, and every page sends to the login page."""
    client, pages, problems = api_client(), Client(), []
    for basename, _action, method, regex in API_ROUTES:
        url = _url(regex, world[basename])
        status = getattr(client, method)(url, {}, format="json").status_code
        if status not in (401, 403):
            problems.append(f"{method.upper()} {url}: {status}")
    for name in PAGES:
        response = pages.get(_page_url(name, world))
        if response.status_code != 302 or not response["Location"].startswith("/accounts/login/"):
            problems.append(f"GET {_page_url(name, world)}: {response.status_code}")
    assert not problems, problems


@pytest.mark.django_db
def test_user_without_role_is_refused(institutions, api_client):
    nobody = User.objects.create(username="norole", institution=institutions["north"])
    assert api_client(nobody).get("/api/institutions/").status_code == 403


# --- The admin -------------------------------------------------------------------------------


def test_every_admin_is_scoped_or_says_why_not():
    unscoped = {
        model._meta.label_lower
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in PROJECT_APPS and not isinstance(model_admin, ScopedAdmin)
    }
    assert unscoped == set(UNSCOPED_ADMINS), f"admins without institution scope: {sorted(unscoped - set(UNSCOPED_ADMINS))}"


@pytest.mark.django_db
@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_admin_changelists_show_what_scope_shows(account, accounts, world):
    """Every changelist an account opens lists exactly ``scope``'s rows (per-case outputs included);
    the service accounts open none, even as staff."""
    user = accounts[account]
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    problems = []
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = client.get(url)
        if account in SERVICE_ACCOUNTS:
            if response.status_code != 403:
                problems.append(f"{url}: {response.status_code}, a service account has no admin")
            continue
        if response.status_code == 403:
            continue
        assert response.status_code == 200, f"{account} {url}: {response.status_code}"
        shown = set(response.context["cl"].queryset.values_list("pk", flat=True))
        rows = model._default_manager.all()
        expected = set((scope(user, rows) if isinstance(model_admin, ScopedAdmin) else rows).values_list("pk", flat=True))
        if shown != expected:
            problems.append(f"{url}: shows {sorted(shown)}, scope gives {sorted(expected)}")
    assert not problems, f"{account}:\n" + "\n".join(problems)
    if account in SERVICE_ACCOUNTS:
        assert client.get("/admin/").context["available_apps"] == []


@pytest.mark.django_db
def test_per_case_outputs_stay_with_the_data_owner_in_the_admin_too(accounts, world):
    """Run files and case flags have no admin; were one added, the scope test above would hold it to North's users."""
    for model in (RunFile, CaseFlag):
        model_admin = admin.site._registry.get(model)
        assert model_admin is None or isinstance(model_admin, ScopedAdmin)
    assert set(scope(accounts["engineer_north"], RunFile.objects.all())) == {RunFile.objects.get(pk=world["run-file"])}
    for account in ("engineer", "officer", "auditor", "engineer_south", "officer_south"):
        assert not scope(accounts[account], RunFile.objects.all()).exists() and not scope(accounts[account], CaseFlag.objects.all()).exists()
