"""Filters of the compliance API's lists."""

import django_filters

from compliance.models import Alert


class AlertFilterSet(django_filters.FilterSet):
    class Meta:
        model = Alert
        fields = ["version", "deployment", "run", "kind", "severity", "status"]
