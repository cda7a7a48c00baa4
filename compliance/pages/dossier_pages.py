"""Dossier pages: the list per version, the overview, one page per section (its fields, evidence
and the cited runs' charts), review, signing. Every write is a ``compliance.dossiers`` service
(the API's), every read a scoped selector; what a service refuses (a concurrent save, four eyes,
an incomplete dossier) is shown on the page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from compliance import dossiers as dossier_services
from compliance import selectors
from compliance.choices import DocumentKind, DossierStatus
from compliance.document_evidence import CHART_PREFIXES
from compliance.document_preview import dossier_preview_pdf
from compliance.dossier_checks import submission_problems
from compliance.dossier_evidence import dossier_evidence
from compliance.dossier_fields import FIELDS, SECTION_BY_KEY, SECTION_OF, SECTIONS, DossierSection
from compliance.duties import signing_institution
from compliance.forms import DossierForm, DossierNoteForm, DossierSignForm
from compliance.models import Dossier
from compliance.pages.release_evidence_page import release_evidence_panel
from compliance.pages.render import evidence_html, text_diff
from core.access import may
from core.errors import BadQuery, Conflict
from core.pages import form_errors, page_window, requires
from core.second_factor import second_factor_required
from registry.models import ModelVersion
from registry.selectors import version_list
from validation.choices import RunFileKind
from validation.selectors import run_file_list

FROZEN = {DossierStatus.IN_REVIEW, DossierStatus.SIGNED}  # what these show is the snapshot, not the live records
# The list shows completeness without reading every provider (the audit chain check reads the whole trail).
REQUIRED_SOURCES = {f.evidence for f in FIELDS.values() if f.source == "evidence" and f.required}


def visible_dossier(request, pk: int) -> Dossier:
    """A dossier the user may see: the API's selector (another institution's is not found)."""
    return get_object_or_404(selectors.dossier_list(user=request.user), pk=pk)


def _frozen(dossier: Dossier) -> bool:
    return dossier.status in FROZEN and bool(dossier.snapshot)


def _completeness(dossier: Dossier, evidence: dict | None = None) -> dict:
    if _frozen(dossier):
        return dossier.snapshot["completeness"]
    if evidence is None:
        evidence = dossier_evidence(dossier.version, sources=REQUIRED_SOURCES)
    return dossier_services.dossier_completeness(dossier, evidence)


def _key_links(version: ModelVersion) -> dict:
    """Keys in evidence data that name a record, and where that record is shown."""
    return {
        "run": lambda pk: reverse("runs:detail", args=[pk]),
        "dataset_id": lambda pk: f"/api/datasets/{pk}/",
        "deployment": lambda pk: reverse("pages:monitoring-detail", args=[pk]),
        "incident": lambda pk: reverse("pages:incident-detail", args=[pk]),
        "assessment": lambda pk: reverse("pages:version-trust", args=[version.pk]),
    }


def _source_links(version: ModelVersion) -> dict[str, tuple[str, str]]:
    """Per evidence source, the page or endpoint it was read from."""
    runs = ("Validation runs of this version", f"/api/validation-runs/?version={version.pk}")
    return {
        "model_description": ("The foundation model in the registry", f"/api/foundation-models/{version.foundation_model_id}/"),
        "version_identity": ("The version in the registry", f"/api/model-versions/{version.pk}/"),
        "provenance": ("Provenance of this version", f"/api/provenance/?version={version.pk}"),
        "validation_runs": runs,
        "subgroup_performance": runs,
        "robustness": runs,
        "calibration_uncertainty": runs,
        "explainability": runs,
        "trust_scores": ("Trust page of this version", reverse("pages:version-trust", args=[version.pk])),
        "deployments": ("Post-market monitoring", reverse("pages:monitoring-list")),
        "post_market_feedback": ("Post-market monitoring", reverse("pages:monitoring-list")),
        "incidents": ("Incidents", reverse("pages:incident-list")),
        "change_log": ("Change log of this version", reverse("pages:change-log", args=[version.pk])),
        "declared_performance": ("Release evidence of this version", f"/api/model-versions/{version.pk}/release-evidence/"),
        "post_market_runs": runs,
        "audit": ("Audit trail", "/api/audit-events/"),
    }


def _field_url(dossier: Dossier, key: str) -> str:
    """Where a field is shown: its section's page, at the field."""
    return reverse("pages:dossier-section", args=[dossier.pk, SECTION_OF[key].key]) + f"#field-{key}"


