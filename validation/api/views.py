"""Thin API views of validation runs: scope, validate shape, call a service."""

from __future__ import annotations

import hashlib

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse

from core.api import OctetStreamRenderer, ScopedViewSet
from core.errors import Conflict
from core.headers import FILE_CONTENT_SECURITY_POLICY, svg_response
from core.parsers import BoundedJSONParser
from validation import baselines, federated, forgetting, selectors, services, uploaded_outputs, uploaded_reports
from validation.api import serializers as s
from validation.filtersets import CaseFlagFilterSet, RunFileFilterSet, ValidationRunFilterSet


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

    @extend_schema(request=s.PredictionsUploadSerializer, responses={201: s.ValidationRunSerializer})
    @action(detail=False, methods=["post"], url_path="from-predictions", parser_classes=[MultiPartParser, FormParser])
    def from_predictions(self, request):
        """Evaluate outputs produced elsewhere (RadTrust does not run the model); 201 with the succeeded run."""
        form = s.PredictionsUploadSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        if not self.get_permissions()[0].has_object_permission(request, self, data["version"]):
            self.permission_denied(request, message="This version belongs to another institution's model.")
        upload = data.pop("predictions")
        run = uploaded_outputs.run_from_predictions(actor=request.user, predictions=upload.read(), filename=upload.name, **data)
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ReportsUploadSerializer, responses={201: s.ValidationRunSerializer})
    @action(detail=False, methods=["post"], url_path="from-reports", parser_classes=[MultiPartParser, FormParser])
    def from_reports(self, request):
        """Queue the evaluation of generated reports (JSON Lines: case_id, report) against the
        manifest's reference findings or reference reports; RadTrust does not run the model. 201
        with the queued run, which a worker evaluates."""
        form = s.ReportsUploadSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        if not self.get_permissions()[0].has_object_permission(request, self, data["version"]):
            self.permission_denied(request, message="This version belongs to another institution's model.")
        upload = data.pop("reports")
        if reference := data.pop("reference_reports", None):
            data.update(reference_reports=reference.read(), reference_filename=reference.name)
        run = uploaded_reports.run_from_reports(actor=request.user, reports=upload.read(), filename=upload.name, **data)
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.ForgettingRequestSerializer, responses={200: s.TaskRequeueSerializer(many=True)})
    @action(detail=False, methods=["post"], pagination_class=None)
    def forgetting(self, request):
        """Queue a version's runs on every task its base and parent were evaluated on (forgetting
        across tasks); one entry per task, with the run queued or found, or why none was."""
        form = s.ForgettingRequestSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        version = form.validated_data["version"]
        if not self.get_permissions()[0].has_object_permission(request, self, version):
            self.permission_denied(request, message="This version belongs to another institution's model.")
        tasks = forgetting.forgetting_runs_queue(actor=request.user, version=version)
        return Response([t.to_dict() for t in tasks])

    @extend_schema(request=None, responses=s.ValidationRunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.run_cancel(actor=request.user, run=self.get_object())
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses=s.ValidationRunSerializer)
    @action(detail=True, methods=["post"], url_path="set-baseline")
    def set_baseline(self, request, pk=None):
        """Mark this succeeded run as its version's baseline: runs queued later measure drift against it."""
        run = baselines.run_set_baseline(actor=request.user, run=self.get_object())
        return Response(s.ValidationRunSerializer(run, context=self.get_serializer_context()).data)


class RunFileViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Charts, saliency overlays and case tables of runs; ``content`` serves the bytes after
    checking them against the sha256 recorded when the run wrote them."""

    access_resource = "run_file"
    selector = staticmethod(selectors.run_file_list)
    serializer_class = s.RunFileSerializer
    filterset_class = RunFileFilterSet

    @extend_schema(
        responses={
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY),
            409: OpenApiResponse(description="The file is missing from storage or no longer matches its recorded sha256."),
        }
    )
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
        response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
        response["X-Content-Type-Options"] = "nosniff"
        return response


class CaseFlagViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Cases a run's uncertainty analysis would refer to a human, most uncertain first."""

    access_resource = "case_flag"
    selector = staticmethod(selectors.case_flag_list)
    serializer_class = s.CaseFlagSerializer
    filterset_class = CaseFlagFilterSet


# --- Federated validation -------------------------------------------------------------------

REPORT_MAX_BYTES = 1024 * 1024


class ReportParser(BoundedJSONParser):
    """JSON of at most ``REPORT_MAX_BYTES``: aggregates of any study fit well under it."""

    max_bytes = REPORT_MAX_BYTES
    too_large_detail = f"A site report is at most {REPORT_MAX_BYTES // 1024} KiB of JSON; aggregates of any study fit well under it."


class FederatedJobViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """A site agent's API (token of the site's ``site_agent`` account): only its own institution's jobs
    exist here, another site's job is not found. The list holds the jobs the site can still work
    on (study open, deadline ahead) as a plain list; claim, fetch the model, report or fail."""

    access_resource = "federated_job"
    selector = staticmethod(federated.job_list)
    serializer_class = s.FederatedJobSerializer
    filterset_fields = ["status", "study"]
    pagination_class = None

    def get_queryset(self):
        jobs = super().get_queryset()
        return federated.job_open(jobs) if self.action == "list" else jobs

    def _job(self, job) -> Response:
        return Response(s.FederatedJobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=s.FederatedJobSerializer)
    @action(detail=True, methods=["post"])
    def claim(self, request, pk=None):
        """Take the job; claiming a job the site holds already returns it unchanged."""
        return self._job(federated.job_claim(actor=request.user, job=self.get_object()))

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            409: OpenApiResponse(description="The job is not claimed or reported already, or the file is missing from storage."),
        }
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"artifact/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,199})",
        renderer_classes=[JSONRenderer, OctetStreamRenderer],
    )
    def artifact(self, request, pk=None, name=None):
        """One file of the version's artifact, streamed; the agent checks it against the job's sha256 before loading it."""
        found = federated.job_artifact_file(actor=request.user, job=self.get_object(), name=name)
        if found is None:
            raise NotFound(f"The version's artifact has no file named {name!r}.")
        path, sha256 = found
        try:
            handle = open(path, "rb")
        except OSError:
            raise Conflict("The artifact file is missing from the registry's storage.", code="artifact_missing") from None
        response = FileResponse(handle, as_attachment=True, filename=name, content_type="application/octet-stream")
        response["X-Content-SHA256"] = sha256
        return response

    @extend_schema(request=s.SiteReportSubmitSerializer, responses={201: s.SiteReportSerializer, 200: s.SiteReportSerializer})
    @action(detail=True, methods=["post"], parser_classes=[ReportParser])
    def report(self, request, pk=None):
        """Send the aggregates the site's data owner approved: 201 stored, 200 the same payload again, 409 a different one."""
        job = self.get_object()
        body = s.SiteReportSubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report, created = federated.report_submit(actor=request.user, job=job, **body.validated_data)
        return Response(
            s.SiteReportSerializer(report, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(request=s.JobFailSerializer, responses=s.FederatedJobSerializer)
    @action(detail=True, methods=["post"])
    def fail(self, request, pk=None):
        """Say why the site could not evaluate (an artifact hash mismatch, a missing manifest); officers see it."""
        job = self.get_object()
        body = s.JobFailSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._job(federated.job_fail(actor=request.user, job=job, reason=body.validated_data["reason"]))


class FederatedStudyViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Federated studies of a provider's versions: create one with its sites, follow the jobs,
    read the pooled figures and forest plots, close it. A site agent reads the studies its site
    takes part in, with its own job only; the pooled figures and plots are the provider's."""

    access_resource = "federated_study"
    access_resources = {"pooled": "federated_study.outcomes", "charts": "federated_study.outcomes"}
    selector = staticmethod(federated.study_list)
    serializer_class = s.FederatedStudySerializer
    filterset_fields = ["version", "status"]

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        if not self.get_permissions()[0].has_object_permission(self.request, self, data["version"]):
            self.permission_denied(self.request, message="This version belongs to another institution's model.")
        serializer.instance = federated.study_create(
            actor=self.request.user,
            version=data["version"],
            name=data["name"],
            spec=data["spec"],
            deadline=data["deadline"],
            institutions=data["sites"],
        )

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def pooled(self, request, pk=None):
        """Pooled figures per stratum and label, meta-analyses, per-site rows, every site's outcome, and the forest plots' URLs."""
        study = self.get_object()
        result = federated.study_pool(study)
        for chart in result["charts"]:
            chart["url"] = reverse("federated-study-charts", kwargs={"pk": study.pk, "name": chart["name"]}, request=request)
        return Response(result)

    @extend_schema(operation_id="federated_studies_chart_retrieve", responses={(200, "image/svg+xml"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"], url_path=r"charts/(?P<name>[a-z0-9-]+)\.svg")
    def charts(self, request, pk=None, name=None):
        """A forest plot as rendered when the study was last pooled."""
        svg = federated.study_chart(self.get_object(), name)
        if svg is None:
            raise NotFound(f"The study has no chart named {name!r}; the pooled figures list its charts.")
        return svg_response(svg)

    @extend_schema(request=None, responses=s.FederatedStudySerializer)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """Close the study: no site claims or reports any more."""
        study = federated.study_close(actor=request.user, study=self.get_object())
        return Response(s.FederatedStudySerializer(study, context=self.get_serializer_context()).data)
