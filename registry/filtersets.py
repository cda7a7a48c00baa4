import django_filters

from registry.models import Dataset, DataUseGrant, Deployment, FoundationModel, ModelVersion, Provenance


class FoundationModelFilterSet(django_filters.FilterSet):
    class Meta:
        model = FoundationModel
        fields = ["provider", "modality", "task", "risk_class"]


class ModelVersionFilterSet(django_filters.FilterSet):
    class Meta:
        model = ModelVersion
        fields = ["foundation_model", "status", "parent", "mirror_state", "artifact_sha256"]


class DatasetFilterSet(django_filters.FilterSet):
    class Meta:
        model = Dataset
        fields = ["institution", "modality"]


class ProvenanceFilterSet(django_filters.FilterSet):
    class Meta:
        model = Provenance
        fields = ["version", "dataset", "role"]


class DataUseGrantFilterSet(django_filters.FilterSet):
    class Meta:
        model = DataUseGrant
        fields = ["dataset", "grantee", "purpose"]


class DeploymentFilterSet(django_filters.FilterSet):
    class Meta:
        model = Deployment
        fields = ["version", "institution", "status"]
