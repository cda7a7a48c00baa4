"""Forms of the registry's pages: shape only; the rules are the services' (shared with the API)."""

from __future__ import annotations

from django import forms

from registry.choices import DataUsePurpose
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
