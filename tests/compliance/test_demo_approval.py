"""The demo's approval (``manage.py demo``) with four eyes: the officer writes the dossier, proposes
the justified exceptions and the approval; the second officer signs the dossier with their password
from var/demo-credentials.txt and confirms each exception and the approval."""

from __future__ import annotations

import pytest

from compliance.models import VersionApproval
from radtrust_demo import dossiers as demo
from registry.choices import ProvenanceRole, VersionStatus
from tests.factories import SIGNING_PASSWORD, ProvenanceFactory, dossier_officer_values

pytestmark = pytest.mark.django_db


def test_the_demo_approves_with_two_officers(personas, evidenced, signing_password, settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    (tmp_path / "demo-credentials.txt").write_text(f"officer2 {SIGNING_PASSWORD}\n")
    monkeypatch.setattr(demo, "OFFICER_TEXT", dossier_officer_values())  # the demo's own text is checked by the bench test
    ProvenanceFactory(version=evidenced, role=ProvenanceRole.FINE_TUNING)
    lines = []
    excepted = demo.approval_demo(
        version=evidenced, engineer=personas["engineer"], officer=personas["officer"], reviewer=personas["officer2"], out=lines.append
    )
    evidenced.refresh_from_db()
    assert evidenced.status == VersionStatus.APPROVED
    signature = evidenced.dossiers.get().signature
    assert signature.signer == personas["officer2"] and signature.authentication == "password"
    exceptions = list(evidenced.trust_exceptions.all())
    assert sorted(e.principle for e in exceptions) == excepted
    assert all(e.granted_by == personas["officer"] and e.confirmed_by == personas["officer2"] for e in exceptions)
    approval = VersionApproval.objects.get(version=evidenced)
    assert (approval.proposed_by, approval.decided_by, approval.status) == (personas["officer"], personas["officer2"], "confirmed")
    assert "proposed by officer, confirmed by officer2" in lines[-1]
    assert (
        demo.approval_demo(version=evidenced, engineer=personas["engineer"], officer=personas["officer"], reviewer=personas["officer2"]) == excepted
    )
