"""The dossier pages through Django's test client: the API's role and institution rules, the
editor with its sections, guidance, evidence and completeness, saving only what an officer
changed, the concurrent-save conflict that keeps their text, submit, review, four eyes, signing,
and the documents. (The same journey in a real browser: tests/browser/test_dossier_pages.py.)"""

from __future__ import annotations

import hashlib
import re

import pytest

from compliance.dossier_fields import FIELDS, SECTIONS
from compliance.dossiers import dossier_open, dossier_save, dossier_submit
from compliance.models import Document, Dossier
from tests.factories import SIGNING_PASSWORD, dossier_officer_values
from validation.models import RunFile

pytestmark = pytest.mark.django_db

OFFICER_KEYS = [k for k, f in FIELDS.items() if f.editable]
CLAIM, INTERACTIONS = "1a_purpose_statement", "1b_interactions"


@pytest.fixture
def draft(personas, deployed):
    return dossier_open(actor=personas["officer"], version=deployed["version"])


@pytest.fixture
def in_review(personas, evidenced, signing_password):
    """A complete revision submitted by the first officer."""
    dossier = dossier_open(actor=personas["officer"], version=evidenced)
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=0)
    return dossier_submit(actor=personas["officer"], dossier=dossier)


def _signing(dossier: Dossier) -> dict:
    """What the sign page posts besides the meaning: the snapshot it showed and the signer's password."""
    return {"snapshot_sha256": dossier.snapshot_sha256, "password": SIGNING_PASSWORD}


def _hidden(page: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', page).group(1)


def test_every_dossier_page_follows_the_apis_role_and_institution_rules(client, personas, draft):
    pages = [
        "/dossiers/",
        f"/dossiers/{draft.pk}/",
        f"/dossiers/{draft.pk}/review/",
        f"/dossiers/{draft.pk}/sign/",
        f"/dossiers/{draft.pk}/documents/",
        f"/versions/{draft.version_id}/documents/",
    ]
    posts = [
        f"/versions/{draft.version_id}/dossiers/open/",
        f"/dossiers/{draft.pk}/save/",
        f"/dossiers/{draft.pk}/request-changes/",
        f"/dossiers/{draft.pk}/documents/render/",
    ]
    client.force_login(personas["clinician_north"])
    for url in pages:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, {"edit_count": 0, CLAIM: "x", "note": "x"}).status_code == 403, url

    client.force_login(personas["engineer_south"])  # an ML engineer of another institution: not the provider
    assert draft.version.foundation_model.name not in client.get("/dossiers/").content.decode()
    for url in pages[1:3] + pages[4:]:
        assert client.get(url).status_code == 404, url

    client.force_login(personas["auditor"])  # reads everything, writes nothing
    for url in (pages[0], pages[1], pages[2], pages[4], pages[5]):
        assert client.get(url).status_code == 200, url
    assert client.get(pages[3]).status_code == 403
    assert client.post(posts[1], {"edit_count": 0, CLAIM: "x"}).status_code == 403
    assert "<textarea" not in client.get(pages[1]).content.decode()  # read-only for auditors
    assert Dossier.objects.get().values == {}


def test_the_list_shows_each_version_and_opens_a_dossier(client, personas, deployed):
    client.force_login(personas["officer"])
    page = client.get("/dossiers/").content.decode()
    assert f"{deployed['version'].foundation_model.name} {deployed['version'].version}" in page and "Open dossier" in page
    response = client.post(f"/versions/{deployed['version'].pk}/dossiers/open/")
    dossier = Dossier.objects.get()
    assert response.url == f"/dossiers/{dossier.pk}/" and dossier.author == personas["officer"]
    page = client.get("/dossiers/").content.decode()
    assert "Revision 1" in page and "Draft" in page and re.search(r"\d+% <span class=\"muted\">\(\d+ of \d+\)", page)


def test_the_overview_links_each_section_to_a_page_of_its_own(client, personas, draft):
    client.force_login(personas["officer"])
    page = client.get(f"/dossiers/{draft.pk}/").content.decode()
    positions = [page.index(f'href="/dossiers/{draft.pk}/sections/{s.key}/">{s.title}</a>') for s in SECTIONS]
    assert positions == sorted(positions)  # in catalogue order
    assert all(s.article in page for s in SECTIONS)
    assert "<textarea" not in page  # the fields are on the sections' pages
    assert re.search(r'<progress id="overall-progress" max="(\d+)" value="(\d+)"', page)
    assert client.get(f"/dossiers/{draft.pk}/sections/no_such_section/").status_code == 404


