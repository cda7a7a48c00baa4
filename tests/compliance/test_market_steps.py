"""Conformity assessment and placing on the market (issue 17 part 1): each refusal names what is
missing and is audited, a version is deployed only once placed on the market (or within a clinical
investigation), never after withdrawal, and retention counts from placing on the market and withdrawal."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from compliance.change_control import conformity_assessment_record
from compliance.choices import DocumentKind, DossierStatus
from compliance.documents import Rendered, document_store
from compliance.dossiers import dossier_open
from compliance.market import deployment_market_check, market_place, retention_of
from compliance.models import ConformityAssessment, Document, Dossier, MarketPlacement, MarketWithdrawal
from core.errors import Conflict, ImmutableRecord
from core.models import AuditEvent
from registry.choices import DeploymentStatus, MdrClass, VersionStatus
from registry.models import Deployment
from registry.services import user_create
from tests.factories import DeploymentFactory, FoundationModelFactory, ModelVersionFactory

CA = {
    "route": "mdr_notified_body",
    "mdr_procedure": "annex_ix",
    "notified_body": "BSI Group The Netherlands B.V., 2797",
    "certificate_reference": "CE 712345",
}


def _events(action: str, instance) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_type=instance._meta.label_lower, object_id=str(instance.pk)))


def _declaration(version, officer, *, signed: bool = True) -> Document:
    """A stored declaration of a revision of ``version`` (signed, or left a draft), without rendering a PDF."""
    dossier = dossier_open(actor=officer, version=version)
    if signed:
        Dossier.objects.filter(pk=dossier.pk).update(status=DossierStatus.SIGNED, snapshot_sha256="a" * 64)
        dossier.refresh_from_db()
    rendered = Rendered(DocumentKind.DECLARATION_OF_CONFORMITY, f"%PDF-1.7 declaration of {version}".encode(), "pdf")
    return document_store(actor=officer, dossier=dossier, rendered=rendered)


@pytest.fixture
def version(institutions):
    model = FoundationModelFactory(provider=institutions["vendor"], mdr_class=MdrClass.IIA)
    return ModelVersionFactory(foundation_model=model, status=VersionStatus.APPROVED)


@pytest.fixture
def officer_north(institutions):
    return user_create(username="officer_north", role="compliance_officer", institution=institutions["north"])


@pytest.fixture
def assessed(version, personas):
    """``version`` with its conformity assessment recorded by ``officer``."""
    conformity_assessment_record(actor=personas["officer"], version=version, assessed_on=timezone.localdate(), **CA)
    return version


@pytest.fixture
def placed(assessed, personas):
    """``version`` placed on the market today by ``officer2`` with a signed declaration."""
    _declaration(assessed, personas["officer"])
    market_place(actor=personas["officer2"], version=assessed, ce_marking="affixed_with_number", placed_on=timezone.localdate())
    return assessed


def _market(version) -> str:
    return f"/api/model-versions/{version.pk}/market/"


# --- the conformity assessment ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_class_iia_assessment_without_notified_body_certificate_or_mdr_procedure_is_refused(version, personas, api_client):
    url = f"/api/model-versions/{version.pk}/conformity-assessments/"
    today = timezone.localdate()
    response = api_client(personas["officer"]).post(
        url, {"route": "mdr_notified_body", "assessed_on": today, "notified_body": "", "certificate_reference": ""}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert "A class IIa device is assessed by a notified body" in body["notified_body"][0] and "four-digit" in body["notified_body"][0]
    assert "A class IIa device is assessed by a notified body" in body["certificate_reference"][0]
    assert "class IIa medical device: choose MDR Annex IX" in body["mdr_procedure"][0]
    internal = api_client(personas["officer"]).post(url, {**CA, "route": "internal_control", "assessed_on": today}, format="json")
    assert internal.status_code == 400 and "notified body" in internal.json()["route"][0]
    assert not ConformityAssessment.objects.exists()
    software = ModelVersionFactory(foundation_model=FoundationModelFactory(provider=version.foundation_model.provider, mdr_class=MdrClass.NONE))
    with pytest.raises(ValidationError) as refused:
        conformity_assessment_record(
            actor=personas["officer"], version=software, route="internal_control", mdr_procedure="annex_ix", assessed_on=today
        )
    assert "not a medical device: leave the MDR procedure empty" in refused.value.message_dict["mdr_procedure"][0]


# --- placing on the market ---------------------------------------------------------------------


@pytest.mark.django_db
def test_placing_on_the_market_needs_an_assessment_and_refuses_a_draft_declaration(version, personas, api_client):
    client = api_client(personas["officer2"])
    nothing = client.post(_market(version), {"ce_marking": "affixed_with_number", "placed_on": timezone.localdate()}, format="json")
    assert nothing.status_code == 400
    assert "No conformity assessment of" in nothing.json()["conformity_assessment"][0]
    assert "it has no dossier" in nothing.json()["declaration"][0] and "a draft is never placed on the market" in nothing.json()["declaration"][0]

    conformity_assessment_record(actor=personas["officer"], version=version, assessed_on=timezone.localdate(), **CA)
    draft = _declaration(version, personas["officer"], signed=False)
    by_default = client.post(_market(version), {"ce_marking": "affixed_with_number", "placed_on": timezone.localdate()}, format="json")
    assert "its newest dossier revision is draft" in by_default.json()["declaration"][0]
    named = client.post(
        _market(version), {"ce_marking": "affixed_with_number", "placed_on": timezone.localdate(), "declaration": draft.pk}, format="json"
    )
    assert named.status_code == 400 and "draft, not signed" in named.json()["declaration"][0]
    assert not MarketPlacement.objects.exists()
    [*_, event] = _events("market_placement_refused", version)
    assert "declaration" in event.changes["refused"] and event.actor_username == "officer2"


@pytest.mark.django_db
def test_ce_marking_and_date_are_checked(assessed, personas, api_client):
    _declaration(assessed, personas["officer"])
    client = api_client(personas["officer2"])
    response = client.post(_market(assessed), {"ce_marking": "affixed", "placed_on": timezone.localdate() + timedelta(days=1)}, format="json")
    assert response.status_code == 400
    assert "identification number" in response.json()["ce_marking"][0] and "future" in response.json()["placed_on"][0]
    early = client.post(
        _market(assessed), {"ce_marking": "affixed_with_number", "placed_on": timezone.localdate() - timedelta(days=3)}, format="json"
    )
    assert early.status_code == 400 and "before the conformity assessment" in early.json()["placed_on"][0]
    assert not MarketPlacement.objects.exists()


@pytest.mark.django_db
def test_one_officer_cannot_assess_and_place_and_a_deployer_or_engineer_cannot_place(assessed, personas, officer_north, api_client):
    _declaration(assessed, personas["officer"])
    body = {"ce_marking": "affixed_with_number", "placed_on": timezone.localdate()}
    alone = api_client(personas["officer"]).post(_market(assessed), body, format="json")
    assert alone.status_code == 403
    assert "Four eyes: officer recorded its conformity assessment, so a second compliance officer of RadVendor GmbH" in alone.json()["detail"]
    assert "who may: officer2" in alone.json()["detail"]
    deployer = api_client(officer_north).post(_market(assessed), body, format="json")
    assert deployer.status_code == 403 and "Only a compliance officer of RadVendor GmbH may place" in deployer.json()["detail"]
    assert api_client(personas["engineer"]).post(_market(assessed), body, format="json").status_code == 403
    assert len(_events("market_placement_refused", assessed)) == 2
    assert not MarketPlacement.objects.exists()

    placed = api_client(personas["officer2"]).post(_market(assessed), body, format="json")
    assert placed.status_code == 201, placed.json()
    assert placed.json()["recorded_by"] == "officer2" and placed.json()["ce_marking"] == "affixed_with_number"
    placement = MarketPlacement.objects.get()
    assert _events("create", placement)[0].actor_username == "officer2"
    again = api_client(personas["officer2"]).post(_market(assessed), body, format="json")
    assert again.status_code == 409 and "placed on the market already" in again.json()["detail"]

    steps = api_client(personas["auditor"]).get(_market(assessed)).json()
    assert steps["placement"]["id"] == placement.pk and steps["missing"] == [] and steps["retention"]["until"] is None
    assert "On the market since" in steps["retention"]["basis"]


@pytest.mark.django_db
def test_market_records_are_append_only_below_the_orm(placed, personas):
    placement = MarketPlacement.objects.get(version=placed)
    with pytest.raises(ImmutableRecord):
        placement.save()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_marketplacement SET placed_on = '2020-01-01' WHERE id = %s", [placement.pk])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE compliance_conformityassessment SET certificate_reference = 'forged'")  # its trigger survived 0012


# --- the deployment block ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_version_not_on_the_market_is_deployed_only_within_a_clinical_investigation(assessed, personas, institutions, api_client):
    officer = api_client(personas["officer"])
    north = {"version": assessed.pk, "institution": institutions["north"].pk, "status": "active"}
    refused = officer.post("/api/deployments/", north, format="json")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "is not placed on the market, so it may not be deployed at North Hospital" in detail
    assert "a signed EU declaration of conformity" in detail and "its conformity assessment" not in detail  # it is recorded
    assert f"/api/model-versions/{assessed.pk}/clinical-investigations/" in detail
    assert not Deployment.objects.exists() and _events("deployment_refused", assessed)

    url = f"/api/model-versions/{assessed.pk}/clinical-investigations/"
    short = officer.post(url, {"institution": institutions["north"].pk, "reference": "", "reason": "test"}, format="json")
    assert short.status_code == 400 and set(short.json()) == {"reference", "reason"}
    recorded = officer.post(
        url,
        {"institution": institutions["north"].pk, "reference": "CIV-24-01-012345", "reason": "Pivotal investigation of reader accuracy at North."},
        format="json",
    )
    assert recorded.status_code == 201, recorded.json()
    assert officer.post("/api/deployments/", north, format="json").status_code == 201
    south = officer.post("/api/deployments/", {**north, "institution": institutions["south"].pk}, format="json")
    assert south.status_code == 409 and "South Hospital" in south.json()["detail"]

    with pytest.raises(ValidationError) as model_rule:  # the admin and every path that validates the row
        Deployment(version=assessed, institution=institutions["south"], status=DeploymentStatus.PLANNED).full_clean()
    assert "not placed on the market" in model_rule.value.message_dict["version"][0]


@pytest.mark.django_db
def test_a_placed_version_deploys_and_a_withdrawn_one_never_again(placed, personas, institutions, api_client):
    officer = api_client(personas["officer"])
    north = officer.post("/api/deployments/", {"version": placed.pk, "institution": institutions["north"].pk, "status": "active"}, format="json")
    assert north.status_code == 201
    suspended = officer.patch(f"/api/deployments/{north.json()['id']}/", {"status": "suspended"}, format="json")
    assert suspended.status_code == 200

    url = f"/api/model-versions/{placed.pk}/market-withdrawal/"
    vague = officer.post(url, {"withdrawn_on": timezone.localdate() + timedelta(days=1), "reason": "bad"}, format="json")
    assert vague.status_code == 400 and set(vague.json()) == {"withdrawn_on", "reason"}
    withdrawn = officer.post(
        url,
        {"withdrawn_on": timezone.localdate(), "reason": "Sensitivity fell below the declared bound at two sites; replaced by 1.1.0."},
        format="json",
    )
    assert withdrawn.status_code == 201, withdrawn.json()
    assert _events("create", MarketWithdrawal.objects.get())

    south = officer.post("/api/deployments/", {"version": placed.pk, "institution": institutions["south"].pk}, format="json")
    assert south.status_code == 409 and "was withdrawn from the market on" in south.json()["detail"]
    again = officer.patch(f"/api/deployments/{north.json()['id']}/", {"status": "active"}, format="json")
    assert again.status_code == 409 and "never newly deployed" in again.json()["detail"]
    assert Deployment.objects.get(pk=north.json()["id"]).status == DeploymentStatus.SUSPENDED
    investigation = officer.post(
        f"/api/model-versions/{placed.pk}/clinical-investigations/",
        {"institution": institutions["south"].pk, "reference": "CIV-1", "reason": "An attempt to deploy a withdrawn version anyway."},
        format="json",
    )
    assert investigation.status_code == 409
    assert officer.post(url, {"withdrawn_on": timezone.localdate(), "reason": "x" * 30}, format="json").status_code == 409


@pytest.mark.django_db
def test_the_guard_is_the_registered_market_evidence(assessed, institutions):
    from registry.guards import EVIDENCE, deployment_refusal

    assert EVIDENCE["market"] is deployment_market_check
    assert deployment_refusal(assessed, institutions["north"]) == deployment_market_check(assessed, institutions["north"])
    existing = DeploymentFactory(version=assessed, institution=institutions["north"], status=DeploymentStatus.ACTIVE)
    existing.notes = "Reading room 2"
    existing.full_clean()  # editing an active deployment is not deploying it anew


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_retention_counts_from_placing_on_the_market_and_withdrawal_not_from_rendering(version, personas, client):
    assert retention_of(version).until is None and "Not placed on the market" in retention_of(version).basis
    declaration = _declaration(version, personas["officer"])
    assessment = ConformityAssessment.objects.create(
        version=version, assessed_on=dt.date(2020, 2, 1), recorded_by=personas["officer"], **CA
    )  # as recorded years ago
    placement = MarketPlacement.objects.create(
        version=version,
        conformity_assessment=assessment,
        declaration=declaration,
        ce_marking="affixed_with_number",
        placed_on=dt.date(2020, 3, 2),
        recorded_by=personas["officer2"],
    )
    open_ended = retention_of(version)
    assert open_ended.until is None and "kept at least until 2 Mar 2030 (AI Act Art. 18)" in open_ended.basis
    later = document_store(
        actor=personas["officer"], dossier=declaration.dossier, rendered=Rendered(DocumentKind.MODEL_CARD_JSON, b'{"card": 1}\n', "json")
    )
    assert later.retain_until == dt.date(2030, 3, 2)  # from placing on the market, not today + 10 years

    MarketWithdrawal.objects.create(
        placement=placement, withdrawn_on=dt.date(2024, 2, 29), reason="Replaced by a new version.", recorded_by=personas["officer"]
    )
    closed = retention_of(version)
    assert closed.until == dt.date(2034, 2, 28) and "withdrawn on 29 Feb 2024" in closed.basis and "MDR Art. 10(8)" in closed.basis
    with pytest.raises(ImmutableRecord) as kept:
        Document.objects.filter(pk=declaration.pk).delete()
    assert kept.value.code == "document_retained"

    client.force_login(personas["auditor"])
    page = client.get(reverse("pages:version-documents", args=[version.pk])).content.decode()
    assert "kept until 28 Feb 2034" in page and "not from rendering" in page


# --- the page ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_version_page_shows_the_steps_and_records_them_with_four_eyes(assessed, personas, client):
    _declaration(assessed, personas["officer"])
    url = reverse("pages:version-market", args=[assessed.pk])
    client.force_login(personas["officer"])
    page = client.get(url).content.decode()
    assert "MDR Annex IX" in page and "BSI Group" in page and "Not placed on the market." in page
    body = {"step": "placement", "placement-ce_marking": "affixed_with_number", "placement-placed_on": timezone.localdate().isoformat()}
    alone = client.post(url, body, follow=True).content.decode()
    assert "Four eyes" in alone and not MarketPlacement.objects.exists()

    client.force_login(personas["engineer"])
    assert client.post(url, body).status_code == 403
    client.force_login(personas["officer2"])
    assert client.post(url, {**body, "placement-placed_on": ""}).status_code == 400
    assert client.post(url, body).status_code == 302
    shown = client.get(url).content.decode()
    assert "CE marking affixed with the notified body" in shown and "recorded by officer2" in shown and "On the market since" in shown


# --- the demo ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db
def test_the_demo_places_a_version_on_the_market_before_deploying_it(evidenced, sign_dossier, personas, institutions):
    from radtrust_demo import dossiers as demo

    sign_dossier(evidenced)
    type(evidenced).objects.filter(pk=evidenced.pk).update(status=VersionStatus.APPROVED)
    evidenced.refresh_from_db()
    with pytest.raises(Conflict) as refused:
        demo._deploy(evidenced, institutions["north"], personas["officer"])
    assert "is not placed on the market" in str(refused.value) and not Deployment.objects.exists()

    placement = demo.market_demo(version=evidenced, officer=personas["officer"], reviewer=personas["officer2"], out=lambda *_: None)
    assert placement.recorded_by == personas["officer2"] and placement.conformity_assessment.recorded_by == personas["officer"]
    assert placement.conformity_assessment.mdr_procedure == "annex_ix" and placement.declaration.dossier.status == DossierStatus.SIGNED
    assert demo.market_demo(version=evidenced, officer=personas["officer"], reviewer=personas["officer2"], out=lambda *_: None) == placement
    assert demo._deploy(evidenced, institutions["north"], personas["officer"]).status == DeploymentStatus.ACTIVE
