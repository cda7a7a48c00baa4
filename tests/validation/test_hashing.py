"""Canonical-JSON hashing (``radtrust_engine.hashing``): numbers by value as PostgreSQL's jsonb
keeps them, the audit chain's format unchanged, legacy hashes still verifying, and the site
agent naming a payload by the hash the server stores."""

from __future__ import annotations

import decimal
import hashlib
import hmac
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radtrust_agent.state import AgentState, payload_named
from radtrust_engine.hashing import canonical_hmac_sha256, canonical_json, canonical_sha256, legacy_sha256, sha256_matches

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


def _as_jsonb_returns(value):
    """What a value reads back as after jsonb, through its JSON text: numbers by the value of their
    text (``2.253047539806795e+16`` as the int 22530475398067950, not the float's binary value),
    -0.0 as 0.0."""
    if isinstance(value, dict):
        return {k: _as_jsonb_returns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_jsonb_returns(v) for v in value]
    if isinstance(value, float):
        if value == 0:
            return 0.0
        if abs(value) >= 1e16:  # Python writes it with an exponent; jsonb keeps the decimal it was sent
            return int(decimal.Decimal(repr(value)))
    return value


def test_numbers_hash_by_value():
    assert canonical_json(1e16) == canonical_json(10_000_000_000_000_000) == canonical_json(json.loads("1e+16")) == "1e16"
    assert canonical_json(-0.0) == canonical_json(0) == canonical_json(0.0) == "0"
    assert canonical_json(2.0) == canonical_json(2) == "2e0"
    assert canonical_json(1e-7) == canonical_json(json.loads("0.0000001")) == "1e-7"
    assert canonical_json(0.1) == "1e-1" and canonical_json(-250) == "-25e1"
    assert canonical_sha256({"a": [1e16, -0.0, 2.0]}) == canonical_sha256({"a": [10**16, 0, 2]})


def test_the_format_is_compact_sorted_and_ascii():
    assert canonical_json({"b": [1, "ü", None, True], "a": {"y": False, "x": "é"}}) == '{"a":{"x":"\\u00e9","y":false},"b":[1e0,"\\u00fc",null,true]}'


def test_the_audit_chain_format_is_kept():
    """The exact text core.audit hashed before the helper moved to the engine, so existing chains verify."""
    fields = {
        "seq": 7,
        "changes": {"score": [0.25, 1e16], "neg": -0.0, "n": 120, "ok": True, "note": "Größe"},
        "prev_hash": "0" * 64,
        "actor_id": None,
    }
    assert canonical_json(fields) == (
        '{"actor_id":null,"changes":{"n":12e1,"neg":0,"note":"Gr\\u00f6\\u00dfe","ok":true,'
        '"score":[25e-2,1e16]},"prev_hash":"' + "0" * 64 + '","seq":7e0}'
    )
    assert canonical_sha256(fields) == hashlib.sha256(canonical_json(fields).encode()).hexdigest()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {"a": [1, math.nan]}])
def test_nan_and_infinity_are_refused_like_jsonb_does(bad):
    with pytest.raises(ValueError, match="jsonb"):
        canonical_json(bad)


def test_other_types_need_a_default():
    import datetime as dt

    when = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(TypeError, match="datetime"):
        canonical_json({"at": when})
    assert canonical_json({"at": when}, default=str) == '{"at":"2024-05-01 12:00:00+00:00"}'


@settings(max_examples=500)
@given(json_values)
def test_the_hash_survives_a_jsonb_round_trip(value):
    assert canonical_sha256(_as_jsonb_returns(json.loads(json.dumps(value)))) == canonical_sha256(value)


@settings(max_examples=200)
@given(json_values)
def test_a_record_verifies_by_its_canonical_or_its_legacy_hash(value):
    assert sha256_matches(value, canonical_sha256(value))
    assert sha256_matches(value, legacy_sha256(value))
    assert legacy_sha256(value) == hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
    assert not sha256_matches(value, "0" * 64)
    assert not sha256_matches([value, 1], canonical_sha256(value))


# --- The site agent ------------------------------------------------------------------------


def test_the_agent_names_a_payload_by_the_servers_hash(tmp_path):
    state = AgentState(tmp_path / "state")
    payload = {"labels": {"effusion": {"auroc": 0.8125, "scale": 1e16, "delta": -0.0}}, "n": 120}
    digest, size = state.payload_write(5, payload)
    assert digest == canonical_sha256(payload) == canonical_sha256(json.loads(json.dumps(payload)))
    assert size == state.payload_path(5).stat().st_size
    assert state.payload_read(5, digest) == json.loads(json.dumps(payload))
    approval = state.approval_write(5, by="dpo")
    assert approval["payload_sha256"] == digest and state.approval_read(5, digest) == approval

    state.payload_path(5).write_text(json.dumps({**payload, "n": 121}, indent=1, sort_keys=True))
    with pytest.raises(ValueError, match="changed after it was written"):
        state.payload_read(5, digest)
    assert state.approval_read(5, digest) == approval  # the approval names the hash; the send re-checks the file


def test_a_job_recorded_before_canonical_hashing_is_still_approved_and_sent(tmp_path):
    """An older agent named the outbox file by the sha256 of its bytes; after an upgrade the
    payload it wrote can still be approved (the approval names the canonical hash of those
    same bytes) and read to be sent, and a changed file is still refused."""
    state = AgentState(tmp_path / "state")
    payload = {"n": 120, "auroc": 0.8125}
    data = json.dumps(payload, indent=1, sort_keys=True).encode()
    state.payload_path(9).parent.mkdir(parents=True)
    state.payload_path(9).write_bytes(data)
    legacy = hashlib.sha256(data).hexdigest()

    assert payload_named(data, legacy) and payload_named(data, canonical_sha256(payload))
    assert state.payload_read(9, legacy) == payload
    approval = state.approval_write(9, by="dpo")
    assert approval["payload_sha256"] == canonical_sha256(payload)
    assert state.approval_read(9, legacy) == approval

    state.payload_path(9).write_bytes(data.replace(b"120", b"121"))
    assert state.approval_read(9, legacy) is None
    with pytest.raises(ValueError, match="changed after it was written"):
        state.payload_read(9, legacy)
    assert not payload_named(b"not json", canonical_sha256(payload))


@given(json_values)
@settings(max_examples=100, deadline=None)
def test_the_keyed_hash_is_the_hmac_of_the_canonical_json_and_survives_jsonb(value):
    key, other = b"k" * 32, b"o" * 32
    keyed = canonical_hmac_sha256(value, key=key)
    assert keyed == hmac.new(key, canonical_json(value).encode("ascii"), hashlib.sha256).hexdigest()
    assert keyed != canonical_hmac_sha256(value, key=other) and keyed != canonical_sha256(value)
    assert canonical_hmac_sha256(_as_jsonb_returns(value), key=key) == keyed
