"""Thin API views of the risk management file (``/api/risk-files/<version id>/``) and the QMS
register (``/api/qms-standards/``, ``/api/qms-procedures/``). Every write calls a service in
``compliance.risk_file`` or ``compliance.qms``, which checks the officer's institution and audits."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from compliance import qms, risk_file
from compliance.choices import RiskControlKind, VerificationKind
from compliance.models import Alert, Hazard, Incident, QmsProcedure, QmsStandard, RiskControl, RiskFile
from compliance.selectors import qms_procedure_list, qms_standard_list
from core.api import ScopedViewSet
from registry.selectors import version_list
from validation.models import ValidationRun


class HazardInput(serializers.Serializer):
    hazard = serializers.CharField(max_length=1000)
    situation = serializers.CharField(max_length=1000)
    harm = serializers.CharField(max_length=1000)


class EstimateInput(serializers.Serializer):
    hazard = serializers.IntegerField()
    probability = serializers.IntegerField()
    severity = serializers.IntegerField()
    residual_probability = serializers.IntegerField(required=False, allow_null=True)
    residual_severity = serializers.IntegerField(required=False, allow_null=True)
    rationale = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class ControlInput(serializers.Serializer):
    hazard = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=RiskControlKind.choices)
    description = serializers.CharField(max_length=2000)


class VerificationInput(serializers.Serializer):
    control = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=VerificationKind.choices)
    run = serializers.IntegerField(required=False, allow_null=True)
    section = serializers.CharField(required=False, allow_blank=True, default="")
    field = serializers.CharField(required=False, allow_blank=True, default="")
    reference = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class SignalInput(serializers.Serializer):
    hazard = serializers.IntegerField()
    alert = serializers.IntegerField(required=False, allow_null=True)
    incident = serializers.IntegerField(required=False, allow_null=True)
    note = serializers.CharField(max_length=2000)


class AcceptanceInput(serializers.Serializer):
    hazard = serializers.IntegerField()
    reason = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")


class ConclusionInput(serializers.Serializer):
    benefit_risk = serializers.CharField(required=False, max_length=4000)
    matrix = serializers.JSONField(required=False)


class RiskFileViewSet(ScopedViewSet):
    """A version's risk management file, found by the version's id: GET reads it (hazards with their
    estimates in words, controls, verification and where each stands); an officer of the provider
    opens it (``open``: a child version's starts from its parent's), adds ``hazards``, ``estimates``,
    ``controls``, ``verifications`` and ``signals``, proposes and confirms ``acceptances`` (two
    officers) and ``approve``s it."""

    access_resource = "risk_file"
    selector = staticmethod(version_list)

    def _file(self):
        version = self.get_object()
        found = RiskFile.objects.filter(version=version).first()
        if found is None:
            raise NotFound(f"No risk file is open for {version}; an officer of its provider opens it (POST .../open/).")
        return found

    def _line(self, model, pk: int, path: str):
        """A hazard or control of this version's file; another file's is not found."""
        row = model.objects.filter(pk=pk, **{path: self._file()}).first()
        if row is None:
            raise NotFound(f"No {model._meta.verbose_name} {pk} in this risk file.")
        return row

    def _answer(self, code=status.HTTP_200_OK) -> Response:
        return Response(risk_file.risk_file_summary(self.get_object()), status=code)

    def _body(self, serializer_class) -> dict:
        body = serializer_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def retrieve(self, request, pk=None):
        self._file()
        return self._answer()

    @extend_schema(request=None, responses={201: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def open(self, request, pk=None):
        risk_file.risk_file_open(actor=request.user, version=self.get_object())
        return self._answer(status.HTTP_201_CREATED)

    @extend_schema(request=ConclusionInput, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def conclusion(self, request, pk=None):
        risk_file.risk_file_update(actor=request.user, risk_file=self._file(), **self._body(ConclusionInput))
        return self._answer()

    @extend_schema(request=HazardInput, responses={201: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def hazards(self, request, pk=None):
        risk_file.hazard_add(actor=request.user, risk_file=self._file(), **self._body(HazardInput))
        return self._answer(status.HTTP_201_CREATED)

    @extend_schema(request=EstimateInput, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def estimates(self, request, pk=None):
        data = self._body(EstimateInput)
        hazard = self._line(Hazard, data.pop("hazard"), "risk_file")
        risk_file.hazard_estimate(actor=request.user, hazard=hazard, **data)
        return self._answer()

    @extend_schema(request=ControlInput, responses={201: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def controls(self, request, pk=None):
        data = self._body(ControlInput)
        hazard = self._line(Hazard, data.pop("hazard"), "risk_file")
        risk_file.risk_control_add(actor=request.user, hazard=hazard, **data)
        return self._answer(status.HTTP_201_CREATED)

    @extend_schema(request=VerificationInput, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def verifications(self, request, pk=None):
        data = self._body(VerificationInput)
        control = self._line(RiskControl, data.pop("control"), "hazard__risk_file")
        run_id = data.pop("run", None)
        run = ValidationRun.objects.filter(pk=run_id, version=self.get_object()).first() if run_id else None
        risk_file.risk_control_verify(actor=request.user, control=control, run=run, **data)
        return self._answer()

    @extend_schema(request=SignalInput, responses={201: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def signals(self, request, pk=None):
        data = self._body(SignalInput)
        version = self.get_object()
        hazard = self._line(Hazard, data["hazard"], "risk_file")
        alert = Alert.objects.filter(pk=data.get("alert"), version=version).first() if data.get("alert") else None
        incident = Incident.objects.filter(pk=data.get("incident"), version=version).first() if data.get("incident") else None
        risk_file.hazard_signal_link(actor=request.user, hazard=hazard, alert=alert, incident=incident, note=data["note"])
        return self._answer(status.HTTP_201_CREATED)

    @extend_schema(request=AcceptanceInput, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def acceptances(self, request, pk=None):
        """Propose accepting a hazard's residual risk, with the reason (the first of two officers)."""
        data = self._body(AcceptanceInput)
        risk_file.hazard_acceptance_propose(actor=request.user, hazard=self._line(Hazard, data["hazard"], "risk_file"), reason=data["reason"])
        return self._answer()

    @extend_schema(request=AcceptanceInput, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="acceptances/confirm")
    def confirm_acceptance(self, request, pk=None):
        """Confirm a proposed acceptance (a second officer of the provider)."""
        data = self._body(AcceptanceInput)
        risk_file.hazard_acceptance_confirm(actor=request.user, hazard=self._line(Hazard, data["hazard"], "risk_file"))
        return self._answer()

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        risk_file.risk_file_approve(actor=request.user, risk_file=self._file())
        return self._answer()


