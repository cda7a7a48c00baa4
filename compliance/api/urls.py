from rest_framework.routers import SimpleRouter

from compliance.api.views import AuditEventViewSet, DocumentViewSet, DossierViewSet, FeedbackViewSet, IncidentViewSet, MonitoringViewSet

router = SimpleRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("feedback", FeedbackViewSet, basename="feedback")
router.register("monitoring", MonitoringViewSet, basename="monitoring")
router.register("incidents", IncidentViewSet, basename="incident")
router.register("dossiers", DossierViewSet, basename="dossier")
router.register("documents", DocumentViewSet, basename="document")

urlpatterns = router.urls
