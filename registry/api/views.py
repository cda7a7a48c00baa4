"""Thin API views: authenticate, scope, validate shape, call a service."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from core.api import ScopedViewSet
from core.parsers import BoundedJSONParser
from registry import adaptations, selectors, services
from registry.api import serializers as s
from registry.dicomweb import dicomweb_source_set
from registry.filtersets import (
    DatasetFilterSet,
    DataUseGrantFilterSet,
    DeploymentFilterSet,
    FoundationModelFilterSet,
    ModelVersionFilterSet,
    ProvenanceFilterSet,
)
from registry.models import DicomwebSource


class RecordViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin):
    """Plain records created and updated through ``services.record_create``/``record_update``."""

    immutable_fields: tuple[str, ...] = ()
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def perform_create(self, serializer):
        fields, m2m = _split_m2m(serializer)
        serializer.instance = services.record_create(model=serializer.Meta.model, actor=self.request.user, fields=fields, m2m=m2m)

    def perform_update(self, serializer):
        fields, m2m = _split_m2m(serializer)
        changed = {k: v for k, v in fields.items() if getattr(serializer.instance, k) != v}
        serializer.instance = services.record_update(instance=serializer.instance, fields=changed, m2m=m2m, immutable=self.immutable_fields)


def _split_m2m(serializer) -> tuple[dict, dict]:
    names = {f.name for f in serializer.Meta.model._meta.many_to_many}
    data = dict(serializer.validated_data)
    return {k: v for k, v in data.items() if k not in names}, {k: v for k, v in data.items() if k in names}


class InstitutionViewSet(RecordViewSet):
    access_resource = "institution"
    selector = staticmethod(selectors.institution_list)
    serializer_class = s.InstitutionSerializer
    immutable_fields = ("code",)
    search_fields = ["code", "name"]
    filterset_fields = ["kind", "country"]


class FoundationModelViewSet(RecordViewSet):
    access_resource = "foundation_model"
    selector = staticmethod(selectors.foundation_model_list)
    serializer_class = s.FoundationModelSerializer
    filterset_class = FoundationModelFilterSet
    immutable_fields = ("provider", "task")
    search_fields = ["name", "body_region"]


class DatasetViewSet(RecordViewSet):
    access_resource = "dataset"
    selector = staticmethod(selectors.dataset_list)
    serializer_class = s.DatasetSerializer
    filterset_class = DatasetFilterSet
    immutable_fields = ("institution",)
    search_fields = ["name"]

    @extend_schema(responses={200: s.DicomwebSourceSerializer})
    @action(detail=True, methods=["get"], url_path="dicomweb")
    def dicomweb(self, request, pk=None):
        """Where the dataset lives in a PACS (404 when it reads a folder), with the manifests runs froze from it."""
        dataset = self.get_object()
        source = DicomwebSource.objects.filter(dataset=dataset).first()
        if source is None:
            raise NotFound(f"{dataset.name} reads a folder, not a PACS: no DICOMweb source.")
        return Response(s.DicomwebSourceSerializer(source).data)

    @extend_schema(request=s.DicomwebSourceWriteSerializer, responses={200: s.DicomwebSourceSerializer})
    @dicomweb.mapping.put
    def dicomweb_set(self, request, pk=None):
        """Define or redefine the dataset as a DICOMweb query with its labels table; runs resolve it when created."""
        dataset = self.get_object()
        form = s.DicomwebSourceWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        source = dicomweb_source_set(actor=request.user, dataset=dataset, **form.validated_data)
        return Response(s.DicomwebSourceSerializer(source).data)


class ModelVersionViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin):
    """Versions: register with a multipart upload; only release notes change later; lifecycle by transition."""

    access_resource = "model_version"
    access_resources = {"transition": "model_version.transition"}
    selector = staticmethod(selectors.version_list)
    serializer_class = s.ModelVersionSerializer
    filterset_class = ModelVersionFilterSet
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]
    http_method_names = ["get", "post", "patch", "head", "options"]
    ordering_fields = ["created_at", "version"]

    @extend_schema(request=s.VersionRegisterSerializer, responses={201: s.ModelVersionSerializer})
    def create(self, request, *args, **kwargs):
        limit = settings.RADTRUST_MAX_ARTIFACT_BYTES + 1024 * 1024  # form fields on top of the files
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            raise ValidationError({"non_field_errors": ["The request's Content-Length header is not a whole number of bytes."]})
        if int(declared) > limit:
            raise ValidationError(
                {"artifact": [f"The upload is larger than the limit of {settings.RADTRUST_MAX_ARTIFACT_BYTES} bytes (RADTRUST_MAX_ARTIFACT_BYTES)."]}
            )
        form = s.VersionRegisterSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        data = form.validated_data
        if data["foundation_model"] and not self.get_permissions()[0].has_object_permission(request, self, data["foundation_model"]):
            self.permission_denied(
                request, message="This model belongs to another institution; you may only add versions to your institution's models."
            )
        version = services.version_register(
            actor=request.user,
            foundation_model=data["foundation_model"],
            version=data["version"],
            parent=data.get("parent"),
            model_file=(data["artifact"].name, data["artifact"]),
            data_files=[(f.name, f) for f in data["external_data"]],
            output_schema=data["output_schema"],
            preprocessing=data["preprocessing"],
            release_notes=data["release_notes"],
        )
        return Response(s.ModelVersionSerializer(version, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        notes = serializer.validated_data.get("release_notes", serializer.instance.release_notes)
        serializer.instance = services.version_update(version=serializer.instance, release_notes=notes)

    @extend_schema(request=s.TransitionSerializer, responses={200: s.ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        version = self.get_object()
        form = s.TransitionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        version = services.version_transition(actor=request.user, version=version, to_status=form.validated_data["to_status"])
        return Response(s.ModelVersionSerializer(version, context=self.get_serializer_context()).data)

    @extend_schema(responses={200: s.LineageEntrySerializer(many=True)})
    @action(detail=True, methods=["get"], pagination_class=None)  # the whole chain, never a page of it
    def lineage(self, request, pk=None):
        """The chain from this version back to its base version, newest first (as far as the caller may see)."""
        chain = selectors.version_lineage(self.get_object(), user=request.user)
        return Response(s.LineageEntrySerializer(chain, many=True).data)

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"], pagination_class=None)
    def adaptations(self, request, pk=None):
        """The lineage tree of this version's base with every adaptation (method, task, labelled data,
        frozen parts) the caller may see, and the base's known weaknesses this version inherits."""
        version = self.get_object()
        visible = set(selectors.version_list(user=request.user).values_list("pk", flat=True))
        return Response(
            {
                "tree": adaptations.lineage_tree(version, visible).to_dict(),
                "inherited_risks": [r.to_dict() for r in adaptations.inherited_risks(version, visible)],
            }
        )

    @extend_schema(request=s.AdaptationSerializer, responses={201: s.AdaptationSerializer})
    @adaptations.mapping.post
    def adaptation_record(self, request, pk=None):
        """Record how this version was adapted from its parent (method, task, labels, labelled data,
        frozen parts); the provider's ML engineers only. Registering it queues the re-evaluation of
        every task the base and the parent were evaluated on (``validation.forgetting``)."""
        version = self.get_object()
        form = s.AdaptationSerializer(data=request.data, context=self.get_serializer_context())
        form.is_valid(raise_exception=True)
        record = adaptations.adaptation_record(actor=request.user, version=version, **form.validated_data)
        return Response(s.AdaptationSerializer(record, context=self.get_serializer_context()).data, status=status.HTTP_201_CREATED)


class ProvenanceViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin):
    access_resource = "provenance"
    selector = staticmethod(selectors.provenance_list)
    serializer_class = s.ProvenanceSerializer
    filterset_class = ProvenanceFilterSet

    def perform_create(self, serializer):
        data = serializer.validated_data
        if not self.get_permissions()[0].has_object_permission(self.request, self, data["version"]):
            self.permission_denied(self.request, message="This version belongs to another institution's model.")
        serializer.instance = services.provenance_link(actor=self.request.user, **data)

    def perform_destroy(self, instance):
        services.provenance_unlink(provenance=instance)


class DataUseGrantViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Data-use agreements: the dataset's steward (a compliance officer of its institution) grants
    another institution its use for a purpose and period, and revokes it; never edited or deleted."""

    access_resource = "data_use_grant"
    selector = staticmethod(selectors.data_use_grant_list)
    serializer_class = s.DataUseGrantSerializer
    filterset_class = DataUseGrantFilterSet

    def perform_create(self, serializer):
        serializer.instance = services.data_use_grant(actor=self.request.user, **serializer.validated_data)

    @extend_schema(request=s.DataUseRevokeSerializer, responses={200: s.DataUseGrantSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        grant = self.get_object()
        form = s.DataUseRevokeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        grant = services.data_use_revoke(actor=request.user, grant=grant, reason=form.validated_data["reason"])
        return Response(s.DataUseGrantSerializer(grant, context=self.get_serializer_context()).data)


class DeploymentViewSet(RecordViewSet):
    access_resource = "deployment"
    selector = staticmethod(selectors.deployment_list)
    serializer_class = s.DeploymentSerializer
    filterset_class = DeploymentFilterSet
    immutable_fields = ("version", "institution")

    def perform_create(self, serializer):
        serializer.instance = services.deployment_create(actor=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        changed = {k: v for k, v in serializer.validated_data.items() if getattr(serializer.instance, k) != v}
        serializer.instance = services.deployment_update(deployment=serializer.instance, fields=changed)
