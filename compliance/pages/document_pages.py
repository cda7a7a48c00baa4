"""Documents rendered from signed dossiers: listed per revision and per version, downloaded
through the same access rule as the API (``document``: the provider's institution) after the
same check of the stored bytes (an altered file: the version's documents with the refusal, 409),
and rendered on an officer's request (a write on the dossier, as in the API)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compliance import documents as document_services
from compliance.choices import DossierStatus
from compliance.market import retention_of
from compliance.pages.dossier_pages import visible_dossier
from core.access import may
from core.errors import Conflict
from core.pages import requires
from registry.selectors import version_list


@requires("document")
def document_list(request, pk: int):
    dossier = visible_dossier(request, pk)
    return render(
        request,
        "compliance/document_list.html",
        {
            "dossier": dossier,
            "version": dossier.version,
            "documents": document_services.document_list(user=request.user).filter(dossier=dossier).order_by("kind"),
            "may_render": may(request.user, "dossier", write=True) and dossier.status == DossierStatus.SIGNED,
            "retention": retention_of(dossier.version),
        },
    )


def _version_documents(request, version, *, status: int = 200):
    documents = document_services.document_list(user=request.user).filter(dossier__version=version).order_by("-dossier__revision", "kind")
    context = {"version": version, "documents": documents, "retention": retention_of(version)}
    return render(request, "compliance/document_list.html", context, status=status)


@requires("document")
def version_document_list(request, pk: int):
    return _version_documents(request, get_object_or_404(version_list(user=request.user), pk=pk))


@requires("dossier", write=True)
@require_POST
def documents_render(request, pk: int):
    dossier = visible_dossier(request, pk)
    try:
        documents = document_services.dossier_documents_render(actor=request.user, dossier=dossier)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{len(documents)} document{'s' if len(documents) != 1 else ''} of revision {dossier.revision} stored.")
    return redirect("pages:dossier-documents", pk=pk)


@requires("document")
def document_download(request, pk: int):
    document = get_object_or_404(document_services.document_list(user=request.user), pk=pk)
    try:
        response = document_services.document_download(document)
    except Conflict as exc:
        messages.error(request, str(exc))
        return _version_documents(request, document.dossier.version, status=409)
    if response is None:
        raise Http404("The stored file of this document is missing.")
    return response
