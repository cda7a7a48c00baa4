"""The risk management file of a version and the provider's QMS register, on their own pages: the
matrix with each hazard placed in it, the risk table, and beside each line the forms an officer uses
(estimate, control, verification, linked signal, acceptance by two officers, approval). The rules
are the services' (``compliance.risk_file``, ``compliance.qms``), shared with the API."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from compliance import forms
from compliance import risk_file as services
from compliance.models import Alert, Hazard, Incident, QmsProcedure, RiskControl, RiskFile
from compliance.qms import ART_17, qms_procedure_save, qms_register, qms_standard_save, qms_standards_seed
from compliance.risk_matrix import REGIONS
from compliance.selectors import qms_standard_list
from core.access import may
from core.errors import Conflict
from core.pages import requires
from registry.selectors import institution_list, version_list
from validation.models import ValidationRun


def _hazard(risk_file, data):
    return get_object_or_404(Hazard, pk=data["hazard"], risk_file=risk_file)


def _verify(request, risk_file, data):
    control = get_object_or_404(RiskControl, pk=data.pop("control"), hazard__risk_file=risk_file)
    run_id = data.pop("run", None)
    run = ValidationRun.objects.filter(pk=run_id, version=risk_file.version).first() if run_id else None
    services.risk_control_verify(actor=request.user, control=control, run=run, **data)


def _signal(request, risk_file, data):
    version = risk_file.version
    alert = Alert.objects.filter(pk=data["alert"], version=version).first() if data["alert"] else None
    incident = Incident.objects.filter(pk=data["incident"], version=version).first() if data["incident"] else None
    services.hazard_signal_link(actor=request.user, hazard=_hazard(risk_file, data), alert=alert, incident=incident, note=data["note"])


def _estimate(request, risk_file, data):
    hazard = _hazard(risk_file, data)
    data.pop("hazard")
    services.hazard_estimate(actor=request.user, hazard=hazard, **data)


# step -> (form, what it does with the cleaned data, what it says when done)
STEPS: dict[str, tuple[type, Callable, str]] = {
    "hazard": (forms.HazardForm, lambda r, f, d: services.hazard_add(actor=r.user, risk_file=f, **d), "Hazard added."),
    "estimate": (forms.HazardEstimateForm, _estimate, "Estimate recorded."),
    "control": (
        forms.RiskControlForm,
        lambda r, f, d: services.risk_control_add(actor=r.user, hazard=_hazard(f, d), kind=d["kind"], description=d["description"]),
        "Control added.",
    ),
    "verification": (forms.RiskVerificationForm, _verify, "Verification recorded."),
    "signal": (forms.HazardSignalForm, _signal, "Signal linked: the hazard's estimate is re-opened."),
    "accept": (
        forms.HazardAcceptanceForm,
        lambda r, f, d: services.hazard_acceptance_propose(actor=r.user, hazard=_hazard(f, d), reason=d["reason"]),
        "Acceptance proposed; a second officer confirms it.",
    ),
    "confirm": (
        forms.HazardAcceptanceForm,
        lambda r, f, d: services.hazard_acceptance_confirm(actor=r.user, hazard=_hazard(f, d)),
        "Acceptance confirmed.",
    ),
    "conclusion": (
        forms.RiskConclusionForm,
        lambda r, f, d: services.risk_file_update(actor=r.user, risk_file=f, benefit_risk=d["benefit_risk"]),
        "Conclusion saved.",
    ),
}


def _act(request, version, risk_file) -> bool:
    """Run the posted step's service; its refusals become messages. True when it went through."""
    step = request.POST.get("step", "")
    try:
        if step == "open":
            services.risk_file_open(actor=request.user, version=version)
        elif step == "approve":
            services.risk_file_approve(actor=request.user, risk_file=risk_file)
        elif step in STEPS and risk_file is not None:
            form_class, action, done = STEPS[step]
            kwargs = {"matrix": services.matrix_of(risk_file)} if form_class is forms.HazardEstimateForm else {}
            form = form_class(request.POST, **kwargs)
            if not form.is_valid():
                for problems in form.errors.values():
                    messages.error(request, " ".join(problems))
                return False
            action(request, risk_file, dict(form.cleaned_data))
            messages.success(request, done)
            return True
        else:
            messages.error(request, "Unknown step.")
            return False
    except ValidationError as exc:
        for problem in exc.messages:
            messages.error(request, problem)
        return False
    except (PermissionDenied, Conflict) as exc:
        messages.error(request, str(exc))
        return False
    messages.success(request, "Risk file opened." if step == "open" else "Risk file approved.")
    return True