def test_a_section_page_shows_its_fields_guidance_evidence_and_completeness(client, personas, draft):
    client.force_login(personas["officer"])
    first = SECTIONS[0]
    page = client.get(f"/dossiers/{draft.pk}/sections/{first.key}/").content.decode()
    claim = FIELDS[CLAIM]
    assert f'<label for="id_{CLAIM}">{claim.title}</label>' in page
    assert f'aria-describedby="guidance-{CLAIM}"' in page and claim.guidance.split(":")[0] in page
    assert page.count("<textarea") == len([f for f in first.fields if f.editable])
    model = draft.version.foundation_model
    assert f"<td>{model.intended_purpose}</td>" in page  # evidence as a table, not a JSON dump
    assert "All of this evidence as data (JSON)" in page
    assert 'id="progress-annex_iv_1"' in page and "missing</strong>" in page
    assert f'data-autosave="/dossiers/{draft.pk}/autosave/"' in page and 'name="section" value="annex_iv_1"' in page
    assert f'href="/dossiers/{draft.pk}/sections/{SECTIONS[1].key}/" rel="next"' in page
    trust = next(s for s in SECTIONS if any(f.evidence == "trust_scores" for f in s.fields))
    assert f'href="/versions/{draft.version_id}/trust/"' in client.get(f"/dossiers/{draft.pk}/sections/{trust.key}/").content.decode()


def test_a_section_shows_the_cited_runs_charts_inline(client, personas, evidenced):
    dossier = dossier_open(actor=personas["officer"], version=evidenced)
    client.force_login(personas["officer"])
    subgroups = next(s for s in SECTIONS if any(f.evidence == "subgroup_performance" for f in s.fields))
    page = client.get(f"/dossiers/{dossier.pk}/sections/{subgroups.key}/").content.decode()
    charts = RunFile.objects.filter(kind="chart", name__startswith="charts/forest-", run__version=evidenced)
    assert charts.exists()
    for chart in charts:
        assert f'<img src="/api/run-files/{chart.pk}/content/"' in page
    assert f'href="/runs/{charts[0].run_id}/">validation run {charts[0].run_id}</a>' in page


def test_saving_stores_only_the_fields_the_officer_changed(client, personas, draft):
    client.force_login(personas["officer"])
    page = client.get(f"/dossiers/{draft.pk}/sections/annex_iv_1/").content.decode()
    data = {"edit_count": _hidden(page, "edit_count"), CLAIM: "Adults with erect chest films.\r\nNot for children.", f"initial-{CLAIM}": ""}
    response = client.post(f"/dossiers/{draft.pk}/save/", {**data, "section": "annex_iv_1", "action": "save"}, follow=True)
    assert "Saved 1 field." in response.content.decode()
    assert response.redirect_chain[-1][0] == f"/dossiers/{draft.pk}/sections/annex_iv_1/"
    draft.refresh_from_db()
    assert draft.values == {CLAIM: "Adults with erect chest films.\nNot for children."} and draft.edit_count == 1


def test_a_field_too_long_is_refused_next_to_it(client, personas, draft):
    client.force_login(personas["officer"])
    too_long = "x" * (FIELDS[CLAIM].max_length + 1)
    response = client.post(f"/dossiers/{draft.pk}/save/", {"edit_count": 0, CLAIM: too_long, f"initial-{CLAIM}": ""})
    page = response.content.decode()
    assert response.status_code == 400
    error = page.index("Too long")
    assert page.rindex(f'id="field-{CLAIM}"', 0, error) > page.rindex('id="field-', 0, page.rindex(f'id="field-{CLAIM}"'))
    assert Dossier.objects.get().edit_count == 0


