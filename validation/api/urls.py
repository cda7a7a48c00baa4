from rest_framework.routers import SimpleRouter

from validation.api.views import (
    CaseFlagViewSet,
    FederatedJobViewSet,
    FederatedStudyViewSet,
    RunFileViewSet,
    ValidationRunViewSet,
)

router = SimpleRouter()
router.register("validation-runs", ValidationRunViewSet, basename="validation-run")
router.register("run-files", RunFileViewSet, basename="run-file")
router.register("case-flags", CaseFlagViewSet, basename="case-flag")
router.register("federated/jobs", FederatedJobViewSet, basename="federated-job")
router.register("federated-studies", FederatedStudyViewSet, basename="federated-study")

urlpatterns = router.urls
