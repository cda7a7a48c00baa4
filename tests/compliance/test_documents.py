"""Documents of a signed dossier revision: rendered from the frozen snapshot with WeasyPrint,
stored content-addressed, immutable, verifiable, and served through the API by the access rules."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from io import StringIO

import pytest
import yaml
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from compliance.choices import DocumentKind
from compliance.document_evidence import FORMATTERS
from compliance.document_render import document_html, render_pdf
from compliance.documents import (
    Rendered,
    document_build,
    document_kinds,
    document_store,
    document_verify,
    dossier_documents_render,
    render_source,
)
from compliance.dossier_fields import EVIDENCE_SOURCES, SECTIONS
from compliance.models import Document
from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent

pytestmark = pytest.mark.django_db
ALWAYS = [
    DocumentKind.TECHNICAL_DOCUMENTATION,
    DocumentKind.INSTRUCTIONS_FOR_USE,
    DocumentKind.DECLARATION_OF_CONFORMITY,
    DocumentKind.MODEL_CARD_MARKDOWN,
    DocumentKind.MODEL_CARD_JSON,
]
GPAI = [DocumentKind.GPAI_TECHNICAL, DocumentKind.GPAI_DOWNSTREAM, DocumentKind.TRAINING_CONTENT_SUMMARY]


def pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def stored(document: Document) -> bytes:
    with default_storage.open(document.storage_name, "rb") as handle:
        return handle.read()


@pytest.fixture
def eager():
    from radtrust.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def documented(run_setup):
    """run_setup's version after a run with subgroup, calibration and robustness charts, and a trust assessment."""
    from compliance.trust.services import trust_assess
    from validation import services

    run = services.run_create(
        actor=run_setup["engineer"],
        version=run_setup["version"],
        dataset=run_setup["dataset"],
        config={"n_resamples": 30, "min_patients": 5, "analyses": ["calibration", "generalisation", "robustness"]},
    )
    services.run_execute(run_id=run.pk, worker="w")
    trust_assess(version=run_setup["version"], trigger="manual")
    return run_setup["version"]


@pytest.fixture
def draft_dossier(personas, institutions):
    """A draft revision of a vendor model's version (no run needed): rows for storage, API and immutability tests."""
    from compliance.dossiers import dossier_open
    from tests.factories import FoundationModelFactory, ModelVersionFactory

    version = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=institutions["vendor"]))
    return dossier_open(actor=personas["officer"], version=version)