def test_a_concurrent_save_shows_both_texts_and_keeps_what_the_officer_typed(client, personas, draft):
    client.force_login(personas["officer2"])
    stale = client.get(f"/dossiers/{draft.pk}/sections/annex_iv_1/").content.decode()
    dossier_save(actor=personas["officer"], dossier=draft, values={CLAIM: "Adults only.", INTERACTIONS: "PACS via DICOMweb."}, edit_count=0)

    response = client.post(
        f"/dossiers/{draft.pk}/save/",
        {
            "edit_count": _hidden(stale, "edit_count"),
            "action": "save",
            CLAIM: "Adults and adolescents over 16.",
            f"initial-{CLAIM}": "",
            INTERACTIONS: "",
            f"initial-{INTERACTIONS}": "",
        },
    )
    page = response.content.decode()
    assert response.status_code == 409 and "Another officer saved this dossier" in page
    assert 'data-testid="yours-1a_purpose_statement">Adults and adolescents over 16.<' in page
    assert 'data-testid="saved-1a_purpose_statement">Adults only.<' in page
    assert '<del><span class="visually-hidden">[removed: </span>only.<' in page and "[added: </span>and adolescents over 16.<" in page
    assert f'id="id_{CLAIM}">\nAdults and adolescents over 16.</textarea>' in page  # their text kept in the field
    assert f'id="id_{INTERACTIONS}">\nPACS via DICOMweb.</textarea>' in page  # a field they left alone shows the saved text
    assert 'data-testid="yours-1b_interactions"' not in page
    assert _hidden(page, "edit_count") == "1"

    again = client.post(
        f"/dossiers/{draft.pk}/save/",
        {
            "edit_count": "1",
            "action": "save",
            CLAIM: "Adults and adolescents over 16.",
            f"initial-{CLAIM}": "Adults only.",
            INTERACTIONS: "PACS via DICOMweb.",
            f"initial-{INTERACTIONS}": "PACS via DICOMweb.",
        },
    )
    assert again.status_code == 302
    draft.refresh_from_db()
    assert draft.values == {CLAIM: "Adults and adolescents over 16.", INTERACTIONS: "PACS via DICOMweb."} and draft.edit_count == 2


def test_submitting_an_incomplete_dossier_lists_each_problem_in_plain_words_with_a_link(client, personas, draft):
    client.force_login(personas["officer"])
    claim = "Adults with erect PA chest radiographs; a second reader for suspected pneumothorax."  # an answer (compliance.field_checks)
    response = client.post(f"/dossiers/{draft.pk}/save/", {"edit_count": 0, "action": "submit", CLAIM: claim, f"initial-{CLAIM}": ""})
    page = response.content.decode()
    assert response.status_code == 400 and "Not submitted" in page
    refusal = page[page.index('id="not-submitted"') : page.index("<h2>Completeness</h2>")]
    interactions = FIELDS[INTERACTIONS]
    assert f"{interactions.title} (General description of the AI system, {interactions.article}) is not written yet." in refusal
    assert f'href="/dossiers/{draft.pk}/sections/annex_iv_1/#field-{INTERACTIONS}">{interactions.title}</a>' in refusal
    assert f"#field-{CLAIM}" not in refusal  # saved on the way
    runs = FIELDS["2g_validation_runs"]
    assert f"{runs.title} (" in refusal and "read from the registry and the runs, not typed here" in refusal
    assert not [key for key in FIELDS if f"{key}:" in refusal or f"({key})" in refusal or f" {key} " in refusal]  # never a stored key
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.values == {CLAIM: claim}
    assert _hidden(page, "edit_count") == "1"


