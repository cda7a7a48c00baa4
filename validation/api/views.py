"""Thin API views of validation runs: scope, validate shape, call a service."""

from __future__ import annotations

import hashlib

from django.core.files.storage import default_storage
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from radtrust.errors import Conflict
from registry.api.views import ScopedViewSet
from validation import evidence, selectors, services
from validation.api import serializers as s
from validation.choices import AlertStatus
from validation.filtersets import AlertFilterSet, CaseFlagFilterSet, RunFileFilterSet, ValidationRunFilterSet


class ValidationRunViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Create, list, follow (poll the detail: status, stage, progress) and cancel validation runs."""

    access_resource = "validation_run"
    selector = staticmethod(selectors.run_list)
    serializer_class = s.ValidationRunSerializer
    filterset_class = ValidationRunFilterSet

    def get_queryset(self):
        if self.action in {"retrieve", "cancel", "set_baseline"}:
            return selectors.run_detail(user=self.request.user)
        return super().get_queryset()

    def get_serializer_class(self):
        return s.ValidationRunDetailSerializer if self.action == "retrieve" else s.ValidationRunSerializer

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        if not self.get_permissions()[0].has_object_permission(self.request, self, data["version"]):
            self.permission_denied(self.request, message="This version belongs to another institution's model.")
        serializer.instance = services.run_create(actor=self.request.user, **data)

    @extend_schema(request=None, responses=s.ValidationRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.run_cancel(actor=request.user, run=self.get_object())
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses=s.ValidationRunSerializer)
    @action(detail=True, methods=["post"], url_path="set-baseline")
    def set_baseline(self, request, pk=None):
        """Mark this succeeded run as its version's baseline: runs queued later measure drift against it."""
        run = evidence.run_set_baseline(actor=request.user, run=self.get_object())
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data)


class RunFileViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Charts, saliency overlays and case tables of runs; ``content`` serves the bytes after
    checking them against the sha256 recorded when the run wrote them."""

    access_resource = "run_file"
    selector = staticmethod(selectors.run_file_list)
    serializer_class = s.RunFileSerializer
    filterset_class = RunFileFilterSet

    @extend_schema(responses={(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"])
    def content(self, request, pk=None):
        stored = self.get_object()
        try:
            with default_storage.open(stored.storage_name, "rb") as handle:
                data = handle.read()
        except OSError:
            raise Conflict("The file is missing from storage; the run's evidence is incomplete.", code="file_missing") from None
        if hashlib.sha256(data).hexdigest() != stored.sha256:
            raise Conflict("The file no longer matches the sha256 recorded when the run wrote it.", code="file_changed")
        response = HttpResponse(data, content_type=stored.content_type)
        response["Content-Disposition"] = f'inline; filename="{stored.name.rsplit("/", 1)[-1]}"'
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class CaseFlagViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Cases a run's uncertainty analysis would refer to a human, most uncertain first."""

    access_resource = "case_flag"
    selector = staticmethod(selectors.case_flag_list)
    serializer_class = s.CaseFlagSerializer
    filterset_class = CaseFlagFilterSet


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
        alert = evidence.alert_handle(actor=request.user, alert=self.get_object(), status=new_status, note=body.validated_data["note"])
        return Response(s.AlertSerializer(alert, context=self.get_serializer_context()).data)

    @extend_schema(request=s.AlertHandleSerializer, responses=s.AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._handle(request, AlertStatus.ACKNOWLEDGED)

    @extend_schema(request=s.AlertHandleSerializer, responses=s.AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._handle(request, AlertStatus.RESOLVED)

    @extend_schema(request=None, responses=s.ValidationRunSerializer)
    @action(detail=True, methods=["post"])
    def revalidate(self, request, pk=None):
        """Queue the revalidation an alert proposes: its deployment on the site's newest data, today."""
        from validation.revalidation import revalidation_queue_now

        alert = self.get_object()
        if alert.deployment is None:
            raise Conflict("This alert names no deployment to revalidate.", code="no_deployment")
        run = revalidation_queue_now(actor=request.user, deployment=alert.deployment, reason=f"proposed by alert {alert.pk}")
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)


class TrustAssessmentViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Trust assessments, newest first; POST ``{"version": id}`` scores the evidence as it is now;
    ``diff?against=<id>`` names the criteria that moved between two assessments and why."""

    access_resource = "trust_assessment"
    selector = staticmethod(selectors.trust_assessment_list)
    serializer_class = s.TrustAssessmentSerializer
    filterset_fields = ["version", "trigger"]

    def perform_create(self, serializer):
        from validation.trust.services import trust_assess

        version = serializer.validated_data["version"]
        if not self.get_permissions()[0].has_object_permission(self.request, self, version):
            self.permission_denied(self.request, message="This version belongs to another institution's model.")
        serializer.instance = trust_assess(version=version, trigger="manual")

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        from rest_framework.exceptions import ValidationError as FieldError

        from validation.trust.assess import assessment_diff

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
    """Scoring policies; officers add a new version (it becomes the active one; old assessments keep theirs)."""

    access_resource = "scoring_policy"
    selector = staticmethod(selectors.scoring_policy_list)
    serializer_class = s.ScoringPolicySerializer

    def perform_create(self, serializer):
        from validation.trust.services import policy_create

        serializer.instance = policy_create(actor=self.request.user, name=serializer.validated_data["name"], definition=serializer.validated_data["definition"])


class TrustExceptionViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Justified exceptions to the trust guard of approval, recorded by officers (audited)."""

    access_resource = "trust_exception"
    selector = staticmethod(selectors.trust_exception_list)
    serializer_class = s.TrustExceptionSerializer

    def perform_create(self, serializer):
        from validation.trust.services import trust_exception_grant

        serializer.instance = trust_exception_grant(actor=self.request.user, **serializer.validated_data)
