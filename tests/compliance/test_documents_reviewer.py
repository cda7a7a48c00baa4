"""Documents a reviewer accepts (issue 17, part 6): instructions for use with the operating threshold,
declared accuracy, requirements, lifetime, address, issue date, UDI-DI and the serious-incident
notice in plain language (no hashes, no JSON); a declaration with every item of AI Act Annex V and
MDR Annex IV; a model card with base_model, licence link and confidence intervals; tagged PDF/UA."""

from __future__ import annotations

import html as html_text
import re
import subprocess

import pytest
import yaml

from compliance.choices import DocumentKind
from compliance.document_cards import model_card, model_card_markdown
from compliance.document_evidence import Attachments, evidence_elements
from compliance.document_render import RenderSource, document_html
from compliance.documents import document_build, render_source
from tests.factories import dossier_officer_values

HASH = re.compile(r"\b[0-9a-f]{64}\b")
JSON = re.compile(r"[{}]|\"\s*:")
SIGNATURE = {"signer": "officer2", "signed_at": "2025-05-02T09:00:00+00:00", "meaning": "Approved", "snapshot_sha256": "c" * 64}


def pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _body(html: str) -> str:
    return html[html.index("<body") :]


def _words(html: str) -> str:
    """The body's text as a reader sees it: tags dropped, entities read, whitespace collapsed."""
    return _flat(html_text.unescape(re.sub(r"<[^>]+>", " ", _body(html))))


@pytest.mark.django_db
def test_the_instructions_for_use_a_deployer_can_read(evidenced, sign_dossier, tmp_path):
    dossier = sign_dossier(evidenced)
    source = render_source(dossier)
    values = dossier_officer_values()
    data = document_build(DocumentKind.INSTRUCTIONS_FOR_USE, source).data
    text = _flat(pdf_text(data))
    for expected in (
        "Address Example Street 1, 10115 Berlin, Germany",
        f"Date of issue {dossier.signature.signed_at:%Y-%m-%d}",
        f"UDI-DI {values['mdr_udi_di']} (production identifier: software version {evidenced})",
        "CE marking CE 0123",
        "Class IIa medical device (MDR Annex VIII Rule 11)",
        "pneumothorax: a score of 0.500 or more is flagged as positive",  # the operating threshold
        "Declared performance on North test set",
        "Hardware and software requirements Art. 13(3)(e); MDR Annex I 23.4(ab)",
        values["1e_hardware"],
        "Expected lifetime Art. 13(3)(e) " + values["13_3e_lifetime"],
        "should be reported to the manufacturer, RadVendor GmbH, and to the competent authority of the Member State",
        "(MDR Annex I 23.4(z))",
    ):
        assert expected in text, expected
    assert re.search(r"Sensitivity \d\.\d{2,3} \(\d\.\d{2,3} to \d\.\d{2,3}\)", text), "declared figures with their intervals"
    assert not HASH.search(text) and "sha256" not in text.lower() and not JSON.search(text)
    html = _body(document_html(DocumentKind.INSTRUCTIONS_FOR_USE, source))
    assert not HASH.search(html) and "sha256" not in html.lower()

    path = tmp_path / "ifu.pdf"
    path.write_bytes(data)
    info = subprocess.run(["pdfinfo", "-meta", str(path)], capture_output=True, check=True, text=True).stdout
    assert 'pdfuaid:part="1"' in info  # PDF/UA-1
    assert "Tagged:          yes" in subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout


@pytest.mark.django_db
def test_the_declaration_states_every_item_of_both_laws(evidenced, sign_dossier):
    values = dossier_officer_values()
    html = document_html(DocumentKind.DECLARATION_OF_CONFORMITY, render_source(sign_dossier(evidenced)))
    text = _words(html)
    for point in range(1, 11):
        assert f"MDR Annex IV({point})" in text, point
    for point in range(1, 9):
        assert f"AI Act Annex V({point})" in text, point
    for expected in (
        "Provider's postal address: Example Street 1, 10115 Berlin, Germany",
        f"Manufacturer's single registration number (SRN): {values['mdr_srn']}",
        f"Basic UDI-DI: {values['mdr_basic_udi_di']}",
        f"Device class and classification rule: {values['mdr_class_rule']}",
        "AI Act class: High-risk AI system (AI Act Art. 6)",
        "Regulation (EU) 2024/1689 and with Regulation (EU) 2017/745",
        "Notified body number on the CE marking: 0123",
    ):
        assert expected in text, expected


def _source(evidence: dict, values: dict | None = None) -> RenderSource:
    snapshot = {"version": {"label": "ChestFM 1.1.0", "artifact_sha256": "b" * 64}, "revision": 1, "values": values or {}, "evidence": evidence}
    return RenderSource(1, 1, snapshot, "c" * 64, SIGNATURE)


