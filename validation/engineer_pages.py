"""The ML engineers' pages: register a model, upload a version, start a validation with analyses
picked from a form, and move a version through its lifecycle with the guards' reasons shown.
Thin views over ``registry.services`` and ``validation.services``, with the API's access rules."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from core.access import may, role_of
from core.errors import Conflict
from core.pages import form_errors, requires
from registry import services as registry_services
from registry.choices import VersionStatus
from registry.datasheet_forms import DatasheetTables
from registry.guards import TRANSITIONS, roles_for, transition_refusals
from registry.models import Dataset, FoundationModel
from registry.selectors import foundation_model_list, provenance_list, version_list
from validation import services as validation_services
from validation.engineer_forms import DatasetForm, FoundationModelForm, ProvenanceForm, RunStartForm, runnable_datasets
from validation.selectors import run_list


def _moves(user, version) -> list[dict]:
    """Each next lifecycle status the user's role may ask for, with the guards' reasons it may not yet."""
    role = role_of(user)
    moves = []
    for target in sorted(TRANSITIONS[version.status], key=list(VersionStatus.values).index):
        if not (user.is_superuser or role in roles_for(version.status, target)):
            continue
        moves.append({"status": target, "label": VersionStatus(target).label, "refusals": transition_refusals(version, target)})
    return moves


@requires("validation_run")
def version_manage(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model__provider"), pk=pk)
    context = {
        "version": version,
        "moves": _moves(request.user, version) if may(request.user, "model_version.transition", write=True) else [],
        "runs": run_list(user=request.user).filter(version=version).select_related("dataset").order_by("-created_at")[:20],
        "perms_adapt": may(request.user, "model_version", write=True) and not hasattr(version, "adaptation"),
    }
    context["provenance"] = provenance_list(user=request.user).filter(version=version).select_related("dataset")
    if may(request.user, "provenance", write=True):
        context["provenance_form"] = ProvenanceForm(user=request.user)
    if may(request.user, "validation_run", write=True):
        context["run_form"] = RunStartForm(datasets=runnable_datasets(user=request.user, version=version))
    return render(request, "validation/version_manage.html", context)


@requires("model_version.transition", write=True)
@require_POST
def version_move(request, pk: int):
    version = get_object_or_404(version_list(user=request.user), pk=pk)
    target = request.POST.get("to_status", "")
    try:
        registry_services.version_transition(actor=request.user, version=version, to_status=target)
    except (Conflict, PermissionDenied) as exc:
        messages.error(request, f"Not moved: {exc}")
    else:
        messages.success(request, f"{version} is now {VersionStatus(target).label.lower()}.")
    return redirect("engineer:version-manage", pk=version.pk)


@requires("validation_run", write=True)
@require_POST
def run_start(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model"), pk=pk)
    form = RunStartForm(request.POST, datasets=runnable_datasets(user=request.user, version=version))
    if form.is_valid():
        try:
            run = validation_services.run_create(
                actor=request.user, version=version, dataset=form.cleaned_data["dataset"], config=form.suite_config()
            )
        except (ValidationError, PermissionDenied, Conflict) as exc:
            messages.error(request, f"Not started: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
        else:
            messages.success(request, f"Validation run {run.pk} of {version} on {run.dataset.name} is queued.")
    else:
        messages.error(
            request, "Not started: " + " ".join(f"{form.fields[f].label if f in form.fields else ''}: {' '.join(e)}" for f, e in form.errors.items())
        )
    return redirect("engineer:version-manage", pk=version.pk)


def _institution(request) -> str:
    return getattr(request.user.institution, "name", "your institution")  # a superuser belongs to none


def _record_form(request, form, *, heading: str, intro: str, tables: DatasheetTables | None = None):
    invalid = bool(form.errors) or (tables is not None and request.method == "POST" and not tables.is_valid())
    context = {"form": form, "heading": heading, "intro": intro, "tables": tables}
    return render(request, "validation/record_form.html", context, status=400 if invalid else 200)


@requires("foundation_model", write=True)
@require_http_methods(["GET", "POST"])
def model_new(request):
    form = FoundationModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        fields = form.cleaned_data | {"provider_id": request.user.institution_id}
        try:
            model = registry_services.record_create(model=FoundationModel, actor=request.user, fields=fields)
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{model.name} is registered; upload its first version.")
            return redirect("engineer:version-upload", pk=model.pk)
    intro = f"The model family, registered for {_institution(request)}; its versions (the ONNX files) are uploaded next."
    return _record_form(request, form, heading="Register a model", intro=intro)


@requires("model_version", write=True)
def version_upload(request, pk: int):
    """The upload form; the browser sends the file to ``POST /api/model-versions/`` with a progress bar."""
    model = get_object_or_404(foundation_model_list(user=request.user), pk=pk)
    parents = version_list(user=request.user).filter(foundation_model=model).order_by("-created_at")
    return render(request, "validation/version_upload.html", {"model": model, "parents": parents})


@requires("dataset", write=True)
@require_http_methods(["GET", "POST"])
def dataset_new(request):
    """The datasheet, with its scanner, protocol and demographic counts as tables of rows."""
    form, tables = DatasetForm(request.POST or None), DatasheetTables(request.POST or None)
    if request.method == "POST" and all([form.is_valid(), tables.is_valid()]):  # a list: both forms' errors are shown
        fields = form.cleaned_data | tables.values() | {"institution_id": request.user.institution_id}
        try:
            dataset = registry_services.record_create(model=Dataset, actor=request.user, fields=fields)
        except ValidationError as exc:
            form_errors(form, exc)
        except Conflict as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Dataset {dataset.name} is registered for {_institution(request)}.")
            return redirect("pages:home")
    intro = (
        f"The datasheet (AI Act Art. 10(2)): where the data comes from, how it was labelled, its limits; {_institution(request)} "
        "is its data steward. Leave the rows you do not need empty."
    )
    return _record_form(request, form, heading="Register a dataset", intro=intro, tables=tables)


@requires("provenance", write=True)
@require_POST
def provenance_add(request, pk: int):
    version = get_object_or_404(version_list(user=request.user).select_related("foundation_model"), pk=pk)
    form = ProvenanceForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, "Not linked: choose a dataset and what it was used for.")
        return redirect("engineer:version-manage", pk=version.pk)
    try:
        link = registry_services.provenance_link(actor=request.user, version=version, **form.cleaned_data)
    except (ValidationError, PermissionDenied, Conflict) as exc:
        messages.error(request, f"Not linked: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
    else:
        messages.success(request, f"{link.dataset.name} is linked to {version} as {link.get_role_display().lower()} data.")
    return redirect("engineer:version-manage", pk=version.pk)