def _readiness(dossier: Dossier, values: dict, evidence: dict, done: dict) -> list[dict]:
    """What submission would refuse now, each sentence with links to the fields that fix it."""
    return [
        {"message": p.message, "links": [{"title": FIELDS[k].title, "url": _field_url(dossier, k)} for k in p.fields]}
        for p in submission_problems(values, evidence, done)
    ]


def _charts(request, source: str | None, data) -> tuple[int | None, list]:
    """The cited run, and its charts that show this evidence (the run page's SVGs) where the user may see them."""
    run = data.get("run") if isinstance(data, dict) else None
    if not isinstance(run, int):
        return None, []
    prefixes = CHART_PREFIXES.get(source or "")
    if not prefixes:
        return run, []
    files = run_file_list(user=request.user).filter(run_id=run, kind=RunFileKind.CHART).order_by("name")
    return run, [f for f in files if f.name.startswith(prefixes)]


def _rows(request, dossier: Dossier, section: DossierSection, state: dict, form: DossierForm | None) -> list[dict]:
    """A section's fields, each with its text (or form field), or its evidence with the run's charts."""
    version, done = dossier.version, state["done"]["sections"][section.key]
    key_links, source_links = _key_links(version), _source_links(version)
    first_shown = {f.evidence: f for s in SECTIONS[: SECTIONS.index(section)] for f in s.fields if f.evidence}  # shown in an earlier section
    missing, problems = set(done["missing"]), done.get("problems") or {}  # snapshots frozen before problems were recorded have none
    rows = []
    for f in section.fields:
        row = {"field": f, "missing": f.key in missing, "problem": problems.get(f.key)}
        if f.editable:
            row["value"] = state["values"].get(f.key, "")
            row["input"] = form[f.key] if form is not None else None
        elif f.evidence in first_shown:
            row["same_as"], row["same_as_url"] = first_shown[f.evidence], _field_url(dossier, first_shown[f.evidence].key)
        else:
            first_shown[f.evidence] = f
            data = state["evidence"].get(f.evidence)
            row["evidence"] = evidence_html(data, caption=f.title, links=key_links)
            row["source"] = source_links.get(f.evidence)
            row["run"], row["charts"] = _charts(request, f.evidence, data)
        rows.append(row)
    return rows


def _state(request, dossier: Dossier) -> dict:
    """What the overview and the section pages share: the values and evidence shown, completeness, who may edit."""
    frozen = _frozen(dossier)
    evidence = dossier.snapshot["evidence"] if frozen else dossier_evidence(dossier.version)
    done = _completeness(dossier, evidence)
    return {
        "dossier": dossier,
        "version": dossier.version,
        "frozen": frozen,
        "editable": dossier.status in dossier_services.EDITABLE and may(request.user, "dossier", write=True),
        "done": done,
        "overall": done["overall"],
        "summary": [
            {"section": s, "done": done["sections"][s.key], "url": reverse("pages:dossier-section", args=[dossier.pk, s.key])} for s in SECTIONS
        ],
        "values": dossier.snapshot["values"] if frozen else dossier.values,
        "evidence": evidence,
        "signature": getattr(dossier, "signature", None) if dossier.status == DossierStatus.SIGNED else None,
    }


def _overview(request, dossier: Dossier, *, status: int = 200, submit_refused: bool = False):
    """The dossier at a glance: completeness per section (each section a page of its own), what
    submission would refuse with links to the fields, the release evidence, the draft PDFs, submit."""
    state = _state(request, dossier)
    context = {
        **state,
        "release": None if state["frozen"] else release_evidence_panel(request, dossier),
        "readiness": [] if state["frozen"] else _readiness(dossier, state["values"], state["evidence"], state["done"]),
        "submit_refused": submit_refused,
    }
    return render(request, "compliance/dossier_detail.html", context, status=status)


def _section_page(request, dossier: Dossier, section: DossierSection, form: DossierForm | None = None, *, status: int = 200, **extra):
    """One section: its fields with autosave, its completeness, its evidence with the runs' charts."""
    state = _state(request, dossier)
    if state["editable"] and form is None:
        form = DossierForm.for_values(dossier.values, dossier.edit_count)
    form = form if state["editable"] else None
    index = SECTIONS.index(section)
    context = {
        **state,
        "section": section,
        "section_done": state["done"]["sections"][section.key],
        "rows": _rows(request, dossier, section, state, form),
        "form": form,
        "previous": state["summary"][index - 1] if index else None,
        "next": state["summary"][index + 1] if index + 1 < len(SECTIONS) else None,
        **extra,
    }
    return render(request, "compliance/dossier_section.html", context, status=status)


