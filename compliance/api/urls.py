from rest_framework.routers import SimpleRouter

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

urlpatterns = router.urls