def test_signing_renders_every_document_in_the_background_from_the_snapshot(
    documented, sign_dossier, personas, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the task is enqueued when the signature commits
        dossier = sign_dossier(documented)
    documents = list(Document.objects.filter(dossier=dossier))
    assert sorted(d.kind for d in documents) == sorted(ALWAYS)  # a first version: no change log; not general-purpose: no GPAI documents
    technical = next(d for d in documents if d.kind == DocumentKind.TECHNICAL_DOCUMENTATION)
    text = pdf_text(stored(technical))

    assert "TECHNICAL DOCUMENTATION (ANNEX IV)" in text and documented.foundation_model.name in text
    assert f"Version {documented}" in text and "dossier revision 1" in text and "RadVendor GmbH" in text
    assert "Signed by officer2" in text and "Approved as the technical" in text
    assert re.search(r"General description of the AI system\s*\.+\s*\d+", text), "the table of contents gives page numbers"
    assert re.search(r"Art\. 14\(4\) Human oversight\s*\.+\s*\d+", text)
    for heading, article in (
        ("Intended purpose as registered", "Annex IV 1(a)"),
        ("Validation and test logs", "Annex IV 2(g)"),
        ("Post-market monitoring", "Annex IV 9; Art. 72"),
        ("Human-oversight measures", "Art. 13(3)(d)"),
    ):
        assert f"{heading} {article}" in text
    flat = " ".join(text.split())
    for section in SECTIONS:  # every Annex IV section (and Art. 10(2), 13(3), 14(4)) with its articles, in the contents and the body
        assert flat.count(f"{section.article} {section.title}") >= 2, section.key
    assert dossier.snapshot_sha256 in text and documented.artifact_sha256 in text
    assert "<b>Clinical claim</b>: documented for the test." in text  # markup shown as typed, not applied
    assert re.search(r"North test set\s+External validation\s+north\s+\d+%", text), "a provenance row"
    assert re.search(r"AUROC\s+\d\.\d{2,3} \(\d\.\d{2,3} to \d\.\d{2,3}\)", text), "metrics to 3 significant figures with their confidence intervals"
    assert "Worst case under image perturbation" in text and "FUTURE-AI trust scores" in text
    assert "Page 2 of" in text and technical.pages > 3

    html = document_html(DocumentKind.TECHNICAL_DOCUMENTATION, render_source(dossier))
    assert "&lt;b&gt;Clinical claim&lt;/b&gt;" in html and "<b>Clinical claim" not in html
    for chart in ("charts/forest-auroc-pneumothorax.svg", "charts/robustness-pneumothorax.svg"):
        assert chart in {c["name"] for c in dossier.snapshot["charts"]}
    assert len(re.findall(r'<img src="data:image/svg\+xml;base64,', html)) >= 4  # forest, reliability, robustness charts and the trust radar
    assert re.search(r'<img src="data:image/svg\+xml;base64,[^"]+" alt="[^"]*subgroup', html)

    today = timezone.localdate()
    for d in documents:
        data = stored(d)
        assert hashlib.sha256(data).hexdigest() == d.sha256 and d.size == len(data)
        assert (
            d.storage_name
            == f"documents/{d.sha256[:2]}/{d.sha256}.{'pdf' if d.content_type == 'application/pdf' else d.storage_name.rsplit('.', 1)[1]}"
        )
        assert d.snapshot_sha256 == dossier.snapshot_sha256 and d.created_by is None  # rendered by the worker
        assert d.retain_until == today.replace(year=today.year + 10)
        assert (d.pages is not None) == (d.content_type == "application/pdf")
    events = AuditEvent.objects.filter(object_type="compliance.document")
    assert sorted(int(e.object_id) for e in events) == sorted(d.pk for d in documents)
    assert {(e.action, e.actor_username) for e in events} == {("create", "worker:documents")}
    assert {e.changes["sha256"][1] for e in events} == {d.sha256 for d in documents}

    again = dossier_documents_render(actor=personas["officer"], dossier=dossier)
    assert [d.pk for d in again] == [d.pk for d in sorted(documents, key=lambda d: DocumentKind.values.index(d.kind))]
    assert Document.objects.filter(dossier=dossier).count() == len(documents)

    ifu = pdf_text(stored(next(d for d in documents if d.kind == DocumentKind.INSTRUCTIONS_FOR_USE)))
    assert "Provider identity and contact Art. 13(3)(a)" in ifu and "Triage of adult chest radiographs for pneumothorax." in ifu
    assert "Performance by subgroup: pneumothorax" in ifu and "Intervening and stopping Art. 14(4)(e)" in ifu
    declaration = next(d for d in documents if d.kind == DocumentKind.DECLARATION_OF_CONFORMITY)
    declaration_text = pdf_text(stored(declaration))
    assert "DRAFT: not signed or issued" in declaration_text and "Annex V(8)" in declaration_text
    rebuilt = render_pdf(DocumentKind.DECLARATION_OF_CONFORMITY, render_source(dossier))
    assert stored(declaration).startswith(rebuilt.data)  # the same snapshot gives the same bytes; the PAdES signature follows them

    card = stored(next(d for d in documents if d.kind == DocumentKind.MODEL_CARD_MARKDOWN)).decode()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "other" and front["license_name"] == "proprietary" and "radiology" in front["tags"]
    result = front["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == "North test set" and result["task"]["type"] == "image-classification"
    assert {m["type"] for m in result["metrics"]} >= {"auroc", "sensitivity"} and all(isinstance(m["value"], float) for m in result["metrics"])
    assert "&lt;b&gt;Clinical claim&lt;/b&gt;" in card  # officer text never becomes HTML in the card either
    card_json = json.loads(stored(next(d for d in documents if d.kind == DocumentKind.MODEL_CARD_JSON)))
    assert card_json["metadata"] == front and card_json["sections"][0]["title"] == "Model details"


def test_documents_show_the_frozen_snapshot_not_the_live_registry(documented, sign_dossier, personas):
    dossier = sign_dossier(documented)
    model = documented.foundation_model
    model.intended_purpose = "Changed after signing: screening of children."
    model.save()
    source = render_source(dossier)
    text = pdf_text(document_build(DocumentKind.INSTRUCTIONS_FOR_USE, source).data)
    assert "Triage of adult chest radiographs for pneumothorax." in text and "screening of children" not in text


def test_an_altered_or_missing_chart_stops_rendering_and_names_the_file(documented, sign_dossier, personas):
    dossier = sign_dossier(documented)
    chart = dossier.snapshot["charts"][0]
    with default_storage.open(chart["storage_name"], "wb") as handle:
        handle.write(b"<svg xmlns='http://www.w3.org/2000/svg'><text>doctored</text></svg>")
    with pytest.raises(Conflict) as altered:
        dossier_documents_render(actor=personas["officer"], dossier=dossier)
    assert altered.value.code == "evidence_altered" and chart["storage_name"] in str(altered.value) and chart["name"] in str(altered.value)
    default_storage.delete(chart["storage_name"])
    with pytest.raises(Conflict) as missing:
        dossier_documents_render(actor=personas["officer"], dossier=dossier)
    assert missing.value.code == "evidence_missing" and chart["storage_name"] in str(missing.value)
    assert not Document.objects.filter(dossier=dossier).exists()


def test_a_draft_dossier_renders_nothing(draft_dossier, personas):
    with pytest.raises(Conflict) as refused:
        dossier_documents_render(actor=personas["officer"], dossier=draft_dossier)
    assert refused.value.code == "dossier_not_signed" and "draft" in str(refused.value)


def test_general_purpose_models_get_annex_xi_xii_and_the_training_summary(documented, sign_dossier, personas, write_dataset):
    from registry.models import Dataset
    from registry.services import provenance_link, record_create

    model = documented.foundation_model
    model.general_purpose = True
    model.save()
    training = record_create(
        model=Dataset,
        actor=personas["engineer"],
        fields={
            "name": "Vendor pre-training set",
            "institution": personas["engineer"].institution,
            "modality": "DX",
            "location": str(write_dataset("pretrain", n=6)),
        },
    )
    provenance_link(actor=personas["engineer"], version=documented, dataset=training, role="pretraining")
    dossier = sign_dossier(documented)
    assert document_kinds(dossier.snapshot) == ALWAYS + GPAI
    source = render_source(dossier)
    annex_xi = pdf_text(document_build(DocumentKind.GPAI_TECHNICAL, source).data)
    assert "Architecture and number of parameters Annex XI 1(d)" in annex_xi and "1,265" in annex_xi and "proprietary" in annex_xi
    annex_xii = pdf_text(document_build(DocumentKind.GPAI_DOWNSTREAM, source).data)
    assert "Technical means for integration Annex XII 2(a)" in annex_xii
    summary = pdf_text(document_build(DocumentKind.TRAINING_CONTENT_SUMMARY, source).data)
    assert "Vendor pre-training set" in summary and "Pre-training" in summary and "North test set" not in summary


def test_change_log_documents_and_chapter_come_from_the_snapshot_log(draft_dossier):
    from compliance.document_evidence import Attachments
    from compliance.document_render import RenderSource

    log = {
        "format": 1,
        "initial": False,
        "generated_at": "2025-05-01T10:00:00+00:00",
        "version": {"label": "ChestFM 1.1.0", "artifact_sha256": "b" * 64},
        "parent": {"label": "ChestFM 1.0.0", "artifact_sha256": "a" * 64},
        "plan": {"id": None, "version": None, "applies_to": "default rules", "rationale": "", "rules": {}},
        "classification": {
            "value": "within_plan",
            "label": "Within the pre-determined change plan (Annex IV 2(f))",
            "reasons": [
                {"rule": "threshold_shift", "effect": "within_plan", "text": "threshold moved by 0.03", "evidence": ["pneumothorax: 0.5 → 0.53"]}
            ],
        },
        "sections": [
            {
                "key": "output_schema",
                "title": "Output schema and thresholds",
                "notes": [],
                "changes": [
                    {
                        "kind": "threshold",
                        "rule": "threshold_shift",
                        "what": "Threshold of <pneumothorax>",
                        "before": 0.5,
                        "after": 0.53,
                        "why": "Fewer false alarms.",
                        "detail": {},
                    }
                ],
            },
            {"key": "data", "title": "Data and provenance", "notes": ["No dataset changed."], "changes": []},
        ],
    }
    snapshot = {
        "version": {"label": "ChestFM 1.1.0", "artifact_sha256": "b" * 64},
        "revision": 1,
        "values": {},
        "completeness": {},
        "evidence": {"model_description": {"name": "ChestFM", "general_purpose": False}, "change_log": log},
        "submitted_by": "officer",
        "submitted_at": "2025-05-01T10:00:00+00:00",
    }
    source = RenderSource(
        dossier_id=draft_dossier.pk,
        revision=1,
        snapshot=snapshot,
        snapshot_sha256="c" * 64,
        attachments=Attachments(),
        signature={"signer": "officer2", "signed_at": "2025-05-02T09:00:00+00:00", "meaning": "Approved", "snapshot_sha256": "c" * 64},
    )
    assert document_kinds(snapshot) == ALWAYS + [DocumentKind.CHANGE_LOG_MARKDOWN, DocumentKind.CHANGE_LOG_JSON]
    assert json.loads(document_build(DocumentKind.CHANGE_LOG_JSON, source).data) == log
    markdown = document_build(DocumentKind.CHANGE_LOG_MARKDOWN, source).data.decode()
    assert "Within the pre-determined change plan" in markdown and "0.53" in markdown
    html = document_html(DocumentKind.TECHNICAL_DOCUMENTATION, source)
    chapter = html[html.index('id="change-log"') : html.index('id="appendix-evidence"')]
    assert "Threshold of &lt;pneumothorax&gt;" in chapter and "0.53" in chapter and "threshold moved by 0.03" in chapter
    assert "Data and provenance: no change. No dataset changed." in chapter
    assert 'href="#change-log"' in html[html.index('id="field-6_change_log"') :]  # Annex IV 6 points to the chapter


def test_stored_documents_are_content_addressed_immutable_and_retained(draft_dossier, personas):
    first = document_store(actor=personas["officer"], dossier=draft_dossier, rendered=Rendered(DocumentKind.MODEL_CARD_JSON, b'{"a": 1}\n', "json"))
    twin = document_store(actor=personas["officer"], dossier=draft_dossier, rendered=Rendered(DocumentKind.CHANGE_LOG_JSON, b'{"a": 1}\n', "json"))
    assert first.storage_name == twin.storage_name == f"documents/{first.sha256[:2]}/{first.sha256}.json"  # one file for the same bytes
    assert default_storage.listdir(f"documents/{first.sha256[:2]}")[1] == [f"{first.sha256}.json"]
    assert first.created_by == personas["officer"] and first.content_type == "application/json"

    first.pages = 3
    with pytest.raises(ImmutableRecord):
        first.save()
    with pytest.raises(ImmutableRecord):
        Document.objects.filter(pk=first.pk).update(size=1)
    with pytest.raises(ImmutableRecord) as retained:
        first.delete()
    assert retained.value.code == "document_retained" and Document.objects.filter(pk=first.pk).exists()


def test_verify_documents_passes_then_names_an_altered_and_a_missing_file(draft_dossier, personas):
    pdf = document_store(actor=personas["officer"], dossier=draft_dossier, rendered=Rendered(DocumentKind.MODEL_CARD_MARKDOWN, b"# Card\n", "md"))
    other = document_store(actor=personas["officer"], dossier=draft_dossier, rendered=Rendered(DocumentKind.MODEL_CARD_JSON, b"{}\n", "json"))
    out = StringIO()
    call_command("verify_documents", stdout=out)
    assert "All 2 stored documents match their sha256." in out.getvalue()
    assert document_verify(pdf) is None

    with default_storage.open(pdf.storage_name, "wb") as handle:
        handle.write(b"# Card, edited\n")
    default_storage.delete(other.storage_name)
    out = StringIO()
    with pytest.raises(CommandError, match="2 of 2 stored documents are missing or altered"):
        call_command("verify_documents", stdout=out)
    lines = out.getvalue().splitlines()
    assert f"document {pdf.pk} (model_card_md of dossier {draft_dossier.pk}, revision 1): the stored file {pdf.storage_name} hashes to" in lines[0]
    assert "it was altered" in lines[0] and lines[1].endswith(f"the stored file {other.storage_name} is missing")

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_documents", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["checked"] == 2 and report["ok"] is False
    assert [(p["document"], p["storage_name"]) for p in report["problems"]] == [(pdf.pk, pdf.storage_name), (other.pk, other.storage_name)]


def test_every_evidence_source_has_a_print_formatter():
    assert set(FORMATTERS) == set(EVIDENCE_SOURCES)


def test_explainability_prints_the_pooled_verdict_before_each_labels_share():
    def method(verdict: str, ci: tuple) -> dict:
        return {"deletion_difference": {"value": -0.05, "ci_low": ci[0], "ci_high": ci[1]}, "insertion_difference": None, "verdict": verdict}

    pooled = {"n_cases": 32, "methods": {"occlusion": method("beats random", (-0.08, -0.02))}}
    share = {"n_cases": 2, "methods": {"occlusion": method("too few cases to judge", (None, None))}, "pooled": pooled}
    data = {"run": 4, "dataset": "Chest", "labels": {"effusion": share, "nodule": share}}
    tables = [e for e in FORMATTERS["explainability"](data, None) if e.kind == "table"]
    assert [t.caption for t in tables] == [
        "Saliency faithfulness on all 32 explained cases, shared by the labels (the verdict that counts)",
        "Saliency faithfulness on 2 cases: effusion",
        "Saliency faithfulness on 2 cases: nodule",
    ]
    assert tables[0].rows[0][-1] == "beats random" and tables[1].rows[0][-1] == "too few cases to judge"
    one_label = [e for e in FORMATTERS["explainability"]({**data, "labels": {"nodule": {**share, "n_cases": 32}}}, None) if e.kind == "table"]
    assert len(one_label) == 1  # with one label the pooled figures are the label's own


def test_model_card_yaml_survives_any_text():
    from compliance.document_cards import yaml_dump

    nasty = {
        "name": 'a: "b" # c\n- d',
        "tags": ["yes", "no", "null", "1.0", "@x", "", "\x7f\x85\u2028 end"],
        "nested": [{"k": [1, 2.5, None, True]}, []],
        "weird key: x": {},
        "ünïcode": "Zürich ✓ 😀",
    }
    assert yaml.safe_load(yaml_dump(nasty)) == nasty


# --- API --------------------------------------------------------------------------------------


@pytest.fixture
def stored_document(draft_dossier, personas):
    return document_store(
        actor=personas["officer"], dossier=draft_dossier, rendered=Rendered(DocumentKind.MODEL_CARD_MARKDOWN, "# Card ✓\n".encode(), "md")
    )


def test_api_lists_filters_and_downloads_documents(stored_document, draft_dossier, personas, api_client):
    client = api_client(personas["auditor"])
    listed = client.get("/api/documents/", {"dossier": draft_dossier.pk, "kind": "model_card_md"}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [r["id"] for r in rows] == [stored_document.pk]
    row = rows[0]
    assert row["sha256"] == stored_document.sha256 and row["size"] == stored_document.size and row["pages"] is None
    assert row["version"] == draft_dossier.version_id and row["retain_until"] == stored_document.retain_until.isoformat()
    assert row["download_url"].endswith(f"/api/documents/{stored_document.pk}/download/")
    none = client.get("/api/documents/", {"version": draft_dossier.version_id + 1000}).json()
    assert (none["results"] if isinstance(none, dict) else none) == []

    response = client.get(f"/api/documents/{stored_document.pk}/download/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == "# Card ✓\n".encode()
    assert response["Content-Type"] == "text/markdown; charset=utf-8" and response["ETag"] == f'"{stored_document.sha256}"'
    assert 'attachment; filename="' in response["Content-Disposition"] and "-rev1-model_card_md.md" in response["Content-Disposition"]
    assert client.delete(f"/api/documents/{stored_document.pk}/").status_code in (403, 405)  # never deleted through the API
    assert api_client(personas["officer"]).delete(f"/api/documents/{stored_document.pk}/").status_code == 405
    assert Document.objects.filter(pk=stored_document.pk).exists()


def test_api_documents_follow_the_role_and_institution_rules(stored_document, personas, api_client):
    url = f"/api/documents/{stored_document.pk}/"
    assert api_client(personas["engineer"]).get(url + "download/").status_code == 200  # the provider's engineer
    other = api_client(personas["engineer_south"])
    assert other.get(url).status_code == 404 and other.get(url + "download/").status_code == 404
    listed = other.get("/api/documents/").json()
    assert (listed["results"] if isinstance(listed, dict) else listed) == []
    assert api_client(personas["clinician_north"]).get(url).status_code == 403
    assert api_client(personas["officer2"]).get(url).status_code == 200


def test_api_render_documents_refuses_a_draft(draft_dossier, personas, api_client):
    response = api_client(personas["officer"]).post(f"/api/dossiers/{draft_dossier.pk}/render-documents/")
    assert response.status_code == 409 and "signed" in response.json()["detail"]
    assert api_client(personas["auditor"]).post(f"/api/dossiers/{draft_dossier.pk}/render-documents/").status_code == 403


def test_the_task_returns_quietly_for_a_dossier_that_is_gone():
    from compliance.tasks import dossier_documents_render_task

    assert dossier_documents_render_task(987654) == []


def test_subgroup_tables_show_below_the_minimum_and_never_a_suppressed_count():
    """A snapshot frozen before suppressed subgroups lost their counts still renders without them."""
    from compliance.document_render import RenderSource, html_to_pdf

    estimate = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n_valid": 20}
    shown = {"grouping": "site", "name": "site=A", "n_patients": 120, "suppressed": False, "metrics": {"auroc": estimate, "sensitivity": estimate}}
    subgroups = [
        shown,
        {"grouping": "site", "name": "site=B", "n_patients": 95, "suppressed": True, "reason": "complementary", "metrics": None},
        {"grouping": "site", "name": "site=C", "n_patients": 6, "suppressed": True, "metrics": None},  # no reason: an older snapshot
    ]
    generalisation = {
        "min_patients": 10,
        "pooled": {"auroc": estimate},
        "groupings": {
            "site": {
                "groups": [
                    {"group": "site-a", "n_cases": 400, "n_patients": 200, "suppressed": False, "auroc": estimate, "leave_one_out": None},
                    {"group": "site-c", "n_cases": 12, "n_patients": 6, "suppressed": True, "reason": "too_few_patients", "leave_one_out": None},
                ]
            }
        },
    }
    evidence = {
        "subgroup_performance": {"run": 7, "dataset": "North", "labels": {"nodule": {"min_patients": 10, "subgroups": subgroups, "gaps": []}}},
        "robustness": {"run": 7, "dataset": "North", "labels": {"nodule": {"worst_case": None, "generalisation": generalisation}}},
    }
    signature = {"signer": "officer2", "signed_at": "2025-01-01T00:00:00+00:00", "meaning": "approval", "snapshot_sha256": "0" * 64}
    source = RenderSource(1, 1, {"version": {"label": "1.0"}, "evidence": evidence}, "0" * 64, signature)
    html = document_html(DocumentKind.TECHNICAL_DOCUMENTATION, source)
    assert "<tr><td>site=A</td><td>120</td>" in html and "<tr><td>site=B</td><td>withheld</td><td>withheld: would reveal a smaller group</td>" in html
    assert "<tr><td>site=C</td><td>&lt;10</td><td>suppressed: too few patients</td>" in html
    assert "<tr><td>site-c</td><td>&lt;10</td><td>&lt;10</td><td>suppressed: too few patients</td>" in html
    assert not re.search(r"<td>(6|12|95)</td>", html)
    lines = pdf_text(html_to_pdf(html, created=signature["signed_at"]).data).splitlines()
    for name in ("site=C", "site-c"):
        (row,) = [line.split() for line in lines if line.split()[:1] == [name]]
        assert row[1] == "<10" and not {"6", "12"} & set(row)
