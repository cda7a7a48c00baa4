from rest_framework.routers import SimpleRouter

from compliance.api.risk_views import QmsProcedureViewSet, QmsStandardViewSet, RiskFileViewSet
from compliance.api.usage_views import UsageBatchViewSet, UsageLogViewSet
from compliance.api.views import (
    AlertViewSet,
    AuditEventViewSet,
    DocumentViewSet,
    DossierViewSet,
    FeedbackViewSet,
    IncidentViewSet,
    MonitoringViewSet,
    ScoringPolicyViewSet,
    TrustAssessmentViewSet,
    TrustExceptionViewSet,
    VersionApprovalViewSet,
    VersionChangeLogViewSet,
)

router = SimpleRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("feedback", FeedbackViewSet, basename="feedback")
router.register("monitoring", MonitoringViewSet, basename="monitoring")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("alerts", AlertViewSet, basename="alert")
router.register("trust-assessments", TrustAssessmentViewSet, basename="trust-assessment")
router.register("scoring-policies", ScoringPolicyViewSet, basename="scoring-policy")
router.register("trust-exceptions", TrustExceptionViewSet, basename="trust-exception")
router.register("version-approvals", VersionApprovalViewSet, basename="version-approval")
router.register("dossiers", DossierViewSet, basename="dossier")
router.register("documents", DocumentViewSet, basename="document")
router.register("model-versions", VersionChangeLogViewSet, basename="model-version")  # only its change-log action

router.register("usage-batches", UsageBatchViewSet, basename="usage-batch")
router.register("risk-files", RiskFileViewSet, basename="risk-file")  # by the version's id
router.register("qms-standards", QmsStandardViewSet, basename="qms-standard")
router.register("qms-procedures", QmsProcedureViewSet, basename="qms-procedure")
router.register("usage-logs", UsageLogViewSet, basename="usage-log")

urlpatterns = router.urls
