from rest_framework.routers import SimpleRouter

from validation.api.views import AlertViewSet, CaseFlagViewSet, RunFileViewSet, ValidationRunViewSet

router = SimpleRouter()
router.register("validation-runs", ValidationRunViewSet, basename="validation-run")
router.register("run-files", RunFileViewSet, basename="run-file")
router.register("case-flags", CaseFlagViewSet, basename="case-flag")
router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = router.urls
