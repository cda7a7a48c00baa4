"""Post-market pages: clinicians' feedback, and the officers' monitoring, alerts and incidents."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from compliance import feedback as feedback_services
from compliance import incidents as incident_services
from compliance import selectors
from compliance.choices import AlertStatus
from compliance.clinician_status import status_in_words
from compliance.forms import CorrectiveActionForm, FeedbackForm, IncidentForm, IncidentTransitionForm
from compliance.incident_rules import rules_table
from compliance.models import Alert, TrustAssessment
from compliance.monitoring import DESIGN_RATE_FLOOR, CusumDesign, PhaseOne, cusum_median_run_length
from compliance.pages.feedback_pages import feedback_form_page
from compliance.vigilance import awareness_from_records, locking_incidents, needs_two_officers_to_close
from compliance.vigilance_forms import vigilance_page_forms
from core.access import may, role_of, scope
from core.choices import Role
from core.errors import Conflict
from core.pages import form_errors, page_window, requires
from registry.choices import DeploymentStatus
from registry.models import Deployment

# --- Clinicians ------------------------------------------------------------------------


@requires("feedback", write=True)
def clinician_home(request):
    deployments = (
        scope(request.user, Deployment.objects.select_related("version__foundation_model", "institution"))
        .filter(status=DeploymentStatus.ACTIVE, institution_id=request.user.institution_id)
        .order_by("version__foundation_model__name")
    )
    alerts = dict(
        Alert.objects.filter(deployment__in=deployments)
        .exclude(status=AlertStatus.RESOLVED)
        .values_list("deployment")
        .annotate(n=Count("pk"))
        .values_list("deployment", "n")
    )

    newest = TrustAssessment.objects.filter(version=OuterRef("version")).order_by("-computed_at", "-pk").values("pk")[:1]
    deployments = deployments.annotate(assessment_id=Subquery(newest))
    assessments = TrustAssessment.objects.defer("chart_svg").in_bulk([d.assessment_id for d in deployments if d.assessment_id])
    rows = [{"deployment": d, "open_alerts": alerts.get(d.pk, 0), "trust": assessments.get(d.assessment_id)} for d in deployments]
    return render(request, "compliance/clinician_home.html", {"rows": rows, "statuses": status_in_words(request.user.institution_id)})


def _clinician_deployment(request, pk: int) -> Deployment:
    """A deployment the clinician may report on: scoped like the API (another institution's is not found)."""
    return get_object_or_404(
        scope(request.user, Deployment.objects.select_related("version__foundation_model", "institution")),
        pk=pk,
    )


@requires("feedback", write=True)
@require_http_methods(["GET", "POST"])
def feedback_new(request, deployment_id: int):
    return feedback_form_page(request, _clinician_deployment(request, deployment_id))


@requires("feedback")
def feedback_list(request):
    rows = selectors.feedback_list(user=request.user)
    if role_of(request.user) == Role.CLINICIAN:
        rows = rows.filter(clinician=request.user)
    page = page_window(request, rows.order_by("-created_at", "-pk"), size=25)
    now = timezone.now()
    items = [
        {"feedback": f, "editable": f.clinician_id == request.user.pk and now <= feedback_services.feedback_editable_until(f)} for f in page.items
    ]
    return render(request, "compliance/feedback_list.html", {"page": page, "items": items, "edit_hours": settings.RADTRUST_FEEDBACK_EDIT_HOURS})


@requires("feedback", write=True)
@require_http_methods(["GET", "POST"])
def feedback_edit(request, pk: int):
    feedback = get_object_or_404(selectors.feedback_list(user=request.user), pk=pk, clinician=request.user)
    form = FeedbackForm(request.POST or None, instance=feedback, initial={"submission_key": feedback.submission_key})
    if request.method == "POST" and form.is_valid():
        try:
            feedback_services.feedback_update(actor=request.user, feedback=feedback, fields=form.service_fields())
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            messages.error(request, str(exc))
            return redirect("pages:feedback-list")
        else:
            messages.success(request, "Feedback updated.")
            return redirect("pages:feedback-list")
    return render(
        request,
        "compliance/feedback_form.html",
        {"form": form, "deployment": feedback.deployment, "editing": feedback},
        status=400 if form.errors else 200,
    )


# --- Officers ------------------------------------------------------------------------------


@requires("monitoring")
def monitoring_list(request):
    page = page_window(request, selectors.monitored_deployments(user=request.user))
    return render(request, "compliance/monitoring_list.html", {"deployments": page.items, "page": page})


def _about(reports: float) -> str:
    """A run length rounded to two significant figures, as a person would say it (2,000; 88)."""
    if reports > 1_000_000:
        return "more than a million"
    digits = max(0, int(math.floor(math.log10(reports))) - 1)
    return f"{round(reports, -digits):,.0f}"


def sequential_test_in_words(design: dict[str, Any]) -> list[str]:
    """What the deployment's CUSUM promises, in the officer's words: the rate it was built for and
    how sure that rate is, how often it raises a false alarm, and how soon it flags a doubling of
    the odds of disagreement (designs stored before the median delay was recorded get it computed)."""
    cusum = CusumDesign.from_dict(design)
    words = []
    if "phase_one" in design:
        phase = PhaseOne.from_dict(design["phase_one"])
        built = f"{cusum.p0:.1%}" + (" (its lowest design rate)" if phase.rate < DESIGN_RATE_FLOOR else "")
        words.append(
            f"Rate at deployment: {phase.rate:.1%} (95% CI {phase.ci_low:.1%} to {phase.ci_high:.1%}) "
            f"from the first {phase.n} reports; the test is built for {built}."
        )
    else:
        words.append(f"The test is built for a disagreement rate of {cusum.p0:.1%} (the interval of the rate at deployment was not recorded then).")
    if cusum.arl0 is not None:
        words.append(f"At that rate it raises a false alarm about once every {_about(cusum.arl0)} reports.")
    if "phase_one" in design:
        longest = "more than a million" if phase.arl0_if_ci_low is None else _about(phase.arl0_if_ci_low)
        words.append(
            f"The rate at deployment is an estimate: anywhere in its interval, a false alarm comes once every "
            f"{_about(phase.arl0_if_ci_high)} to {longest} reports; more reports at deployment narrow this."
        )
    median = cusum.median_delay if cusum.median_delay is not None else cusum_median_run_length(cusum, cusum.p1)
    mean = f"; {_about(cusum.arl1)} on average" if cusum.arl1 is not None else ""
    words.append(
        f"A doubling of the odds of disagreement (to {cusum.p1:.1%}) is typically flagged after about {_about(median)} reports (median{mean})."
    )
    return words


@requires("monitoring")
def monitoring_detail(request, pk: int):
    deployment = get_object_or_404(selectors.monitored_deployments(user=request.user), pk=pk)
    m = selectors.deployment_monitoring(deployment)
    test = sequential_test_in_words(m.monitor.design) if m.monitor is not None and m.monitor.design else []
    return render(request, "compliance/monitoring_detail.html", {"m": m, "deployment": deployment, "test_words": test})


@requires("incident", write=True)
@require_http_methods(["GET", "POST"])
def incident_new(request, source: str, pk: int):
    if source == "alert":
        origin = get_object_or_404(selectors.alert_list(user=request.user), pk=pk)
    else:
        origin = get_object_or_404(selectors.feedback_list(user=request.user), pk=pk)
    title = origin.message[:200] if source == "alert" else f"{origin.get_error_type_display() or 'Disagreement'} on {origin.case_reference}"
    form = IncidentForm(request.POST or None, initial={"aware_on": awareness_from_records(**{source: origin}), "title": title})
    if request.method == "POST" and form.is_valid():
        try:
            incident = incident_services.incident_escalate(actor=request.user, **{source: origin}, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            messages.error(request, str(exc))
            return redirect("pages:incident-list")
        else:
            if incident.deadline:
                messages.success(request, f"Incident {incident.pk} opened: report by {incident.deadline:%d %B %Y} ({incident.legal_basis}).")
            else:
                messages.success(request, f"Incident {incident.pk} opened: triage it to decide its route and deadline.")
            return redirect("pages:incident-detail", pk=incident.pk)
    return render(
        request,
        "compliance/incident_form.html",
        {"form": form, "source": source, "origin": origin, "rules": rules_table()},
        status=400 if form.errors else 200,
    )


@requires("incident")
def incident_list(request):
    incidents = selectors.incident_list(user=request.user)[:200]
    return render(request, "compliance/incident_list.html", {"incidents": incidents, "may_intake": may(request.user, "incident", write=True)})


@requires("incident")
def incident_detail(request, pk: int):
    incident = get_object_or_404(selectors.incident_list(user=request.user), pk=pk)
    deployment = incident.deployment
    return render(
        request,
        "compliance/incident_detail.html",
        {
            "incident": incident,
            "actions": incident.actions.select_related("taken_by").prefetch_related("notices"),
            "reports": incident.reports.select_related("recorded_by"),
            "corrections": incident.awareness_corrections.select_related("changed_by"),
            "decisions": incident.decisions.select_related("proposed_by", "confirmed_by"),
            "two_officers_to_close": needs_two_officers_to_close(incident),
            "locked_by_it": incident in locking_incidents(version_ids=[incident.version_id]),
            "may_resume": deployment is not None and deployment.status == DeploymentStatus.SUSPENDED,
            "transition_form": IncidentTransitionForm(),
            "action_form": CorrectiveActionForm(),
            "may_change": may(request.user, "incident", write=True),
            **vigilance_page_forms(),
        },
    )


def incident_change(request, pk: int, form_class, change, done: str, invalid: str):
    """Apply one change from a form on the incident page, then back to the page with what happened."""
    incident = get_object_or_404(selectors.incident_list(user=request.user), pk=pk)
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, invalid)
        return redirect("pages:incident-detail", pk=pk)
    try:
        change(incident, dict(form.cleaned_data))
        messages.success(request, done)
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    except Conflict as exc:
        messages.error(request, str(exc))
    return redirect("pages:incident-detail", pk=pk)


@requires("incident", write=True)
@require_POST
def incident_transition(request, pk: int):
    def change(incident, data):
        incident_services.incident_transition(actor=request.user, incident=incident, to_status=data.pop("status"), **data)

    return incident_change(request, pk, IncidentTransitionForm, change, "Incident updated.", "Choose a valid status.")


@requires("incident", write=True)
@require_POST
def incident_action(request, pk: int):
    """A corrective action; one that suspends or resumes a deployment first shows a page saying exactly
    what will happen to whom, and happens only when the officer confirms there."""
    incident = get_object_or_404(selectors.incident_list(user=request.user), pk=pk)
    form = CorrectiveActionForm(request.POST)
    if form.is_valid() and form.cleaned_data["kind"] in incident_services.DEPLOYMENT_ACTIONS and not form.cleaned_data["confirmed"]:
        confirm = CorrectiveActionForm(initial={**form.cleaned_data, "confirmed": True})
        for name in ("kind", "description"):
            confirm.fields[name].widget = forms.HiddenInput()
        effect = incident_services.deployment_effect(incident, form.cleaned_data["kind"])
        context = {"incident": incident, "form": confirm, "effect": effect, "data": form.cleaned_data}
        return render(request, "compliance/incident_confirm_action.html", context)

    def change(incident, data):
        incident_services.incident_action_add(actor=request.user, incident=incident, **data)

    kind = form.cleaned_data.get("kind") if form.is_valid() else ""
    done = {
        "suspend_deployment": "The deployment is suspended; its clinicians see your reason and today's date.",
        "resume_deployment": "The suspension is lifted; the deployment is in use again.",
    }.get(kind, "Corrective action recorded.")
    return incident_change(request, pk, CorrectiveActionForm, change, done, "Choose the kind of action and describe it.")


@requires("incident")
def incident_pdf(request, pk: int):
    incident = get_object_or_404(selectors.incident_list(user=request.user), pk=pk)
    response = HttpResponse(incident_services.incident_report_pdf(incident), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="incident-{incident.pk}.pdf"'
    return response
