"""The datasheet's count tables as rows in a page form: scanners (manufacturer, model, count),
acquisition protocols (protocol, count) and demographics (attribute, category, count).

Each table is a formset of small row forms, so a mistake is named on its row, and
``DatasheetTables.values`` gives the same structure the API stores (``Dataset.scanners``,
``protocols``, ``demographics``; ``registry.datasheets`` validates it). Blank rows are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms

from registry.datasheets import DEMOGRAPHIC_ATTRIBUTES, MAX_COUNT

ATTRIBUTE_LABELS = {"sex": "Sex", "age_band": "Age band", "ethnicity": "Ethnicity"}
assert set(ATTRIBUTE_LABELS) == set(DEMOGRAPHIC_ATTRIBUTES)  # one label per attribute the datasheet knows


def _count(label: str) -> forms.IntegerField:
    return forms.IntegerField(min_value=0, max_value=MAX_COUNT, label=label, widget=forms.NumberInput(attrs={"inputmode": "numeric"}))


class ScannerRow(forms.Form):
    manufacturer = forms.CharField(max_length=120, label="Manufacturer")
    model = forms.CharField(max_length=120, required=False, label="Model")
    count = _count("Studies")


class ProtocolRow(forms.Form):
    protocol = forms.CharField(max_length=120, label="Protocol")
    count = _count("Studies")


class DemographicRow(forms.Form):
    attribute = forms.ChoiceField(choices=[("", "Choose…"), *ATTRIBUTE_LABELS.items()], label="Attribute")
    category = forms.CharField(max_length=60, label="Category", help_text="e.g. F, 40-59, or as recorded")
    count = _count("Patients")


class _Rows(forms.BaseFormSet):
    """Rows with one key each: a second row with the same key is named, not silently merged."""

    key: tuple[str, ...] = ()

    def clean(self):
        seen = set()
        for form in self.forms:
            if not form.has_changed() or not hasattr(form, "cleaned_data") or form.errors:
                continue
            key = tuple(str(form.cleaned_data.get(name) or "").strip().casefold() for name in self.key)
            if key in seen:
                form.add_error(self.key[-1], "The same row appears twice: add the counts together in one row.")
            seen.add(key)


class _ScannerRows(_Rows):
    key = ("manufacturer", "model")


class _ProtocolRows(_Rows):
    key = ("protocol",)


class _DemographicRows(_Rows):
    key = ("attribute", "category")


@dataclass(frozen=True)
class Table:
    """One formset with what the page says about it."""

    name: str
    title: str
    help: str
    formset: forms.BaseFormSet


TABLES = (
    (
        "scanners",
        "Scanners",
        "One row per scanner model, with the number of studies acquired on it (FUTURE-AI Robustness 1).",
        ScannerRow,
        _ScannerRows,
        4,
    ),
    (
        "protocols",
        "Acquisition protocols",
        "One row per protocol, e.g. PA chest, AP portable, with its number of studies.",
        ProtocolRow,
        _ProtocolRows,
        4,
    ),
    (
        "demographics",
        "Demographic composition",
        "One row per attribute and category, with its number of patients (FUTURE-AI Fairness 2).",
        DemographicRow,
        _DemographicRows,
        8,
    ),
)


class DatasheetTables:
    """The three tables of one datasheet form, bound to a POST or blank."""

    def __init__(self, data=None):
        """A table the POST does not carry (no management form: a script or a test posting the other
        fields only) is left unbound: it records nothing rather than refusing the datasheet."""
        self.tables = [
            Table(
                name,
                title,
                help,
                forms.formset_factory(row, formset=rows, extra=extra, max_num=200, validate_max=True)(
                    data if data is not None and f"{name}-TOTAL_FORMS" in data else None, prefix=name
                ),
            )
            for name, title, help, row, rows, extra in TABLES
        ]

    def __iter__(self):
        return iter(self.tables)

    def is_valid(self) -> bool:
        valid = [t.formset.is_valid() for t in self.tables if t.formset.is_bound]  # every table validated, so each shows its errors
        return all(valid)

    def values(self) -> dict:
        """The tables as the datasheet stores them (call after ``is_valid``)."""
        rows = {t.name: [f.cleaned_data for f in t.formset.forms if f.has_changed()] if t.formset.is_bound else [] for t in self.tables}
        demographics: dict[str, dict[str, int]] = {}
        for row in rows["demographics"]:
            demographics.setdefault(row["attribute"], {})[row["category"].strip()] = row["count"]
        return {
            "scanners": [{"manufacturer": r["manufacturer"].strip(), "model": r["model"].strip(), "count": r["count"]} for r in rows["scanners"]],
            "protocols": {r["protocol"].strip(): r["count"] for r in rows["protocols"]},
            "demographics": demographics,
        }
