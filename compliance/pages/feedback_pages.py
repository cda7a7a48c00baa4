"""Feedback in seconds: the link a worklist or PACS opens, and the one-click form behind it.

``/feedback/quick/?case=CASE-7f3a9c&output=nodule%200.82&version=1.2.0&model=ChestNet&next=<worklist>``
(``docs/operating.md``) opens the form with the case and the model's output filled in; "Agree"
sends it in one click. After sending, the clinician goes back to ``next`` (only to a host in
``RADTRUST_FEEDBACK_RETURN_HOSTS`` or this site) or to a blank form for the same model.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from compliance import feedback as feedback_services
from compliance.clinician_status import status_in_words
from compliance.forms import FeedbackForm
from core.pages import form_errors, requires
from registry.models import Deployment


def _return_url(request) -> str:
    """The worklist to go back to, if it is one this site may send a clinician to."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    hosts = {request.get_host(), *settings.RADTRUST_FEEDBACK_RETURN_HOSTS}
    return target if target and url_has_allowed_host_and_scheme(target, allowed_hosts=hosts, require_https=request.is_secure()) else ""


def feedback_form_page(request, deployment: Deployment):
    """The one-click form for ``deployment`` (GET prefilled from ``case`` and ``output``), and its sending."""
    initial = {"submission_key": uuid.uuid4(), "case_reference": request.GET.get("case", ""), "model_output": request.GET.get("output", "")}
    form = FeedbackForm(request.POST or None, initial=initial)
    return_url = _return_url(request)
    if request.method == "POST" and form.is_valid():
        try:
            feedback, created = feedback_services.feedback_submit(
                actor=request.user, deployment=deployment, submission_key=form.cleaned_data["submission_key"], **form.service_fields()
            )
        except ValidationError as exc:
            form_errors(form, exc)
        else:
            said = feedback.get_agreement_display().lower()
            messages.success(
                request,
                f"Thank you: “{said}” on {feedback.case_reference} saved." if created else "This form was sent already; your feedback is saved once.",
            )
            return redirect(return_url or f"{reverse('pages:feedback-quick')}?{urlencode({'version': deployment.version_id})}")
    context = {"form": form, "deployment": deployment, "return_url": return_url, "panel": _panel(request, deployment)}
    return render(request, "compliance/feedback_form.html", context, status=400 if form.errors else 200)


def _panel(request, deployment: Deployment):
    return next((row for row in status_in_words(request.user.institution_id) if row.deployment.pk == deployment.pk), None)


@requires("feedback", write=True)
@require_http_methods(["GET", "POST"])
def feedback_quick(request):
    """The worklist's link: the deployment it names at the clinician's institution, or a choice."""
    deployments = feedback_services.worklist_deployments(
        institution_id=request.user.institution_id, version=request.GET.get("version", ""), model=request.GET.get("model", "")
    )
    if len(deployments) == 1:
        return feedback_form_page(request, deployments[0])
    choices = [(d, f"{request.path}?{urlencode({**request.GET.dict(), 'version': d.version_id})}") for d in deployments]
    context = {"choices": choices, "statuses": [] if choices else status_in_words(request.user.institution_id)}
    return render(request, "compliance/feedback_choose.html", context)
