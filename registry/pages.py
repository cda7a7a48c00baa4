"""Pages of the registry: the data-use grants a steward records and revokes, and a foundation
model's lineage with its adaptations. Same services and access rules as the API
(``registry.services``, ``core.access``)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.access import may, may_grant_data_use
from core.errors import Conflict
from core.pages import form_errors, page_window, requires
from registry import adaptations, services
from registry.forms import DataUseGrantForm
from registry.models import DataUseGrant
from registry.selectors import data_use_grant_list as grants_visible
from registry.selectors import version_list


def _status(grant: DataUseGrant, today) -> str:
    """The grant's standing today in words (``is_active`` is the access rule's own answer)."""
    if grant.is_active:
        return "Active"
    if grant.revoked_at is not None:
        return f"Revoked on {timezone.localdate(grant.revoked_at):%d %b %Y}: {grant.revocation_reason}"
    if grant.valid_until < today:
        return f"Ended on {grant.valid_until:%d %b %Y}"
    return f"Starts on {grant.valid_from:%d %b %Y}"


@requires("data_use_grant")
def data_use_grant_list(request):
    """Every grant the user may see; a steward's officer also grants here and revokes their own."""
    form = None
    if may(request.user, "data_use_grant", write=True):
        form = DataUseGrantForm(request.POST or None, user=request.user)
        if request.method == "POST" and form.is_valid():
            try:
                grant = services.data_use_grant(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                form_errors(form, exc)
            except Conflict as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"{grant.grantee.name} may use {grant.dataset.name} from {grant.valid_from} to {grant.valid_until}.")
                return redirect("registry:data-use-list")
    elif request.method == "POST":
        raise PermissionDenied("Your role does not allow this page.")
    today = timezone.localdate()
    page = page_window(request, grants_visible(user=request.user).order_by("-granted_at", "-pk"), size=50)
    rows = [
        {
            "grant": grant,
            "status": _status(grant, today),
            "may_revoke": grant.revoked_at is None and may_grant_data_use(request.user, steward_id=grant.dataset.institution_id),
        }
        for grant in page.items
    ]
    return render(request, "registry/data_use_grants.html", {"rows": rows, "page": page, "form": form})


@requires("data_use_grant", write=True)
@require_POST
def data_use_revoke(request, pk: int):
    grant = get_object_or_404(grants_visible(user=request.user), pk=pk)
    try:
        services.data_use_revoke(actor=request.user, grant=grant, reason=request.POST.get("reason", ""))
    except (ValidationError, Conflict) as exc:
        messages.error(request, " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc))
    else:
        messages.success(request, f"Grant {grant.agreement_reference} is revoked: {grant.grantee.name} no longer uses {grant.dataset.name}.")
    return redirect("registry:data-use-list")


@requires("model_version.lineage")
def version_lineage(request, pk: int):
    """The tree of the version's base with every adaptation the user may see (method, task, labelled
    data, frozen parts), and the base's known weaknesses this version's dossier must address."""
    visible_versions = version_list(user=request.user)
    version = get_object_or_404(visible_versions, pk=pk)
    visible = set(visible_versions.values_list("pk", flat=True))
    context = {
        "version": version,
        "tree": adaptations.lineage_tree(version, visible),
        "inherited": adaptations.inherited_risks(version, visible),
    }
    return render(request, "registry/lineage.html", context)
