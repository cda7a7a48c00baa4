"""The version's steps on the market, on its own page: the conformity assessments, the signed
declaration, the placing on the market, a withdrawal, clinical investigations and the retention of
its documentation; an officer records each step with the form beside it. The rules are the
services' (``compliance.change_control``, ``compliance.market``), shared with the API."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render

from compliance import forms
from compliance.change_control import conformity_assessment_record
from compliance.market import clinical_investigation_record, market_place, market_steps, market_withdraw
from core.access import may
from core.errors import Conflict
from core.pages import requires
from registry.selectors import institution_list, version_list

STEPS = {
    "assessment": (forms.ConformityAssessmentStepForm, conformity_assessment_record, "Conformity assessment recorded."),
    "placement": (forms.MarketPlacementForm, market_place, "Placing on the market recorded."),
    "withdrawal": (forms.MarketWithdrawalForm, market_withdraw, "Withdrawal recorded."),
    "investigation": (forms.ClinicalInvestigationForm, clinical_investigation_record, "Clinical investigation recorded."),
}


def _form(step: str, request, data=None):
    form_class = STEPS[step][0]
    if form_class is forms.ClinicalInvestigationForm:
        return form_class(data, prefix=step, institutions=institution_list(user=request.user))
    return form_class(data, prefix=step)


def _record(request, version, step: str):
    """Run the step's service with the form's values; its refusals become messages or field errors."""
    form = _form(step, request, request.POST)
    if not form.is_valid():
        return form
    _, service, done = STEPS[step]
    try:
        service(actor=request.user, version=version, **form.cleaned_data)
    except ValidationError as exc:
        for field, problems in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, problems)
        return form
    except (PermissionDenied, Conflict) as exc:
        messages.error(request, str(exc))
        return form
    messages.success(request, done)
    return None


@requires("dossier")
def version_market(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model__provider"), pk=pk)
    may_record = may(request.user, "dossier", write=True)
    bound = {}
    if request.method == "POST":
        step = request.POST.get("step", "")
        if not may_record or step not in STEPS:
            raise PermissionDenied("Your role does not allow recording these steps.")
        form = _record(request, version, step)
        if form is None:
            return redirect("pages:version-market", pk=pk)
        bound[step] = form
    context = {
        "version": version,
        "steps": market_steps(version),
        "may_record": may_record,
        "forms": {step: bound.get(step) or _form(step, request) for step in STEPS},
    }
    return render(request, "compliance/version_market.html", context, status=400 if bound else 200)
