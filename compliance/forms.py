"""Forms of the clinician and officer pages: shape only; the rules are the services' (shared with the API)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from compliance.choices import (
    Agreement,
    CeMarking,
    ConformityRoute,
    CorrectiveActionKind,
    ErrorType,
    HarmonisedStatus,
    IncidentStatus,
    MdrProcedure,
    RiskControlKind,
    Severity,
    VerificationKind,
)
from compliance.dossier_fields import FIELDS, validate_values
from compliance.dossiers import DEFAULT_MEANING
from compliance.feedback import EDITABLE, case_reference_check
from compliance.incident_rules import INCIDENT_TYPES
from compliance.models import Feedback
from compliance.qms import ART_17
from registry.models import Institution

_RATING_CHOICES = [("", "No answer"), *[(str(i), str(i)) for i in range(1, 6)]]


class FeedbackForm(forms.ModelForm):
    """One case in seconds: the reference and the model's output come prefilled from the worklist
    link, and the agreement is the button pressed (``agreement`` arrives as the button's value), so
    "agree" is one click. A disagreement without an error type is recorded as "Other"; the
    severity, time saved and 1-5 ratings are optional and folded away (``DETAIL_FIELDS``)."""

    QUICK_FIELDS = ("case_reference", "model_output", "comment", "error_type", "suspected_serious_incident")
    DETAIL_FIELDS = ("severity", "minutes_saved", "explanation_helped", "uncertainty_helped", "fitted_workflow")

    submission_key = forms.UUIDField(widget=forms.HiddenInput)
    agreement = forms.ChoiceField(choices=Agreement.choices, label="Do you agree with the model?")
    error_type = forms.ChoiceField(
        choices=[("", "Not said"), *ErrorType.choices], required=False, label="If you disagree: what went wrong? (optional)"
    )
    severity = forms.ChoiceField(choices=Severity.choices, widget=forms.RadioSelect, initial=Severity.NONE, required=False, label="Clinical severity")
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
    suspected_serious_incident = forms.BooleanField(
        required=False,
        label="I suspect a serious incident (a patient was or could have been seriously harmed)",
        help_text="The compliance officers are told at once and decide whether it must be reported to the authority.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:  # the flag opens an incident when the report is sent; an edit cannot take it back
            del self.fields["suspected_serious_incident"]

    class Meta:
        model = Feedback
        fields = list(EDITABLE)
        labels = {
            "case_reference": "Case reference (required)",
            "model_output": "Model output (required)",
            "minutes_saved": "Minutes saved (negative if it cost you time)",
            "comment": "Comment (optional)",
        }
        widgets = {
            "case_reference": forms.TextInput(attrs={"autocomplete": "off", "placeholder": "CASE-7f3a9c", "spellcheck": "false", "required": True}),
            "model_output": forms.TextInput(attrs={"placeholder": "nodule 0.82 (flagged)", "required": True}),
            "minutes_saved": forms.NumberInput(attrs={"min": -240, "max": 240, "step": 1, "inputmode": "numeric"}),
            "comment": forms.Textarea(attrs={"rows": 2, "maxlength": 2000}),
        }

    def clean_case_reference(self) -> str:
        try:
            return case_reference_check(self.cleaned_data.get("case_reference", ""))
        except ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["case_reference"]) from None

    def clean(self) -> dict:
        data = super().clean()
        if data.get("agreement") == Agreement.AGREE:
            data["error_type"] = ""  # an error type picked before pressing "Agree" does not apply
        elif data.get("agreement") and not data.get("error_type"):
            data["error_type"] = ErrorType.OTHER
        data["severity"] = data.get("severity") or Severity.NONE
        return data

    def other_fields(self) -> list:
        """Visible fields neither quick nor detailed (rendered with the quick ones, so none is lost)."""
        placed = {"agreement", *self.QUICK_FIELDS, *self.DETAIL_FIELDS}
        return [f for f in self.visible_fields() if f.name not in placed]

    def detail_fields(self) -> list:
        return [self[name] for name in self.DETAIL_FIELDS]

    def service_fields(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if k != "submission_key"}


class IncidentForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10000)
    incident_type = forms.ChoiceField(
        choices=[("", "Not decided yet: triage it on the incident page"), *INCIDENT_TYPES.items()],
        required=False,
        help_text="Choose a type only if it is a serious incident; a trend or a post-market signal is triaged on the incident page.",
    )
    aware_on = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}),
        label="Date the provider became aware",
        help_text="The date of the earliest linked record; change it only with a reason below.",
    )
    awareness_reason = forms.CharField(required=False, max_length=4000, label="Reason for another date of awareness")


class IncidentTransitionForm(forms.Form):
    status = forms.ChoiceField(choices=IncidentStatus.choices, label="New status")
    reported_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Reported to the authority on")
    authority_reference = forms.CharField(required=False, max_length=120, label="Authority's reference")
    closing_note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


class CorrectiveActionForm(forms.Form):
    """No action is preselected: suspending a live deployment must be a choice, then confirmed on a page
    that says what will happen to whom (``incidents.deployment_effect``)."""

    kind = forms.ChoiceField(
        choices=[("", "Choose an action"), *[c for c in CorrectiveActionKind.choices if c[0] != CorrectiveActionKind.FIELD_SAFETY_ACTION]],
        label="Action",
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=4000,
        help_text="For a suspension, this is the reason the clinicians at the hospital will read.",
    )
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)


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


class ConformityAssessmentStepForm(forms.Form):
    """The version page's record of a conformity assessment (``compliance.change_control``)."""

    route = forms.ChoiceField(choices=ConformityRoute.choices)
    mdr_procedure = forms.ChoiceField(choices=MdrProcedure.choices, required=False, label="MDR procedure")
    notified_body = forms.CharField(max_length=200, required=False, help_text="Its name and four-digit identification number.")
    certificate_reference = forms.CharField(max_length=120, required=False)
    assessed_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))