@requires("risk_file")
def version_risk_file(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model__provider"), pk=pk)
    risk_file = RiskFile.objects.filter(version=version).first()
    may_write = may(request.user, "risk_file", write=True)
    if request.method == "POST":
        if not may_write:
            raise PermissionDenied("Your role does not allow changing the risk file.")
        _act(request, version, risk_file)
        return redirect("pages:version-risk-file", pk=pk)
    context = {"version": version, "risk_file": risk_file, "may_write": may_write}
    if risk_file is not None:
        matrix = services.matrix_of(risk_file)
        summary = services.risk_file_summary(version)
        hazards = list(risk_file.hazards.all())
        grid = [
            {
                "label": p["label"],
                "cells": [
                    {
                        "region": matrix.region(p["level"], s["level"]),
                        "hazards": [f"H{h.number}" for h in hazards if (h.probability, h.severity) == (p["level"], s["level"])],
                        "residual": [f"H{h.number}" for h in hazards if (h.residual_probability, h.residual_severity) == (p["level"], s["level"])],
                    }
                    for s in matrix.severity
                ],
            }
            for p in reversed(matrix.probability)
        ]
        context |= {
            "summary": summary,
            "grid": grid,
            "severity": matrix.severity,
            "regions": REGIONS,
            "blockers": services.approval_blockers(risk_file),
            "estimate_form": forms.HazardEstimateForm(matrix=matrix),
            "forms": {name: form_class() for name, (form_class, _, _) in STEPS.items() if name != "estimate"},
        }
    return render(request, "compliance/risk_file.html", context)


@requires("qms")
def qms_register_page(request):
    """The officer's institution's register (an auditor picks one with ``?institution=``)."""
    institution = request.user.institution
    if request.GET.get("institution", "").isdigit():
        institution = get_object_or_404(institution_list(user=request.user), pk=int(request.GET["institution"]))
    may_write = may(request.user, "qms", write=True)
    if request.method == "POST":
        if not may_write:
            raise PermissionDenied("Your role does not allow changing the register.")
        _register_act(request)
        return redirect("pages:qms-register")
    context = {
        "institution": institution,
        "register": qms_register(institution) if institution else None,
        "standards": qms_standard_list(user=request.user).filter(institution=institution),
        "may_write": may_write,
        "procedure_form": forms.QmsProcedureForm(),
        "standard_form": forms.QmsStandardForm(),
        "art_17": ART_17,
    }
    return render(request, "compliance/qms_register.html", context)


def _register_act(request) -> None:
    step, institution = request.POST.get("step", ""), request.user.institution
    try:
        if institution is None:
            raise PermissionDenied("A register belongs to an institution; your account belongs to none.")
        if step == "seed":
            qms_standards_seed(actor=request.user, institution=institution)
        elif step == "procedure":
            form = forms.QmsProcedureForm(request.POST)
            if not form.is_valid():
                raise ValidationError([p for ps in form.errors.values() for p in ps])
            qms_procedure_save(actor=request.user, procedure=QmsProcedure(institution=institution, owner=request.user, **form.cleaned_data))
        elif step == "standard":
            form = forms.QmsStandardForm(request.POST)
            if not form.is_valid():
                raise ValidationError([p for ps in form.errors.values() for p in ps])
            data = form.cleaned_data
            standard = get_object_or_404(qms_standard_list(user=request.user), pk=data.pop("standard"))
            for name, value in data.items():
                setattr(standard, name, value)
            qms_standard_save(actor=request.user, standard=standard)
        else:
            raise ValidationError("Unknown step.")
    except ValidationError as exc:
        for problem in exc.messages:
            messages.error(request, problem)
    except (PermissionDenied, Conflict) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Register updated ({timezone.localdate():%d %b %Y}).")
