from rest_framework.routers import SimpleRouter

from registry.api import views

router = SimpleRouter()
router.register("institutions", views.InstitutionViewSet, basename="institution")
router.register("foundation-models", views.FoundationModelViewSet, basename="foundation-model")
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("provenance", views.ProvenanceViewSet, basename="provenance")
router.register("data-use-grants", views.DataUseGrantViewSet, basename="data-use-grant")
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = router.urls