def _posted_section(request) -> DossierSection:
    """The section a save came from: named by its form, else the section of the first field posted."""
    named = SECTION_BY_KEY.get(request.POST.get("section", ""))
    if named is not None:
        return named
    posted = [k for k in request.POST if k in FIELDS]
    return SECTION_OF[posted[0]] if posted else SECTIONS[0]


@requires("dossier")
def dossier_list(request):
    page = page_window(request, version_list(user=request.user).order_by("foundation_model__name", "-created_at"))
    newest: dict[int, Dossier] = {}
    for dossier in selectors.dossier_list(user=request.user).filter(version__in=[v.pk for v in page.items]).order_by("version", "-revision"):
        newest.setdefault(dossier.version_id, dossier)
    rows = [
        {"version": v, "dossier": newest.get(v.pk), "done": _completeness(newest[v.pk])["overall"] if v.pk in newest else None} for v in page.items
    ]
    return render(request, "compliance/dossier_list.html", {"rows": rows, "page": page, "may_write": may(request.user, "dossier", write=True)})


@requires("dossier", write=True)
@require_POST
def dossier_start(request, pk: int):
    version = get_object_or_404(version_list(user=request.user), pk=pk)
    dossier = dossier_services.dossier_open(actor=request.user, version=version)
    messages.success(request, f"Revision {dossier.revision} of the dossier of {version} is open ({dossier.get_status_display().lower()}).")
    return redirect("pages:dossier-detail", pk=dossier.pk)


@requires("dossier")
def dossier_detail(request, pk: int):
    return _overview(request, visible_dossier(request, pk))


@requires("dossier")
def dossier_section(request, pk: int, section: str):
    if section not in SECTION_BY_KEY:
        raise Http404("The dossier has no such section.")
    return _section_page(request, visible_dossier(request, pk), SECTION_BY_KEY[section])


@requires("dossier")
def dossier_preview(request, pk: int):
    """The documents as a DRAFT PDF before anyone signs (``?kind=``, the technical documentation by default)."""
    dossier = visible_dossier(request, pk)
    kind = request.GET.get("kind", DocumentKind.TECHNICAL_DOCUMENTATION)
    try:
        pdf = dossier_preview_pdf(actor=request.user, dossier=dossier, kind=kind)
    except ValidationError as exc:
        raise BadQuery("kind", " ".join(exc.message_dict["kind"])) from None
    except Conflict as exc:  # evidence missing or altered: the page says which
        messages.error(request, str(exc))
        return redirect("pages:dossier-detail", pk=dossier.pk)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="DRAFT-{kind}-dossier-{dossier.pk}-revision-{dossier.revision}.pdf"'
    return response


@requires("dossier", write=True)
@require_POST
def dossier_save(request, pk: int):
    """Save what this officer changed on a section's page; with ``action=submit``, then send the
    revision for review (a refusal is shown on the overview, each problem linked to its field)."""
    dossier = visible_dossier(request, pk)
    section = _posted_section(request)
    form = DossierForm(request.POST)
    if not form.is_valid():
        return _section_page(request, dossier, section, form, status=400)
    changed = form.changed_values()
    if changed:
        try:
            dossier = dossier_services.dossier_save(actor=request.user, dossier=dossier, values=changed, edit_count=form.cleaned_data["edit_count"])
        except ValidationError as exc:
            form_errors(form, exc)
            return _section_page(request, dossier, section, form, status=400)
        except Conflict as exc:
            if exc.code != "edit_conflict":
                messages.error(request, str(exc))
                return redirect("pages:dossier-detail", pk=pk)
            saved = visible_dossier(request, pk)
            conflicts = [
                {"field": FIELDS[key], "yours": texts["yours"], "saved": texts["saved"], "diff": text_diff(texts["saved"], texts["yours"])}
                for key, texts in sorted(exc.details["differs"].items(), key=lambda item: list(FIELDS).index(item[0]))
            ]
            rebased = form.rebased(saved.values, saved.edit_count)
            return _section_page(request, saved, section, rebased, status=409, conflict=str(exc), conflicts=conflicts)
    if request.POST.get("action") != "submit":
        messages.success(
            request, f"Saved {len(changed)} field{'s' if len(changed) != 1 else ''}." if changed else "Nothing had changed; nothing was saved."
        )
        return redirect("pages:dossier-section", pk=pk, section=section.key) if "section" in request.POST else redirect("pages:dossier-detail", pk=pk)
    try:
        dossier = dossier_services.dossier_submit(actor=request.user, dossier=dossier)
    except ValidationError:  # the overview lists the same problems (dossier_checks), each linked to its field
        return _overview(request, visible_dossier(request, pk), status=400, submit_refused=True)
    except Conflict as exc:
        messages.error(request, str(exc))
        return redirect("pages:dossier-detail", pk=pk)
    messages.success(request, f"Revision {dossier.revision} is submitted for review; a second compliance officer reviews and signs it.")
    return redirect("pages:dossier-review", pk=pk)


