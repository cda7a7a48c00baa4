"""Thin API views of the audit trail, clinician feedback, deployment monitoring and incidents."""

from __future__ import annotations

from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.exceptions import ValidationError as FieldError
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from compliance import approvals as approval_services
from compliance import documents as document_services
from compliance import dossiers as dossier_services
from compliance import feedback as feedback_services
from compliance import incidents as incident_services
from compliance import market as market_services
from compliance import selectors, vigilance
from compliance.alerts import alert_handle
from compliance.api import serializers as s
from compliance.api import vigilance_serializers as vs
from compliance.change_control import conformity_assessment_record
from compliance.change_log import change_log_build
from compliance.change_log_text import change_log_markdown
from compliance.choices import AlertStatus, TrustTrigger
from compliance.filtersets import AlertFilterSet
from compliance.mir import mir_export, mir_pdf
from compliance.release_evidence import release_evidence_current, release_evidence_pin, version_run_role
from compliance.trust.assess import assessment_diff
from compliance.trust.services import (
    policy_activate,
    policy_create,
    trust_assess,
    trust_exception_confirm,
    trust_exception_decline,
    trust_exception_grant,
)
from core.api import IsoDateTimeFilter, MarkdownRenderer, ScopedViewSet
from core.errors import Conflict
from core.models import AuditEvent
from registry.selectors import version_list
from validation.api.serializers import ValidationRunSerializer
from validation.choices import RunStatus
from validation.revalidation import revalidation_queue_now
from validation.selectors import run_list


class AuditEventFilterSet(filters.FilterSet):
    occurred_after = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "action", "actor_username", "request_id"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, read-only: officers and auditors follow what changed, who did it and when."""

    access_resource = "audit_event"
    queryset = AuditEvent.objects.all()
    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilterSet
    lookup_field = "seq"
    lookup_value_regex = r"[0-9]+"


class NewestFirst(CursorPagination):
    """Cursor pages: no COUNT over millions of reports, stable under inserts."""

    ordering = ("-created_at", "-pk")
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200


class FeedbackFilterSet(filters.FilterSet):
    given_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = s.Feedback
        fields = ["deployment", "version", "institution", "agreement", "error_type", "severity"]


class FeedbackViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin):
    """Clinicians report on cases read with a model deployed at their institution and change
    their own reports while they are editable; officers, auditors and the model's engineers read."""

    access_resource = "feedback"
    selector = staticmethod(selectors.feedback_list)
    serializer_class = s.FeedbackSerializer
    filterset_class = FeedbackFilterSet
    pagination_class = NewestFirst

    def get_serializer_class(self):
        return s.FeedbackUpdateSerializer if self.action in {"update", "partial_update"} else s.FeedbackSerializer

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feedback, created = feedback_services.feedback_submit(actor=request.user, **serializer.validated_data)
        body = s.FeedbackSerializer(feedback, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def perform_update(self, serializer):
        serializer.instance = feedback_services.feedback_update(
            actor=self.request.user, feedback=serializer.instance, fields=dict(serializer.validated_data)
        )


class MonitoringViewSet(ScopedViewSet, mixins.RetrieveModelMixin):
    """A deployment's post-market monitoring: disagreement per week with CIs, error types,
    severities, usability ratings, time saved, the sequential test, open alerts and runs."""

    access_resource = "monitoring"

    def get_queryset(self):
        return selectors.monitored_deployments(user=self.request.user)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request, *args, **kwargs):
        return Response(selectors.deployment_monitoring(self.get_object()).to_dict())


class IncidentFilterSet(filters.FilterSet):
    class Meta:
        model = s.Incident
        fields = ["status", "triage", "version", "deployment", "incident_type"]


class IncidentViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Officers escalate a feedback or an alert to an incident, move it through its workflow,
    record corrective actions and export its report (JSON or PDF)."""

    access_resource = "incident"
    selector = staticmethod(selectors.incident_list)
    serializer_class = s.IncidentSerializer
    filterset_class = IncidentFilterSet

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = incident_services.incident_escalate(actor=self.request.user, **data)

    @extend_schema(request=s.IncidentTransitionSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        body = s.IncidentTransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        incident = incident_services.incident_transition(
            actor=request.user, incident=self.get_object(), to_status=body.validated_data.pop("status"), **body.validated_data
        )
        return Response(s.IncidentSerializer(incident, context=self.get_serializer_context()).data)

    @extend_schema(request=s.CorrectiveActionSerializer, responses={201: s.CorrectiveActionSerializer})
    @action(detail=True, methods=["post"], url_path="corrective-actions")
    def corrective_actions(self, request, pk=None):
        body = s.CorrectiveActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        taken = incident_services.incident_action_add(actor=request.user, incident=self.get_object(), **body.validated_data)
        return Response(s.CorrectiveActionSerializer(taken).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        return Response(incident_services.incident_export(self.get_object()))

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], url_path="report-pdf")
    def report_pdf(self, request, pk=None):
        incident = self.get_object()
        response = HttpResponse(incident_services.incident_report_pdf(incident), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="incident-{incident.pk}.pdf"'
        return response

    # Vigilance (compliance.vigilance): intake, awareness, triage, reports, two-officer decisions, FSCA, MIR.

    def _answer(self, incident, status_code=status.HTTP_200_OK) -> Response:
        incident = selectors.incident_list(user=self.request.user).get(pk=incident.pk)
        return Response(s.IncidentSerializer(incident, context=self.get_serializer_context()).data, status=status_code)

    @extend_schema(request=vs.IntakeSerializer, responses={201: s.IncidentSerializer})
    @action(detail=False, methods=["post"])
    def intake(self, request):
        body = vs.IntakeSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        return self._answer(vigilance.incident_intake_record(actor=request.user, **body.validated_data), status.HTTP_201_CREATED)

    @extend_schema(request=vs.TriageSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def triage(self, request, pk=None):
        body = vs.TriageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(vigilance.incident_triage(actor=request.user, incident=self.get_object(), **body.validated_data))

    @extend_schema(request=vs.AwarenessSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def awareness(self, request, pk=None):
        body = vs.AwarenessSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._answer(vigilance.incident_awareness_change(actor=request.user, incident=self.get_object(), **body.validated_data))

    @extend_schema(request=vs.IncidentReportSerializer, responses={201: vs.IncidentReportSerializer})
    @action(detail=True, methods=["post"])
    def reports(self, request, pk=None):
        body = vs.IncidentReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = vigilance.incident_report_record(actor=request.user, incident=self.get_object(), **body.validated_data)
        return Response(vs.IncidentReportSerializer(report).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=vs.DecisionSerializer, responses={201: vs.DecisionSerializer})
    @action(detail=True, methods=["post"])
    def decisions(self, request, pk=None):
        body = vs.DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decision = vigilance.incident_decision_propose(actor=request.user, incident=self.get_object(), **body.validated_data)
        return Response(vs.DecisionSerializer(decision).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=vs.DecisionConfirmSerializer, responses=vs.DecisionSerializer)
    @action(detail=True, methods=["post"], url_path="confirm-decision")
    def confirm_decision(self, request, pk=None):
        body = vs.DecisionConfirmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decision = self.get_object().decisions.filter(pk=body.validated_data["decision"]).first()
        if decision is None:
            raise NotFound("This incident has no such proposal.")
        return Response(vs.DecisionSerializer(vigilance.incident_decision_confirm(actor=request.user, decision=decision)).data)

    @extend_schema(request=vs.FieldSafetyActionSerializer, responses={201: s.CorrectiveActionSerializer})
    @action(detail=True, methods=["post"], url_path="field-safety-actions")
    def field_safety_actions(self, request, pk=None):
        body = vs.FieldSafetyActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        taken = vigilance.field_safety_action_record(actor=request.user, incident=self.get_object(), **body.validated_data)
        return Response(s.CorrectiveActionSerializer(taken).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def mir(self, request, pk=None):
        """The incident in the fields of the MDR manufacturer incident report form (``compliance.mir``)."""
        return Response(mir_export(self.get_object()))

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], url_path="mir-pdf")
    def mir_pdf(self, request, pk=None):
        incident = self.get_object()
        response = HttpResponse(mir_pdf(incident), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="mir-incident-{incident.pk}.pdf"'
        return response


class DossierViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Dossiers: POST {"version": id} opens the version's revision (or returns the open one);
    ``save`` merges fields (refused with a diff after a concurrent save), ``submit`` freezes the
    snapshot, a second officer signs or requests changes."""

    access_resource = "dossier"
    selector = staticmethod(selectors.dossier_list)
    serializer_class = s.DossierSerializer
    filterset_fields = ["version", "status"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dossier = dossier_services.dossier_open(actor=request.user, version=serializer.validated_data["version"])
        return Response(s.DossierSerializer(dossier, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.DossierSaveSerializer, responses=s.DossierSerializer)
    @action(detail=True, methods=["post"], url_path="save")
    def save_fields(self, request, pk=None):
        body = s.DossierSaveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dossier = dossier_services.dossier_save(actor=request.user, dossier=self.get_object(), **body.validated_data)
        return Response(s.DossierSerializer(dossier, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=s.DossierSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        dossier = dossier_services.dossier_submit(actor=request.user, dossier=self.get_object())
        return Response(s.DossierSerializer(dossier, context=self.get_serializer_context()).data)

    @extend_schema(request=s.DossierNoteSerializer, responses=s.DossierSerializer)
    @action(detail=True, methods=["post"], url_path="request-changes")
    def request_changes(self, request, pk=None):
        body = s.DossierNoteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dossier = dossier_services.dossier_request_changes(actor=request.user, dossier=self.get_object(), **body.validated_data)
        return Response(s.DossierSerializer(dossier, context=self.get_serializer_context()).data)

    @extend_schema(request=s.DossierSignSerializer, responses=s.DossierSerializer)
    @action(detail=True, methods=["post"])
    def sign(self, request, pk=None):
        body = s.DossierSignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        signature = dossier_services.dossier_sign(actor=request.user, dossier=self.get_object(), **body.validated_data)
        return Response(s.DossierSerializer(signature.dossier, context=self.get_serializer_context()).data)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def completeness(self, request, pk=None):
        return Response(dossier_services.dossier_completeness(self.get_object()))

    @extend_schema(request=None, responses=s.DocumentSerializer(many=True))
    @action(detail=True, methods=["post"], url_path="render-documents", pagination_class=None)  # every kind at once, never a page
    def render_documents(self, request, pk=None):
        """Render the signed revision's documents now (kinds already stored are returned as they are)."""
        documents = document_services.dossier_documents_render(actor=request.user, dossier=self.get_object())
        return Response(s.DocumentSerializer(documents, many=True, context=self.get_serializer_context()).data)


class DocumentFilterSet(filters.FilterSet):
    version = filters.NumberFilter(field_name="dossier__version")

    class Meta:
        model = s.Document
        fields = ["dossier", "version", "kind"]


class DocumentViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Documents rendered from signed dossier revisions, read-only: they are never edited, and
    deletion is not offered here (a document is kept for its retention period, Art. 18; the
    model refuses deletion before ``retain_until``). ``download`` serves the stored bytes after
    checking them against the recorded sha256 (409 ``document_altered`` when they differ)."""

    access_resource = "document"
    selector = staticmethod(document_services.document_list)
    serializer_class = s.DocumentSerializer
    filterset_class = DocumentFilterSet

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "text/markdown"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT),
            409: OpenApiResponse(description="The stored file no longer matches the sha256 recorded when it was rendered."),
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        response = document_services.document_download(self.get_object())
        if response is None:
            raise NotFound("The stored file of this document is missing; run manage.py verify_documents.")
        return response


class AlertViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """One list of alerts (degradation, drift, prevalence shift); officers acknowledge and resolve them."""

    access_resource = "alert"
    access_resources = {"revalidate": "alert.revalidate"}
    selector = staticmethod(selectors.alert_list)
    serializer_class = s.AlertSerializer
    filterset_class = AlertFilterSet

    def _handle(self, request, new_status: str) -> Response:
        body = s.AlertHandleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        alert = alert_handle(actor=request.user, alert=self.get_object(), status=new_status, note=body.validated_data["note"])
        return Response(s.AlertSerializer(alert, context=self.get_serializer_context()).data)

    @extend_schema(request=s.AlertHandleSerializer, responses=s.AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._handle(request, AlertStatus.ACKNOWLEDGED)

    @extend_schema(request=s.AlertHandleSerializer, responses=s.AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._handle(request, AlertStatus.RESOLVED)

    @extend_schema(request=None, responses={201: ValidationRunSerializer})
    @action(detail=True, methods=["post"])
    def revalidate(self, request, pk=None):
        """Queue the revalidation an alert proposes: its deployment on the site's newest data, today."""
        alert = self.get_object()
        if alert.deployment is None:
            raise Conflict("This alert names no deployment to revalidate.", code="no_deployment")
        run = revalidation_queue_now(actor=request.user, deployment=alert.deployment, reason=f"proposed by alert {alert.pk}")
        return Response(ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)


class TrustAssessmentViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Trust assessments, newest first; POST ``{"version": id}`` scores the evidence as it is now;
    ``diff?against=<id>`` names the criteria that moved between two assessments and why."""

    access_resource = "trust_assessment"
    selector = staticmethod(selectors.trust_assessment_list)
    serializer_class = s.TrustAssessmentSerializer
    filterset_fields = ["version", "trigger"]

    def perform_create(self, serializer):
        version = serializer.validated_data["version"]
        if not self.get_permissions()[0].has_object_permission(self.request, self, version):
            self.permission_denied(self.request, message="This version belongs to another institution's model.")
        serializer.instance = trust_assess(version=version, trigger=TrustTrigger.MANUAL)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        after = self.get_object()
        against = request.query_params.get("against")
        if against is None:
            before = self.get_queryset().filter(version=after.version, computed_at__lt=after.computed_at).order_by("-computed_at").first()
        elif not against.isdigit():
            raise FieldError({"against": "Give the id of an earlier assessment of the same version."})
        else:
            before = self.get_queryset().filter(pk=int(against), version=after.version).first()
        if before is None:
            raise FieldError({"against": "No earlier assessment of this version to compare with."})
        return Response({"before": before.pk, "after": after.pk, "changes": assessment_diff(before.principles, after.principles)})


class ScoringPolicyViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Scoring policies; an officer proposes a new version (inactive), a second officer of the same
    institution ``activate``s it (the active one steps down; old assessments keep theirs)."""

    access_resource = "scoring_policy"
    selector = staticmethod(selectors.scoring_policy_list)
    serializer_class = s.ScoringPolicySerializer

    def perform_create(self, serializer):
        serializer.instance = policy_create(
            actor=self.request.user, name=serializer.validated_data["name"], definition=serializer.validated_data["definition"]
        )

    @extend_schema(request=None, responses=s.ScoringPolicySerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        policy = policy_activate(actor=request.user, policy=self.get_object())
        return Response(s.ScoringPolicySerializer(policy, context=self.get_serializer_context()).data)


class TrustExceptionViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Justified exceptions to the trust guard of approval: an officer of the provider proposes one,
    a second one ``confirm``s it (only then does the guard count it) or ``decline``s it (audited)."""

    access_resource = "trust_exception"
    selector = staticmethod(selectors.trust_exception_list)
    serializer_class = s.TrustExceptionSerializer

    def perform_create(self, serializer):
        serializer.instance = trust_exception_grant(actor=self.request.user, **serializer.validated_data)

    @extend_schema(request=None, responses=s.TrustExceptionSerializer)
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        exception = trust_exception_confirm(actor=request.user, exception=self.get_object())
        return Response(s.TrustExceptionSerializer(exception, context=self.get_serializer_context()).data)

    @extend_schema(request=s.DeclineSerializer, responses={204: None})
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        body = s.DeclineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trust_exception_decline(actor=request.user, exception=self.get_object(), **body.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionApprovalViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Version approvals with four eyes: POST {"version": id} proposes approving a version under
    review; a second officer of the provider ``confirm``s it (the version is then approved through
    the lifecycle guards) or ``decline``s it with a note."""

    access_resource = "version_approval"
    selector = staticmethod(selectors.version_approval_list)
    serializer_class = s.VersionApprovalSerializer
    filterset_fields = ["version", "status"]

    def perform_create(self, serializer):
        serializer.instance = approval_services.version_approval_propose(actor=self.request.user, version=serializer.validated_data["version"])

    @extend_schema(request=None, responses=s.VersionApprovalSerializer)
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        approval = approval_services.version_approval_confirm(actor=request.user, approval=self.get_object())
        return Response(s.VersionApprovalSerializer(approval, context=self.get_serializer_context()).data)

    @extend_schema(request=s.DeclineSerializer, responses=s.VersionApprovalSerializer)
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        body = s.DeclineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        approval = approval_services.version_approval_decline(actor=request.user, approval=self.get_object(), **body.validated_data)
        return Response(s.VersionApprovalSerializer(approval, context=self.get_serializer_context()).data)


class VersionChangeLogViewSet(ScopedViewSet):
    """A version's change log, conformity assessments, release evidence and steps on the market, under the version's own
    route (``/api/model-versions/ID/change-log/``, ``.../conformity-assessments/``, ``.../release-evidence/``, ``.../market/``,
    ``.../market-withdrawal/``, ``.../clinical-investigations/``)."""

    access_resource = "dossier"  # the log shows dossier text and run results
    selector = staticmethod(version_list)

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT, (200, "text/markdown"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="change-log", renderer_classes=[JSONRenderer, MarkdownRenderer])
    def change_log(self, request, pk=None):
        """What changed against the parent version (or ``?against=ID``, an earlier version of the same model) and how the change plan classes it (``?format=md``: Markdown)."""
        version = self.get_object()
        against = None
        if "against" in request.query_params:
            raw = request.query_params["against"]
            against = version_list(user=request.user).filter(pk=int(raw)).first() if raw.isdigit() else None
            if against is None:
                raise ValidationError({"against": [f"No version {raw!r} that you may read."]})
        log = change_log_build(version, against=against).to_dict()
        return Response(change_log_markdown(log) if request.accepted_renderer.format == "md" else log)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], url_path="release-evidence")
    def release_evidence(self, request, pk=None):
        """The release evidence in force (null before any is pinned) and every succeeded run of the version with what it is:
        declared, test data not declared, or post-market (which can never be declared)."""
        version = self.get_object()
        pin = release_evidence_current(version)
        role = version_run_role(version)
        runs = run_list(user=request.user).filter(version=version, status=RunStatus.SUCCEEDED).select_related("dataset").order_by("-finished_at")
        return Response(
            {
                "current": s.ReleaseEvidenceSerializer(pin, context={"request": request}).data if pin else None,
                "runs": [{"id": r.pk, "dataset": r.dataset.name, "finished_at": r.finished_at, "role": role(r)} for r in runs],
            }
        )

    @extend_schema(request=s.ReleaseEvidenceSerializer, responses={201: s.ReleaseEvidenceSerializer})
    @release_evidence.mapping.post
    def release_evidence_pin(self, request, pk=None):
        """Pin the runs on the intended population as the version's declared performance (an officer of its provider); audited."""
        version = self.get_object()
        serializer = s.ReleaseEvidenceSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        pin = release_evidence_pin(actor=request.user, version=version, **serializer.validated_data)
        return Response(s.ReleaseEvidenceSerializer(pin, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ConformityAssessmentSerializer, responses={201: s.ConformityAssessmentSerializer})
    @action(detail=True, methods=["post"], url_path="conformity-assessments")
    def conformity_assessments(self, request, pk=None):
        """Record the version's conformity assessment (AI Act Art. 43): an officer of its provider; a substantial modification is approved only after one."""
        version = self.get_object()
        serializer = s.ConformityAssessmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        record = conformity_assessment_record(actor=request.user, version=version, **serializer.validated_data)
        return Response(s.ConformityAssessmentSerializer(record).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], url_path="market")
    def market(self, request, pk=None):
        """The version's steps towards and on the market: its conformity assessments, the signed declaration, the placing on
        the market, a withdrawal, clinical investigations, the retention of its documentation, and what is still missing."""
        steps = market_services.market_steps(self.get_object())
        placement, declaration = steps["placement"], steps["declaration"]
        return Response(
            {
                "assessments": s.ConformityAssessmentSerializer(steps["assessments"], many=True).data,
                "declaration": {"id": declaration.pk, "revision": declaration.dossier.revision} if declaration else None,
                "placement": s.MarketPlacementSerializer(placement, context={"request": request}).data if placement else None,
                "withdrawal": s.MarketWithdrawalSerializer(steps["withdrawal"]).data if steps["withdrawal"] else None,
                "investigations": s.ClinicalInvestigationSerializer(steps["investigations"], many=True, context={"request": request}).data,
                "retention": {"until": steps["retention"].until, "basis": steps["retention"].basis},
                "missing": steps["missing"],
            }
        )

    @extend_schema(request=s.MarketPlacementSerializer, responses={201: s.MarketPlacementSerializer})
    @market.mapping.post
    def market_place(self, request, pk=None):
        """Record the placing on the market (a second officer of the provider, not the one who recorded the assessment); audited."""
        version = self.get_object()
        serializer = s.MarketPlacementSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        placement = market_services.market_place(actor=request.user, version=version, **serializer.validated_data)
        return Response(s.MarketPlacementSerializer(placement, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MarketWithdrawalSerializer, responses={201: s.MarketWithdrawalSerializer})
    @action(detail=True, methods=["post"], url_path="market-withdrawal")
    def market_withdrawal(self, request, pk=None):
        """Record the withdrawal of the version from the market (an officer of its provider): it is never newly deployed again."""
        version = self.get_object()
        serializer = s.MarketWithdrawalSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        withdrawal = market_services.market_withdraw(actor=request.user, version=version, **serializer.validated_data)
        return Response(s.MarketWithdrawalSerializer(withdrawal).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ClinicalInvestigationSerializer, responses={201: s.ClinicalInvestigationSerializer})
    @action(detail=True, methods=["post"], url_path="clinical-investigations")
    def clinical_investigations(self, request, pk=None):
        """Record that the version is used at an institution within a clinical investigation (MDR Art. 62), so that it may be
        deployed there before it is placed on the market."""
        version = self.get_object()
        serializer = s.ClinicalInvestigationSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        record = market_services.clinical_investigation_record(actor=request.user, version=version, **serializer.validated_data)
        return Response(s.ClinicalInvestigationSerializer(record, context={"request": request}).data, status=status.HTTP_201_CREATED)
