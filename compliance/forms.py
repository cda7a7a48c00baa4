"""Forms of the clinician and officer pages: shape only; the rules are the services' (shared with the API)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from compliance.choices import Agreement, CorrectiveActionKind, ErrorType, IncidentStatus, Severity
from compliance.dossier_fields import FIELDS, validate_values
from compliance.dossiers import DEFAULT_MEANING
from compliance.feedback import EDITABLE, case_reference_check
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import Feedback

_RATING_CHOICES = [("", "No answer"), *[(str(i), str(i)) for i in range(1, 6)]]


class FeedbackForm(forms.ModelForm):
    """One case in under 30 seconds: reference, what the model said, agree or not; the rest optional."""

    submission_key = forms.UUIDField(widget=forms.HiddenInput)
    agreement = forms.ChoiceField(choices=Agreement.choices, widget=forms.RadioSelect, label="Do you agree with the model?")
    error_type = forms.ChoiceField(choices=[("", "— (I agree)"), *ErrorType.choices], required=False, label="If not, what went wrong?")
    severity = forms.ChoiceField(choices=Severity.choices, widget=forms.RadioSelect, initial=Severity.NONE, label="Clinical severity")
    explanation_helped = forms.TypedChoiceField(
        choices=_RATING_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        widget=forms.RadioSelect,
        label="The explanation helped me (1 not at all, 5 very much)",
    )
    uncertainty_helped = forms.TypedChoiceField(
        choices=_RATING_CHOICES, coerce=int, empty_value=None, required=False, widget=forms.RadioSelect, label="The uncertainty flag helped me"
    )
    fitted_workflow = forms.TypedChoiceField(
        choices=_RATING_CHOICES, coerce=int, empty_value=None, required=False, widget=forms.RadioSelect, label="The output fitted my workflow"
    )

    class Meta:
        model = Feedback
        fields = list(EDITABLE)
        labels = {
            "case_reference": "Case reference",
            "model_output": "Model output",
            "minutes_saved": "Minutes saved (negative if it cost you time)",
            "comment": "Comment (optional)",
        }
        widgets = {
            "case_reference": forms.TextInput(attrs={"autofocus": True, "autocomplete": "off", "placeholder": "CASE-7f3a9c", "spellcheck": "false"}),
            "model_output": forms.TextInput(attrs={"placeholder": "nodule 0.82 (flagged)"}),
            "minutes_saved": forms.NumberInput(attrs={"min": -240, "max": 240, "step": 1, "inputmode": "numeric"}),
            "comment": forms.Textarea(attrs={"rows": 3, "maxlength": 2000}),
        }

    def clean_case_reference(self) -> str:
        try:
            return case_reference_check(self.cleaned_data.get("case_reference", ""))
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["case_reference"]) from None

    def service_fields(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k != "submission_key"}


class IncidentForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10000)
    incident_type = forms.ChoiceField(choices=list(INCIDENT_TYPES.items()))
    aware_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="Date the provider became aware")


class IncidentTransitionForm(forms.Form):
    status = forms.ChoiceField(choices=IncidentStatus.choices, label="New status")
    reported_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Reported to the authority on")
    authority_reference = forms.CharField(required=False, max_length=120, label="Authority's reference")
    closing_note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


class CorrectiveActionForm(forms.Form):
    kind = forms.ChoiceField(choices=CorrectiveActionKind.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


class DossierText(forms.CharField):
    """Officer text with the browser's CRLF line breaks stored as LF, so an untouched field compares equal."""

    def to_python(self, value):
        value = super().to_python(value)
        return value.replace("\r\n", "\n").replace("\r", "\n")


class DossierForm(forms.Form):
    """The officer-written fields of a dossier revision, one textarea each, in catalogue order.

    Each field carries its loaded text in a hidden ``initial-`` input, so only what this officer
    changed is saved: a field they left alone never overwrites another officer's save.
    ``edit_count`` names the save they started from (``compliance.dossiers`` step 2).
    """

    edit_count = forms.IntegerField(min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for f in FIELDS.values():
            if f.editable:
                self.fields[f.key] = DossierText(
                    label=f.title,
                    required=False,
                    show_hidden_initial=True,
                    widget=forms.Textarea(
                        attrs={
                            "rows": 2 if f.check and f.min_length < 10 else 5,  # an identifier is one line
                            "maxlength": f.max_length,
                            "aria-describedby": f"guidance-{f.key}",
                            **({"placeholder": f"e.g. {f.example}"} if f.example else {}),
                        }
                    ),
                )

    @classmethod
    def for_values(cls, values: dict, edit_count: int) -> DossierForm:
        return cls(initial={"edit_count": edit_count, **{k: values.get(k, "") for k in FIELDS if FIELDS[k].editable}})

    def clean(self):
        for key, message in validate_values(self.changed_values()).items():
            self.add_error(key, message)
        return self.cleaned_data

    def changed_values(self) -> dict[str, str]:
        return {k: self.cleaned_data[k] for k in self.changed_data if k in FIELDS and k in self.cleaned_data}

    def rebased(self, saved: dict, edit_count: int) -> DossierForm:
        """After another officer's save: this officer's changes on top of the saved text, to save again."""
        mine = self.changed_values()
        data = {"edit_count": edit_count}
        for name in self.fields:
            if name in FIELDS:
                data[self.add_initial_prefix(name)] = saved.get(name, "")
                data[self.add_prefix(name)] = mine.get(name, saved.get(name, ""))
        return type(self)(data)


class DossierNoteForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": 4000}),
        max_length=4000,
        label="What must change",
        help_text="Name the fields and say what is missing or wrong; the author sees this note above the dossier.",
    )


class DossierSignForm(forms.Form):
    meaning = forms.CharField(
        max_length=200,
        label="What your signature means",
        initial=DEFAULT_MEANING,
        help_text="Recorded with your name, the time and the snapshot's hash, and printed on the documents.",
    )
    snapshot_sha256 = forms.CharField(max_length=64, required=False, widget=forms.HiddenInput, help_text="The snapshot shown on this page.")
    confirm = forms.BooleanField(
        label="I have reviewed this snapshot and sign it as a second compliance officer.",
        error_messages={"required": "Tick the box to confirm that you sign this snapshot."},
    )
    password = forms.CharField(
        max_length=4096,
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Your own password, again: a signature is made by the person at the keyboard now.",
    )
    otp_code = forms.CharField(
        max_length=8,
        required=False,
        label="The code your authenticator app shows now",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