def test_submit_then_review_shows_the_first_revision_as_new(client, personas, evidenced):
    dossier = dossier_open(actor=personas["officer"], version=evidenced)
    values = dossier_officer_values()
    data = {"edit_count": 0, "action": "submit", **values, **{f"initial-{k}": "" for k in values}}
    client.force_login(personas["officer"])
    response = client.post(f"/dossiers/{dossier.pk}/save/", data, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == f"/dossiers/{dossier.pk}/review/"
    dossier.refresh_from_db()
    assert dossier.status == "in_review" and dossier.snapshot_sha256 in page
    assert "This is the first revision" in page and page.count('<span class="badge info">new</span>') == len(OFFICER_KEYS)
    assert "&lt;b&gt;Clinical claim&lt;/b&gt;" in page  # officer text escaped


def test_review_diffs_against_the_last_signed_revision(client, personas, evidenced, sign_dossier):
    first = sign_dossier(evidenced)
    second = dossier_open(actor=personas["officer"], version=evidenced)
    second = dossier_save(
        actor=personas["officer"],
        dossier=second,
        values={CLAIM: "Adults over 18 with erect PA films, read by a radiologist as a second reader."},
        edit_count=0,
    )
    dossier_submit(actor=personas["officer"], dossier=second)
    client.force_login(personas["officer2"])
    page = client.get(f"/dossiers/{second.pk}/review/").content.decode()
    assert f'Compared with <a href="/dossiers/{first.pk}/">revision 1</a>' in page
    assert f"1 field changed, {len(OFFICER_KEYS) - 1} unchanged" in page
    changed = page[page.index('id="change-1a_purpose_statement"') :]
    assert (
        "[added: </span>Adults over 18 with erect PA films, read by a radiologist as a second reader.<" in changed
        and "[removed: </span>&lt;b&gt;Clinical" in changed
    )


def test_a_resubmission_is_reviewed_against_the_submission_sent_back(client, personas, in_review):
    from compliance.dossiers import dossier_request_changes

    first_hash = in_review.snapshot_sha256
    sent_back = dossier_request_changes(actor=personas["officer2"], dossier=in_review, note="Name the population in 1a.")
    edited = dossier_save(
        actor=personas["officer"],
        dossier=sent_back,
        values={CLAIM: "Adults over 18 with erect PA films, read by a radiologist as a second reader."},
        edit_count=sent_back.edit_count,
    )
    dossier_submit(actor=personas["officer"], dossier=edited)
    client.force_login(personas["officer2"])
    page = client.get(f"/dossiers/{in_review.pk}/review/").content.decode()
    assert "Compared with the submission that was sent back" in page and first_hash[:16] in page and "Name the population in 1a." in page
    assert f"1 field changed, {len(OFFICER_KEYS) - 1} unchanged" in page
    changed = page[page.index('id="change-1a_purpose_statement"') :]
    assert "[added: </span>Adults over 18 with erect PA films, read by a radiologist as a second reader.<" in changed


def test_four_eyes_refusals_are_explained_on_the_page(client, personas, in_review):
    client.force_login(personas["officer"])  # author and submitter
    response = client.post(f"/dossiers/{in_review.pk}/request-changes/", {"note": "Please rewrite 1a."})
    page = response.content.decode()
    assert response.status_code == 403 and "Four eyes" in page and "Please rewrite 1a." in page
    response = client.post(f"/dossiers/{in_review.pk}/sign/", {"meaning": "Approved", "confirm": "on", **_signing(in_review)})
    assert response.status_code == 403 and "Four eyes" in response.content.decode()
    in_review.refresh_from_db()
    assert in_review.status == "in_review"

    client.force_login(personas["officer2"])
    assert client.post(f"/dossiers/{in_review.pk}/request-changes/", {"note": " "}).status_code == 400
    response = client.post(f"/dossiers/{in_review.pk}/request-changes/", {"note": "Name the PACS vendor in 1(b)."}, follow=True)
    page = response.content.decode()
    assert "Changes requested by the reviewer" in page and "Name the PACS vendor in 1(b)." in page
    assert 'name="action" value="submit"' in page  # editable again
    section = client.get(f"/dossiers/{in_review.pk}/sections/annex_iv_1/").content.decode()
    assert section.count('<textarea name="') == len([f for f in SECTIONS[0].fields if f.editable])


def test_the_second_officer_signs_on_the_sign_page(client, personas, in_review):
    client.force_login(personas["officer2"])
    page = client.get(f"/dossiers/{in_review.pk}/sign/").content.decode()
    assert in_review.snapshot_sha256 in page and 'value="Approved as the technical documentation of this version"' in page
    response = client.post(f"/dossiers/{in_review.pk}/sign/", {"meaning": "Approved for release 1.0", **_signing(in_review)})
    assert response.status_code == 400 and "Tick the box" in response.content.decode()
    response = client.post(
        f"/dossiers/{in_review.pk}/sign/", {"meaning": "Approved for release 1.0", "confirm": "on", **_signing(in_review)}, follow=True
    )
    page = response.content.decode()
    in_review.refresh_from_db()
    assert in_review.status == "signed" and in_review.signature.signer == personas["officer2"]
    assert in_review.signature.meaning == "Approved for release 1.0" and "You signed revision 1" in page
    assert "<textarea" not in page and "Signed</strong> by officer2" in page
    response = client.post(f"/dossiers/{in_review.pk}/sign/", {"meaning": "Again", "confirm": "on", **_signing(in_review)})
    page = response.content.decode()
    assert response.status_code == 409 and "Only a dossier in review can be signed" in page and "Signed</strong> by officer2" in page
    assert in_review.signature.meaning == "Approved for release 1.0"


def test_a_draft_cannot_be_signed_and_says_why(client, personas, draft, signing_password):
    client.force_login(personas["officer2"])
    assert "nothing is frozen yet" in client.get(f"/dossiers/{draft.pk}/sign/").content.decode()
    response = client.post(f"/dossiers/{draft.pk}/sign/", {"meaning": "Approved", "confirm": "on", "password": signing_password})
    assert response.status_code == 409 and "Only a dossier in review can be signed" in response.content.decode()


def test_an_officer_renders_documents_and_they_download_with_the_apis_access_rule(client, personas, evidenced, sign_dossier, draft):
    client.force_login(personas["officer"])
    page = client.post(f"/dossiers/{draft.pk}/documents/render/", follow=True).content.decode()
    assert "Documents are rendered from a signed dossier" in page and not Document.objects.exists()
    dossier = sign_dossier(evidenced)
    page = client.post(f"/dossiers/{dossier.pk}/documents/render/", follow=True).content.decode()
    documents = list(Document.objects.filter(dossier=dossier))
    assert f"{len(documents)} documents of revision 1 stored." in page and len(documents) >= 4
    pdf = next(d for d in documents if d.kind == "technical_documentation")

    client.force_login(personas["auditor"])
    for url in (f"/dossiers/{dossier.pk}/documents/", f"/versions/{evidenced.pk}/documents/"):
        page = client.get(url).content.decode()
        assert "Technical documentation (Annex IV)" in page and pdf.sha256 in page and f"/documents/{pdf.pk}/download/" in page
        assert "Render documents" not in page
    response = client.get(f"/documents/{pdf.pk}/download/")
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert hashlib.sha256(body).hexdigest() == pdf.sha256 and body.startswith(b"%PDF")
    name = f"{evidenced.foundation_model.name.lower()}-{evidenced.version}-rev1-technical_documentation.pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    assert response["ETag"] == f'"{pdf.sha256}"'
    assert client.post(f"/dossiers/{dossier.pk}/documents/render/").status_code == 403

    client.force_login(personas["engineer"])  # the provider's ML engineer
    assert client.get(f"/documents/{pdf.pk}/download/").status_code == 200
    client.force_login(personas["engineer_south"])
    assert client.get(f"/documents/{pdf.pk}/download/").status_code == 404
    assert client.get(f"/versions/{evidenced.pk}/documents/").status_code == 404
    client.force_login(personas["clinician_north"])
    assert client.get(f"/documents/{pdf.pk}/download/").status_code == 403


def test_the_change_log_page_shows_classification_paired_deltas_and_dossier_diffs(
    client, personas, run_setup, evidenced, register_version, sign_dossier
):
    from registry.services import provenance_link
    from validation import services

    child = register_version(
        run_setup["model"],
        "1.1.0",
        kind="external",
        parent=evidenced,
        output_schema={"class_names": ["pneumothorax"], "thresholds": {"pneumothorax": 0.566}, "activation": "sigmoid"},
    )
    provenance_link(actor=personas["engineer"], version=child, dataset=run_setup["dataset"], role="external_validation")
    run = services.run_create(actor=personas["engineer"], version=child, dataset=run_setup["dataset"], config={"n_resamples": 50, "min_patients": 5})
    services.run_execute(run_id=run.pk, worker="w")
    sign_dossier(evidenced)
    dossier = dossier_open(actor=personas["officer"], version=child)
    dossier_save(actor=personas["officer"], dossier=dossier, values={CLAIM: "Adults over 18 only."}, edit_count=0)

    client.force_login(personas["auditor"])
    page = client.get(f"/versions/{child.pk}/change-log/").content.decode()
    assert "Classification: Substantial modification" in page and "<td>Operating threshold</td>" in page
    assert f'href="/versions/{evidenced.pk}/trust/">{evidenced}</a>' in page
    metrics = page[page.index('id="change-metrics"') : page.index('id="change-subgroup_gaps"')]
    assert "<td>AUROC</td>" in metrics and "(95%:" in metrics and f'<a href="/runs/{run.pk}/">{run.pk}</a>' in metrics
    assert "Operating threshold of pneumothorax</th>" in page and "<td>0.5</td><td>0.566</td>" in page
    dossier_part = page[page.index('id="change-dossier"') :]
    assert "[added: </span>Adults over 18 only.<" in dossier_part and "<td>Intended purpose</td>" in dossier_part
    assert "First version: there is no parent" in client.get(f"/versions/{evidenced.pk}/change-log/").content.decode()

    client.force_login(personas["clinician_north"])
    assert client.get(f"/versions/{child.pk}/change-log/").status_code == 403
    client.force_login(personas["engineer_south"])
    assert client.get(f"/versions/{child.pk}/change-log/").status_code == 404
