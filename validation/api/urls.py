from rest_framework.routers import SimpleRouter

from validation.api.views import (
    AlertViewSet,
    CaseFlagViewSet,
    FederatedJobViewSet,
    FederatedStudyViewSet,
    RunFileViewSet,
    ScoringPolicyViewSet,
    TrustAssessmentViewSet,
    TrustExceptionViewSet,
    ValidationRunViewSet,
)

router = SimpleRouter()
router.register("validation-runs", ValidationRunViewSet, basename="validation-run")
router.register("run-files", RunFileViewSet, basename="run-file")
router.register("case-flags", CaseFlagViewSet, basename="case-flag")
router.register("alerts", AlertViewSet, basename="alert")
router.register("trust-assessments", TrustAssessmentViewSet, basename="trust-assessment")
router.register("scoring-policies", ScoringPolicyViewSet, basename="scoring-policy")
router.register("trust-exceptions", TrustExceptionViewSet, basename="trust-exception")
router.register("federated/jobs", FederatedJobViewSet, basename="federated-job")
router.register("federated-studies", FederatedStudyViewSet, basename="federated-study")

urlpatterns = router.urls
