"""Pages of the registry: a dataset's datasheet, the data-use grants a steward records and revokes,
a foundation model's lineage with its adaptations, the engineers' form that records an adaptation,
and a dataset's PACS source. Same services and access rules as the API
(``registry.services``, ``core.access``)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from core.access import may, may_change, may_grant_data_use
from core.errors import Conflict
from core.pages import form_errors, page_window, requires
from registry import adaptations, services
from registry.datasheets import REQUIRED_ITEMS, datasheet_completeness
from registry.dicomweb import dicomweb_source_set
from registry.forms import AdaptationForm, DataUseGrantForm, DicomwebSourceForm
from registry.models import DataUseGrant, DicomwebSource
from registry.selectors import data_use_grant_list as grants_visible
from registry.selectors import dataset_list, version_list


def _status(grant: DataUseGrant, today) -> str:
    """The grant's standing today in words (``is_active`` is the access rule's own answer)."""
    if grant.is_active:
        return "Active"
    if grant.revoked_at is not None:
        return f"Revoked on {timezone.localdate(grant.revoked_at):%d %b %Y}: {grant.revocation_reason}"
    if grant.valid_until < today:
        return f"Ended on {grant.valid_until:%d %b %Y}"
    return f"Starts on {grant.valid_from:%d %b %Y}"


@requires("dataset")
def dataset_detail(request, pk: int):
    """A dataset's datasheet as people read it: composition as tables, every required item that is
    still empty named, the grants the user may see; where evidence links to a dataset, it opens here."""
    dataset = get_object_or_404(dataset_list(user=request.user), pk=pk)
    completeness = datasheet_completeness(dataset)
    titles = dict(REQUIRED_ITEMS)
    context = {
        "dataset": dataset,
        "completeness": completeness,
        "missing": [titles[name] for name in completeness.missing],
        "protocols": sorted(dataset.protocols.items(), key=lambda kv: -kv[1]),
        "demographics": [(attribute.replace("_", " ").capitalize(), sorted(counts.items())) for attribute, counts in dataset.demographics.items()],
        "may_change": may_change(request.user, dataset),
        "today": timezone.localdate(),
    }
    return render(request, "registry/dataset_detail.html", context)


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
        "may_record": may(request.user, "model_version", write=True) and version.parent_id is not None and not hasattr(version, "adaptation"),
    }
    return render(request, "registry/lineage.html", context)


@requires("model_version", write=True)
@require_http_methods(["GET", "POST"])
def adaptation_new(request, pk: int):
    """Record how a version was adapted from its parent; the same service and checks as the API."""
    version = get_object_or_404(version_list(user=request.user).select_related("parent__foundation_model"), pk=pk)
    form = AdaptationForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            adaptations.adaptation_record(actor=request.user, version=version, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"The adaptation of {version} is recorded; its base's tasks are queued for re-evaluation.")
            return redirect("registry:version-lineage", pk=version.pk)
    context = {"form": form, "version": version, "inherited": adaptations.inherited_risks(version)}
    return render(request, "registry/adaptation_form.html", context, status=400 if form.errors else 200)


@requires("dataset", write=True)
@require_http_methods(["GET", "POST"])
def dataset_pacs(request, pk: int):
    """Define where a dataset lives in a PACS: the DICOMweb address, the query and the labels table
    (``registry.dicomweb.dicomweb_source_set``, as ``PUT /api/datasets/{id}/dicomweb/``)."""
    dataset = get_object_or_404(dataset_list(user=request.user), pk=pk)
    if not may_change(request.user, dataset):
        raise PermissionDenied("This dataset belongs to another institution; you may only change your institution's records.")
    source = DicomwebSource.objects.filter(dataset=dataset).first()
    initial = {}
    if source is not None:
        fields = ("base_url", "credentials_env", "modality", "body_part", "study_dates", "series_description")
        initial = {name: getattr(source, name) for name in fields} | {"accession_numbers": "\n".join(source.accession_numbers)}
    form = DicomwebSourceForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            dicomweb_source_set(actor=request.user, dataset=dataset, **form.cleaned_data)
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{dataset.name} is read from {form.cleaned_data['base_url']}; each run resolves the query when it is created.")
            return redirect("registry:dataset-pacs", pk=dataset.pk)
    context = {"dataset": dataset, "form": form, "source": source, "manifests": dataset.dicomweb_manifests.all()[:20]}
    return render(request, "registry/dataset_pacs.html", context, status=400 if form.errors else 200)
