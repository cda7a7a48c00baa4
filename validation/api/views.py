"""Thin API views of validation runs: scope, validate shape, call a service."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from registry.api.views import ScopedViewSet
from validation import selectors, services
from validation.api import serializers as s
from validation.filtersets import ValidationRunFilterSet


class ValidationRunViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin):
    """Create, list, follow (poll the detail: status, stage, progress) and cancel validation runs."""

    access_resource = "validation_run"
    selector = staticmethod(selectors.run_list)
    serializer_class = s.ValidationRunSerializer
    filterset_class = ValidationRunFilterSet

    def get_queryset(self):
        if self.action in {"retrieve", "cancel"}:
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
