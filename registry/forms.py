"""Forms of the registry's pages: shape only; the rules are the services' (shared with the API)."""

from __future__ import annotations

from django import forms

from radtrust_engine.dicomweb import LabelsError, labels_csv
from registry.choices import AdaptationMethod, DataUsePurpose
from registry.selectors import dataset_list, institution_list


class DataUseGrantForm(forms.Form):
    """The steward's grant: its own datasets to another institution, for a purpose and period."""

    dataset = forms.ModelChoiceField(queryset=None, label="Dataset")
    grantee = forms.ModelChoiceField(queryset=None, label="Granted to")
    purpose = forms.ChoiceField(choices=DataUsePurpose.choices)
    purpose_detail = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Purpose in the agreement's words", help_text="Which models, which study."
    )
    agreement_reference = forms.CharField(max_length=120, label="Data-use agreement", help_text="Its reference, for example DUA-2025-014.")
    valid_from = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="From")
    valid_until = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="Until (the last day included)")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = dataset_list(user=user).filter(institution_id=user.institution_id).order_by("name")
        self.fields["grantee"].queryset = institution_list(user=user).exclude(pk=user.institution_id)


class AdaptationForm(forms.Form):
    """How a version was adapted from its base: the method, the task and labels, the labelled data
    and what stayed frozen (``registry.adaptations.adaptation_record`` checks the rest)."""

    method = forms.ChoiceField(choices=AdaptationMethod.choices, label="Adaptation method")
    task = forms.CharField(max_length=300, label="Task", help_text="In words, e.g. pneumothorax on adult chest films.")
    labels = forms.CharField(max_length=2000, label="Labels", help_text="The labels the adaptation predicts, separated by commas.")
    labelled_dataset = forms.ModelChoiceField(queryset=None, required=False, label="Labelled dataset", help_text="The labelled data used to adapt.")
    labelled_cases = forms.IntegerField(min_value=0, initial=0, label="Labelled cases", help_text="0 for a prompt without examples.")
    labelled_patients = forms.IntegerField(min_value=0, initial=0, label="Distinct patients among them")
    frozen_parts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Frozen parts",
        help_text="What stayed as in the base, e.g. the whole encoder.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labelled_dataset"].queryset = dataset_list(user=user).order_by("name")

    def clean_labels(self) -> list[str]:
        labels = [name.strip() for name in self.cleaned_data["labels"].split(",") if name.strip()]
        if not labels:
            raise forms.ValidationError("Name at least one label, e.g. pneumothorax.")
        return labels


MAX_LABELS_BYTES = 64 * 1024 * 1024


class DicomwebSourceForm(forms.Form):
    """A dataset as a query on a PACS (DICOMweb) with its labels table uploaded as CSV; the password is never asked for."""

    base_url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label="DICOMweb address",
        help_text="The PACS's DICOMweb root, e.g. https://pacs.example.org/dicom-web.",
    )
    credentials_env = forms.CharField(
        max_length=60,
        required=False,
        label="Credentials: environment prefix",
        help_text="RadTrust's server and workers read PREFIX_USER and PREFIX_PASSWORD (or PREFIX_PASSWORD_FILE) from their own environment.",
    )
    modality = forms.CharField(max_length=16, required=False, label="Modality", help_text="A DICOM code: CR, DX, CT, MR ...")
    body_part = forms.CharField(max_length=16, required=False, label="Body part examined", help_text="e.g. CHEST")
    study_dates = forms.CharField(max_length=17, required=False, label="Study dates", help_text="YYYYMMDD-YYYYMMDD; either end may be left open.")
    series_description = forms.CharField(max_length=64, required=False, label="Series description")
    accession_numbers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Accession numbers (optional)", help_text="Only these studies: one per line."
    )
    labels = forms.FileField(
        label="Labels table (CSV)",
        help_text="A header row with StudyInstanceUID or SOPInstanceUID and one column per label (0 or 1), then one row per study or instance.",
    )

    def clean_accession_numbers(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["accession_numbers"].replace(",", "\n").splitlines() if line.strip()]

    def clean_labels(self):
        upload = self.cleaned_data["labels"]
        if upload.size > MAX_LABELS_BYTES:
            raise forms.ValidationError(f"The labels table is larger than {MAX_LABELS_BYTES // (1024 * 1024)} MB.")
        try:
            return labels_csv(upload.read().decode("utf-8"))
        except UnicodeDecodeError:
            raise forms.ValidationError("The labels table is not UTF-8 text.") from None
        except LabelsError as exc:
            raise forms.ValidationError(str(exc)) from None
