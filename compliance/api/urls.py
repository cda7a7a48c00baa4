from rest_framework.routers import SimpleRouter

from compliance.api.views import AuditEventViewSet, FeedbackViewSet, IncidentViewSet, MonitoringViewSet

router = SimpleRouter()
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("feedback", FeedbackViewSet, basename="feedback")
router.register("monitoring", MonitoringViewSet, basename="monitoring")
router.register("incidents", IncidentViewSet, basename="incident")

urlpatterns = router.urls
