import django_filters

from validation.models import ValidationRun


class ValidationRunFilterSet(django_filters.FilterSet):
    class Meta:
        model = ValidationRun
        fields = ["version", "dataset", "status", "queue"]