class QmsStandardSerializer(serializers.ModelSerializer):
    harmonised_status_label = serializers.CharField(source="get_harmonised_status_display", read_only=True)

    class Meta:
        model = QmsStandard
        fields = [
            "id",
            "reference",
            "title",
            "edition",
            "harmonised_status",
            "harmonised_status_label",
            "harmonised_reference",
            "scope",
            "updated_at",
        ]


class QmsProcedureSerializer(serializers.ModelSerializer):
    overdue = serializers.BooleanField(read_only=True)
    articles_labels = serializers.SerializerMethodField()

    class Meta:
        model = QmsProcedure
        fields = ["id", "reference", "title", "owner", "articles", "articles_labels", "reviewed_on", "next_review", "overdue", "updated_at"]

    def get_articles_labels(self, procedure) -> list[str]:
        return [f"17(1)({x}) {qms.ART_17[x]}" for x in procedure.articles if x in qms.ART_17]


class _RegisterViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin):
    """Rows of the provider's register; a write goes through the register's service for the user's institution."""

    access_resource = "qms"
    service = None

    def institution(self):
        if self.request.user.institution_id is None:  # an administrator without an institution keeps no register
            raise PermissionDenied("A register belongs to an institution; your account belongs to none.")
        return self.request.user.institution

    def perform_create(self, serializer):
        row = serializer.Meta.model(institution=self.institution(), **serializer.validated_data)
        serializer.instance = type(self).service(actor=self.request.user, **{self.noun: row})

    def perform_update(self, serializer):
        instance = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(instance, name, value)
        serializer.instance = type(self).service(actor=self.request.user, **{self.noun: instance})


class QmsStandardViewSet(_RegisterViewSet):
    """Standards applied (Art. 17(1)(e)); ``seed`` adds the ones RadTrust ships with to the officer's institution."""

    selector = staticmethod(qms_standard_list)
    serializer_class = QmsStandardSerializer
    service = staticmethod(qms.qms_standard_save)
    noun = "standard"

    @extend_schema(request=None, responses={200: QmsStandardSerializer(many=True)})
    @action(detail=False, methods=["post"], pagination_class=None)
    def seed(self, request):
        seeded = qms.qms_standards_seed(actor=request.user, institution=self.institution())
        return Response(QmsStandardSerializer(seeded, many=True).data)


class QmsProcedureViewSet(_RegisterViewSet):
    """Procedures with their owner, review dates and the points of Art. 17(1) they cover; ``overdue`` when the review is late."""

    selector = staticmethod(qms_procedure_list)
    serializer_class = QmsProcedureSerializer
    service = staticmethod(qms.qms_procedure_save)
    noun = "procedure"