class MarketPlacementForm(forms.Form):
    """The version page's record of the placing on the market (``compliance.market``); the declaration
    is that of the newest signed dossier revision."""

    ce_marking = forms.ChoiceField(choices=CeMarking.choices, label="CE-marking decision")
    placed_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="Placed on the market on")


class MarketWithdrawalForm(forms.Form):
    withdrawn_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label="Withdrawn on")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)


class ClinicalInvestigationForm(forms.Form):
    institution = forms.ModelChoiceField(queryset=Institution.objects.none())
    reference = forms.CharField(max_length=120, label="Investigation reference (CIV-ID or ethics approval)")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)

    def __init__(self, *args, institutions=None, **kwargs):
        super().__init__(*args, **kwargs)
        if institutions is not None:
            self.fields["institution"].queryset = institutions


class HazardForm(forms.Form):
    """A new line of the risk file (``compliance.risk_file.hazard_add``)."""

    hazard = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000, help_text="The source of harm.")
    situation = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000, label="Hazardous situation")
    harm = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=1000)


class HazardEstimateForm(forms.Form):
    """Probability and severity before and after control, on the file's matrix (levels and labels from it)."""

    hazard = forms.IntegerField(widget=forms.HiddenInput)
    probability = forms.TypedChoiceField(coerce=int)
    severity = forms.TypedChoiceField(coerce=int)
    residual_probability = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    residual_severity = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    rationale = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, required=False)

    def __init__(self, *args, matrix=None, **kwargs):
        super().__init__(*args, **kwargs)
        if matrix is not None:
            levels = {"probability": matrix.probability, "severity": matrix.severity}
            for name, field in self.fields.items():
                axis = "severity" if "severity" in name else "probability"
                if isinstance(field, forms.TypedChoiceField):
                    blank = [("", "not estimated")] if not field.required else []
                    field.choices = blank + [(x["level"], f"{x['level']} {x['label']}") for x in levels[axis]]


class RiskControlForm(forms.Form):
    hazard = forms.IntegerField(widget=forms.HiddenInput)
    kind = forms.ChoiceField(choices=RiskControlKind.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class RiskVerificationForm(forms.Form):
    """The evidence a control works: a run (and an analysis of it), a dossier field, or a record by reference."""

    control = forms.IntegerField(widget=forms.HiddenInput)
    kind = forms.ChoiceField(choices=VerificationKind.choices, label="Verified by")
    run = forms.IntegerField(required=False, label="Validation run id")
    section = forms.CharField(required=False, max_length=40, help_text="For an analysis: subgroups, robustness, calibration, ...")
    field = forms.CharField(required=False, max_length=60, label="Dossier field key", help_text="e.g. 14_4d_override")
    reference = forms.CharField(required=False, max_length=300, help_text="A training record or document: number and title.")


class HazardSignalForm(forms.Form):
    hazard = forms.IntegerField(widget=forms.HiddenInput)
    alert = forms.IntegerField(required=False, label="Alert id")
    incident = forms.IntegerField(required=False, label="Incident id")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, help_text="What the signal shows about this hazard.")


class HazardAcceptanceForm(forms.Form):
    hazard = forms.IntegerField(widget=forms.HiddenInput)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, required=False)


class RiskConclusionForm(forms.Form):
    benefit_risk = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), max_length=4000, label="Overall benefit-risk conclusion")


class QmsProcedureForm(forms.Form):
    reference = forms.CharField(max_length=40)
    title = forms.CharField(max_length=300)
    articles = forms.MultipleChoiceField(choices=[], widget=forms.CheckboxSelectMultiple, label="Art. 17(1) points covered")
    reviewed_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    next_review = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["articles"].choices = [(k, f"({k}) {v}") for k, v in ART_17.items()]


class QmsStandardForm(forms.Form):
    standard = forms.IntegerField(widget=forms.HiddenInput)
    edition = forms.CharField(max_length=60)
    harmonised_status = forms.ChoiceField(choices=HarmonisedStatus.choices)
    harmonised_reference = forms.CharField(max_length=200, required=False)