def _review(request, dossier: Dossier, form: DossierNoteForm, *, status: int = 200, refusal: str = ""):
    """What changed since the last submission, field by field: the submission that was sent back,
    or else the last signed revision of the same version."""
    previous = (
        selectors.dossier_list(user=request.user)
        .filter(version=dossier.version_id, status=DossierStatus.SIGNED, revision__lt=dossier.revision)
        .order_by("-revision")
        .first()
    )
    values = dossier.snapshot["values"] if dossier.snapshot else dossier.values
    resubmitted = (dossier.snapshot or {}).get("previous_submission")
    before = resubmitted["values"] if resubmitted else previous.snapshot["values"] if previous else {}
    rows = []
    for f in (f for f in FIELDS.values() if f.editable):
        old, new = before.get(f.key, ""), values.get(f.key, "")
        state = "unchanged" if old == new else "added" if not old else "removed" if not new else "changed"
        rows.append({"field": f, "state": state, "text": new, "diff": text_diff(old, new) if state != "unchanged" else []})
    context = {
        "dossier": dossier,
        "version": dossier.version,
        "previous": previous,
        "resubmitted": resubmitted,
        "form": form,
        "refusal": refusal,
        "changed": [r for r in rows if r["state"] != "unchanged"],
        "unchanged": [r for r in rows if r["state"] == "unchanged"],
        "overall": _completeness(dossier)["overall"],
        "may_write": may(request.user, "dossier", write=True),
    }
    return render(request, "compliance/dossier_review.html", context, status=status)


@requires("dossier")
def dossier_review(request, pk: int):
    return _review(request, visible_dossier(request, pk), DossierNoteForm())


@requires("dossier", write=True)
@require_POST
def dossier_request_changes(request, pk: int):
    dossier = visible_dossier(request, pk)
    form = DossierNoteForm(request.POST)
    if not form.is_valid():
        return _review(request, dossier, form, status=400)
    try:
        dossier_services.dossier_request_changes(actor=request.user, dossier=dossier, note=form.cleaned_data["note"])
    except PermissionDenied as exc:
        return _review(request, dossier, form, status=403, refusal=str(exc))
    except Conflict as exc:
        return _review(request, dossier, form, status=409, refusal=str(exc))
    except ValidationError as exc:
        form_errors(form, exc)
        return _review(request, dossier, form, status=400)
    messages.success(request, f"Revision {dossier.revision} is sent back to its author with your note.")
    return redirect("pages:dossier-detail", pk=pk)


@requires("dossier", write=True)
def dossier_signing(request, pk: int):
    """Sign the snapshot in review, as a second officer; the service checks who may sign, the
    password (and code), the snapshot the signer saw and its hash."""
    dossier = visible_dossier(request, pk)
    form = DossierSignForm(request.POST or None, initial={"snapshot_sha256": dossier.snapshot_sha256})
    refusal, status = "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                signature = dossier_services.dossier_sign(
                    actor=request.user,
                    dossier=dossier,
                    meaning=form.cleaned_data["meaning"],
                    snapshot_sha256=form.cleaned_data["snapshot_sha256"],
                    password=form.cleaned_data["password"],
                    otp_code=form.cleaned_data["otp_code"],
                )
            except PermissionDenied as exc:
                refusal, status = str(exc), 403
            except Conflict as exc:
                refusal, status = str(exc), 409
            except ValidationError as exc:
                form_errors(form, exc)
                status = 400
            else:
                messages.success(
                    request,
                    f"You signed revision {dossier.revision} as {signature.signer_name} for {signature.institution.name}: “{signature.meaning}”.",
                )
                return redirect("pages:dossier-detail", pk=pk)
        else:
            status = 400
    context = {
        "dossier": dossier,
        "version": dossier.version,
        "form": form,
        "refusal": refusal,
        "overall": _completeness(dossier)["overall"],
        "otp_required": second_factor_required(request.user),
        "institution": signing_institution(dossier),
        "signer_name": request.user.get_full_name() or request.user.get_username(),
    }
    return render(request, "compliance/dossier_sign.html", context, status=status)
