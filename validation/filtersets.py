import django_filters

from validation.models import CaseFlag, RunFile, ValidationRun


class ValidationRunFilterSet(django_filters.FilterSet):
    class Meta:
        model = ValidationRun
        fields = ["version", "dataset", "status", "queue", "deployment", "is_baseline"]


class RunFileFilterSet(django_filters.FilterSet):
    class Meta:
        model = RunFile
        fields = ["run", "kind"]


class CaseFlagFilterSet(django_filters.FilterSet):
    class Meta:
        model = CaseFlag
        fields = ["run", "label"]