DECLARED = {
    "pin": 3,
    "pinned_by": "officer",
    "pinned_at": "2025-05-01T10:00:00+00:00",
    "population": "Adults at three sites.",
    "operating_points": {"nodule": 0.49412345678},
    "runs": [
        {
            "run": 12,
            "dataset": "Nodule test set",
            "finished_at": "2025-04-30T10:00:00+00:00",
            "n_patients": 600,
            "labels": {
                "nodule": {
                    "threshold": 0.49412345678,
                    "confidence": 0.95,
                    "overall": {
                        "auroc": {"value": 0.81234567, "ci_low": 0.7801, "ci_high": 0.84456, "n_valid": 1000},
                        "sensitivity": {"value": 0.7234, "ci_low": 0.6612, "ci_high": 0.7801, "n_valid": 1000},
                    },
                }
            },
        }
    ],
}
DRIFT_RUN = {
    "run": 15,
    "dataset": "Site c follow-up",
    "finished_at": "2025-05-01T09:00:00+00:00",
    "why": "Site c follow-up is not declared as this version's test data",
    "summary": {"labels": {"nodule": {"overall": {"auroc": {"value": 0.731, "ci_low": 0.69, "ci_high": 0.77}}}}},
}


def test_documents_quote_the_declared_figures_never_the_post_market_run():
    values = {"2b_design_specifications": "The threshold was chosen for sensitivity at least 0.85 on the tuning data."}
    source = _source({"declared_performance": DECLARED, "post_market_runs": [DRIFT_RUN], "model_description": {"name": "ChestFM"}}, values)
    ifu = _words(document_html(DocumentKind.INSTRUCTIONS_FOR_USE, source))
    assert "nodule: a score of 0.494 or more is flagged as positive" in ifu and "0.49412" not in ifu
    assert "AUROC 0.812 (0.780 to 0.845)" in ifu and "0.731" not in ifu and "Site c follow-up" not in ifu
    technical = _words(document_html(DocumentKind.TECHNICAL_DOCUMENTATION, source))
    assert "Run 15 on Site c follow-up, 2025-05-01: Site c follow-up is not declared as this version's test data" in technical
    assert "never its declared performance" in technical
    claims = technical[technical.index("Performance claims checked against the declared performance Annex IV 3 Every") :]
    assert "Design specifications Sensitivity at least 0.850" in claims and "contradicted by the declared performance" in claims
    assert "Sensitivity 0.723 (0.661 to 0.780) for nodule on Nodule test set (run 12)" in claims


def test_without_pinned_evidence_the_documents_say_so_plainly():
    source = _source({"model_description": {"name": "ChestFM"}})  # a snapshot frozen before release evidence existed
    for kind in (DocumentKind.INSTRUCTIONS_FOR_USE, DocumentKind.TECHNICAL_DOCUMENTATION):
        assert "No declared performance yet: no release evidence was pinned for this version." in document_html(kind, source)
    card = model_card(_source({}).snapshot, SIGNATURE)
    assert card["metadata"]["model-index"][0]["results"] == [] and "No declared performance yet" in card["sections"][6]["content"]


def test_no_document_prints_raw_json():
    (pairs,) = evidence_elements(
        "version_identity",
        {"version": "ChestFM 1.1.0", "preprocessing": {"resize": [64, 64], "normalise": {"mean": 0.48512345, "std": 0.229}}},
        Attachments(),
    )
    preprocessing = dict(pairs.rows)["Preprocessing"]
    assert preprocessing == "Resize: 64, 64; Normalise: (Mean: 0.485; Std: 0.229)" and not JSON.search(preprocessing)


def test_the_model_card_names_its_base_model_licence_link_and_intervals():
    evidence = {
        "model_description": {"name": "ChestFM", "licence": "Proprietary", "task": "binary"},
        "version_identity": {"lineage": ["ChestFM 1.0.0"]},
        "provenance": [{"dataset": "Tuning set", "role": "fine_tuning", "steward": "vendor"}],
        "declared_performance": DECLARED,
        "validation_runs": [{"run": 15, "dataset": "Site c follow-up", "summary": DRIFT_RUN["summary"]}],
    }
    card = model_card(_source(evidence, {"1d_licence_link": "https://vendor.example/licence"}).snapshot, SIGNATURE)
    front = yaml.safe_load(model_card_markdown(card).split("---\n")[1])
    assert front["base_model"] == "ChestFM 1.0.0" and front["base_model_relation"] == "finetune"
    assert front["license"] == "other" and front["license_name"] == "Proprietary" and front["license_link"] == "https://vendor.example/licence"
    (result,) = front["model-index"][0]["results"]
    assert result["dataset"]["name"] == "Nodule test set"  # the declared run, not the post-market one
    assert [(m["type"], m["value"]) for m in result["metrics"]] == [("auroc", 0.812), ("sensitivity", 0.723)]
    assert result["metrics"][0]["name"] == "AUROC (nodule): 0.812 (0.780 to 0.845)"
    declared = front["radtrust"]["declared_performance"]
    assert declared[0] == {
        "run": 12,
        "dataset": "Nodule test set",
        "label": "nodule",
        "metric": "auroc",
        "value": 0.812,
        "ci_low": 0.78,
        "ci_high": 0.845,
        "confidence": 0.95,
    }
    assert front["radtrust"]["operating_points"] == {"nodule": 0.494}
