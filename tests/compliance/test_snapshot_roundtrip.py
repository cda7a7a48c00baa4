"""A signed dossier's frozen snapshot still hashes to what was signed after the database round trip.

PostgreSQL's jsonb keeps numbers by value, not by spelling: ``-0.0`` comes back as ``0.0`` and
``1e16`` as the int ``10000000000000000``, which a plain ``json.dumps`` hash of the snapshot
does not survive (signing then refused the dossier as altered). These tests are meant for
PostgreSQL (``DATABASE_URL=postgres://postgres@127.0.0.1:5432/radtrust pytest -m postgres``)
and pass, checking less, on SQLite, which keeps the JSON text as written.
"""

from __future__ import annotations

import math

import pytest
from django.db import connection

from compliance.documents import render_source
from compliance.dossiers import dossier_open, dossier_save, dossier_sign, dossier_submit, snapshot_hash
from compliance.models import Dossier
from core.errors import Conflict
from radtrust_engine.hashing import legacy_sha256
from tests.factories import dossier_officer_values

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

NUMBERS = {
    "negative_zero": -0.0,
    "large": 1e16,
    "integral": 2.0,
    "small": 1e-7,
    "ratio": 0.1,
    "nested": [[-0.0, [1e16, 2.0]], {"deep": [1e-7, -0.0, 12345678901234567890]}],
}


@pytest.fixture
def numbers_in_evidence(monkeypatch):
    """The evidence a dossier freezes carries numbers computed in Python, as jsonb does not spell them."""
    from compliance import dossiers as module  # where submission reads the evidence it freezes

    real = module.dossier_evidence
    monkeypatch.setattr(module, "dossier_evidence", lambda version: {**real(version), "computed_numbers": NUMBERS})


def _submitted(personas, version) -> Dossier:
    dossier = dossier_open(actor=personas["officer"], version=version)
    dossier = dossier_save(actor=personas["officer"], dossier=dossier, values=dossier_officer_values(), edit_count=dossier.edit_count)
    return dossier_submit(actor=personas["officer"], dossier=dossier)


def test_a_signed_snapshot_hashes_as_signed_after_the_round_trip(personas, evidenced, numbers_in_evidence, signing_password):
    submitted = _submitted(personas, evidenced)
    signature = dossier_sign(
        actor=personas["officer2"], dossier=submitted, password=signing_password, snapshot_sha256=submitted.snapshot_sha256
    )  # re-reads the snapshot and checks its hash
    dossier = Dossier.objects.get(pk=submitted.pk)
    dossier.refresh_from_db()

    stored = dossier.snapshot["evidence"]["computed_numbers"]
    assert stored == NUMBERS  # by value (-0.0 == 0.0, 1e16 == 10**16)
    if connection.vendor == "postgresql":  # the spellings did change: the test exercises the round trip
        assert type(stored["large"]) is int and stored["large"] == 10**16
        assert math.copysign(1.0, stored["negative_zero"]) == 1.0
        assert type(stored["nested"][0][1][0]) is int
    assert snapshot_hash(dossier.snapshot) == dossier.snapshot_sha256 == signature.snapshot_sha256
    assert render_source(dossier).snapshot_sha256 == signature.snapshot_sha256  # documents verify it too


def test_a_snapshot_frozen_with_the_legacy_hash_still_signs_and_renders(personas, evidenced, monkeypatch, signing_password):
    """Snapshots frozen before canonical hashing carry the plain json.dumps hash; they still verify."""
    with monkeypatch.context() as patch:
        patch.setattr("compliance.dossiers.snapshot_hash", legacy_sha256)  # the hashing of the day
        submitted = _submitted(personas, evidenced)
    assert submitted.snapshot_sha256 == legacy_sha256(submitted.snapshot) != snapshot_hash(submitted.snapshot)
    signature = dossier_sign(actor=personas["officer2"], dossier=submitted, password=signing_password, snapshot_sha256=submitted.snapshot_sha256)
    dossier = Dossier.objects.get(pk=submitted.pk)
    assert signature.snapshot_sha256 == dossier.snapshot_sha256 == legacy_sha256(dossier.snapshot)
    assert render_source(dossier).snapshot_sha256 == signature.snapshot_sha256


def test_a_snapshot_altered_in_the_database_is_still_refused(personas, evidenced, signing_password):
    submitted = _submitted(personas, evidenced)
    altered = {**submitted.snapshot, "values": {**submitted.snapshot["values"], "1a_purpose_statement": "rewritten"}}
    Dossier.objects.filter(pk=submitted.pk).update(snapshot=altered)
    with pytest.raises(Conflict) as caught:
        dossier_sign(actor=personas["officer2"], dossier=submitted, password=signing_password, snapshot_sha256=submitted.snapshot_sha256)
    assert caught.value.code == "snapshot_altered"
