"""The dossier pages in headless Chromium: an officer opens a section from the overview, writes
and saves, a second officer saving from a stale page sees both texts and keeps their own, submit,
the second officer (who edited) is refused at signing and a third one signs with their password;
a refused submission links each problem to its field; the keyboard reaches every field of a
section by its label."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compliance.dossier_fields import FIELDS, SECTION_OF, SECTIONS
from compliance.dossiers import dossier_open, dossier_save
from compliance.models import Dossier
from tests.browser.conftest import TIMEOUT_MS, login
from tests.factories import dossier_officer_values

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "Correct-horse-battery-9"
CLAIM = FIELDS["1a_purpose_statement"]
FIRST = SECTION_OF[CLAIM.key]


@pytest.fixture
def officers(personas, institutions):
    from registry.services import user_create

    for name in ("officer", "officer2"):
        personas[name].set_password(PASSWORD)
        personas[name].save()
    return {
        **personas,
        "officer3": user_create(username="officer3", role="compliance_officer", institution=institutions["vendor"], password=PASSWORD),
    }


@pytest.fixture
def almost_written(officers, evidenced):
    """A draft with every officer field written except the clinical claim."""
    dossier = dossier_open(actor=officers["officer"], version=evidenced)
    values = {k: v for k, v in dossier_officer_values().items() if k != CLAIM.key}
    return dossier_save(actor=officers["officer"], dossier=dossier, values=values, edit_count=0)


def test_two_officers_write_one_submits_and_a_third_signs(page, browser, live_server, officers, almost_written):
    dossier = almost_written
    login(page, live_server.url, "officer", PASSWORD)
    page.get_by_role("link", name="Dossiers").click()
    row = page.get_by_role("row").filter(has_text=str(dossier.version))
    expect(row).to_contain_text("Draft")
    row.get_by_role("link", name="Revision 1").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("revision 1")

    second = browser.new_context(base_url=live_server.url)
    second.set_default_timeout(TIMEOUT_MS)
    other = second.new_page()
    login(other, live_server.url, "officer2", PASSWORD)
    other.goto(f"/dossiers/{dossier.pk}/sections/{FIRST.key}/")  # opened before the first officer saves: stale from here on

    page.get_by_role("navigation", name="Sections").get_by_role("link", name=FIRST.title).click()
    page.get_by_label(CLAIM.title).fill("Adults with erect PA chest radiographs; triage of suspected pneumothorax.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("listitem").filter(has_text="Saved 1 field.")).to_be_visible()

    mine = "Adults and adolescents over 16; worklist prioritisation only."
    other.get_by_role("textbox", name=CLAIM.title).fill(mine)
    other.get_by_role("button", name="Save", exact=True).click()
    conflict = other.get_by_role("alert").filter(has_text="Another officer saved this dossier")
    expect(conflict).to_be_visible()
    expect(conflict.get_by_test_id(f"yours-{CLAIM.key}")).to_have_text(mine)
    expect(conflict.get_by_test_id(f"saved-{CLAIM.key}")).to_have_text("Adults with erect PA chest radiographs; triage of suspected pneumothorax.")
    expect(conflict.locator("ins")).not_to_have_count(0)
    expect(other.get_by_role("textbox", name=CLAIM.title)).to_have_value(mine)  # their text kept in the field
    other.get_by_role("textbox", name=CLAIM.title).fill(mine + " Not for children.")
    other.get_by_role("button", name="Save", exact=True).click()
    expect(other.get_by_role("listitem").filter(has_text="Saved 1 field.")).to_be_visible()
    assert Dossier.objects.get(pk=dossier.pk).values[CLAIM.key] == mine + " Not for children."

    page.reload()
    expect(page.get_by_label(CLAIM.title)).to_have_value(mine + " Not for children.")
    page.get_by_role("button", name="Save and submit for review").click()
    expect(page).to_have_url(f"{live_server.url}/dossiers/{dossier.pk}/review/")
    expect(page.locator("main")).to_contain_text("This is the first revision")

    other.goto(f"/dossiers/{dossier.pk}/review/")
    other.get_by_role("link", name="Go to signing").click()
    dossier.refresh_from_db()
    expect(other.locator("#snapshot-hash")).to_have_text(dossier.snapshot_sha256)
    expect(other.get_by_label("What your signature means")).to_have_value("Approved as the technical documentation of this version")
    other.get_by_label("I have reviewed this snapshot").check()
    other.get_by_label("Your password").fill(PASSWORD)
    other.get_by_role("button", name="Sign revision 1").click()
    expect(other.get_by_role("alert").filter(has_text="you edited revision 1")).to_contain_text("who may: officer3")
    second.close()

    third = browser.new_context(base_url=live_server.url)
    third.set_default_timeout(TIMEOUT_MS)
    signer = third.new_page()
    login(signer, live_server.url, "officer3", PASSWORD)
    signer.goto(f"/dossiers/{dossier.pk}/sign/")
    signer.get_by_label("I have reviewed this snapshot").check()
    signer.get_by_label("Your password").fill(PASSWORD)
    signer.get_by_role("button", name="Sign revision 1").click()
    expect(signer.get_by_role("listitem").filter(has_text="You signed revision 1")).to_be_visible()
    expect(signer.locator("main")).to_contain_text("Signed by officer3")
    signer.get_by_role("link", name="All dossiers").click()
    expect(signer.get_by_role("row").filter(has_text=str(dossier.version))).to_contain_text("Signed by officer3")
    third.close()


def test_the_author_is_told_four_eyes_forbid_signing(page, live_server, officers, almost_written):
    dossier_save(
        actor=officers["officer"],
        dossier=almost_written,
        values={CLAIM.key: "Adults with erect PA chest radiographs; triage of suspected pneumothorax only."},
        edit_count=almost_written.edit_count,
    )
    login(page, live_server.url, "officer", PASSWORD)
    page.goto(f"/dossiers/{almost_written.pk}/")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_role("link", name="Go to signing").click()
    page.get_by_label("I have reviewed this snapshot").check()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Sign revision 1").click()
    expect(page.get_by_role("alert").filter(has_text="Four eyes")).to_be_visible()
    assert Dossier.objects.get(pk=almost_written.pk).status == "in_review"


def test_a_refused_submission_links_each_problem_to_its_field(page, live_server, officers, almost_written):
    login(page, live_server.url, "officer", PASSWORD)
    page.goto(f"/dossiers/{almost_written.pk}/")
    page.get_by_role("button", name="Submit for review").click()
    refusal = page.get_by_role("alert").filter(has_text="Not submitted")
    expect(refusal).to_contain_text(f"{CLAIM.title} ({FIRST.title}, {CLAIM.article}) is not written yet.")
    expect(refusal).not_to_contain_text(CLAIM.key)
    refusal.get_by_role("link", name=CLAIM.title, exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/dossiers/{almost_written.pk}/sections/{FIRST.key}/#field-{CLAIM.key}")
    expect(page.get_by_label(CLAIM.title)).to_be_visible()
    assert Dossier.objects.get(pk=almost_written.pk).status == "draft"


def test_keyboard_reaches_the_fields_by_their_labels_and_the_buttons(page, live_server, officers, almost_written):
    login(page, live_server.url, "officer", PASSWORD)
    page.goto(f"/dossiers/{almost_written.pk}/sections/{FIRST.key}/")
    reached, outlined = set(), set()
    for _ in range(200):
        page.keyboard.press("Tab")
        name, outline = page.evaluate("""(e => [e.tagName === 'BUTTON' ? e.textContent.trim() : (e.name || e.textContent.trim()),
            getComputedStyle(e).outlineStyle])(document.activeElement)""")
        reached.add(name)
        if outline != "none":
            outlined.add(name)
        if name == "Save and submit for review":
            break
    officer_keys = {f.key for f in FIRST.fields if f.editable}
    assert officer_keys <= reached and officer_keys <= outlined  # every field, in order, with a visible focus ring
    assert {"Save", "Save and submit for review"} <= reached
    for section in SECTIONS:
        page.goto(f"/dossiers/{almost_written.pk}/sections/{section.key}/")
        unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length)).map(e => e.name)""")
        assert unlabelled == [], section.key
    page.goto(f"/dossiers/{almost_written.pk}/sections/{FIRST.key}/")
    described = page.evaluate(f"document.getElementById(document.getElementById('id_{CLAIM.key}').getAttribute('aria-describedby')).textContent")
    assert described == CLAIM.guidance


def test_the_editor_fits_a_phone_screen(page, live_server, officers, almost_written):
    page.set_viewport_size({"width": 375, "height": 740})
    login(page, live_server.url, "officer", PASSWORD)
    sections = [f"/dossiers/{almost_written.pk}/sections/{s.key}/" for s in SECTIONS]
    for path in (
        "/dossiers/",
        f"/dossiers/{almost_written.pk}/",
        *sections,
        f"/dossiers/{almost_written.pk}/review/",
        f"/dossiers/{almost_written.pk}/sign/",
    ):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
