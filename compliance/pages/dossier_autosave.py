"""The dossier editor's autosave: the editor's script posts the form here a moment after the
officer stops typing, and gets JSON back (the new save count and each section's completeness),
so an officer never loses text to a closed tab. Same form, service and four-eyes bookkeeping as
the Save button (``compliance.dossiers.dossier_save``)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from compliance import dossiers as dossier_services
from compliance import selectors
from compliance.dossier_fields import FIELDS
from compliance.forms import DossierForm
from core.errors import Conflict
from core.pages import requires


def _field_errors(errors: dict) -> list[dict]:
    """Errors as {field title, link to the field, message}: plain words, never the internal key alone."""
    return [
        {
            "field": FIELDS[key].title if key in FIELDS else "This dossier",
            "link": f"#field-{key}" if key in FIELDS else "",
            "message": " ".join(messages),
        }
        for key, messages in errors.items()
    ]


@requires("dossier", write=True)
@require_POST
def dossier_autosave(request, pk: int):
    dossier = get_object_or_404(selectors.dossier_list(user=request.user), pk=pk)
    form = DossierForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"saved": 0, "errors": _field_errors(form.errors)}, status=400)
    changed = form.changed_values()
    if changed:
        try:
            dossier = dossier_services.dossier_save(actor=request.user, dossier=dossier, values=changed, edit_count=form.cleaned_data["edit_count"])
        except ValidationError as exc:
            return JsonResponse({"saved": 0, "errors": _field_errors(exc.message_dict)}, status=400)
        except Conflict as exc:
            # Another officer saved meanwhile: the Save button shows both texts side by side to merge.
            return JsonResponse({"saved": 0, "conflict": str(exc), "reload": reverse("pages:dossier-detail", args=[pk])}, status=409)
    done = dossier_services.dossier_completeness(dossier)
    sections = {key: {"filled": s["filled"], "required": s["required"]} for key, s in done["sections"].items()}
    return JsonResponse(
        {
            "saved": len(changed),
            "edit_count": dossier.edit_count,
            "sections": sections,
            "overall": {k: done["overall"][k] for k in ("filled", "required")},
        }
    )
