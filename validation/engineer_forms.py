"""Forms of the engineers' pages: shape only; the rules are the services' (shared with the API)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError

from radtrust_engine.pipeline import ANALYSES, SuiteConfig
from registry.choices import ProvenanceRole
from registry.models import Dataset, FoundationModel, ModelVersion
from registry.selectors import dataset_list
from registry.services import data_use_check
from validation.services import dataset_root

ANALYSIS_LABELS = {
    "calibration": "Calibration: do the scores mean what they say?",
    "drift": "Drift: has the data moved since the baseline run?",
    "explainability": "Explainability: saliency maps of sample cases",
    "generalisation": "Generalisation: across sites and scanners",
    "robustness": "Robustness: small perturbations of the images",
    "uncertainty": "Uncertainty: test-time augmentation and risk control",
}


def runnable_datasets(*, user, version: ModelVersion) -> list[Dataset]:
    """The datasets a run of ``version`` can read now: visible to the user, with a location under a
    data root or a DICOMweb source, and the steward's active grant where the data is another institution's."""
    usable = []
    for dataset in dataset_list(user=user).select_related("institution", "dicomweb").order_by("name"):
        try:
            data_use_check(dataset=dataset, grantee_id=version.foundation_model.provider_id)
            if not hasattr(dataset, "dicomweb"):  # a PACS dataset is resolved when the run is created
                dataset_root(dataset)
        except (ValidationError, PermissionDenied):
            continue
        usable.append(dataset)
    return usable


class RunStartForm(forms.Form):
    """A validation of one version: the dataset (only those it can run on) and the analyses, as checkboxes."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label="Dataset")
    analyses = forms.MultipleChoiceField(
        choices=[(name, ANALYSIS_LABELS.get(name, name)) for name in ANALYSES],
        initial=list(SuiteConfig().analyses),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Analyses besides the metrics and subgroups",
    )
    n_resamples = forms.IntegerField(min_value=100, max_value=10000, initial=SuiteConfig().n_resamples, label="Bootstrap resamples for the intervals")

    def __init__(self, *args, datasets: list[Dataset], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(pk__in=[d.pk for d in datasets]).order_by("name")

    def suite_config(self) -> dict:
        return {"analyses": list(self.cleaned_data["analyses"]), "n_resamples": self.cleaned_data["n_resamples"]}


class FoundationModelForm(forms.ModelForm):
    class Meta:
        model = FoundationModel
        fields = [
            "name",
            "description",
            "intended_purpose",
            "intended_users",
            "instructions_for_use",
            "known_limitations",
            "modality",
            "body_region",
            "task",
            "risk_class",
            "mdr_class",
            "licence",
        ]
        widgets = {
            name: forms.Textarea(attrs={"rows": 3}) for name in ("description", "intended_purpose", "instructions_for_use", "known_limitations")
        }


class DatasetForm(forms.ModelForm):
    """The datasheet's fields a person writes (Art. 10(2)); the scanner, protocol and demographic
    counts are tables of rows beside it (``registry.datasheet_forms``)."""

    class Meta:
        model = Dataset
        fields = [
            "name",
            "description",
            "modality",
            "body_region",
            "collection_start",
            "collection_end",
            "collection_purpose",
            "patient_count",
            "study_count",
            "image_count",
            "label_source",
            "rater_count",
            "rater_agreement",
            "preparation",
            "legal_basis",
            "deidentification",
            "licence",
            "known_limitations",
            "location",
        ]
        widgets = {
            "collection_start": forms.DateInput(attrs={"type": "date"}),
            "collection_end": forms.DateInput(attrs={"type": "date"}),
            **{
                name: forms.Textarea(attrs={"rows": 3})
                for name in ("description", "collection_purpose", "label_source", "preparation", "deidentification", "known_limitations")
            },
        }


class ProvenanceForm(forms.Form):
    """Which data the version was trained, tuned, calibrated or tested on."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), label="Dataset")
    role = forms.ChoiceField(choices=ProvenanceRole.choices, label="Used for")
    notes = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}), label="Notes (optional)")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = dataset_list(user=user).order_by("name")
